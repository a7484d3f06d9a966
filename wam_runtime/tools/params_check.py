"""ROS parameter files checked against the parameters the nodes declare and build.

rclpy refuses a value whose type differs from the declared one (``10`` for a double,
``[1, 2]`` for a double array) and silently ignores a parameter nobody declares (a typo in
a limit name loses the limit). Both are found here, before anything starts, with the file,
the section and the parameter named; sections are read and matched to nodes as rcl does
(``core.param_files``). :func:`build_config` then validates a node's merged values with the
builder the node itself configures from, so a value passes here exactly when it passes
there.
"""

from dataclasses import dataclass
import importlib
import os
from typing import Any, List, Mapping, Optional, Sequence

from wam_runtime.core.contract import ContractError
from wam_runtime.core.limits import LimitsError
from wam_runtime.core.param_files import load_param_file, section_node
from wam_runtime.core.params import ConfigError, Param, param_type, resolve, type_error, \
    value_type
from wam_runtime.core.policy_config import build_policy_config
from wam_runtime.core.safety_config import build_safety

# Node (executable and default node name) -> (module, attribute) holding its schema. Every
# node module exposes the same object as ``PARAMS``; the core schemas need no rclpy.
NODE_SCHEMAS = {
    'policy_node': ('wam_runtime.core.params', 'POLICY_PARAMS'),
    'safety_controller': ('wam_runtime.core.params', 'SAFETY_PARAMS'),
    'sim_node': ('wam_runtime.sim.sim_node', 'PARAMS'),
    'synthetic_camera': ('wam_runtime.ros.synthetic_camera', 'PARAMS'),
    'recorder_node': ('wam_runtime.ros.recorder_node', 'PARAMS'),
}
NODE_MODULES = {
    'policy_node': 'wam_runtime.ros.policy_node',
    'safety_controller': 'wam_runtime.ros.safety_controller',
    'sim_node': 'wam_runtime.sim.sim_node',
    'synthetic_camera': 'wam_runtime.ros.synthetic_camera',
    'recorder_node': 'wam_runtime.ros.recorder_node',
}
# Parameters rclpy declares on every node.
BUILTIN_PARAMS = {'use_sim_time': False, 'start_type_description_service': True}

# Unit of a parameter from its name (units are in the names; the longest suffix wins).
_UNIT_SUFFIXES = (('_rad_s3', 'rad/s^3'), ('_rad_s2', 'rad/s^2'), ('_rad_s', 'rad/s'),
                  ('_m_s3', 'm/s^3'), ('_m_s2', 'm/s^2'), ('_m_s', 'm/s'), ('_rad', 'rad'),
                  ('_hz', 'Hz'), ('_s', 's'), ('_m', 'm'))


@dataclass(frozen=True)
class Finding:
    """One result of a check: ``level`` is 'error' or 'warning'."""

    level: str
    where: str
    message: str

    def __str__(self) -> str:
        return f'{self.level}: {self.where}: {self.message}'


def node_schema(node: str) -> Sequence[Param]:
    """Return the declared parameters of one of the package's nodes (KeyError if unknown)."""
    module, attr = NODE_SCHEMAS[node]
    return getattr(importlib.import_module(module), attr)


def unit_of(p: Param) -> str:
    """Return the unit of a parameter ('-' when it has none)."""
    for suffix, unit in _UNIT_SUFFIXES:
        if p.name.endswith(suffix):
            return unit
    if '(joint units' in p.description:
        return 'rad or m'     # per joint: rad (revolute, continuous) or m (prismatic)
    return 'px' if '(px)' in p.description else '-'


def type_name(default: Any) -> str:
    """ROS parameter type of a schema default: 'double', 'string_array', ..."""
    return param_type(default)


def check_value(p: Param, value: Any) -> Optional[str]:
    """Return why rclpy would refuse ``value`` for parameter ``p``, or None.

    The decision is ``core.params.type_error``'s, the one every builder makes (the replay
    and the nodes' own builders give rclpy's message); this message says it for a person.
    """
    if value is None:
        return f'{p.name}: has no value; remove the line or give a {type_name(p.default)}'
    if type_error(p, value) is None:
        return None
    want, got = type_name(p.default), value_type(value)
    if got == 'mixed':
        return f'{p.name}: list elements must all have one type, got {value!r}'
    hint = ''
    if want.startswith('double') and got.startswith('integer'):
        hint = ' (write whole numbers with a decimal point, for example 10.0)'
    elif isinstance(value, str) and value in ('null', 'Null', 'NULL', '~'):
        hint = f' (rcl reads {value} as the string {value!r}: remove the line for the default)'
    return (f'{p.name}: {value!r} is {got.replace("_", " ")}, the node declares '
            f'{want.replace("_", " ")}{hint}')


def check_values(node: str, values: Mapping[str, Any]) -> List[str]:
    """Return one message per undeclared parameter and per value of the wrong type."""
    schema = {p.name: p for p in node_schema(node)}
    errors = []
    for name, value in values.items():
        if name in BUILTIN_PARAMS:
            if not isinstance(value, bool):
                errors.append(f'{name}: {value!r} is not a bool')
            continue
        p = schema.get(name)
        if p is None:
            errors.append(f'{name}: not a parameter of {node} (rclpy would ignore it '
                          'silently)')
            continue
        problem = check_value(p, value)
        if problem:
            errors.append(problem)
    return errors


def check_param_file(path: str, label: Optional[str] = None) -> List[Finding]:
    """Check every section of a parameter file that reaches one of the package's nodes.

    A section for another node (controller_manager, ...) is not checked; a wildcard
    section (``/**``) must hold parameters that at least one of our nodes declares.
    """
    where = label or path
    try:
        sections = load_param_file(path)
    except ConfigError as exc:
        return [Finding('error', where, str(exc))]
    findings = []
    for key, params in sections.items():
        node = section_node(key)
        if node is None:
            for name, value in params.items():
                owners = [n for n in NODE_SCHEMAS
                          if not check_values(n, {name: value})]
                if not owners:
                    findings.append(Finding('error', f'{where}: {key}',
                                            f'{name}: no node of this package declares it '
                                            'with this type'))
            continue
        if node not in NODE_SCHEMAS:
            continue
        for message in check_values(node, params):
            findings.append(Finding('error', f'{where}: {key}', message))
    return findings


def resolve_path(path: str, base_dir: str) -> str:
    """Absolute path of ``path`` (relative paths are taken from ``base_dir``)."""
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base_dir, path))


# What a node's configuration builder raises for a value it refuses.
BUILD_ERRORS = (ConfigError, LimitsError, ContractError)


def build_config(node: str, values: Mapping[str, Any]) -> Any:
    """Validate a node's parameter values with the builder the node configures from.

    safety_controller: ``core.safety_config.build_safety`` (URDF read, limits and workspace
    built); policy_node: ``core.policy_config.build_policy_config`` (the model is not
    loaded: give ``model_path``, check the contract with ``check_against_contract``); the
    other nodes: their schema's defaults and required parameters. Returns what the builder
    returns; raises one of :data:`BUILD_ERRORS` naming the parameter.
    """
    if node == 'safety_controller':
        return build_safety(values)
    if node == 'policy_node':
        return build_policy_config(values)
    return resolve(node_schema(node), values, node)
