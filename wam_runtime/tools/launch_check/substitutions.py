"""Launch substitutions evaluated from the source, as ``ros2 launch`` would evaluate them.

``LaunchConfiguration`` (declared defaults, launch arguments), ``PathJoinSubstitution``,
``os.path.join``, ``FindPackageShare`` (this package maps to its share folder, or the source
tree; another package to ``<share:pkg>``), ``FindPackagePrefix``, ``TextSubstitution``,
``ThisLaunchFileDir``, ``EqualsSubstitution`` / ``NotEqualsSubstitution``, parameter values
read as YAML as launch_ros reads them, and ``IfCondition`` / ``UnlessCondition``. What
cannot be computed is ``UNKNOWN``.
"""

import ast
import os
from typing import Any, Dict, Optional, Set

import yaml

from wam_runtime.tools.launch_check.plan import ArgDecl, LaunchPlan, PACKAGE, UNKNOWN
from wam_runtime.tools.params_check import Finding


def call_name(node: ast.AST) -> str:
    """Return the name a call (or name, or attribute) is made by: ``Node`` for ``Node(...)``."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ''


def keyword(call: ast.Call, name: str, pos: Optional[int] = None) -> Optional[ast.AST]:
    """Return the argument ``name`` of a call, by keyword or at position ``pos``."""
    for k in call.keywords:
        if k.arg == name:
            return k.value
    if pos is not None and len(call.args) > pos:
        return call.args[pos]
    return None


def truthy(value: Any) -> Any:
    """Read a launch boolean ('true', '1', 'false', '0'); UNKNOWN otherwise."""
    if value is UNKNOWN:
        return UNKNOWN
    text = str(value).strip().lower()
    if text in ('true', '1'):
        return True
    if text in ('false', '0'):
        return False
    return UNKNOWN


class SubstitutionEvaluator:
    """Evaluates the expressions of one launch file in an environment of launch configurations."""

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
        name = call_name(node)
        if name == 'LaunchConfiguration':
            key = self.subst(keyword(node, 'variable_name', 0))
            if key is UNKNOWN:
                return UNKNOWN
            self.used_configs.add(key)
            if key in self.env:
                return self.env[key]
            default = keyword(node, 'default', 1)
            return self.subst(default) if default is not None else UNKNOWN
        if name == 'PathJoinSubstitution':
            parts = self._list(keyword(node, 'substitutions', 0))
            if parts is UNKNOWN or any(p is UNKNOWN for p in parts):
                return UNKNOWN
            return os.path.join(*parts) if parts else ''
        if name == 'join' and isinstance(node.func, ast.Attribute):   # os.path.join
            parts = [self.subst(a) for a in node.args]
            return UNKNOWN if any(p is UNKNOWN for p in parts) else os.path.join(*parts)
        if name in ('FindPackageShare', 'get_package_share_directory'):
            pkg = self.subst(keyword(node, 'package', 0))
            if pkg is UNKNOWN:
                return UNKNOWN
            return self.share_root if pkg == PACKAGE else f'<share:{pkg}>'
        if name in ('FindPackagePrefix', 'get_package_prefix'):
            pkg = self.subst(keyword(node, 'package', 0))
            return UNKNOWN if pkg is UNKNOWN else f'<prefix:{pkg}>'
        if name == 'TextSubstitution':
            return self.subst(keyword(node, 'text', 0))
        if name == 'ThisLaunchFileDir':
            return os.path.dirname(self.path)
        if name in ('EqualsSubstitution', 'NotEqualsSubstitution'):
            a, b = self.subst(keyword(node, 'left', 0)), self.subst(keyword(node, 'right', 1))
            if UNKNOWN in (a, b):
                return UNKNOWN
            ta, tb = truthy(a), truthy(b)
            same = ta == tb if UNKNOWN not in (ta, tb) else a == b
            return 'true' if same == (name == 'EqualsSubstitution') else 'false'
        if name == 'ParameterValue':
            return self.subst(keyword(node, 'value', 0))
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
        if isinstance(node, ast.Call) and call_name(node) == 'ParameterValue':
            value_type = keyword(node, 'value_type')
            text = self.subst(keyword(node, 'value', 0))
            if isinstance(value_type, ast.Name) and value_type.id == 'str':
                return text
            node = keyword(node, 'value', 0)
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
        """Whether an action's ``condition`` holds (one not evaluated counts as true)."""
        cond = keyword(call, 'condition')
        if cond is None:
            return True
        if not isinstance(cond, ast.Call) or \
                call_name(cond) not in ('IfCondition', 'UnlessCondition'):
            self.finding('warning', f'condition {ast.unparse(cond)} not evaluated; assumed '
                                    'true')
            return True
        value = truthy(self.subst(keyword(cond, 'predicate_expression', 0)))
        if value is UNKNOWN:
            self.finding('warning', f'condition {ast.unparse(cond)} not evaluated; assumed '
                                    'true')
            return True
        return value if call_name(cond) == 'IfCondition' else not value
