"""What a launch file would start, as data: arguments, nodes, processes, topic endpoints.

The static evaluator (``evaluate``) fills a :class:`LaunchPlan`; the checks (``checks``,
``topics``) add findings and the endpoints; ``report`` prints it. ``UNKNOWN`` stands for a
value the evaluator cannot compute; it is reported, never guessed.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from wam_runtime.core.param_files import fqn
from wam_runtime.tools.params_check import Finding

PACKAGE = 'wam_runtime'
# The section a parameter dictionary of a Node action becomes (in a file of its own).
DICT_SECTION = '/**'


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
class TopicEndpoint:
    """A topic endpoint of a node in the launch: direction, name in the code and resolved."""

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
    endpoints: List[TopicEndpoint] = field(default_factory=list)

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

    def unconnected_inputs(self) -> List[TopicEndpoint]:
        """Subscriptions of this package's nodes nothing in the launch publishes."""
        published = {e.resolved for e in self.endpoints if e.direction == 'pub'}
        return [e for e in self.endpoints if e.direction == 'sub'
                and e.resolved not in published and e.node in self._ours()]

    def unconsumed_outputs(self) -> List[TopicEndpoint]:
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
