"""ROS 2 parameter files: their sections, rcl's key matching, the values a node gets.

One reading of ``--params-file`` YAML for every tool and node helper, with the rules
rcl_yaml_param_parser and rclpy apply (checked against rclpy on Jazzy and Kilted):

- A section key is a node name, absolute or not (``policy_node`` means ``/policy_node``);
  nested mappings are namespaces (``arm: {policy_node: {ros__parameters: ...}}`` is the key
  ``arm/policy_node``). A mapping may hold ``ros__parameters`` and further nodes at once.
- ``*`` stands for exactly one name token, ``**`` for any number (none included): ``/**``
  is every node, ``/**/policy_node`` that node in any namespace, ``/*`` every node of the
  root namespace. A partial wildcard (``policy*``) or an empty token makes rcl refuse the
  file, and so does any other character than letters, digits and ``_``.
- Every section that matches a node applies, in file order: a later one overrides an
  earlier one, whatever their wildcards. Over several files, a key seen before keeps its
  first place and takes the later values (rcl merges the files into one key table).
- Nested parameter namespaces (``a: {b: 1}``) are the dotted names (``a.b``).
"""

import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import yaml

from wam_runtime.core.params import ConfigError

PARAMS_KEY = 'ros__parameters'
_TOKEN = re.compile(r'[A-Za-z0-9_]+|\*\*?')


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


def key_tokens(key: str) -> List[str]:
    """Return the name tokens of a section key; raise ConfigError where rcl refuses it."""
    tokens = key.split('/')
    if tokens[:1] == ['']:
        tokens = tokens[1:]
    for token in tokens:
        if not _TOKEN.fullmatch(token):
            what = 'an empty name' if not token else f'the name {token!r}'
            raise ConfigError(f'section {key!r}: {what} (rcl refuses the file; a node name '
                              'has letters, digits and _, wildcards are whole names: * or **)')
    return tokens


def doc_sections(doc: Any, source: str = 'parameter file') -> Dict[str, Dict[str, Any]]:
    """Return ``{section key: parameters}`` of a loaded parameter YAML, in file order.

    Keys are as written, nested namespaces joined with ``/``; parameters are flattened.
    Raises ConfigError naming ``source`` when rcl would refuse the document.
    """
    if not isinstance(doc, dict) or not doc:
        raise ConfigError(f'{source}: expected a mapping of node names to {PARAMS_KEY}')
    sections: Dict[str, Dict[str, Any]] = {}

    def walk(node: Any, keys: List[str]) -> None:
        where = '/'.join(keys)
        if not isinstance(node, dict) or not node:
            raise ConfigError(f'{source}: {where}: expected {PARAMS_KEY} below the node name')
        for key, value in node.items():
            if key != PARAMS_KEY:
                walk(value, keys + [str(key)])
            elif not keys:
                raise ConfigError(f'{source}: {PARAMS_KEY} needs a node name above it')
            elif not isinstance(value, dict):
                raise ConfigError(f'{source}: {where}: {PARAMS_KEY} must be a mapping')
            else:
                key_tokens(where)
                sections[where] = flatten(value)

    walk(doc, [])
    return sections


def load_param_file(path: str) -> Dict[str, Dict[str, Any]]:
    """Read a ROS parameter file: ``{section key: parameters}`` as :func:`doc_sections`.

    Raises ConfigError naming the file when it cannot be read or is not a parameter file.
    """
    try:
        with open(path, encoding='utf-8') as f:
            doc = yaml.safe_load(f)
    except OSError as exc:
        raise ConfigError(f'{path}: cannot read ({exc.strerror})') from None
    except yaml.YAMLError as exc:
        raise ConfigError(f'{path}: not valid YAML ({" ".join(str(exc).split())})') from None
    return doc_sections(doc, path)


def merge_sections(files: Iterable[Mapping[str, Mapping[str, Any]]]
                   ) -> Dict[str, Dict[str, Any]]:
    """Combine the sections of several files given in order, as rcl does.

    A key already seen keeps its place and takes the later file's values for its
    parameters; a new key goes last.
    """
    out: Dict[str, Dict[str, Any]] = {}
    for sections in files:
        for key, params in sections.items():
            out.setdefault(key, {}).update(params)
    return out


def _match(pattern: List[str], name: List[str]) -> bool:
    if not pattern:
        return not name
    head = pattern[0]
    if head == '**':
        return any(_match(pattern[1:], name[i:]) for i in range(len(name) + 1))
    return bool(name) and head in ('*', name[0]) and _match(pattern[1:], name[1:])


def key_matches(key: str, node_fqn: str) -> bool:
    """Whether a section key applies to the node with fully qualified name ``node_fqn``."""
    return _match(key_tokens(key), [t for t in node_fqn.split('/') if t])


def fqn(namespace: str, name: str) -> str:
    """Fully qualified node name from a namespace ('' or relative or absolute) and a name."""
    ns = '/'.join(t for t in namespace.split('/') if t)
    return f'/{ns}/{name}' if ns else f'/{name}'


def parameters_for(sections: Mapping[str, Mapping[str, Any]],
                   node_fqn: str) -> Tuple[Dict[str, Any], List[str]]:
    """Merge, in order, the sections that apply to ``node_fqn``; return values and keys."""
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


def stray_sections(sections: Mapping[str, Any], node_fqn: str) -> List[str]:
    """Return the keys naming the node that miss it, when no key naming it applies.

    ``/robot1/policy_node`` for ``/policy_node`` (or a plain ``policy_node`` for
    ``/robot1/policy_node``) is a section written for this node that rcl silently skips.
    """
    name = node_fqn.rstrip('/').rsplit('/', 1)[-1]
    named = [k for k in sections if section_node(k) == name]
    return [] if any(key_matches(k, node_fqn) for k in named) else named


def stray_message(keys: List[str], node_fqn: str) -> str:
    """Explain :func:`stray_sections` for an error message."""
    namespace, name = node_fqn.rsplit('/', 1)
    return (f'section(s) {keys} for {name}, but none applies in namespace {namespace or "/"} '
            f'(a key without a namespace means /{name} only; write /**/{name})')


def node_parameters(doc: Mapping[str, Any], node: str, namespace: str = '') -> Dict[str, Any]:
    """Return the parameters a loaded parameter YAML gives ``node`` in ``namespace``.

    Raises ConfigError when sections for ``node`` exist but none applies in ``namespace``.
    """
    sections = doc_sections(doc)
    node_fqn = fqn(namespace, node)
    stray = stray_sections(sections, node_fqn)
    if stray:
        raise ConfigError(stray_message(stray, node_fqn))
    return parameters_for(sections, node_fqn)[0]
