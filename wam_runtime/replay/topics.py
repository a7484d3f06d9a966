"""Which bag topic feeds which input of the replayed loops, and what the recording holds.

``resolve_inputs`` maps the contract's cameras, the joint states, the e-stop and the
recorded outputs (commands, chunks, events, inference inputs, execution feedback) to bag
topics by their relative names (``core.interfaces``), in a namespace too.
``recorded_inferences`` reads, in a first pass, what each recorded chunk was inferred from,
when it was logged and when the robot first ran it, so that ``--schedule recorded`` reruns
every recorded inference on exactly its inputs.
"""

import bisect
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from wam_runtime.bag import BagError, TopicInfo, typestore
from wam_runtime.core.interfaces import (
    ACTION_CHUNK, BOOL, camera_topic, COMMANDS, COMPRESSED_IMAGE, ESTOP, EVENTS, EXECUTION,
    execution_fields, FLOAT64_ARRAY, IMAGE, INFERENCE_INPUTS, InferenceInputs, JOINT_STATE,
    JOINT_STATES, JOINT_TRAJECTORY, parse_inference_inputs, SAFETY_OUTPUTS, STATUS, SURPRISE,
    TRAJECTORY)
from wam_runtime.core.stamps import to_ns

# Topics the replayed loops themselves produce (relative names); never fed back as inputs.
OUTPUT_TOPICS = (ACTION_CHUNK, SURPRISE, INFERENCE_INPUTS, COMMANDS, JOINT_TRAJECTORY,
                 EVENTS, EXECUTION)


class InputError(ValueError):
    """The bag lacks what the pipeline needs; the message says what and what is there."""


def match_topic(topics: Sequence[str], wanted: str) -> Optional[str]:
    """Find the bag topic for a relative topic name (None if there is none or several).

    An exact match (ignoring a leading '/') wins; else the one topic that ends with
    ``/<wanted>`` (the same topic in a namespace).
    """
    wanted = wanted.strip('/')
    exact = [t for t in topics if t.strip('/') == wanted]
    if exact:
        return exact[0]
    suffix = [t for t in topics if t.strip('/').endswith('/' + wanted)]
    return suffix[0] if len(suffix) == 1 else None


@dataclass
class InputTopics:
    """Which bag topic feeds which part of the pipeline."""

    cameras: Dict[str, Tuple[str, bool]]            # camera name -> (topic, compressed)
    joint_states: str
    estop: Optional[str] = None
    recorded_commands: Optional[str] = None         # what the robot was commanded
    recorded_chunks: Optional[str] = None
    recorded_events: Optional[str] = None
    recorded_inputs: Optional[str] = None           # policy/inference_inputs
    extra_joint_states: List[str] = field(default_factory=list)
    recorded_execution: Optional[str] = None        # safety/execution: chunks the robot ran

    def role(self) -> Dict[str, Tuple[str, Any]]:
        """Return {topic: (kind, argument)}."""
        out: Dict[str, Tuple[str, Any]] = {
            t: ('camera', (name, comp)) for name, (t, comp) in self.cameras.items()}
        for topic in [self.joint_states] + self.extra_joint_states:
            out[topic] = ('joint_states', None)
        for kind in ('estop', 'recorded_commands', 'recorded_chunks', 'recorded_events',
                     'recorded_execution'):
            topic = getattr(self, kind)
            if topic:
                out[topic] = (kind, None)
        return out


def resolve_inputs(topics: Mapping[str, TopicInfo], camera_names: Sequence[str],
                   compressed: Sequence[str], output_mode: str, skip_prefix: str = '',
                   extra_joint_state_topics: Sequence[str] = ()) -> InputTopics:
    """Map the contract's cameras and the joint states to bag topics; raise InputError."""
    names = [t for t in topics
             if not (skip_prefix and t.strip('/').startswith(skip_prefix + '/'))]
    listing = ', '.join(f'{t} ({topics[t].msgtype})' for t in sorted(names)) or 'none'

    def typed(topic: Optional[str], types: Sequence[str], what: str) -> Optional[str]:
        if topic is not None and topics[topic].msgtype not in types:
            raise InputError(f'{what}: topic {topic!r} has type {topics[topic].msgtype!r}, '
                             f'expected {" or ".join(types)}')
        return topic

    def optional(name: str, msgtype: str) -> Optional[str]:
        topic = match_topic(names, name)
        return topic if topic is not None and topics[topic].msgtype == msgtype else None

    cameras: Dict[str, Tuple[str, bool]] = {}
    for cam in camera_names:
        raw = match_topic(names, camera_topic(cam))
        comp = match_topic(names, camera_topic(cam, True))
        if cam in compressed or (raw is None and comp is not None):
            if comp is None:
                raise InputError(f'camera {cam!r}: no topic {camera_topic(cam, True)} in the '
                                 f'bag (topics: {listing})')
            cameras[cam] = (typed(comp, (COMPRESSED_IMAGE,), f'camera {cam!r}'), True)
        else:
            if raw is None:
                raise InputError(f'camera {cam!r}: no topic {camera_topic(cam)} or '
                                 f'{camera_topic(cam, True)} in the bag (topics: {listing})')
            cameras[cam] = (typed(raw, (IMAGE,), f'camera {cam!r}'), False)
    js = match_topic(names, JOINT_STATES)
    if js is None:
        raise InputError(f'no joint_states topic in the bag (topics: {listing})')
    typed(js, (JOINT_STATE,), JOINT_STATES)
    extras = []
    for extra in extra_joint_state_topics:
        topic = match_topic(names, extra)
        if topic is None:
            raise InputError(f'extra_joint_state_topics: no topic {extra!r} in the bag '
                             f'(topics: {listing})')
        extras.append(typed(topic, (JOINT_STATE,), f'extra_joint_state_topics {extra}'))
    cmd_name, cmd_type = SAFETY_OUTPUTS[output_mode]
    return InputTopics(cameras, js, optional(ESTOP, BOOL), optional(cmd_name, cmd_type),
                       optional(ACTION_CHUNK, TRAJECTORY), optional(EVENTS, STATUS),
                       optional(INFERENCE_INPUTS, FLOAT64_ARRAY), extras,
                       optional(EXECUTION, FLOAT64_ARRAY))


def command_positions(msgtype: str, msg, joint_names: Sequence[str]) -> Optional[np.ndarray]:
    """Return a gated command in ``joint_names`` order, or None if it does not fit.

    ``msg`` is a Float64MultiArray (forward_command) or a single-point JointTrajectory.
    """
    if msgtype == FLOAT64_ARRAY:
        q = np.asarray(msg.data, np.float64)
    else:
        names = list(msg.joint_names)
        if not msg.points or set(names) != set(joint_names):
            return None
        q = np.asarray(msg.points[0].positions, np.float64)
        if q.size != len(names):
            return None
        q = q[[names.index(n) for n in joint_names]]
    return q if q.shape == (len(joint_names),) else None


def chunk_positions(msg, joint_names: Sequence[str]) -> Optional[Tuple[int, np.ndarray]]:
    """Return (stamp ns, (N, J) positions in ``joint_names`` order) of a chunk, or None."""
    names = list(msg.joint_names)
    if set(names) != set(joint_names) or not msg.points:
        return None
    pts = [np.asarray(p.positions, np.float64) for p in msg.points]
    if any(p.shape != (len(names),) for p in pts):
        return None
    order = [names.index(n) for n in joint_names]
    return to_ns(msg.header.stamp.sec, msg.header.stamp.nanosec), np.vstack(pts)[:, order]


@dataclass
class RecordedInference:
    """A recorded chunk: when it was logged and, if recorded, what it was inferred from.

    ``first_executed_ns``: the log time of the first ``safety/execution`` message that
    names it, the robot's first control tick on it (None: never executed);
    ``first_tick_ns``: that tick's own time and ``adopted_ns`` the time the controller
    adopted the chunk, where the feedback carries them.
    """

    logged_ns: int
    inputs: Optional[InferenceInputs] = None
    first_executed_ns: Optional[int] = None
    first_tick_ns: Optional[int] = None
    adopted_ns: Optional[int] = None


def inference_inputs_of(msg) -> Optional[InferenceInputs]:
    """Read a ``policy/inference_inputs`` message (rosbags or rclpy); None if malformed."""
    dims = [(str(d.label), int(d.size), int(d.stride)) for d in msg.layout.dim]
    return parse_inference_inputs(dims, list(msg.data))


def recorded_inferences(bag, topics: InputTopics) -> Dict[int, RecordedInference]:
    """Return the recorded chunks by stamp (first pass; as far as the bag reads)."""
    out: Dict[int, RecordedInference] = {}
    wanted = [t for t in (topics.recorded_chunks, topics.recorded_inputs,
                          topics.recorded_execution) if t]
    inputs: Dict[int, InferenceInputs] = {}
    executed: Dict[int, Tuple[int, Optional[int], Optional[int]]] = {}
    try:
        for rec in bag.messages(wanted):
            try:
                msg = typestore().deserialize_cdr(rec.data, rec.msgtype)
            except Exception:  # noqa: B902 - corrupt bytes: the main pass counts them
                continue
            if rec.topic == topics.recorded_chunks:
                stamp = to_ns(msg.header.stamp.sec, msg.header.stamp.nanosec)
                out.setdefault(stamp, RecordedInference(rec.t_ns))
            elif rec.topic == topics.recorded_execution:
                fields = execution_fields([str(d.label) for d in msg.layout.dim],
                                          list(msg.data))
                if fields is not None:
                    executed.setdefault(fields['chunk_stamp_ns'], (
                        rec.t_ns, fields['tick_ns'], fields['adopted_ns']))
            else:
                parsed = inference_inputs_of(msg)
                if parsed is not None:
                    inputs[parsed.chunk_stamp_ns] = parsed
    except BagError:
        pass      # the main pass reports where the bag breaks
    for stamp, entry in out.items():
        entry.inputs = inputs.get(stamp)
        entry.first_executed_ns, entry.first_tick_ns, entry.adopted_ns = executed.get(
            stamp, (None, None, None))
    return out


def recorded_ticks(bag, topics: InputTopics, period_ns: int) -> Optional[List[int]]:
    """Return the times of the recorded run's control ticks (ns; None: fewer than 10).

    A tick is the time ``safety/execution`` carries (the controller's clock), else, for a
    recorded gated command without such a tick in the period before it (no chunk running
    yet, or an older bag), the command's log time.
    """
    wanted = [t for t in (topics.recorded_commands, topics.recorded_execution) if t]
    if not topics.recorded_commands:
        return None
    ticks: List[int] = []
    commands: List[int] = []
    try:
        for rec in bag.messages(wanted):
            if rec.topic == topics.recorded_commands:
                commands.append(rec.t_ns)
                continue
            try:
                msg = typestore().deserialize_cdr(rec.data, rec.msgtype)
            except Exception:  # noqa: B902 - corrupt bytes: the main pass counts them
                continue
            fields = execution_fields([str(d.label) for d in msg.layout.dim], list(msg.data))
            if fields is not None and fields['tick_ns'] is not None:
                ticks.append(fields['tick_ns'])
    except BagError:
        pass      # the main pass reports where the bag breaks
    ticks = sorted(set(ticks))
    for t in commands:
        i = bisect.bisect_right(ticks, t)
        if i == 0 or t - ticks[i - 1] > period_ns:
            bisect.insort(ticks, t)
    return ticks if len(ticks) >= 10 else None
