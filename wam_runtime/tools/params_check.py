"""ROS parameter files checked against the parameters the nodes declare.

rclpy refuses a value whose type differs from the declared one (``10`` for a double,
``[1, 2]`` for a double array) and silently ignores a parameter nobody declares (a typo in
a limit name loses the limit). Both are found here, before anything starts, with the file,
the section and the parameter named. Section keys are matched against a node's fully
qualified name the way rcl does: ``policy_node`` means ``/policy_node`` only, ``/**/policy_node``
matches it in any namespace.
"""

from dataclasses import dataclass
import importlib
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from wam_runtime.core.params import ConfigError, Kind, Param

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
    if isinstance(default, Kind):
        return str(default)
    if isinstance(default, bool):
        return 'bool'
    if isinstance(default, int):
        return 'integer'
    if isinstance(default, float):
        return 'double'
    if isinstance(default, str):
        return 'string'
    if isinstance(default, (list, tuple)) and default:
        return type_name(default[0]) + '_array'
    raise TypeError(f'no ROS parameter type for {default!r}')


def value_type(value: Any) -> Optional[str]:
    """ROS parameter type rcl gives a YAML value; None for null, 'mixed' for bad lists."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if not value:
            return 'empty_array'
        kinds = {value_type(v) for v in value}
        if len(kinds) != 1 or None in kinds or any(k.endswith('array') for k in kinds):
            return 'mixed'
        return kinds.pop() + '_array'
    return type_name(value)


def check_value(p: Param, value: Any) -> Optional[str]:
    """Return why rclpy would refuse ``value`` for parameter ``p``, or None."""
    want = type_name(p.default)
    got = value_type(value)
    if got == want:
        if isinstance(value, float) and not math.isfinite(value):
            return f'{p.name}: {value} is not finite'
        return None
    if got is None:
        return f'{p.name}: has no value (null); remove the line or give a {want}'
    if got == 'empty_array' and want.endswith('_array'):
        return None   # reads as "not set"
    if got == 'mixed':
        return f'{p.name}: list elements must all have one type, got {value!r}'
    hint = ''
    if want.startswith('double') and got.startswith('integer'):
        hint = ' (write whole numbers with a decimal point, for example 10.0)'
    return (f'{p.name}: {value!r} is {got.replace("_", " ")}, the node declares '
            f'{want.replace("_", " ")}{hint}')


def flatten(params: Mapping[str, Any], prefix: str = '') -> Dict[str, Any]:
    """Flatten nested parameter namespaces (``a: {b: 1}``) into dotted names (``a.b``)."""
    out: Dict[str, Any] = {}
    for key, value in params.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            out.update(flatten(value, name + '.'))
        else:
            out[name] = value
    return out


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


def load_param_file(path: str) -> Dict[str, Dict[str, Any]]:
    """Return ``{section key: parameters}`` of a ROS parameter YAML, keys as written.

    Nested namespace sections (``ns: {node: {ros__parameters: ...}}``) become ``ns/node``.
    Raises ConfigError naming the file when it is not a ROS parameter file.
    """
    try:
        with open(path, encoding='utf-8') as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise ConfigError(f'{path}: cannot read ({exc.strerror})') from None
    except yaml.YAMLError as exc:
        raise ConfigError(f'{path}: not valid YAML ({" ".join(str(exc).split())})') from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f'{path}: expected a mapping of node names to ros__parameters')
    sections: Dict[str, Dict[str, Any]] = {}

    def walk(node: Any, keys: List[str]) -> None:
        if not isinstance(node, dict):
            raise ConfigError(f'{path}: {"/".join(keys)}: expected ros__parameters below '
                              'the node name')
        if 'ros__parameters' in node:
            params = node['ros__parameters']
            if not isinstance(params, dict):
                raise ConfigError(f'{path}: {"/".join(keys)}: ros__parameters must be a '
                                  'mapping')
            sections['/'.join(keys)] = flatten(params)
            return
        for key, value in node.items():
            walk(value, keys + [str(key)])

    for key, value in data.items():
        walk(value, [str(key)])
    return sections


def _match(pattern: Sequence[str], name: Sequence[str]) -> bool:
    if not pattern:
        return not name
    head = pattern[0]
    if head == '**':
        return any(_match(pattern[1:], name[i:]) for i in range(len(name) + 1))
    if not name:
        return False
    return (head == '*' or head == name[0]) and _match(pattern[1:], name[1:])


def key_matches(key: str, fqn: str) -> bool:
    """Whether a parameter-file section key applies to the node ``fqn`` (rcl rules)."""
    key = key if key.startswith('/') else '/' + key
    return _match([t for t in key.split('/') if t], [t for t in fqn.split('/') if t])


def fqn(namespace: str, name: str) -> str:
    """Fully qualified node name from a namespace ('' or relative or absolute) and a name."""
    ns = '/'.join(t for t in namespace.split('/') if t)
    return f'/{ns}/{name}' if ns else f'/{name}'


def parameters_for(sections: Mapping[str, Mapping[str, Any]],
                   node_fqn: str) -> Tuple[Dict[str, Any], List[str]]:
    """Merge, in file order, the sections that apply to ``node_fqn``; return values and keys."""
    values: Dict[str, Any] = {}
    keys = []
    for key, params in sections.items():
        if key_matches(key, node_fqn):
            values.update(params)
            keys.append(key)
    return values, keys


def section_node(key: str) -> Optional[str]:
    """Return the node a section key names (its last token), or None for a wildcard."""
    tokens = [t for t in key.split('/') if t]
    return tokens[-1] if tokens and '*' not in tokens[-1] else None


def check_param_file(path: str, label: Optional[str] = None) -> List[Finding]:
    """Check every section of a parameter file that reaches one of the package's nodes.

    A section for another node (controller_manager, ...) is reported as a warning only if
    its name is close to one of ours; a ``/**`` section must hold parameters that at least
    one of our nodes declares.
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


@dataclass(frozen=True)
class ControllerSpec:
    """One ros2_control controller: name, type and joints (in the YAML's order)."""

    name: str
    type: str  # noqa: A003 - the ros2_control parameter name
    joints: Tuple[str, ...]
    interfaces: Tuple[str, ...]

    @property
    def command_topic(self) -> Optional[str]:
        """The topic the controller takes commands on (None for broadcasters)."""
        if self.type in FORWARD_TYPES:
            return f'/{self.name}/commands'
        if self.type == JTC_TYPE:
            return f'/{self.name}/joint_trajectory'
        return None


FORWARD_TYPES = ('forward_command_controller/ForwardCommandController',
                 'position_controllers/JointGroupPositionController')
JTC_TYPE = 'joint_trajectory_controller/JointTrajectoryController'


def load_controllers(path: str) -> Tuple[Dict[str, ControllerSpec], List[Finding]]:
    """Read a ros2_control controller YAML: the controllers the manager loads, by name."""
    findings: List[Finding] = []
    try:
        sections = load_param_file(path)
    except ConfigError as exc:
        return {}, [Finding('error', path, str(exc))]
    by_node = {section_node(k): v for k, v in sections.items()}
    manager = by_node.get('controller_manager')
    if manager is None:
        return {}, [Finding('error', path, 'no controller_manager section')]
    rate = manager.get('update_rate')
    if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
        findings.append(Finding('error', f'{path}: controller_manager',
                                f'update_rate: expected a positive integer (Hz), got {rate!r}'))
    controllers = {}
    for key, value in manager.items():
        if not key.endswith('.type'):
            continue
        name = key[:-len('.type')]
        params = by_node.get(name, {})
        interfaces = params.get('interface_name') or params.get('command_interfaces') or []
        controllers[name] = ControllerSpec(
            name, str(value), tuple(params.get('joints') or ()),
            tuple([interfaces] if isinstance(interfaces, str) else interfaces))
    return controllers, findings


def check_controllers(path: str, joint_names: Sequence[str]) -> List[Finding]:
    """Check a controller YAML against the safety controller's ``joint_names``.

    The forward command controller reads a Float64MultiArray in its ``joints`` order, which
    must be exactly ``joint_names`` (same joints, same order); the trajectory controller
    maps by name, so the same set is enough. Both must command ``position``.
    """
    controllers, findings = load_controllers(path)
    commanding = [c for c in controllers.values() if c.command_topic]
    if not commanding and not findings:
        findings.append(Finding('error', path, 'no forward_command or joint_trajectory '
                                               'controller declared'))
    for c in commanding:
        where = f'{path}: {c.name}'
        if not c.joints:
            findings.append(Finding('error', where, 'joints: missing'))
        elif c.type in FORWARD_TYPES and list(c.joints) != list(joint_names):
            findings.append(Finding('error', where, f'joints: {list(c.joints)} must equal the '
                                                    f'safety controller joint_names '
                                                    f'{list(joint_names)} in the same order '
                                                    '(Float64MultiArray is positional)'))
        elif set(c.joints) != set(joint_names):
            findings.append(Finding('error', where, f'joints: {sorted(c.joints)} differ from '
                                                    f'joint_names {sorted(joint_names)}'))
        if c.type in FORWARD_TYPES[:1] and c.interfaces != ('position',):
            findings.append(Finding('error', where, f'interface_name: {list(c.interfaces)}, '
                                                    "expected 'position'"))
        if c.type == JTC_TYPE and 'position' not in c.interfaces:
            findings.append(Finding('error', where, 'command_interfaces: must include '
                                                    'position'))
    return findings


# --------------------------------------------------------------------------- model timing

@dataclass(frozen=True)
class InferenceTiming:
    """Measured inference time of a model on this machine (after warm-up runs)."""

    p50_s: float
    max_s: float
    runs: int
    provider: str
    threads: int

    def __str__(self) -> str:
        return (f'inference p50 {self.p50_s * 1e3:.1f} ms, max {self.max_s * 1e3:.1f} ms '
                f'({self.runs} runs after warm-up, {self.provider}, intra_op_num_threads '
                f'{self.threads or "default"}; preprocessing not included)')


def measure_inference(model_path: str, policy_params: Mapping[str, Any],
                      runs: int = 5) -> InferenceTiming:
    """Time ``runs`` inferences on random inputs with the policy node's ONNX Runtime setup.

    Uses ``providers``, the thread counts and ``io_binding`` of ``policy_params`` (the
    node's defaults where absent) and the runtime's own loader, so the figure is what the
    node will see on this machine. Raises ModelLoadError or ContractError like the node.
    """
    import numpy as np
    from wam_runtime.core.inference import OnnxPolicy
    from wam_runtime.core.params import POLICY_PARAMS, resolve
    from wam_runtime.export import random_inputs

    p = resolve(POLICY_PARAMS, dict(policy_params, model_path=model_path), 'policy_node')
    policy = OnnxPolicy(model_path, providers=list(p['providers']),
                        intra_op_num_threads=p['intra_op_num_threads'],
                        inter_op_num_threads=p['inter_op_num_threads'],
                        io_binding=p['io_binding'], warmup_runs=2, log=lambda _m: None)
    contract = policy.contract
    rng = np.random.default_rng(0)
    times = []
    for _ in range(max(1, runs)):
        feeds = random_inputs(contract, rng)
        images = {c.name: feeds[c.input] for c in contract.cameras}
        state = rng.normal(0.0, 0.1, len(contract.state.joint_names))
        times.append(policy.run(images, state).inference_s)
    return InferenceTiming(float(np.median(times)), float(np.max(times)), len(times),
                           policy.providers[0], p['intra_op_num_threads'])


def timing_findings(timing: InferenceTiming, horizon: int, dt_s: float,
                    policy_params: Mapping[str, Any],
                    safety_params: Mapping[str, Any]) -> List[Finding]:
    """Return warnings where the measured inference time cannot meet the timing budget.

    A chunk reaches the safety controller at least one inference after its observation's
    stamp: it must be younger than ``max_chunk_age_s``, and its coverage (``horizon *
    dt_s``) must outlast the wait for the next chunk, one inference period (the longer of
    ``1 / inference_rate_hz`` and the inference itself) plus that chunk's inference; past
    the coverage the arm stops, and ``command_timeout_s`` later it is a command_timeout.
    The median decides "cannot", the maximum "sometimes".
    """
    from wam_runtime.core.params import POLICY_PARAMS, resolve, SAFETY_PARAMS
    pp = resolve(POLICY_PARAMS, dict(policy_params, model_path='-'), 'policy_node')
    sp = {p.name: p.default for p in SAFETY_PARAMS}
    sp.update({k: v for k, v in safety_params.items() if v is not None})
    coverage = horizon * dt_s
    period = 1.0 / pp['inference_rate_hz']
    findings = []
    figures = (f'p50 {timing.p50_s * 1e3:.1f} ms / max {timing.max_s * 1e3:.1f} ms on '
               f'{timing.provider}')
    where = 'model timing'

    def add(message: str) -> None:
        findings.append(Finding('warning', where, message))

    age = sp['max_chunk_age_s']
    for t, what in ((timing.p50_s, 'every chunk'), (timing.max_s, 'some chunks')):
        if t >= age:
            add(f'inference {figures} is longer than safety_controller.max_chunk_age_s '
                f'{age:g} s: {what} would arrive stale and be rejected (chunk_stale)')
            break
    for t, what in ((timing.p50_s, 'every chunk'), (timing.max_s, 'some chunks')):
        if t >= coverage:
            add(f'inference {figures} is longer than the chunk coverage {coverage:g} s '
                f'(horizon {horizon} x dt_s {dt_s:g}): {what} would be over before it '
                'arrives')
            break
    for label, t in (('p50', timing.p50_s), ('max', timing.max_s)):
        gap = max(period, t) + t - coverage
        if gap > 0:
            stop = ('a command_timeout stop every chunk' if gap > sp['command_timeout_s']
                    else 'a stop between chunks (chunk_exhausted)')
            add(f'inference {figures} at inference_rate_hz {pp["inference_rate_hz"]:g}: the '
                f'next chunk arrives {max(period, t) + t:.3g} s after an observation '
                f'(with the {label} time), the chunk covers {coverage:g} s: a gap of '
                f'{gap:.3g} s, {stop} (command_timeout_s {sp["command_timeout_s"]:g} s)')
            break
    return findings
