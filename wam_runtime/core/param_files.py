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
- A value is typed by rcl's own rules, not YAML 1.1's (:func:`scalar_value`): ``null`` and
  ``~`` are strings, ``1e3`` is a double, ``y``/``n`` are bools, ``1_000`` is a string, ``010``
  is octal; quoted or ``!!str`` scalars are strings; an empty value makes rcl refuse the file,
  and so does an array whose elements differ in type. ``[]`` reads as not set.
"""

import math
import re
import sys
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import yaml

from wam_runtime.core.params import ConfigError, value_type

PARAMS_KEY = 'ros__parameters'
_TOKEN = re.compile(r'[A-Za-z0-9_]+|\*\*?')

# rcl_yaml_param_parser's scalar rules: these words are bools, then strtoll (base 0, int64),
# then YAML's .inf/.nan spellings, then strtod (decimal, hex, inf, nan; no range error).
_TRUE = frozenset('Y y yes Yes YES true True TRUE on On ON'.split())
_FALSE = frozenset('N n no No NO false False FALSE off Off OFF'.split())
_SPECIAL = {'.nan': math.nan, '.NaN': math.nan, '.NAN': math.nan,
            **{sign + word: -math.inf if sign == '-' else math.inf
               for sign in ('', '+', '-') for word in ('.inf', '.Inf', '.INF')}}
_INT = re.compile(r'([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\Z')
_DECIMAL = re.compile(r'[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\Z')
_HEX = re.compile(r'[+-]?0[xX]([0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)([pP][+-]?[0-9]+)?\Z')
_WORD = re.compile(r'[+-]?(inf|infinity|nan(\([0-9A-Za-z_]*\))?)\Z', re.IGNORECASE)
_PLAIN = 'tag:wam_runtime,2025:rcl-plain'


def scalar_value(text: str) -> Any:
    """Return the value rcl gives a plain (unquoted, untagged) YAML scalar.

    bool for rcl's words (``true``, ``yes``, ``on``, ``y`` and their ``false`` kin), int
    for what ``strtoll(text, 0)`` reads whole within int64 (``0x1f``, ``010`` octal), float
    for ``.inf``/``.nan`` and what ``strtod`` reads whole without a range error (``1e3``,
    ``.5``, ``inf``), else the text itself (``null``, ``~``, ``1_000``, ``1e400``).
    """
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    match = _INT.match(text)
    if match:
        sign, digits = match.groups()
        if digits[:2] in ('0x', '0X'):
            number = int(digits[2:], 16)
        else:
            number = int(digits, 8 if digits.startswith('0') else 10)
        number = -number if sign == '-' else number
        if -2 ** 63 <= number < 2 ** 63:
            return number
    if text in _SPECIAL:
        return _SPECIAL[text]
    word = _WORD.match(text)
    if word:
        value = math.nan if word.group(1).lower().startswith('nan') else math.inf
        return -value if text.startswith('-') else value
    decimal, hexadecimal = _DECIMAL.match(text), _HEX.match(text)
    if decimal:
        value, mantissa = float(text), decimal.group(1)
    elif hexadecimal:
        value, mantissa = float.fromhex(text), hexadecimal.group(1)
    else:
        return text
    overflow = math.isinf(value)
    underflow = abs(value) < sys.float_info.min and mantissa.strip('0.xX') != ''
    return text if overflow or underflow else value


class _RclLoader(yaml.SafeLoader):
    """PyYAML's safe loader with rcl's scalars: plain ones by :func:`scalar_value`.

    Mapping keys are names (always strings); a quoted or ``!!str`` scalar is a string; other
    standard tags are ignored as rcl ignores them (only the quoting counts).
    """

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        """Tag every plain scalar for :meth:`construct_rcl_scalar`."""
        if kind is yaml.ScalarNode and implicit[0]:
            return _PLAIN
        return super().resolve(kind, value, implicit)

    def construct_rcl_scalar(self, node: yaml.ScalarNode) -> Any:
        """Return rcl's value of a scalar; an empty plain one makes rcl refuse the file."""
        if node.style in ("'", '"'):
            return node.value
        if node.value == '':
            raise yaml.constructor.ConstructorError(
                None, None, 'no value (rcl refuses an empty value; [] is an array not set)',
                node.start_mark)
        return scalar_value(node.value)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Dict[str, Any]:
        """Return a mapping whose keys are the names as written."""
        self.flatten_mapping(node)
        out: Dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, 'a key must be a name', key_node.start_mark)
            out[key_node.value] = self.construct_object(value_node, deep=deep)
        return out


for _tag in (_PLAIN, 'tag:yaml.org,2002:null', 'tag:yaml.org,2002:bool',
             'tag:yaml.org,2002:int', 'tag:yaml.org,2002:float',
             'tag:yaml.org,2002:timestamp'):
    _RclLoader.add_constructor(_tag, _RclLoader.construct_rcl_scalar)


def parse_yaml(text: Any) -> Any:
    """Load YAML text (or a file object) as rcl reads a parameter file or ``-p`` value."""
    return yaml.load(text, Loader=_RclLoader)   # a SafeLoader: no arbitrary objects


def parse_value(text: str) -> Any:
    """Return the value rcl gives ``text`` in ``-p name:=text`` (YAML, rcl's scalars)."""
    try:
        return parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f'{text!r}: not a valid value ({" ".join(str(exc).split())})') \
            from None


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
                for name, item in sections[where].items():
                    if value_type(item) == 'mixed':
                        raise ConfigError(f'{source}: {where}: {name}: {item!r}: the elements '
                                          'of an array must all have one type, of bool, '
                                          'integer, double or string (rcl refuses the file)')

    walk(doc, [])
    return sections


def load_param_file(path: str) -> Dict[str, Dict[str, Any]]:
    """Read a ROS parameter file: ``{section key: parameters}`` as :func:`doc_sections`.

    Raises ConfigError naming the file when it cannot be read or is not a parameter file.
    """
    try:
        with open(path, encoding='utf-8') as f:
            doc = parse_yaml(f)
    except OSError as exc:
        raise ConfigError(f'{path}: cannot read ({exc.strerror})') from None
    except yaml.constructor.ConstructorError as exc:
        line = f'line {exc.problem_mark.line + 1}: ' if exc.problem_mark else ''
        raise ConfigError(f'{path}: {line}{exc.problem}') from None
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


def section_parameters(sections: Mapping[str, Mapping[str, Any]], node: str,
                       namespace: str = '') -> Dict[str, Any]:
    """Return the parameters the sections give ``node`` in ``namespace``.

    Raises ConfigError when sections for ``node`` exist but none applies in ``namespace``.
    """
    node_fqn = fqn(namespace, node)
    stray = stray_sections(sections, node_fqn)
    if stray:
        raise ConfigError(stray_message(stray, node_fqn))
    return parameters_for(sections, node_fqn)[0]


def node_parameters(doc: Mapping[str, Any], node: str, namespace: str = '') -> Dict[str, Any]:
    """Return the parameters a loaded parameter YAML gives ``node`` in ``namespace``.

    Raises ConfigError when sections for ``node`` exist but none applies in ``namespace``.
    """
    return section_parameters(doc_sections(doc), node, namespace)


def file_parameters(path: str, nodes: Sequence[str],
                    namespace: str = '') -> Dict[str, Dict[str, Any]]:
    """Read a parameter file once; return each node's parameters (``use_sim_time`` left out).

    Raises ConfigError naming the file (:func:`load_param_file`) or the stray sections.
    """
    sections = load_param_file(path)
    out = {}
    for node in nodes:
        values = section_parameters(sections, node, namespace)
        values.pop('use_sim_time', None)
        out[node] = values
    return out
