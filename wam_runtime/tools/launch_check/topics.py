"""The topic graph of a launch plan: every endpoint of its nodes, after namespaces and remaps.

A node of this package has the topics ``core.interfaces.NODE_TOPICS`` gives it, plus the
cameras of the model contract (policy_node, raw or compressed per
``compressed_cameras``), the command output of its ``output_mode`` (safety_controller),
its camera (synthetic_camera) and ``/clock`` (sim_node under ``use_sim_time``); a
``ros_gz_bridge`` contributes the entries of its configuration. Then:

- endpoints that share a name in the code still share it after namespaces and remaps;
- every topic carries one message type;
- every remapping of a node matches one of its topics;
- bridge entries connect to a node of the launch.

A topic published for the world outside the launch (``policy/inference_inputs`` and
``policy/surprise`` for a recorder, ``/diagnostics``) is listed, not an error.
"""

import os
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

import yaml

from wam_runtime.core.contract import ModelContract
from wam_runtime.core.interfaces import (
    camera_topic, CLOCK, COMPRESSED_IMAGE, IMAGE, NODE_TOPICS, SAFETY_OUTPUTS)
from wam_runtime.tools.launch_check.plan import (
    LaunchPlan, NodeDecl, PACKAGE, remap_topic, resolve_topic, TopicEndpoint, UNKNOWN)
from wam_runtime.tools.params_check import Finding, node_schema

BRIDGE_DIRECTIONS = ('BIDIRECTIONAL', 'GZ_TO_ROS', 'ROS_TO_GZ')


def node_topics(executable: str, values: Mapping[str, Any],
                contract: Optional[ModelContract]) -> List[Tuple[str, str, str]]:
    """Return ``(direction, topic, message type)`` of one of this package's nodes."""
    table = NODE_TOPICS[executable]
    topics = [(d, e.topic, e.msgtype) for d in ('sub', 'pub') for e in table[d]]
    if executable == 'policy_node' and contract is not None:
        compressed = set(values.get('compressed_cameras') or [])
        for cam in contract.cameras:
            packed = cam.name in compressed
            topics.append(('sub', camera_topic(cam.name, packed),
                           COMPRESSED_IMAGE if packed else IMAGE))
    if executable == 'safety_controller':
        mode = values.get('output_mode', 'forward_command')
        if mode in SAFETY_OUTPUTS:
            topics.append(('pub',) + SAFETY_OUTPUTS[mode])
    if executable == 'synthetic_camera':
        default = next(p.default for p in node_schema(executable) if p.name == 'camera_name')
        topics.append(('pub', camera_topic(values.get('camera_name', default)), IMAGE))
    if executable == 'sim_node' and values.get('use_sim_time'):
        topics.append(('pub', '/clock', CLOCK))
    return topics


def _check_remaps(plan: LaunchPlan, node: NodeDecl, topics: List[str]) -> None:
    if node.executable == 'safety_controller':
        topics = topics + [t for t, _ in SAFETY_OUTPUTS.values()]   # both output modes
    for src, dst in node.remaps:
        if src is UNKNOWN or dst is UNKNOWN:
            continue
        if not any(resolve_topic(src, node.namespace) == resolve_topic(t, node.namespace)
                   for t in topics):
            plan.findings.append(Finding('error', node.file, f'{node.fqn}: remapping '
                                                             f'{src} -> {dst} matches no '
                                                             'topic of the node'))


def bridge_endpoints(plan: LaunchPlan, node: NodeDecl, values: Mapping[str, Any]
                     ) -> List[TopicEndpoint]:
    """Return the ROS side of a ``ros_gz_bridge``'s entries (its ``config_file``)."""
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
        if direction not in BRIDGE_DIRECTIONS:
            plan.findings.append(Finding('error', where, f'direction {direction!r}'))
            continue
        resolved = remap_topic(topic, node.namespace, node.remaps)
        if direction in ('BIDIRECTIONAL', 'GZ_TO_ROS'):
            out.append(TopicEndpoint(node.fqn, 'pub', topic, resolved, e['ros_type_name'], True))
        if direction in ('BIDIRECTIONAL', 'ROS_TO_GZ'):
            out.append(TopicEndpoint(node.fqn, 'sub', topic, resolved, e['ros_type_name'], True))
    return out


def check_topics(plan: LaunchPlan, merged: Mapping[str, Dict[str, Any]],
                 contract: Optional[ModelContract]) -> None:
    """Fill ``plan.endpoints`` and report the topics that do not connect as written."""
    endpoints: List[TopicEndpoint] = []
    for node in plan.nodes:
        if node.package == 'ros_gz_bridge' and node.executable == 'parameter_bridge':
            bridge_values: Dict[str, Any] = {}
            for kind, source in node.params:
                if kind == 'dict':
                    bridge_values.update(source)
            endpoints += bridge_endpoints(plan, node, bridge_values)
            continue
        if node.package != PACKAGE or node.executable not in NODE_TOPICS:
            continue
        topics = node_topics(node.executable, merged.get(node.name, {}), contract)
        for direction, topic, typ in topics:
            endpoints.append(TopicEndpoint(node.fqn, direction, topic,
                                           remap_topic(topic, node.namespace, node.remaps),
                                           typ))
        _check_remaps(plan, node, [t for _, t, _ in topics])
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
