"""``wam-runtime check-config``: a robot's parameter file against its URDF, model and controllers.

Checks every parameter against the nodes' declared schemas, builds both configurations
exactly as ``policy_node`` and ``safety_controller`` build them (with the model: its
contract and ``model_sha256`` too), prints the effective limits table (each value and where
it came from), compares the joint names of the config, the URDF, the model and the
controller order, and times the model against ``max_chunk_age_s``, the chunk coverage and
``command_timeout_s``. Exit code 0: valid (warnings allowed), 2: invalid or bad usage.

    wam-runtime check-config CONFIG [--urdf URDF] [--model MODEL] [--controllers YAML]
"""

import argparse
import os
import sys
from typing import Any, Dict, List, Optional

from wam_runtime.core.contract import ContractError
from wam_runtime.core.inference import check_sha256, ModelLoadError
from wam_runtime.core.limits import format_limits_table, LimitRow, LimitsError
from wam_runtime.core.param_files import fqn, load_param_file, parameters_for
from wam_runtime.core.params import ConfigError
from wam_runtime.core.policy_config import build_policy_config, check_against_contract
from wam_runtime.core.safety_config import build_safety
from wam_runtime.tools.controllers_check import check_controllers
from wam_runtime.tools.model_info import inspect_model
from wam_runtime.tools.model_timing import measure_inference, timing_findings
from wam_runtime.tools.params_check import check_param_file, resolve_path

EXIT_OK, EXIT_INVALID = 0, 2


def _section(sections: Dict[str, Dict[str, Any]], node: str, namespace: str
             ) -> Dict[str, Any]:
    values, _ = parameters_for(sections, fqn(namespace, node))
    return values


def _limits_rows(setup) -> List[Any]:
    lim = setup.config.limits
    p = setup.params
    rows = []
    for i, name in enumerate(lim.joint_names):
        for key, values in (('lower_limits_rad', lim.lower), ('upper_limits_rad', lim.upper),
                            ('max_velocity_rad_s', lim.max_velocity),
                            ('max_acceleration_rad_s2', lim.max_acceleration),
                            ('max_jerk_rad_s3', lim.max_jerk)):
            source = 'config' if p.get(key) else 'none'
            rows.append(LimitRow(name, key, float(values[i]), source))
    return rows


def check_config(args: argparse.Namespace) -> int:
    """Run the checks of ``args`` and print them; return the exit code."""
    errors: List[str] = []
    findings = check_param_file(args.config)
    for f in findings:
        print(f)
    errors += [str(f) for f in findings if f.level == 'error']
    try:
        sections = load_param_file(args.config)
    except ConfigError as exc:
        print(f'INVALID   {exc}')
        return EXIT_INVALID
    base = os.path.dirname(os.path.abspath(args.config))
    safety = _section(sections, 'safety_controller', args.namespace)
    policy = _section(sections, 'policy_node', args.namespace)
    if not safety:
        errors.append(f'{args.config}: no safety_controller section applies to '
                      f'{args.namespace or "/"}safety_controller')
    urdf = args.urdf or safety.get('urdf_path') or ''
    if urdf:
        safety['urdf_path'] = args.urdf or resolve_path(urdf, base)
    print(f'config    {args.config}')
    print(f'urdf      {safety.get("urdf_path") or "(none: limits from the config only)"}')
    setup = None
    if safety:
        try:
            setup = build_safety(safety)
        except (ConfigError, LimitsError, ContractError) as exc:
            errors.append(f'safety_controller: {exc}')
    joints = list(setup.config.limits.joint_names) if setup else list(
        safety.get('joint_names') or [])
    if setup:
        print(f'joints    {joints} (command order)')
        p = setup.params
        print(f'gate      {p["control_rate_hz"]:g} Hz, output {p["output_mode"]}, margins '
              f'per joint (table), scaling {p["scaling"]}, blend {p["blend"]}, '
              f'workspace {"on" if setup.config.workspace_ok else "off"}, surprise '
              f'{"on" if setup.governor else "off"}')
        print('effective limits (value and where it came from):')
        print(setup.limits_table or format_limits_table(_limits_rows(setup)))
    config = None
    if policy:
        try:
            config = build_policy_config(dict(policy,
                                              model_path=policy.get('model_path') or '-'))
        except ConfigError as exc:
            errors.append(f'policy_node: {exc}')
        names = policy.get('joint_names')
        if names and joints and set(names) != set(joints):
            errors.append(f'policy_node.joint_names {names} differ from '
                          f'safety_controller.joint_names {joints}')
    model = args.model or (resolve_path(policy['model_path'], base)
                           if policy.get('model_path') else None)
    warnings: List[str] = []
    if model:
        report = inspect_model(model)
        if report.error:
            errors.append(f'model: {report.error}')
        else:
            acts = list(report.contract.action.joint_names)
            print(f'model     {model}: acts on {acts}, cameras '
                  f'{[c.name for c in report.contract.cameras]}')
            if joints and set(acts) != set(joints):
                errors.append(f'model action joints {acts} differ from '
                              f'safety_controller.joint_names {joints} (every chunk would be '
                              'rejected)')
            errors += _policy_model_errors(config, model, report.contract)
            if args.timing_runs > 0:
                warnings += _model_timing(model, report.contract, policy, safety, args,
                                          errors)
    if args.controllers:
        if joints:
            errors += [str(f) for f in check_controllers(args.controllers, joints)
                       if f.level == 'error']
            print(f'controllers {args.controllers}: checked against the joint order')
        else:
            errors.append('--controllers: no joint_names to compare with')
    for w in warnings:
        print(f'WARNING   {w}')
    for e in errors:
        print(f'INVALID   {e}')
    if not errors:
        print('valid     parameters, URDF and joint names agree'
              + (f' ({len(warnings)} warning{"s" if len(warnings) > 1 else ""} above)'
                 if warnings else ''))
    return EXIT_INVALID if errors else EXIT_OK


def _policy_model_errors(config: Any, model: str, contract: Any) -> List[str]:
    """Return what policy_node would refuse once it loads the model (contract, pin).

    ``check_against_contract`` and the ``model_sha256`` comparison with the file are the
    node's own checks; without a valid policy configuration there is nothing to compare.
    """
    if config is None:
        return []
    errors = []
    try:
        check_against_contract(config, contract)
    except ConfigError as exc:
        errors.append(f'policy_node: {exc}')
    if config.params['model_sha256']:
        try:
            check_sha256(model, config.params['model_sha256'])
        except (ModelLoadError, OSError) as exc:
            errors.append(f'policy_node: {exc}')
    return errors


def _model_timing(model: str, contract: Any, policy: Dict[str, Any], safety: Dict[str, Any],
                  args: argparse.Namespace, errors: List[str]) -> List[str]:
    """Measure the model's inference time; return the timing warnings (figures included)."""
    try:
        timing = measure_inference(model, policy, args.timing_runs)
    except (ModelLoadError, ContractError, ConfigError) as exc:
        errors.append(f'model: {exc}')
        return []
    print(f'timing    {timing}')
    try:
        found = timing_findings(timing, contract.action.horizon, contract.action.dt_s,
                                policy, safety)
    except ConfigError as exc:
        errors.append(f'policy_node: {exc}')
        return []
    return [f.message for f in found]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``wam-runtime check-config``."""
    p = argparse.ArgumentParser(
        prog='wam-runtime check-config', description='Check a parameter file against its URDF, '
        'model and controllers and print the effective limits.')
    p.add_argument('config', help='ROS parameter YAML (policy_node, safety_controller)')
    p.add_argument('--urdf', help='robot URDF (default: safety_controller.urdf_path)')
    p.add_argument('--model', help='ONNX model (default: policy_node.model_path, if set)')
    p.add_argument('--controllers', help='ros2_control controller YAML to check the joint '
                                         'order against')
    p.add_argument('--namespace', default='', help='node namespace the sections must match')
    p.add_argument('--timing-runs', type=int, default=5,
                   help='inferences timed (after warm-up) to check the model against '
                        'max_chunk_age_s, the chunk coverage and command_timeout_s '
                        '(0 = skip; default 5)')
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``wam-runtime check-config`` (argv without the command word)."""
    return check_config(build_parser().parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
