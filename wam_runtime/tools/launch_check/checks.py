"""The checks of an evaluated launch plan: executables, paths, parameters.

- every executable of this package is one of its console scripts (a process started from
  the package prefix too);
- every path under the share folder (config, URDF, model, included launch file) exists;
- every parameter reaching a node of this package is declared by it with the declared type,
  parameter-file sections actually match the node's namespace, and the values build with
  the node's own configuration builder (``params_check.build_config``: the safety
  configuration with its URDF limits, the policy configuration against the model's
  contract).

Parameters reach a node as rcl gives them (``core.param_files``): the files and the
dictionaries of the ``Node`` action in launch order, merged into one section table; a
dictionary is a ``/**`` section (``plan.DICT_SECTION``), as ``report.ros_arguments``
writes it.
"""

import os
import re
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

from wam_runtime.core.contract import ContractError, ModelContract
from wam_runtime.core.inference import ModelLoadError
from wam_runtime.core.param_files import (
    load_param_file, merge_sections, parameters_for, stray_message, stray_sections)
from wam_runtime.core.params import ConfigError
from wam_runtime.core.policy_config import check_against_contract
from wam_runtime.tools.launch_check.plan import (
    DICT_SECTION, LaunchPlan, NodeDecl, PACKAGE, UNKNOWN)
from wam_runtime.tools.model_info import inspect_model
from wam_runtime.tools.params_check import (
    build_config, BUILD_ERRORS, check_values, Finding, NODE_SCHEMAS)


def console_scripts(share_root: str) -> Set[str]:
    """Console scripts of the package: from setup.py in a source tree, else lib/<pkg>/."""
    setup_py = os.path.join(share_root, 'setup.py')
    if os.path.isfile(setup_py):
        with open(setup_py, encoding='utf-8') as f:
            return set(re.findall(r"'([\w-]+) = [\w.]+:\w+'", f.read()))
    lib = os.path.join(share_root, '..', '..', 'lib', PACKAGE)
    return set(os.listdir(lib)) if os.path.isdir(lib) else set()


def check_executables(plan: LaunchPlan, scripts: Set[str]) -> None:
    """Report nodes and processes of this package that are not its console scripts."""
    for n in plan.nodes:
        if n.package == PACKAGE and n.executable not in scripts:
            plan.findings.append(Finding('error', n.file, f'node {n.name}: executable '
                                                          f'{n.executable!r} is not a console '
                                                          f'script of {PACKAGE} '
                                                          f'({sorted(scripts)})'))
    prefix = f'<prefix:{PACKAGE}>'
    for p in plan.processes:
        exe = p.cmd[0] if p.cmd else ''
        if isinstance(exe, str) and exe.startswith(prefix):
            rel = os.path.relpath(exe, prefix)
            parts = rel.split(os.sep)
            if parts[:2] != ['lib', PACKAGE] or len(parts) != 3 or parts[2] not in scripts:
                plan.findings.append(Finding('error', p.file, f'process {exe}: not a console '
                                                              f'script of {PACKAGE}'))
        elif exe in scripts:
            plan.findings.append(Finding('error', p.file, f'process {exe!r}: console scripts '
                                                          f'live in lib/{PACKAGE}, not on '
                                                          'PATH; use FindPackagePrefix'))


def check_paths(plan: LaunchPlan, share_root: str) -> None:
    """Report paths under the share folder, and named path parameters, that do not exist."""
    seen = set()
    for what, value in plan.strings + [(f'argument {a.name}', a.default)
                                       for a in plan.args.values()]:
        if not isinstance(value, str) or value in seen:
            continue
        seen.add(value)
        under_share = value.startswith(share_root + os.sep)
        named_path = what.endswith(('_path', 'parameter file', 'config_file')) and value \
            and not value.startswith('<')
        if (under_share or named_path) and not os.path.exists(value):
            plan.findings.append(Finding('error', os.path.relpath(plan.file, share_root),
                                         f'{what}: {value} does not exist'))


def node_values(plan: LaunchPlan, node: NodeDecl) -> Dict[str, Any]:
    """Return the parameters reaching ``node``, as rcl merges them; report dead sections."""
    files: List[Mapping[str, Mapping[str, Any]]] = []
    for kind, source in node.params:
        if kind == 'dict':
            files.append({DICT_SECTION: {k: v for k, v in source.items() if v is not UNKNOWN}})
            continue
        if source is UNKNOWN or not os.path.isfile(source):
            continue
        try:
            sections = load_param_file(source)
        except ConfigError as exc:
            plan.findings.append(Finding('error', node.file, str(exc)))
            continue
        files.append(sections)
        stray = stray_sections(sections, node.fqn)
        if stray:
            plan.findings.append(Finding('error', node.file, f'{node.fqn}: '
                                         f'{os.path.basename(source)} has '
                                         f'{stray_message(stray, node.fqn)}'))
    return parameters_for(merge_sections(files), node.fqn)[0]


def _model_contract(values: Mapping[str, Any]) -> ModelContract:
    report = inspect_model(values['model_path'])
    if report.error:
        raise ModelLoadError(report.error)
    return report.contract


def check_parameters(plan: LaunchPlan
                     ) -> Tuple[Dict[str, Dict[str, Any]], Optional[ModelContract]]:
    """Check every node's parameters; return the values by node name and the model contract."""
    merged: Dict[str, Dict[str, Any]] = {}
    contract = None
    for node in plan.nodes:
        if node.package != PACKAGE or node.executable not in NODE_SCHEMAS:
            continue
        where = f'{node.file}: {node.fqn}'
        values = node_values(plan, node)
        merged[node.name] = values
        for message in check_values(node.executable, values):
            plan.findings.append(Finding('error', where, message))
        try:
            config = build_config(node.executable, values)
        except BUILD_ERRORS as exc:
            plan.findings.append(Finding('error', where, str(exc)))
            config = None
        if node.executable != 'policy_node' or not isinstance(values.get('model_path'), str):
            continue
        try:
            contract = _model_contract(values)
            if config is not None:
                check_against_contract(config, contract)
        except (ConfigError, ContractError, ModelLoadError) as exc:
            plan.findings.append(Finding('error', where, str(exc)))
    safety = merged.get('safety_controller')
    if safety and contract is not None and safety.get('joint_names') and set(
            safety['joint_names']) != set(contract.action.joint_names):
        plan.findings.append(Finding('error', os.path.basename(plan.file),
                                     f'safety_controller joint_names {safety["joint_names"]} '
                                     'differ from the model action joints '
                                     f'{list(contract.action.joint_names)}'))
    return merged, contract
