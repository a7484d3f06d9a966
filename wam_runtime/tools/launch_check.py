"""Static validation of launch files: read with ``ast``, never imported or executed.

``launch`` and ``launch_ros`` need not be installed. A launch file is evaluated the way
``ros2 launch`` would with a given set of launch arguments: ``DeclareLaunchArgument``
defaults, ``LaunchConfiguration``, ``PathJoinSubstitution``, ``FindPackageShare`` (this
package maps to its share folder, or the source tree), ``IncludeLaunchDescription`` of this
package's launch files (followed, with their launch arguments), ``GroupAction`` with
``PushRosNamespace``/``SetRemap``, ``IfCondition``/``UnlessCondition`` over
``EqualsSubstitution``. The result is a :class:`LaunchPlan`: every node with its fully
qualified name, parameter sources and remaps, every process. :func:`check_plan` then checks:

- only launch API present in both Jazzy and Kilted is imported;
- every argument has a description, every ``LaunchConfiguration`` is declared in its file;
- every executable of this package is one of its console scripts;
- every path under the share folder (config, URDF, model, included launch file) exists;
- every parameter reaching a node of this package is declared by it, with the declared type,
  required ones are given, parameter-file sections actually match the node's namespace, the
  safety configuration builds (URDF limits included) and the model's contract is valid;
- topics: endpoints that share a name in the code still share it after namespaces and
  remaps, with one message type per topic; bridge entries (``ros_gz_bridge``) connect to a
  node of the launch.

Constructs it cannot follow (``OpaqueFunction``, computed values) are reported, not guessed.
"""

import ast
from dataclasses import dataclass, field
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import yaml

from wam_runtime.core.contract import ContractError
from wam_runtime.core.gate import LimitsError
from wam_runtime.core.inference import ModelLoadError
from wam_runtime.core.params import ConfigError, resolve
from wam_runtime.tools.params_check import (
    check_values, Finding, fqn, key_matches, load_param_file, node_schema, NODE_SCHEMAS,
    section_node)

PACKAGE = 'wam_runtime'

# Launch API present, with the same meaning, in both Jazzy and Kilted. Anything newer (for
# example launch.actions.ForEach, Kilted only) would break one of them.
PORTABLE_API = {
    'launch': {'LaunchDescription', 'LaunchContext'},
    'launch.actions': {'DeclareLaunchArgument', 'IncludeLaunchDescription', 'ExecuteProcess',
                       'GroupAction', 'SetEnvironmentVariable', 'LogInfo', 'TimerAction',
                       'RegisterEventHandler', 'EmitEvent', 'Shutdown', 'OpaqueFunction',
                       'SetLaunchConfiguration'},
    'launch.substitutions': {'LaunchConfiguration', 'PathJoinSubstitution',
                             'TextSubstitution', 'PythonExpression', 'EnvironmentVariable',
                             'EqualsSubstitution', 'NotEqualsSubstitution',
                             'ThisLaunchFileDir', 'FindExecutable', 'Command'},
    'launch.conditions': {'IfCondition', 'UnlessCondition'},
    'launch.launch_description_sources': {'PythonLaunchDescriptionSource',
                                          'AnyLaunchDescriptionSource'},
    'launch.event_handlers': {'OnProcessExit', 'OnProcessStart', 'OnShutdown'},
    'launch_ros.actions': {'Node', 'LifecycleNode', 'PushRosNamespace', 'SetRemap',
                           'SetParameter', 'SetParametersFromFile'},
    'launch_ros.substitutions': {'FindPackageShare', 'FindPackagePrefix'},
    'launch_ros.parameter_descriptions': {'ParameterValue', 'ParameterFile'},
    'launch_ros.event_handlers': {'OnStateTransition'},
    'launch_ros.events.lifecycle': {'ChangeState'},
    'lifecycle_msgs.msg': {'Transition'},
    'ament_index_python.packages': {'get_package_share_directory',
                                    'get_package_prefix'},
}
STDLIB_IMPORTS = {'os', 'os.path', 'typing'}

# Topics of the package's nodes as written in the code (relative names follow namespace and
# remaps). Camera topics of policy_node come from the model contract.
_JS, _TRAJ = 'sensor_msgs/msg/JointState', 'trajectory_msgs/msg/JointTrajectory'
_F64A, _IMG = 'std_msgs/msg/Float64MultiArray', 'sensor_msgs/msg/Image'
NODE_TOPICS = {
    'policy_node': {
        'sub': [('joint_states', _JS), ('safety/execution', _F64A)],
        'pub': [('policy/action_chunk', _TRAJ), ('policy/surprise', 'std_msgs/msg/Float32'),
                ('/diagnostics', 'diagnostic_msgs/msg/DiagnosticArray')]},
    'safety_controller': {
        'sub': [('policy/action_chunk', _TRAJ), ('joint_states', _JS),
                ('safety/estop', 'std_msgs/msg/Bool'),
                ('policy/surprise', 'std_msgs/msg/Float32')],
        'pub': [('safety/events', 'diagnostic_msgs/msg/DiagnosticStatus'),
                ('safety/execution', _F64A),
                ('/diagnostics', 'diagnostic_msgs/msg/DiagnosticArray')]},
    'sim_node': {
        'sub': [('commands', _F64A)],
        'pub': [('camera/scene/image_raw', _IMG), ('joint_states', _JS),
                ('sim/episode_outcome', 'std_msgs/msg/String')]},
    'synthetic_camera': {
        'sub': [('commands', _F64A)],
        'pub': [('joint_states', _JS)]},
}
SAFETY_OUTPUTS = {'forward_command': ('commands', _F64A),
                  'joint_trajectory': ('joint_trajectory', _TRAJ)}


class _Unknown:
    """A value the static evaluator cannot compute."""

    def __repr__(self) -> str:
        return '<unknown>'


UNKNOWN = _Unknown()


@dataclass
class ArgDecl:
    """One DeclareLaunchArgument."""

    name: str
    default: Any            # evaluated default (UNKNOWN if not computable, None if none)
    description: str
    choices: Optional[List[str]]
    file: str


@dataclass
class NodeDecl:
    """One Node as it would start: names resolved, parameters and remaps in launch order."""

    package: str
    executable: str
    name: str
    namespace: str                          # '' or '/a/b'
    params: List[Tuple[str, Any]]           # ('file', path) or ('dict', {name: value})
    remaps: List[Tuple[str, str]]           # scope (SetRemap) rules first, then the node's
    arguments: List[Any]
    file: str

    @property
    def fqn(self) -> str:
        """Fully qualified node name."""
        return fqn(self.namespace, self.name)


@dataclass
class ProcessDecl:
    """One ExecuteProcess: the command line, evaluated."""

    cmd: List[Any]
    file: str


@dataclass
class Endpoint:
    """A topic endpoint of a node: direction, original and resolved name, type."""

    node: str
    direction: str          # 'pub' or 'sub'
    original: str
    resolved: str
    type: str  # noqa: A003 - the message type
    bridge: bool = False    # an entry of a ros_gz_bridge configuration


@dataclass
class LaunchPlan:
    """Everything a launch file (and what it includes) would start, evaluated statically."""

    file: str
    env: Dict[str, Any]
    args: Dict[str, ArgDecl] = field(default_factory=dict)
    nodes: List[NodeDecl] = field(default_factory=list)
    processes: List[ProcessDecl] = field(default_factory=list)
    files: List[str] = field(default_factory=list)          # launch files read
    external_includes: List[str] = field(default_factory=list)
    strings: List[Tuple[str, str]] = field(default_factory=list)   # (what, evaluated value)
    findings: List[Finding] = field(default_factory=list)
    endpoints: List[Endpoint] = field(default_factory=list)

    def node(self, name: str) -> NodeDecl:
        """Return the node called ``name`` (KeyError if absent)."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def resolved(self, node: str, original: str) -> Optional[str]:
        """Return the resolved name of a node's topic (by its name in the code), or None."""
        for e in self.endpoints:
            if e.node == node and e.original == original:
                return e.resolved
        return None

    def unconnected_inputs(self) -> List[Endpoint]:
        """Subscriptions of this package's nodes nothing in the launch publishes."""
        published = {e.resolved for e in self.endpoints if e.direction == 'pub'}
        return [e for e in self.endpoints if e.direction == 'sub'
                and e.resolved not in published and e.node in self._ours()]

    def unconsumed_outputs(self) -> List[Endpoint]:
        """Publications of this package's nodes nothing in the launch subscribes."""
        subscribed = {e.resolved for e in self.endpoints if e.direction == 'sub'}
        return [e for e in self.endpoints if e.direction == 'pub'
                and e.resolved not in subscribed and e.node in self._ours()]

    def _ours(self) -> Set[str]:
        return {n.fqn for n in self.nodes if n.package == PACKAGE}

    @property
    def errors(self) -> List[Finding]:
        """The findings of level 'error'."""
        return [f for f in self.findings if f.level == 'error']


# ---------------------------------------------------------------------------- evaluation
def _call_name(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ''


def _kw(call: ast.Call, name: str, pos: Optional[int] = None) -> Optional[ast.AST]:
    for k in call.keywords:
        if k.arg == name:
            return k.value
    if pos is not None and len(call.args) > pos:
        return call.args[pos]
    return None


def _truthy(value: Any) -> Any:
    if value is UNKNOWN:
        return UNKNOWN
    text = str(value).strip().lower()
    if text in ('true', '1'):
        return True
    if text in ('false', '0'):
        return False
    return UNKNOWN


def resolve_topic(name: str, namespace: str) -> str:
    """Expand a topic name in a node namespace (absolute names stay)."""
    tokens = [t for t in name.split('/') if t]
    if name.startswith('/'):
        return '/' + '/'.join(tokens)
    return '/' + '/'.join([t for t in namespace.split('/') if t] + tokens)


def remap_topic(name: str, namespace: str, rules: Sequence[Tuple[str, str]]) -> str:
    """Apply ROS remapping rules (first match wins) to a topic of a node in ``namespace``."""
    full = resolve_topic(name, namespace)
    for src, dst in rules:
        if isinstance(src, str) and isinstance(dst, str) and resolve_topic(src, namespace) \
                == full:
            return resolve_topic(dst, namespace)
    return full


class _Scope:
    def __init__(self, namespace: str = '', remaps=None, active: bool = True) -> None:
        self.namespace = namespace
        self.remaps: List[Tuple[str, str]] = list(remaps or [])
        self.active = active

    def child(self) -> '_Scope':
        return _Scope(self.namespace, self.remaps, self.active)


class _FileEvaluator:
    """Evaluates one launch file in an environment of launch configurations."""

    def __init__(self, path: str, env: Dict[str, Any], share_root: str, plan: LaunchPlan,
                 depth: int = 0) -> None:
        self.path = path
        self.env = env
        self.share_root = share_root
        self.plan = plan
        self.depth = depth
        self.symbols: Dict[str, ast.AST] = {}
        self.used_configs: Set[str] = set()
        self.declared: Dict[str, ArgDecl] = {}
        self.rel = os.path.relpath(path, share_root) if path.startswith(share_root) else path

    def finding(self, level: str, message: str) -> None:
        self.plan.findings.append(Finding(level, self.rel, message))

    # ------------------------------------------------------------------ substitutions
    def subst(self, node: Optional[ast.AST]) -> Any:
        """Evaluate a substitution expression to a string (or UNKNOWN)."""
        if node is None:
            return UNKNOWN
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, str) else str(node.value)
        if isinstance(node, (ast.List, ast.Tuple)):
            parts = [self.subst(e) for e in node.elts]
            return UNKNOWN if any(p is UNKNOWN for p in parts) else ''.join(parts)
        if isinstance(node, ast.Name):
            if node.id in self.symbols:
                return self.subst(self.symbols[node.id])
            return UNKNOWN
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            a, b = self.subst(node.left), self.subst(node.right)
            return UNKNOWN if UNKNOWN in (a, b) else a + b
        if not isinstance(node, ast.Call):
            return UNKNOWN
        name = _call_name(node)
        if name == 'LaunchConfiguration':
            key = self.subst(_kw(node, 'variable_name', 0))
            if key is UNKNOWN:
                return UNKNOWN
            self.used_configs.add(key)
            if key in self.env:
                return self.env[key]
            default = _kw(node, 'default', 1)
            return self.subst(default) if default is not None else UNKNOWN
        if name == 'PathJoinSubstitution':
            parts = self._list(_kw(node, 'substitutions', 0))
            if parts is UNKNOWN or any(p is UNKNOWN for p in parts):
                return UNKNOWN
            return os.path.join(*parts) if parts else ''
        if name == 'join' and isinstance(node.func, ast.Attribute):   # os.path.join
            parts = [self.subst(a) for a in node.args]
            return UNKNOWN if any(p is UNKNOWN for p in parts) else os.path.join(*parts)
        if name in ('FindPackageShare', 'get_package_share_directory'):
            pkg = self.subst(_kw(node, 'package', 0))
            if pkg is UNKNOWN:
                return UNKNOWN
            return self.share_root if pkg == PACKAGE else f'<share:{pkg}>'
        if name in ('FindPackagePrefix', 'get_package_prefix'):
            pkg = self.subst(_kw(node, 'package', 0))
            return UNKNOWN if pkg is UNKNOWN else f'<prefix:{pkg}>'
        if name == 'TextSubstitution':
            return self.subst(_kw(node, 'text', 0))
        if name == 'ThisLaunchFileDir':
            return os.path.dirname(self.path)
        if name in ('EqualsSubstitution', 'NotEqualsSubstitution'):
            a, b = self.subst(_kw(node, 'left', 0)), self.subst(_kw(node, 'right', 1))
            if UNKNOWN in (a, b):
                return UNKNOWN
            ta, tb = _truthy(a), _truthy(b)
            same = ta == tb if UNKNOWN not in (ta, tb) else a == b
            return 'true' if same == (name == 'EqualsSubstitution') else 'false'
        if name == 'ParameterValue':
            return self.subst(_kw(node, 'value', 0))
        return UNKNOWN

    def _list(self, node: Optional[ast.AST]) -> Any:
        if isinstance(node, ast.Name) and node.id in self.symbols:
            node = self.symbols[node.id]
        if not isinstance(node, (ast.List, ast.Tuple)):
            return UNKNOWN
        return [self.subst(e) for e in node.elts]

    def param_value(self, node: ast.AST) -> Any:
        """Evaluate a parameter value as launch_ros does (substitutions read as YAML)."""
        if isinstance(node, ast.Name) and node.id in self.symbols:
            return self.param_value(self.symbols[node.id])
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)) and all(
                isinstance(e, ast.Constant) for e in node.elts):
            return [e.value for e in node.elts]
        if isinstance(node, ast.Call) and _call_name(node) == 'ParameterValue':
            value_type = _kw(node, 'value_type')
            text = self.subst(_kw(node, 'value', 0))
            if isinstance(value_type, ast.Name) and value_type.id == 'str':
                return text
            node = _kw(node, 'value', 0)
        text = self.subst(node)
        if text is UNKNOWN:
            return UNKNOWN
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            return text
        if isinstance(value, (bool, int, float, str, list)):
            return value
        self.finding('error', f'parameter value {text!r} evaluates to '
                              f'{type(value).__name__}; launch_ros refuses it (wrap a string '
                              'in ParameterValue(..., value_type=str))')
        return UNKNOWN

    def condition_active(self, call: ast.Call) -> bool:
        cond = _kw(call, 'condition')
        if cond is None:
            return True
        if not isinstance(cond, ast.Call) or _call_name(cond) not in ('IfCondition',
                                                                      'UnlessCondition'):
            self.finding('warning', f'condition {ast.unparse(cond)} not evaluated; assumed '
                                    'true')
            return True
        value = _truthy(self.subst(_kw(cond, 'predicate_expression', 0)))
        if value is UNKNOWN:
            self.finding('warning', f'condition {ast.unparse(cond)} not evaluated; assumed '
                                    'true')
            return True
        return value if _call_name(cond) == 'IfCondition' else not value

    # ------------------------------------------------------------------ file
    def run(self, scope: _Scope) -> None:
        try:
            with open(self.path, encoding='utf-8') as f:
                tree = ast.parse(f.read(), self.path)
        except (OSError, SyntaxError) as exc:
            self.finding('error', f'cannot parse: {exc}')
            return
        self.plan.files.append(self.path)
        self._check_imports(tree)
        func = next((n for n in tree.body if isinstance(n, ast.FunctionDef)
                     and n.name == 'generate_launch_description'), None)
        if func is None:
            self.finding('error', 'no generate_launch_description() function')
            return
        for stmt in tree.body + list(ast.walk(func)):
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(
                    stmt.targets[0], ast.Name):
                self.symbols[stmt.targets[0].id] = stmt.value
        self._declare_arguments(func)
        ret = next((n for n in ast.walk(func) if isinstance(n, ast.Return)), None)
        if ret is None or _call_name(ret.value) != 'LaunchDescription':
            self.finding('error', 'generate_launch_description() must return '
                                  'LaunchDescription([...])')
            return
        self._actions(_kw(ret.value, 'initial_entities', 0), scope)
        for name in sorted(self.used_configs - set(self.declared)):
            self.finding('error', f'LaunchConfiguration({name!r}) is used but not declared in '
                                  'this file')

    def _check_imports(self, tree: ast.Module) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ''
                if module in STDLIB_IMPORTS:
                    continue
                allowed = PORTABLE_API.get(module)
                for alias in node.names:
                    if allowed is None or alias.name not in allowed:
                        self.finding('error', f'from {module} import {alias.name}: not in the '
                                              'launch API shared by Jazzy and Kilted')
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name not in STDLIB_IMPORTS:
                        self.finding('error', f'import {alias.name}: import names from '
                                              'launch modules explicitly')

    def _declare_arguments(self, func: ast.FunctionDef) -> None:
        for call in ast.walk(func):
            if not (isinstance(call, ast.Call)
                    and _call_name(call) == 'DeclareLaunchArgument'):
                continue
            name = self.subst(_kw(call, 'name', 0))
            if name is UNKNOWN:
                self.finding('error', f'argument name not a literal: {ast.unparse(call)}')
                continue
            desc = _kw(call, 'description')
            description = desc.value if isinstance(desc, ast.Constant) else ''
            choices_node = _kw(call, 'choices')
            choices = None
            if choices_node is not None:
                choices = self._list(choices_node)
                choices = None if choices is UNKNOWN else choices
            default_node = _kw(call, 'default_value', 1)
            if name not in self.env:
                self.env[name] = self.subst(default_node) if default_node is not None \
                    else UNKNOWN
            decl = ArgDecl(name, self.env[name], description, choices, self.rel)
            self.declared[name] = decl
            if self.depth == 0:
                self.plan.args[name] = decl
            if not description.strip():
                self.finding('error', f'argument {name!r} has no description')
            if default_node is None:
                self.finding('warning', f'argument {name!r} has no default (required)')
            if choices and self.env[name] is not UNKNOWN and self.env[name] not in choices:
                self.finding('error', f'argument {name!r} = {self.env[name]!r} is not one of '
                                      f'{choices}')

    def _actions(self, node: Optional[ast.AST], scope: _Scope) -> None:
        if node is None:
            return
        if isinstance(node, ast.Name):
            if node.id in self.symbols:
                self._actions(self.symbols[node.id], scope)
            else:
                self.finding('warning', f'action {node.id!r} not followed')
            return
        if isinstance(node, (ast.List, ast.Tuple)):
            for elt in node.elts:
                self._actions(elt, scope)
            return
        if isinstance(node, ast.Starred):
            self._actions(node.value, scope)
            return
        if not isinstance(node, ast.Call):
            self.finding('warning', f'action {ast.unparse(node)} not followed')
            return
        kind = _call_name(node)
        if kind == 'DeclareLaunchArgument':
            return
        active = scope.active and self.condition_active(node)
        if kind in ('Node', 'LifecycleNode'):
            if active:
                self._node(node, scope)
        elif kind == 'ExecuteProcess':
            if active:
                cmd = self._list(_kw(node, 'cmd', 0))
                if cmd is UNKNOWN:
                    self.finding('warning', 'ExecuteProcess cmd not evaluated')
                else:
                    self.plan.processes.append(ProcessDecl(cmd, self.rel))
                    self.plan.strings += [('cmd', c) for c in cmd if isinstance(c, str)]
        elif kind == 'IncludeLaunchDescription':
            if active:
                self._include(node, scope)
        elif kind == 'GroupAction':
            child = scope.child()
            child.active = active
            self._actions(_kw(node, 'actions', 0), child)
        elif kind == 'PushRosNamespace':
            ns = self.subst(_kw(node, 'namespace', 0))
            if ns is UNKNOWN:
                self.finding('warning', 'PushRosNamespace value not evaluated')
            elif ns.startswith('/'):
                scope.namespace = ns
            else:
                scope.namespace = '/'.join(t for t in (scope.namespace + '/' + ns).split('/')
                                           if t)
        elif kind == 'SetRemap':
            src, dst = self.subst(_kw(node, 'src', 0)), self.subst(_kw(node, 'dst', 1))
            scope.remaps.append((src, dst))
        elif kind == 'TimerAction':
            self._actions(_kw(node, 'actions', 1), scope)
        elif kind in ('LogInfo', 'SetEnvironmentVariable', 'EmitEvent'):
            pass        # no nodes, parameters or topics
        else:
            self.finding('warning', f'{kind}(...) not followed by static validation')

    def _node(self, call: ast.Call, scope: _Scope) -> None:
        package = self.subst(_kw(call, 'package'))
        executable = self.subst(_kw(call, 'executable'))
        name = self.subst(_kw(call, 'name'))
        if UNKNOWN in (package, executable):
            self.finding('error', f'Node package/executable not literal: {ast.unparse(call)}')
            return
        if name is UNKNOWN:
            name = executable
        ns = self.subst(_kw(call, 'namespace'))
        if ns is UNKNOWN:
            ns = ''
        if not ns.startswith('/'):
            ns = '/'.join(t for t in (scope.namespace + '/' + ns).split('/') if t)
        ns = '/' + ns.strip('/') if ns.strip('/') else ''
        params: List[Tuple[str, Any]] = []
        plist = _kw(call, 'parameters')
        if isinstance(plist, ast.Name) and plist.id in self.symbols:
            plist = self.symbols[plist.id]
        for item in (plist.elts if isinstance(plist, (ast.List, ast.Tuple)) else []):
            if isinstance(item, ast.Name) and item.id in self.symbols and isinstance(
                    self.symbols[item.id], ast.Dict):
                item = self.symbols[item.id]
            if isinstance(item, ast.Dict):
                values = {}
                for k, v in zip(item.keys, item.values):
                    key = self.subst(k)
                    values[key] = self.param_value(v)
                    if isinstance(values[key], str):
                        self.plan.strings.append((f'{name}.{key}', values[key]))
                params.append(('dict', values))
            else:
                path = self.subst(item)
                params.append(('file', path))
                if isinstance(path, str):
                    self.plan.strings.append((f'{name} parameter file', path))
        remaps = list(scope.remaps)
        rlist = _kw(call, 'remappings')
        for item in (rlist.elts if isinstance(rlist, (ast.List, ast.Tuple)) else []):
            if isinstance(item, ast.Tuple) and len(item.elts) == 2:
                remaps.append((self.subst(item.elts[0]), self.subst(item.elts[1])))
            else:
                self.finding('warning', f'remapping {ast.unparse(item)} not evaluated')
        args = self._list(_kw(call, 'arguments'))
        self.plan.nodes.append(NodeDecl(package, executable, name, ns, params, remaps,
                                        [] if args is UNKNOWN else args, self.rel))

    def _include(self, call: ast.Call, scope: _Scope) -> None:
        source = _kw(call, 'launch_description_source', 0)
        if isinstance(source, ast.Call) and _call_name(source) in (
                'PythonLaunchDescriptionSource', 'AnyLaunchDescriptionSource'):
            source = _kw(source, 'launch_file_path', 0)
        path = self.subst(source)
        if path is UNKNOWN:
            self.finding('warning', 'included launch file path not evaluated')
            return
        args_node = _kw(call, 'launch_arguments')
        if isinstance(args_node, ast.Call) and isinstance(args_node.func, ast.Attribute) \
                and args_node.func.attr == 'items':
            args_node = args_node.func.value
        passed: Dict[str, Any] = {}
        if isinstance(args_node, ast.Dict):
            for k, v in zip(args_node.keys, args_node.values):
                passed[self.subst(k)] = self.subst(v)
        elif isinstance(args_node, (ast.List, ast.Tuple)):
            for item in args_node.elts:
                if isinstance(item, ast.Tuple) and len(item.elts) == 2:
                    passed[self.subst(item.elts[0])] = self.subst(item.elts[1])
        elif args_node is not None:
            self.finding('warning', 'launch_arguments not evaluated')
        if not path.startswith(self.share_root):
            self.plan.external_includes.append(path)
            return
        self.plan.strings.append(('included launch file', path))
        if not os.path.isfile(path):
            return     # reported by the path check
        if self.depth > 8:
            self.finding('error', f'include depth > 8 at {path} (recursive include?)')
            return
        env = dict(self.env)
        env.update(passed)
        _FileEvaluator(path, env, self.share_root, self.plan, self.depth + 1).run(
            scope.child())


def evaluate_launch(path: str, share_root: str,
                    arguments: Optional[Mapping[str, str]] = None) -> LaunchPlan:
    """Evaluate a launch file statically with the given launch arguments."""
    path = os.path.abspath(path)
    plan = LaunchPlan(path, dict(arguments or {}))
    _FileEvaluator(path, plan.env, share_root, plan).run(_Scope())
    return plan


# ---------------------------------------------------------------------------- checks
def console_scripts(share_root: str) -> Set[str]:
    """Console scripts of the package: from setup.py in a source tree, else lib/<pkg>/."""
    setup_py = os.path.join(share_root, 'setup.py')
    if os.path.isfile(setup_py):
        with open(setup_py, encoding='utf-8') as f:
            return set(re.findall(r"'([\w-]+) = [\w.]+:\w+'", f.read()))
    lib = os.path.join(share_root, '..', '..', 'lib', PACKAGE)
    return set(os.listdir(lib)) if os.path.isdir(lib) else set()


def _check_executables(plan: LaunchPlan, scripts: Set[str]) -> None:
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


def _check_paths(plan: LaunchPlan, share_root: str) -> None:
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


def _node_values(plan: LaunchPlan, node: NodeDecl) -> Dict[str, Any]:
    """Merge the parameters reaching ``node`` in launch order; report dead sections."""
    values: Dict[str, Any] = {}
    for kind, source in node.params:
        if kind == 'dict':
            values.update({k: v for k, v in source.items() if v is not UNKNOWN})
            continue
        if source is UNKNOWN or not os.path.isfile(source):
            continue
        try:
            sections = load_param_file(source)
        except ConfigError as exc:
            plan.findings.append(Finding('error', node.file, str(exc)))
            continue
        matched = False
        for key, params in sections.items():
            if key_matches(key, node.fqn):
                values.update(params)
                matched = True
        named = [k for k in sections if section_node(k) == node.name]
        if named and not matched:
            plan.findings.append(Finding(
                'error', node.file,
                f'{node.fqn}: {os.path.basename(source)} has section(s) {named} for '
                f'{node.name}, but none applies in namespace {node.namespace or "/"} (a key '
                f'without a namespace means /{node.name} only; write /**/{node.name})'))
    return values


def _check_parameters(plan: LaunchPlan) -> Dict[str, Dict[str, Any]]:
    from wam_runtime.core.safety_config import build_safety
    from wam_runtime.tools.model_info import inspect_model
    merged = {}
    for node in plan.nodes:
        if node.package != PACKAGE or node.executable not in NODE_SCHEMAS:
            continue
        where = f'{node.file}: {node.fqn}'
        values = _node_values(plan, node)
        merged[node.name] = values
        for message in check_values(node.executable, values):
            plan.findings.append(Finding('error', where, message))
        try:
            resolve(node_schema(node.executable), values, node.name)
        except ConfigError as exc:
            plan.findings.append(Finding('error', where, str(exc)))
            continue
        try:
            if node.executable == 'safety_controller':
                build_safety(values)
            elif node.executable == 'policy_node':
                report = inspect_model(values['model_path'])
                if report.error:
                    raise ModelLoadError(report.error)
                node_model = report.contract
                merged['__contract__'] = node_model
                names = values.get('joint_names')
                if names and set(names) != set(node_model.action.joint_names):
                    acts = list(node_model.action.joint_names)
                    plan.findings.append(Finding('error', where, f'joint_names {names} differ '
                                                                 f'from the model action joints '
                                                                 f'{acts}'))
        except (ConfigError, LimitsError, ContractError, ModelLoadError) as exc:
            plan.findings.append(Finding('error', where, str(exc)))
    safety = merged.get('safety_controller')
    contract = merged.get('__contract__')
    if safety and contract is not None and safety.get('joint_names') and set(
            safety['joint_names']) != set(contract.action.joint_names):
        plan.findings.append(Finding('error', os.path.basename(plan.file),
                                     f'safety_controller joint_names {safety["joint_names"]} '
                                     'differ from the model action joints '
                                     f'{list(contract.action.joint_names)}'))
    return merged


def _bridge_endpoints(plan: LaunchPlan, node: NodeDecl, values: Mapping[str, Any]
                      ) -> List[Endpoint]:
    path = values.get('config_file')
    if not isinstance(path, str) or not os.path.isfile(path):
        if not (isinstance(path, str) and path.startswith('<')):
            plan.findings.append(Finding('warning', node.file, f'{node.fqn}: bridge without a '
                                                               'readable config_file'))
        return []
    with open(path, encoding='utf-8') as f:
        entries = yaml.safe_load(f)
    out = []
    if not isinstance(entries, list):
        plan.findings.append(Finding('error', path, 'a ros_gz_bridge config is a list of '
                                                    'mappings'))
        return out
    for i, e in enumerate(entries):
        where = f'{os.path.basename(path)}[{i}]'
        missing = [k for k in ('ros_type_name', 'gz_type_name') if not e.get(k)]
        topic = e.get('ros_topic_name') or e.get('topic_name')
        direction = e.get('direction', 'BIDIRECTIONAL')
        if missing or not topic or not (e.get('gz_topic_name') or e.get('topic_name')):
            plan.findings.append(Finding('error', where, f'needs ros_topic_name, gz_topic_name, '
                                                         f'ros_type_name, gz_type_name: {e}'))
            continue
        if direction not in ('BIDIRECTIONAL', 'GZ_TO_ROS', 'ROS_TO_GZ'):
            plan.findings.append(Finding('error', where, f'direction {direction!r}'))
            continue
        resolved = remap_topic(topic, node.namespace, node.remaps)
        if direction in ('BIDIRECTIONAL', 'GZ_TO_ROS'):
            out.append(Endpoint(node.fqn, 'pub', topic, resolved, e['ros_type_name'], True))
        if direction in ('BIDIRECTIONAL', 'ROS_TO_GZ'):
            out.append(Endpoint(node.fqn, 'sub', topic, resolved, e['ros_type_name'], True))
    return out


def _check_topics(plan: LaunchPlan, merged: Mapping[str, Dict[str, Any]]) -> None:
    contract = merged.get('__contract__')
    endpoints: List[Endpoint] = []
    for node in plan.nodes:
        values = merged.get(node.name, {})
        if node.package == 'ros_gz_bridge' and node.executable == 'parameter_bridge':
            bridge_values: Dict[str, Any] = {}
            for kind, source in node.params:
                if kind == 'dict':
                    bridge_values.update(source)
            endpoints += _bridge_endpoints(plan, node, bridge_values)
            continue
        table = NODE_TOPICS.get(node.executable) if node.package == PACKAGE else None
        if table is None:
            continue
        topics = [('sub', t, ty) for t, ty in table['sub']] + \
            [('pub', t, ty) for t, ty in table['pub']]
        if node.executable == 'policy_node' and contract is not None:
            compressed = set(values.get('compressed_cameras') or [])
            for cam in contract.cameras:
                if cam.name in compressed:
                    topics.append(('sub', f'camera/{cam.name}/image_raw/compressed',
                                   'sensor_msgs/msg/CompressedImage'))
                else:
                    topics.append(('sub', f'camera/{cam.name}/image_raw', _IMG))
        if node.executable == 'safety_controller':
            mode = values.get('output_mode', 'forward_command')
            if mode in SAFETY_OUTPUTS:
                topics.append(('pub',) + SAFETY_OUTPUTS[mode])
        if node.executable == 'synthetic_camera':
            topics.append(('pub', f'camera/{values.get("camera_name", "scene")}/image_raw',
                           _IMG))
        if node.executable == 'sim_node' and values.get('use_sim_time'):
            topics.append(('pub', '/clock', 'rosgraph_msgs/msg/Clock'))
        for direction, topic, typ in topics:
            endpoints.append(Endpoint(node.fqn, direction, topic,
                                      remap_topic(topic, node.namespace, node.remaps), typ))
        possible = [t for _, t, _ in topics]
        if node.executable == 'safety_controller':
            possible += [t for t, _ in SAFETY_OUTPUTS.values()]   # both output modes
        for src, dst in node.remaps:
            if src is UNKNOWN or dst is UNKNOWN:
                continue
            if not any(resolve_topic(src, node.namespace) == resolve_topic(t, node.namespace)
                       for t in possible):
                plan.findings.append(Finding('error', node.file, f'{node.fqn}: remapping '
                                                                 f'{src} -> {dst} matches no '
                                                                 'topic of the node'))
    plan.endpoints = endpoints
    # Endpoints that share a name in the code are meant to meet (the nodes are written for
    # each other): after namespaces and remaps they must still share one name.
    by_original: Dict[str, Set[str]] = {}
    for e in endpoints:
        if not e.bridge:
            by_original.setdefault(e.original, set()).add(e.resolved)
    for original, names in sorted(by_original.items()):
        if len(names) > 1:
            plan.findings.append(Finding('error', os.path.basename(plan.file),
                                         f'topic {original!r} resolves to {sorted(names)} in '
                                         'different nodes; remap it the same way everywhere'))
    types: Dict[str, Set[str]] = {}
    for e in endpoints:
        types.setdefault(e.resolved, set()).add(e.type)
    for topic, kinds in sorted(types.items()):
        if len(kinds) > 1:
            plan.findings.append(Finding('error', os.path.basename(plan.file),
                                         f'topic {topic} carries {sorted(kinds)}'))
    published = {e.resolved for e in endpoints if e.direction == 'pub'}
    subscribed = {e.resolved for e in endpoints if e.direction == 'sub'}
    for e in endpoints:
        if not e.bridge:
            continue
        if e.direction == 'sub' and e.resolved not in published:
            plan.findings.append(Finding('error', os.path.basename(plan.file),
                                         f'bridge forwards {e.resolved} to Gazebo, but no node '
                                         'of the launch publishes it'))
        if e.direction == 'pub' and e.resolved not in subscribed and e.resolved != '/clock':
            plan.findings.append(Finding('warning', os.path.basename(plan.file),
                                         f'bridge publishes {e.resolved}, but no node of the '
                                         'launch subscribes to it'))


def check_plan(plan: LaunchPlan, share_root: str) -> LaunchPlan:
    """Run every check on an evaluated plan; findings are appended to ``plan.findings``."""
    _check_executables(plan, console_scripts(share_root))
    _check_paths(plan, share_root)
    merged = _check_parameters(plan)
    _check_topics(plan, merged)
    return plan


def validate_launch(path: str, share_root: str,
                    arguments: Optional[Mapping[str, str]] = None) -> LaunchPlan:
    """Evaluate and check one launch file; see ``plan.findings``."""
    return check_plan(evaluate_launch(path, share_root, arguments), share_root)


def ros_arguments(node: NodeDecl, tmp_dir: str) -> List[str]:
    """Return the ``--ros-args`` arguments launch_ros would give ``node`` (to run it alone).

    Namespace, every parameter source in launch order (a dictionary becomes a parameter
    file keyed ``/**``, as launch_ros writes it), every remapping (scope rules first), and
    the node's own ``--ros-args`` arguments. The node name is left to the caller.
    """
    args: List[str] = []
    if node.namespace:
        args += ['-r', f'__ns:={node.namespace}']
    for i, (kind, source) in enumerate(node.params):
        if kind == 'file':
            args += ['--params-file', str(source)]
            continue
        path = os.path.join(tmp_dir, f'{node.name}_params_{i}.yaml')
        with open(path, 'w', encoding='utf-8') as f:
            yaml.safe_dump({'/**': {'ros__parameters': dict(source)}}, f)
        args += ['--params-file', path]
    for src, dst in node.remaps:
        args += ['-r', f'{src}:={dst}']
    extra = [str(a) for a in node.arguments]
    if extra[:1] == ['--ros-args']:
        args += extra[1:]
    return args


def launch_files(share_root: str) -> List[str]:
    """Return the package's launch files."""
    folder = os.path.join(share_root, 'launch')
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if f.endswith('.launch.py'))


def format_plan(plan: LaunchPlan, share_root: str) -> str:
    """Human-readable summary of a plan: arguments, nodes, processes, topics, findings."""
    rel = os.path.relpath(plan.file, share_root)
    lines = [f'== {rel}']
    for a in plan.args.values():
        default = a.default if isinstance(a.default, str) else repr(a.default)
        default = default.replace(share_root, '<share>')
        lines.append(f'  arg {a.name} = {default!r}  {a.description}')
    for n in plan.nodes:
        sources = []
        for kind, src in n.params:
            if kind == 'file':
                sources.append(str(src).replace(share_root, '<share>'))
            else:
                sources.append('{' + ', '.join(f'{k}: {str(v).replace(share_root, "<share>")}'
                                               for k, v in src.items()) + '}')
        lines.append(f'  node {n.fqn} ({n.package}/{n.executable}) params {sources}')
        for e in plan.endpoints:      # the topics a remapping moved
            if e.node == n.fqn and e.resolved != resolve_topic(e.original, n.namespace):
                lines.append(f'    {e.direction} {e.original} -> {e.resolved}')
    for p in plan.processes:
        lines.append(f'  process {" ".join(str(c) for c in p.cmd)}'.replace(share_root,
                                                                            '<share>'))
    for inc in plan.external_includes:
        lines.append(f'  include {inc}')
    inputs = sorted({f'{e.resolved} ({e.type})' for e in plan.unconnected_inputs()})
    outputs = sorted({f'{e.resolved} ({e.type})' for e in plan.unconsumed_outputs()})
    if inputs:
        lines.append(f'  expects from outside: {", ".join(inputs)}')
    if outputs:
        lines.append(f'  provides to outside: {", ".join(outputs)}')
    for f in plan.findings:
        lines.append(f'  {f}')
    if not plan.errors:
        lines.append('  OK')
    return '\n'.join(lines)
