"""Offline replay: recorded frames and joint states through the core pipeline on a bag clock.

The objects are the ones the nodes use — ``ObservationAssembler``, ``TensorBuilder``,
``OnnxPolicy``, ``ExecutionTracker``, ``SurpriseMonitor`` on the policy side,
``SafetyController`` (chunk scheduler + gate) and ``SurpriseGovernor`` on the safety side —
wired the way ``policy_node`` and ``safety_controller`` wire them, with one difference: time
is the bag's. Every message is handed in at its log time (the recorder's receive time, the
clock the header stamps were taken on), the controller ticks every control period of that
clock, and an inference takes a fixed ``inference_delay_s`` of it. Nothing reads the wall
clock, so a replay is a pure function of the bag, the model and the configuration.

Inference schedule: ``rate`` emulates ``policy_node``: inference starts at the first new
frame once ``0.9 / inference_rate_hz`` has passed since the previous attempt (or earlier with
the ``remaining`` trigger). ``recorded`` infers on the frames the recorded run inferred on
(the frames whose stamps the recorded chunks carry), so that replay chunks and recorded
chunks compare one to one. Either way an observation with a lagging part (skewed, or a
camera whose frame after a pause has not arrived yet) waits up to
``min(max_observation_skew_s, 1 / inference_rate_hz)`` of bag time for it, a rejection never
uses up the rate window, and the chunk reaches the safety controller ``inference_delay_s``
later. Stamps are integer nanoseconds throughout: a replay chunk's stamp is its oldest
frame's, exactly, and so is what the safety controller and the execution tracker key it by.

Gate: ``open`` enables the safety controller from the start; ``recorded`` opens it when the
recorded run's gated commands start and closes it (controlled stop) when they stop for
``gate_gap_s``, so that the replay commands the robot when the recorded run did.
"""

import bisect
from dataclasses import dataclass, field
import heapq
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from wam_runtime.core import controller as ctl
from wam_runtime.core.image import CompressedFrame, FrameError, RawFrame, TensorBuilder
from wam_runtime.core.inference import OnnxPolicy
from wam_runtime.core.joint_states import JointStateMerge
from wam_runtime.core.observation import (
    NO_NEW_FRAME, NotReady, ObservationAssembler)
from wam_runtime.core.realtime import ExecutionTracker
from wam_runtime.core.safety_config import SafetySetup
from wam_runtime.core.surprise import SurpriseMonitor
from wam_runtime.replay.bag_io import BagWriter, Record, TopicInfo, typestore

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED = 'sensor_msgs/msg/CompressedImage'
JOINT_STATE = 'sensor_msgs/msg/JointState'
TRAJECTORY = 'trajectory_msgs/msg/JointTrajectory'
FLOAT64_ARRAY = 'std_msgs/msg/Float64MultiArray'
BOOL = 'std_msgs/msg/Bool'
FLOAT32 = 'std_msgs/msg/Float32'
STATUS = 'diagnostic_msgs/msg/DiagnosticStatus'
# Topics the pipeline itself produces (relative names); never fed back as inputs.
OUTPUT_TOPICS = ('policy/action_chunk', 'policy/surprise', 'commands', 'joint_trajectory',
                 'safety/events', 'safety/execution')


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

    def role(self) -> Dict[str, Tuple[str, Any]]:
        """Return {topic: (kind, argument)}."""
        out: Dict[str, Tuple[str, Any]] = {
            t: ('camera', (name, comp)) for name, (t, comp) in self.cameras.items()}
        out[self.joint_states] = ('joint_states', None)
        for kind in ('estop', 'recorded_commands', 'recorded_chunks', 'recorded_events'):
            topic = getattr(self, kind)
            if topic:
                out[topic] = (kind, None)
        return out


def resolve_inputs(topics: Mapping[str, TopicInfo], camera_names: Sequence[str],
                   compressed: Sequence[str], output_mode: str,
                   skip_prefix: str = '') -> InputTopics:
    """Map the contract's cameras and the joint states to bag topics; raise InputError."""
    names = [t for t in topics
             if not (skip_prefix and t.strip('/').startswith(skip_prefix + '/'))]
    listing = ', '.join(f'{t} ({topics[t].msgtype})' for t in sorted(names)) or 'none'

    def typed(topic: Optional[str], types: Sequence[str], what: str) -> Optional[str]:
        if topic is not None and topics[topic].msgtype not in types:
            raise InputError(f'{what}: topic {topic!r} has type {topics[topic].msgtype!r}, '
                             f'expected {" or ".join(types)}')
        return topic

    cameras: Dict[str, Tuple[str, bool]] = {}
    for cam in camera_names:
        raw = match_topic(names, f'camera/{cam}/image_raw')
        comp = match_topic(names, f'camera/{cam}/image_raw/compressed')
        if cam in compressed or (raw is None and comp is not None):
            if comp is None:
                raise InputError(f'camera {cam!r}: no topic '
                                 f'camera/{cam}/image_raw/compressed in the bag '
                                 f'(topics: {listing})')
            cameras[cam] = (typed(comp, (COMPRESSED,), f'camera {cam!r}'), True)
        else:
            if raw is None:
                raise InputError(f'camera {cam!r}: no topic camera/{cam}/image_raw or '
                                 f'camera/{cam}/image_raw/compressed in the bag '
                                 f'(topics: {listing})')
            cameras[cam] = (typed(raw, (IMAGE,), f'camera {cam!r}'), False)
    js = match_topic(names, 'joint_states')
    if js is None:
        raise InputError(f'no joint_states topic in the bag (topics: {listing})')
    typed(js, (JOINT_STATE,), 'joint_states')
    cmd_name, cmd_type = ('commands', FLOAT64_ARRAY) if output_mode == 'forward_command' \
        else ('joint_trajectory', TRAJECTORY)
    cmd = match_topic(names, cmd_name)
    if cmd is not None and topics[cmd].msgtype != cmd_type:
        cmd = None
    chunks = match_topic(names, 'policy/action_chunk')
    if chunks is not None and topics[chunks].msgtype != TRAJECTORY:
        chunks = None
    estop = match_topic(names, 'safety/estop')
    if estop is not None and topics[estop].msgtype != BOOL:
        estop = None
    events = match_topic(names, 'safety/events')
    if events is not None and topics[events].msgtype != STATUS:
        events = None
    return InputTopics(cameras, js, estop, cmd, chunks, events)


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
    stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
    return stamp_ns, np.vstack(pts)[:, order]


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _ns(t_s: float) -> int:
    return int(round(t_s * 1e9))


@dataclass
class RunData:
    """What a run produced and what the bag recorded, for the report (times in s)."""

    joint_names: List[str]
    lower: np.ndarray
    upper: np.ndarray
    commands: List[Tuple[float, np.ndarray]] = field(default_factory=list)
    chunks: List[Tuple[float, int, np.ndarray]] = field(default_factory=list)  # t, stamp ns, pts
    events: List[Tuple[float, str, str]] = field(default_factory=list)           # t, reason, joint
    latencies_s: List[float] = field(default_factory=list)
    measured: List[Tuple[float, np.ndarray]] = field(default_factory=list)
    recorded_commands: List[Tuple[float, np.ndarray]] = field(default_factory=list)
    recorded_chunks: Dict[int, np.ndarray] = field(default_factory=dict)         # stamp ns
    recorded_events: List[Tuple[float, str]] = field(default_factory=list)
    policy_counters: Dict[str, int] = field(default_factory=dict)
    safety_counters: Dict[str, int] = field(default_factory=dict)
    skipped: Dict[str, int] = field(default_factory=dict)
    read: Dict[str, int] = field(default_factory=dict)
    inferences: int = 0
    first_ns: Optional[int] = None
    last_ns: Optional[int] = None
    dt_s: float = 0.0

    def skip(self, reason: str) -> None:
        """Count one skipped message."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


class Messages:
    """Build and serialize the pipeline's output messages with the rosbags type store."""

    def __init__(self) -> None:
        t = typestore().types
        self.store = typestore()
        self._t = t

    def _header(self, stamp_ns: int, frame_id: str = ''):
        t = self._t
        return t['std_msgs/msg/Header'](stamp=t['builtin_interfaces/msg/Time'](
            sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000), frame_id=frame_id)

    def _duration(self, ns: int):
        return self._t['builtin_interfaces/msg/Duration'](sec=ns // 1_000_000_000,
                                                          nanosec=ns % 1_000_000_000)

    def _ser(self, msg, msgtype: str) -> bytes:
        return bytes(self.store.serialize_cdr(msg, msgtype))

    def trajectory(self, joint_names: Sequence[str], stamp_ns: int,
                   times_ns: Sequence[int], positions: np.ndarray) -> bytes:
        """Return a JointTrajectory (a chunk, or a single-point command)."""
        t = self._t
        empty = np.zeros(0, np.float64)
        points = [t['trajectory_msgs/msg/JointTrajectoryPoint'](
            positions=np.asarray(row, np.float64), velocities=empty, accelerations=empty,
            effort=empty, time_from_start=self._duration(int(tn)))
            for tn, row in zip(times_ns, np.atleast_2d(positions))]
        msg = t[TRAJECTORY](header=self._header(stamp_ns), joint_names=list(joint_names),
                            points=points)
        return self._ser(msg, TRAJECTORY)

    def float64_array(self, values: np.ndarray, labels: Sequence[str] = ()) -> bytes:
        """Return a Float64MultiArray (labelled dims as in ``safety/execution``)."""
        t = self._t
        dims = [t['std_msgs/msg/MultiArrayDimension'](label=lab, size=1, stride=1)
                for lab in labels]
        msg = t[FLOAT64_ARRAY](layout=t['std_msgs/msg/MultiArrayLayout'](
            dim=dims, data_offset=0), data=np.asarray(values, np.float64))
        return self._ser(msg, FLOAT64_ARRAY)

    def float32(self, value: float) -> bytes:
        """Return a std_msgs/Float32."""
        return self._ser(self._t[FLOAT32](data=float(value)), FLOAT32)

    def event(self, reason: str, joint: str, requested: float, allowed: float,
              chunk_stamp_ns: Optional[int], message: str, hardware_id: str) -> bytes:
        """Return the DiagnosticStatus the safety controller publishes on safety/events."""
        t = self._t
        latched = reason in ctl.LATCHING
        kv = t['diagnostic_msgs/msg/KeyValue']
        msg = t[STATUS](
            level=2 if latched else 1, name=reason, hardware_id=hardware_id,
            message=message or f'{joint or "all"}: requested {requested:.6g}, '
                               f'allowed {allowed:.6g}',
            values=[kv(key='reason', value=reason), kv(key='joint', value=joint),
                    kv(key='requested', value=f'{requested:.9g}'),
                    kv(key='allowed', value=f'{allowed:.9g}'),
                    kv(key='chunk_stamp_s', value=ctl.stamp_text(chunk_stamp_ns))])
        return self._ser(msg, STATUS)


class ReplayPipeline:
    """Feed records in log-time order; ticks and chunk deliveries happen in between."""

    def __init__(self, policy: OnnxPolicy, policy_params: Mapping[str, Any],
                 safety: SafetySetup, inputs: InputTopics, writer: Optional[BagWriter],
                 inference_delay_s: float = 0.01, namespace: str = 'replay',
                 topic_info: Optional[Mapping[str, TopicInfo]] = None,
                 recorded_stamps_ns: Optional[Sequence[int]] = None,
                 gate_follows_recording: bool = False, gate_gap_s: float = 0.1) -> None:
        """Build the policy side and the safety side from validated parameters.

        ``recorded_stamps_ns`` (stamps of the recorded chunks) selects the ``recorded``
        inference schedule; ``gate_follows_recording`` the ``recorded`` gate.
        """
        p = policy_params
        self.policy = policy
        self.contract = policy.contract
        cams = [c.name for c in self.contract.cameras]
        self.tensors = TensorBuilder(self.contract.cameras, 1, p['fast_jpeg_decode'])
        self.assembler = ObservationAssembler(cams, p['max_observation_age_s'],
                                              p['max_observation_skew_s'])
        act = self.contract.action
        self.tracker = ExecutionTracker(act.dt_s, act.horizon)
        wm = self.contract.world_model
        self.surprise = None if wm is None else SurpriseMonitor(
            p['surprise_metric'], max_gap_s=max(2.5 / p['inference_rate_hz'],
                                                2.5 * wm.prediction_dt_s))
        self._period_s = 1.0 / p['inference_rate_hz']
        self._skew_wait_s = min(p['max_observation_skew_s'], self._period_s)
        self._trigger = p['inference_trigger']
        self._trigger_remaining_s = p['trigger_remaining_s']
        self._next_allowed = -math.inf
        self._skew_started: Optional[float] = None
        self._new_frame = False
        # Joint states merged per joint, as the nodes do (several drivers, one topic).
        self._policy_map = JointStateMerge(self.contract.state.joint_names,
                                           p['max_observation_age_s'])
        self._schedule = None if recorded_stamps_ns is None else \
            sorted(int(s) for s in recorded_stamps_ns)
        self._last_frame_stamp: Dict[str, int] = {}

        self.safety = safety
        self.core = ctl.SafetyController(safety.config, enabled=not gate_follows_recording,
                                         governor=safety.governor)
        self._follow_gate = gate_follows_recording
        self._gate_gap_s = gate_gap_s
        self._last_recorded_cmd = -math.inf
        self._gate_open = not gate_follows_recording
        self._safety_map = JointStateMerge(self.core.joint_names,
                                           safety.config.state_timeout_s)
        self.output_mode = safety.params['output_mode']
        self._period_ns = _ns(safety.config.control_period_s)
        self._next_tick: Optional[int] = None
        self._heap: List[Tuple[int, int, str, Any]] = []
        self._seq = 0
        self.delay_ns = _ns(inference_delay_s)

        self.inputs = inputs
        self.roles = inputs.role()
        self.writer = writer
        self.ns = namespace.strip('/')
        self.topic_info = dict(topic_info or {})
        self.msgs = Messages()
        lim = safety.config.limits
        self.run = RunData(list(self.core.joint_names), lim.lower.copy(), lim.upper.copy(),
                           dt_s=act.dt_s)
        self._last_log_ns: Optional[int] = None
        self._last_stamp: Dict[str, int] = {}
        self.now_ns = 0

    # ------------------------------------------------------------------ output
    def _out(self, t_ns: int, topic: str, msgtype: str, data: bytes) -> None:
        if self.writer is not None:
            self.writer.write(t_ns, f'/{self.ns}/{topic}' if self.ns else f'/{topic}', msgtype,
                              data)

    def _count_policy(self, reason: str) -> None:
        c = self.run.policy_counters
        c[reason] = c.get(reason, 0) + 1

    def _event(self, t_ns: int, reason: str, joint: str, requested: float, allowed: float,
               chunk_stamp_ns: Optional[int], message: str = '') -> None:
        self.run.events.append((t_ns * 1e-9, reason, joint))
        self._out(t_ns, 'safety/events', STATUS,
                  self.msgs.event(reason, joint, requested, allowed, chunk_stamp_ns, message,
                                  'safety_controller'))

    # ------------------------------------------------------------------ input
    def feed(self, rec: Record) -> None:
        """Process one recorded message (and every tick and delivery due before it)."""
        run = self.run
        if self._last_log_ns is not None and rec.t_ns < self._last_log_ns:
            run.skip('log_time_backwards')
            return
        self._last_log_ns = rec.t_ns
        if run.first_ns is None:
            run.first_ns = rec.t_ns
            self._next_tick = rec.t_ns + self._period_ns
        run.last_ns = rec.t_ns
        self._advance(rec.t_ns, inclusive=False)
        self.now_ns = rec.t_ns
        if self.ns and rec.topic.strip('/').startswith(self.ns + '/'):
            run.skip('earlier_replay_output')
            return
        info = self.topic_info.get(rec.topic)
        if self.writer is not None and not self.writer.write(
                rec.t_ns, rec.topic, rec.msgtype, rec.data,
                info.msgdef if info else '', info.digest if info else ''):
            run.skip(f'unknown_type:{rec.msgtype}')
        role = self.roles.get(rec.topic)
        if role is None or rec.msgtype not in typestore().types:
            return
        try:
            msg = typestore().deserialize_cdr(rec.data, rec.msgtype)
        except Exception:  # noqa: B902 - corrupt bytes raise many types; count, go on
            run.skip(f'deserialize_error:{rec.topic}')
            return
        run.read[rec.topic] = run.read.get(rec.topic, 0) + 1
        kind, arg = role
        getattr(self, f'_on_{kind}')(rec, msg, arg)

    def _monotonic(self, topic: str, stamp: int) -> bool:
        last = self._last_stamp.get(topic)
        if last is not None and stamp < last:
            self.run.skip(f'stamp_backwards:{topic}')
            return False
        self._last_stamp[topic] = stamp
        return True

    def _on_camera(self, rec: Record, msg, arg) -> None:
        name, compressed = arg
        stamp = _stamp_ns(msg.header)
        if not self._monotonic(rec.topic, stamp):
            return
        item = CompressedFrame(msg.data, msg.format) if compressed else RawFrame(
            msg.data, msg.height, msg.width, msg.encoding, msg.step, bool(msg.is_bigendian))
        self.assembler.put_frame(name, stamp, item, rec.t_ns * 1e-9)
        previous = self._last_frame_stamp.get(name)
        self._last_frame_stamp[name] = stamp
        if self._schedule is not None:
            if not self._scheduled(stamp, previous):
                return
            self._next_allowed = -math.inf
        self._new_frame = True
        self._maybe_infer(rec.t_ns)

    def _scheduled(self, stamp: int, previous: Optional[int]) -> bool:
        """Whether the recorded run inferred on this frame (a chunk stamp belongs to it).

        Chunk stamps are exact copies of frame stamps; the microsecond of slack above the
        frame's stamp accepts recordings made before stamps were carried exactly.
        """
        hi = stamp + 1000
        lo = stamp - ((stamp - previous) // 2 if previous is not None
                      else _ns(self.assembler.max_skew_s if math.isfinite(
                          self.assembler.max_skew_s) else 0.05))
        i = bisect.bisect_right(self._schedule, lo)
        return i < len(self._schedule) and self._schedule[i] <= hi

    def _on_joint_states(self, rec: Record, msg, arg) -> None:
        stamp = _stamp_ns(msg.header)
        if not self._monotonic(rec.topic, stamp):
            return
        now = rec.t_ns * 1e-9
        try:
            for merge in (self._policy_map, self._safety_map):
                merge.update(msg.name, msg.position, now, stamp, rec.topic)
        except ValueError:          # JointStateError: rejected whole, nothing stored
            self._count_policy('joint_state_rejected')
            self.core.count('joint_state_rejected')
            return
        policy = self._policy_map.merged(now)
        if policy is not None:
            self.assembler.put_state(policy.stamp_ns, policy.positions)
        merged = self._safety_map.merged(now)
        if merged is None:
            return
        self.core.on_state(merged.positions, min(merged.oldest_received_s, now))
        self.run.measured.append((now, merged.positions))
        if self._skew_started is not None:
            self._maybe_infer(rec.t_ns)

    def _on_estop(self, rec: Record, msg, arg) -> None:
        was = self.core.fault
        self.core.on_estop(bool(msg.data), rec.t_ns * 1e-9)
        if self.core.fault != was and self.core.fault:
            self._event(rec.t_ns, self.core.fault, '', float('nan'), float('nan'), None,
                        'e-stop pressed')

    def _on_recorded_commands(self, rec: Record, msg, arg) -> None:
        if self._follow_gate:
            self._last_recorded_cmd = rec.t_ns * 1e-9
            if not self._gate_open:
                self._gate_open = True
                self.core.set_enabled(True)
        q = command_positions(rec.msgtype, msg, self.run.joint_names)
        if q is not None:
            self.run.recorded_commands.append((rec.t_ns * 1e-9, q))

    def _on_recorded_events(self, rec: Record, msg, arg) -> None:
        self.run.recorded_events.append((rec.t_ns * 1e-9, str(msg.name)))

    def _on_recorded_chunks(self, rec: Record, msg, arg) -> None:
        chunk = chunk_positions(msg, self.run.joint_names)
        if chunk is not None:
            self.run.recorded_chunks[chunk[0]] = chunk[1]

    # ------------------------------------------------------------------ policy side
    def _maybe_infer(self, t_ns: int) -> None:
        now = t_ns * 1e-9
        if self._skew_started is None:
            if not self._new_frame:
                return
            if now < self._next_allowed and not (
                    self._trigger == 'remaining'
                    and self.tracker.should_infer(now, self._trigger_remaining_s)):
                self._new_frame = False       # too early: wait for a frame after the period
                return
            started = now
        else:
            started = self._skew_started
        self._new_frame = False
        try:
            obs = self.assembler.take(t_ns)
        except NotReady as exc:
            if exc.waitable and now - started < self._skew_wait_s:
                self._skew_started = started   # wait for the lagging part's next message
                return
            self._skew_started = None
            # As in policy_node: a rejection never uses up the rate window.
            if exc.reason != NO_NEW_FRAME:
                self._count_policy(exc.reason)
            return
        self._skew_started = None
        self._next_allowed = started + 0.9 * self._period_s
        try:
            tensors = self.tensors(obs.frames)
        except FrameError as exc:
            self._count_policy(f'frame_{exc.reason}')
            return
        prefix = None
        if self.contract.prefix is not None:
            targets, delay_steps = self.tracker.prefix(obs.stamp_ns)
            prefix = self.policy.prefix_feeds(targets, delay_steps, obs.state)
        out = self.policy.run(tensors, obs.state, prefix=prefix)
        self.run.inferences += 1
        value = None
        if self.surprise is not None:
            value = self.surprise.update(obs.stamp_s, out.embedding, out.predicted_embedding)
        self._push(t_ns + self.delay_ns, 'chunk', (obs.stamp_ns, out.actions, value))

    def _push(self, t_ns: int, kind: str, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t_ns, self._seq, kind, payload))

    def _deliver_chunk(self, t_ns: int, payload) -> None:
        stamp_ns, actions, surprise = payload
        now = t_ns * 1e-9
        act = self.contract.action
        times_ns = [_ns((k + 1) * act.dt_s) for k in range(len(actions))]
        self._out(t_ns, 'policy/action_chunk', TRAJECTORY,
                  self.msgs.trajectory(act.joint_names, stamp_ns, times_ns, actions))
        self.tracker.on_published(stamp_ns, actions, now)
        self.tracker.on_delay((t_ns - stamp_ns) * 1e-9)
        self.run.chunks.append((now, stamp_ns, self._to_safety_order(act.joint_names, actions)))
        if surprise is not None:
            self._out(t_ns, 'policy/surprise', FLOAT32, self.msgs.float32(surprise))
            self.core.on_surprise(float(np.float32(surprise)), now)
        stamp = stamp_ns * 1e-9      # what the controller reads back from the header
        try:
            self.core.on_chunk(act.joint_names, stamp, [t * 1e-9 for t in times_ns],
                               actions, now, stamp_ns=stamp_ns)
        except ctl.ChunkError as exc:
            if exc.reason != ctl.CHUNK_DISABLED:
                self._event(t_ns, exc.reason, '', float('nan'), float('nan'), stamp_ns,
                            str(exc))

    def _to_safety_order(self, names: Sequence[str], actions: np.ndarray) -> np.ndarray:
        names = list(names)
        if set(names) != set(self.run.joint_names):
            return np.asarray(actions, np.float64)
        return np.asarray(actions, np.float64)[:, [names.index(n) for n in self.run.joint_names]]

    # ------------------------------------------------------------------ safety side
    def _tick(self, t_ns: int) -> None:
        now = t_ns * 1e-9
        if self._gate_open and self._follow_gate and \
                now - self._last_recorded_cmd > self._gate_gap_s:
            self._gate_open = False
            self.core.set_enabled(False)        # the recorded run stopped commanding
        result = self.core.tick(now)
        if result.command is None:
            return
        if self.output_mode == 'forward_command':
            self._out(t_ns, 'commands', FLOAT64_ARRAY, self.msgs.float64_array(result.command))
        else:
            self._out(t_ns, 'joint_trajectory', TRAJECTORY, self.msgs.trajectory(
                self.core.joint_names, 0, [self._period_ns], result.command[None]))
        self.run.commands.append((now, result.command))
        if result.chunk_latency_s is not None:
            self.run.latencies_s.append(result.chunk_latency_s)
        if result.chunk_stamp_ns is not None:
            sched = self.core.scheduler
            self.tracker.on_feedback(result.chunk_stamp_ns, sched.remaining_s(), sched.speed,
                                     now)
        for iv in result.interventions:
            self._event(t_ns, iv.reason, iv.joint, iv.requested, iv.allowed,
                        result.chunk_stamp_ns)

    def _advance(self, t_ns: int, inclusive: bool) -> None:
        while True:
            tick = self._next_tick
            due = self._heap[0][0] if self._heap else None
            if due is not None and (tick is None or due <= tick):
                if due > t_ns or (due == t_ns and not inclusive):
                    return
                _, _, kind, payload = heapq.heappop(self._heap)
                self.now_ns = due
                self._deliver_chunk(due, payload)
                continue
            if tick is None or tick > t_ns or (tick == t_ns and not inclusive):
                return
            self.now_ns = tick
            self._next_tick = tick + self._period_ns
            self._tick(tick)

    def finish(self) -> RunData:
        """Run the ticks and deliveries up to the last message; return the run data."""
        if self.run.last_ns is not None:
            self._advance(self.run.last_ns, inclusive=True)
        self.run.safety_counters = dict(self.core.counters)
        self.tensors.close()
        return self.run
