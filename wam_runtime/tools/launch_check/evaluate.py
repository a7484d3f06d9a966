"""The static launch evaluator: a launch file read with ``ast``, never imported or executed.

``launch`` and ``launch_ros`` need not be installed. Actions are followed as ``ros2 launch``
would with a given set of launch arguments: ``DeclareLaunchArgument``, ``Node`` /
``LifecycleNode``, ``ExecuteProcess``, ``IncludeLaunchDescription`` of this package's launch
files (followed, with their launch arguments), ``GroupAction`` with ``PushRosNamespace`` /
``SetRemap``, ``TimerAction`` and conditions. Imports must be launch API present in both
Jazzy and Kilted. Constructs it cannot follow (``OpaqueFunction``, computed values) are
reported, not guessed.
"""

import ast
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

from wam_runtime.tools.launch_check.plan import (
    ArgDecl, LaunchPlan, NodeDecl, ProcessDecl, UNKNOWN)
from wam_runtime.tools.launch_check.substitutions import (
    call_name, keyword, SubstitutionEvaluator)

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


class _Scope:
    """Namespace, scoped remaps and whether the enclosing group is active."""

    def __init__(self, namespace: str = '', remaps=None, active: bool = True) -> None:
        self.namespace = namespace
        self.remaps: List[Tuple[str, str]] = list(remaps or [])
        self.active = active

    def child(self) -> '_Scope':
        return _Scope(self.namespace, self.remaps, self.active)


class FileEvaluator(SubstitutionEvaluator):
    """Evaluates one launch file's actions into the plan (includes recursively)."""

    def run(self, scope: _Scope) -> None:
        """Evaluate the file: its imports, arguments and actions; findings go to the plan."""
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
        if ret is None or call_name(ret.value) != 'LaunchDescription':
            self.finding('error', 'generate_launch_description() must return '
                                  'LaunchDescription([...])')
            return
        self._actions(keyword(ret.value, 'initial_entities', 0), scope)
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
                    and call_name(call) == 'DeclareLaunchArgument'):
                continue
            name = self.subst(keyword(call, 'name', 0))
            if name is UNKNOWN:
                self.finding('error', f'argument name not a literal: {ast.unparse(call)}')
                continue
            desc = keyword(call, 'description')
            description = desc.value if isinstance(desc, ast.Constant) else ''
            choices_node = keyword(call, 'choices')
            choices = None
            if choices_node is not None:
                choices = self._list(choices_node)
                choices = None if choices is UNKNOWN else choices
            default_node = keyword(call, 'default_value', 1)
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
        kind = call_name(node)
        if kind == 'DeclareLaunchArgument':
            return
        active = scope.active and self.condition_active(node)
        if kind in ('Node', 'LifecycleNode'):
            if active:
                self._node(node, scope)
        elif kind == 'ExecuteProcess':
            if active:
                cmd = self._list(keyword(node, 'cmd', 0))
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
            self._actions(keyword(node, 'actions', 0), child)
        elif kind == 'PushRosNamespace':
            ns = self.subst(keyword(node, 'namespace', 0))
            if ns is UNKNOWN:
                self.finding('warning', 'PushRosNamespace value not evaluated')
            elif ns.startswith('/'):
                scope.namespace = ns
            else:
                scope.namespace = '/'.join(t for t in (scope.namespace + '/' + ns).split('/')
                                           if t)
        elif kind == 'SetRemap':
            src, dst = self.subst(keyword(node, 'src', 0)), self.subst(keyword(node, 'dst', 1))
            scope.remaps.append((src, dst))
        elif kind == 'TimerAction':
            self._actions(keyword(node, 'actions', 1), scope)
        elif kind in ('LogInfo', 'SetEnvironmentVariable', 'EmitEvent'):
            pass        # no nodes, parameters or topics
        else:
            self.finding('warning', f'{kind}(...) not followed by static validation')

    def _node(self, call: ast.Call, scope: _Scope) -> None:
        package = self.subst(keyword(call, 'package'))
        executable = self.subst(keyword(call, 'executable'))
        name = self.subst(keyword(call, 'name'))
        if UNKNOWN in (package, executable):
            self.finding('error', f'Node package/executable not literal: {ast.unparse(call)}')
            return
        if name is UNKNOWN:
            name = executable
        ns = self.subst(keyword(call, 'namespace'))
        if ns is UNKNOWN:
            ns = ''
        if not ns.startswith('/'):
            ns = '/'.join(t for t in (scope.namespace + '/' + ns).split('/') if t)
        ns = '/' + ns.strip('/') if ns.strip('/') else ''
        params: List[Tuple[str, Any]] = []
        plist = keyword(call, 'parameters')
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
        rlist = keyword(call, 'remappings')
        for item in (rlist.elts if isinstance(rlist, (ast.List, ast.Tuple)) else []):
            if isinstance(item, ast.Tuple) and len(item.elts) == 2:
                remaps.append((self.subst(item.elts[0]), self.subst(item.elts[1])))
            else:
                self.finding('warning', f'remapping {ast.unparse(item)} not evaluated')
        args = self._list(keyword(call, 'arguments'))
        self.plan.nodes.append(NodeDecl(package, executable, name, ns, params, remaps,
                                        [] if args is UNKNOWN else args, self.rel))

    def _include(self, call: ast.Call, scope: _Scope) -> None:
        source = keyword(call, 'launch_description_source', 0)
        if isinstance(source, ast.Call) and call_name(source) in (
                'PythonLaunchDescriptionSource', 'AnyLaunchDescriptionSource'):
            source = keyword(source, 'launch_file_path', 0)
        path = self.subst(source)
        if path is UNKNOWN:
            self.finding('warning', 'included launch file path not evaluated')
            return
        args_node = keyword(call, 'launch_arguments')
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
        FileEvaluator(path, env, self.share_root, self.plan, self.depth + 1).run(
            scope.child())


def evaluate_launch(path: str, share_root: str,
                    arguments: Optional[Mapping[str, str]] = None) -> LaunchPlan:
    """Evaluate a launch file statically with the given launch arguments."""
    path = os.path.abspath(path)
    plan = LaunchPlan(path, dict(arguments or {}))
    FileEvaluator(path, plan.env, share_root, plan).run(_Scope())
    return plan
