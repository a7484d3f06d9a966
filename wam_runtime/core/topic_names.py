"""ROS 2 topic name rules, checked before a node creates a subscription from a parameter.

A topic name given as a parameter (``extra_joint_state_topics``) is checked here by the
configuration builders, so that every driver refuses it with a message naming the
parameter; rclpy would only refuse it in ``create_subscription``, with no parameter named.
The rules are rcl's (``rcl_validate_topic_name``) and, for what expansion cannot change,
rmw's full-name rules:

- not empty; letters, digits, ``_`` and ``/``; ``~`` only as the first character and then
  followed by ``/`` (or alone); ``{name}`` substitutions of letters, digits and ``_``, not
  nested, balanced, not starting with a digit, and only ``{node}``, ``{ns}``,
  ``{namespace}`` (the ones rcl expands);
- no token (the text between slashes) starting with a digit, no ``//`` (nor ``/{ns}``: the
  namespace expands with its leading ``/``), no trailing ``/``, at most 247 characters (the
  expanded name may be longer than the name: rmw's limit, 255 less its prefix, counts then).

Relative names (``gripper/joint_states``), absolute ones (``/gripper/joint_states``) and
private ones (``~/joint_states``) are all valid. What depends on the node's namespace is not
checked: ``{ns}/x`` is ``//x`` in the root namespace, and a relative name grows by the
namespace before rmw's length limit applies.
"""

from typing import Any, Optional, Sequence

from wam_runtime.core.params import ConfigError

SUBSTITUTIONS = ('node', 'ns', 'namespace')
MAX_LENGTH = 255 - 8        # rmw: RMW_TOPIC_MAX_NAME_LENGTH less the DDS prefix


def _substitution_problem(name: str) -> Optional[str]:
    """Return what is wrong with the ``{...}`` substitutions of ``name``, or None."""
    depth_start = -1
    for i, ch in enumerate(name):
        if ch == '{':
            if depth_start >= 0:
                return 'substitutions must not be nested'
            depth_start = i
        elif ch == '}':
            if depth_start < 0:
                return "unbalanced curly braces '{}'"
            inner = name[depth_start + 1:i]
            if not inner or not all(c.isascii() and (c.isalnum() or c == '_') for c in inner):
                return 'a substitution holds letters, digits and _ only'
            if inner[0].isdigit():
                return 'a substitution must not start with a digit'
            if inner not in SUBSTITUTIONS:
                return (f'unknown substitution {{{inner}}} (known: '
                        f'{", ".join("{" + s + "}" for s in SUBSTITUTIONS)})')
            depth_start = -1
        elif depth_start >= 0 and ch == '/':
            return 'a substitution holds letters, digits and _ only'
    if depth_start >= 0:
        return "unbalanced curly braces '{}'"
    return None


def topic_name_problem(name: Any) -> Optional[str]:
    """Return why ``name`` is not a valid ROS 2 topic name, or None when it is."""
    if not isinstance(name, str):
        return f'a topic name is a string, got {name!r}'
    if not name:
        return 'a topic name must not be empty'
    allowed = set('_/~{}')
    bad = [c for c in name if not (c.isascii() and c.isalnum()) and c not in allowed]
    if bad:
        return (f'character {bad[0]!r} (a topic name holds letters, digits, _, /, a leading ~ '
                'and {} substitutions)')
    if '~' in name[1:]:
        return "'~' only as the first character"
    if name.startswith('~') and len(name) > 1 and name[1] != '/':
        return "'~' must be followed by '/'"
    problem = _substitution_problem(name)
    if problem:
        return problem
    if name.endswith('/'):
        return "a topic name must not end with '/'"
    if '//' in name or '/{ns}' in name or '/{namespace}' in name:
        return "a topic name must not hold '//' (a namespace substitution expands with its /)"
    if any(token[:1].isdigit() for token in name.split('/')):
        return 'a token (the text between slashes) must not start with a digit'
    if len(name) > MAX_LENGTH:
        return f'longer than {MAX_LENGTH} characters'
    return None


def check_topic_names(param: str, names: Optional[Sequence[Any]]) -> None:
    """Raise ConfigError naming ``param`` for the first invalid topic name of ``names``."""
    for name in names or ():
        problem = topic_name_problem(name)
        if problem:
            raise ConfigError(f'{param}: {name!r} is not a valid ROS topic name ({problem})')
