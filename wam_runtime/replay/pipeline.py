"""Offline replay: the robot's own policy and safety runtimes, driven by a bag clock.

``ReplayPipeline`` runs ``core.policy_runtime.PolicyRuntime`` and
``core.safety_runtime.SafetyRuntime`` — the objects ``policy_node`` and
``safety_controller`` run — and keeps only what a replay adds: the bag clock and the order
of deliveries. Every message is handed in at its log time (the recorder's receive time, the
clock the header stamps were taken on), the safety runtime ticks every control period of
that clock, a chunk reaches it ``inference_delay_s`` after its inference started, and a
wait for a lagging part of an observation ends when the runtime said it would. Nothing
reads the wall clock, so a replay is a pure function of the bag, the model and the
configuration.

Inference schedule: ``rate`` lets the policy runtime decide when to infer, as the node does.
``recorded`` reruns every recorded inference on exactly what it ran on
(``policy/inference_inputs``: the frames by stamp, the joint state, the prefix), as soon as
the bag has delivered those frames, and hands the chunk to the safety runtime when the
robot's controller adopted it (``safety/execution`` carries that time; from older bags:
within the period before the robot's first tick on it, else when the recording logged
the chunk): every recorded chunk is reproduced bit for bit and taken up when the robot
took it up. A bag recorded before the inputs were published falls back to inferring on the
frames whose stamps the recorded chunks carry.

Gate: ``open`` enables the safety runtime from the start; ``recorded`` opens it when the
recorded run's gated commands start and closes it (controlled stop) when they stop for
``gate_gap_s``, so that the replay commands the robot when the recorded run did.

Ticks: every control period of the bag clock, or (with the recorded gate, ``--ticks
recorded``) at the robot's own tick times (``topics.recorded_ticks``: the times
``safety/execution`` carries, else the recorded commands' log times): one replay tick per
tick of the robot, on its own jittered schedule, each compared with the command it sent.
"""

import bisect
from collections import OrderedDict
import heapq
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from wam_runtime.bag import BagWriter, Record, TopicInfo, typestore
from wam_runtime.core.image import CompressedFrame, FrameError, RawFrame
from wam_runtime.core.inference import OnnxPolicy
from wam_runtime.core.interfaces import (
    ACTION_CHUNK, COMMANDS, Event, EVENTS, execution_fields, EXECUTION_LABELS, FLOAT32,
    FLOAT64_ARRAY, INFERENCE_INPUTS, InferenceInputs, JOINT_TRAJECTORY, STATUS, SURPRISE,
    TRAJECTORY)
from wam_runtime.core.joint_states import JointStateError
from wam_runtime.core.policy_config import PolicyConfig
from wam_runtime.core.policy_runtime import CHUNK, PolicyChunk, PolicyRuntime, WAIT
from wam_runtime.core.safety_config import SafetySetup
from wam_runtime.core.safety_runtime import Reaction, SafetyRuntime
from wam_runtime.core.stamps import s_to_ns, to_ns
from wam_runtime.replay.messages import Messages
from wam_runtime.replay.rundata import RunData
from wam_runtime.replay.topics import chunk_positions, command_positions, InputTopics, \
    RecordedInference

FRAMES_KEPT = 64          # per camera, for reruns on recorded inputs
HARDWARE_ID = 'safety_controller'


class ReplayPipeline:
    """Feed records in log-time order; ticks, waits and deliveries happen in between."""

    def __init__(self, policy: OnnxPolicy, config: PolicyConfig, safety: SafetySetup,
                 inputs: InputTopics, writer: Optional[BagWriter],
                 inference_delay_s: float = 0.01, namespace: str = 'replay',
                 topic_info: Optional[Mapping[str, TopicInfo]] = None,
                 recorded: Optional[Mapping[int, RecordedInference]] = None,
                 gate_follows_recording: bool = False, gate_gap_s: float = 0.1,
                 tick_schedule_ns: Optional[Sequence[int]] = None) -> None:
        """Build both runtimes from validated parameters.

        ``recorded`` (the recorded chunks by stamp, ``topics.recorded_inferences``) selects
        the ``recorded`` inference schedule; ``gate_follows_recording`` the ``recorded``
        gate; ``tick_schedule_ns`` (with it; ``topics.recorded_ticks``) ticks at the recorded
        run's tick times instead of every control period.
        """
        if tick_schedule_ns is not None and not gate_follows_recording:
            raise ValueError('tick_schedule_ns needs gate_follows_recording')
        self.policy_rt = PolicyRuntime(config, policy, 1)
        self.contract = policy.contract
        self.safety_rt = SafetyRuntime(safety, enabled=not gate_follows_recording)
        self.core = self.safety_rt.controller
        self.output_mode = safety.params['output_mode']
        self._period_ns = s_to_ns(safety.config.control_period_s)
        self.delay_ns = s_to_ns(inference_delay_s)
        self._follow_gate = gate_follows_recording
        self._schedule = sorted(tick_schedule_ns) if tick_schedule_ns is not None else None
        self._schedule_i = 0
        self._gate_gap_s = gate_gap_s
        self._last_recorded_cmd = -math.inf
        self._gate_open = not gate_follows_recording
        self._next_tick: Optional[int] = None
        self._heap: List[Tuple[int, int, str, Any]] = []
        self._seq = 0
        self._waiting = False
        # The recorded schedule: reruns on recorded inputs, or (older bags) frame stamps.
        self._recorded = dict(recorded) if recorded is not None else None
        self._by_frame: Dict[Tuple[str, int], List[int]] = {}
        self._reran = set()
        self._stamps: Optional[List[int]] = None
        if self._recorded is not None:
            for stamp, entry in self._recorded.items():
                if entry.inputs is not None:
                    for cam, frame in entry.inputs.frame_stamps_ns.items():
                        self._by_frame.setdefault((cam, frame), []).append(stamp)
            if not self._by_frame:
                self._stamps = sorted(self._recorded)
        self.reruns = bool(self._by_frame)       # the recording has the inference inputs
        self._frames: Dict[str, 'OrderedDict[int, Any]'] = {}
        self._last_frame_stamp: Dict[str, int] = {}
        self._first_frame_stamp: Dict[str, int] = {}
        self.inputs = inputs
        self.roles = inputs.role()
        self.writer = writer
        self.ns = namespace.strip('/')
        self.topic_info = dict(topic_info or {})
        self.msgs = Messages()
        lim = safety.config.limits
        self.run = RunData(list(self.core.joint_names), lim.lower.copy(), lim.upper.copy(),
                           dt_s=self.contract.action.dt_s)
        self._last_log_ns: Optional[int] = None
        self._last_stamp: Dict[Tuple[str, Any], int] = {}
        self.now_ns = 0

    # ------------------------------------------------------------------ output
    def _out(self, t_ns: int, topic: str, msgtype: str, data: bytes) -> None:
        if self.writer is not None:
            self.writer.write(t_ns, f'/{self.ns}/{topic}' if self.ns else f'/{topic}', msgtype,
                              data)

    def _react(self, t_ns: int, reaction: Reaction) -> None:
        for event in reaction.events:
            self._event(t_ns, event)

    def _event(self, t_ns: int, event: Event) -> None:
        self.run.events.append((t_ns * 1e-9, event.name, dict(event.values).get('joint', '')))
        self._out(t_ns, EVENTS, STATUS, self.msgs.event(event, HARDWARE_ID))

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
            self._next_tick = self._following_tick(rec.t_ns)
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

    def _monotonic(self, topic: str, stamp: int, stream: Any = None) -> bool:
        """Whether ``stamp`` does not go back on its stream (a topic, or a part of one)."""
        key = (topic, stream)
        last = self._last_stamp.get(key)
        if last is not None and stamp < last:
            self.run.skip(f'stamp_backwards:{topic}')
            return False
        self._last_stamp[key] = stamp
        return True

    def _on_camera(self, rec: Record, msg, arg) -> None:
        name, compressed = arg
        stamp = to_ns(msg.header.stamp.sec, msg.header.stamp.nanosec)
        if not self._monotonic(rec.topic, stamp):
            return
        item = CompressedFrame(msg.data, msg.format) if compressed else RawFrame(
            msg.data, msg.height, msg.width, msg.encoding, msg.step, bool(msg.is_bigendian))
        self.policy_rt.on_frame(name, stamp, item, rec.t_ns)
        previous = self._last_frame_stamp.get(name)
        self._last_frame_stamp[name] = stamp
        self._first_frame_stamp.setdefault(name, stamp)
        if self.reruns:
            kept = self._frames.setdefault(name, OrderedDict())
            kept[stamp] = item
            while len(kept) > FRAMES_KEPT:
                kept.popitem(last=False)
            for chunk_stamp in self._by_frame.pop((name, stamp), []):
                self._rerun(rec.t_ns, self._recorded[chunk_stamp])
            return
        if self._stamps is not None and not self._scheduled(stamp, previous):
            return
        self._poll(rec.t_ns, force=self._stamps is not None)

    def _scheduled(self, stamp: int, previous: Optional[int]) -> bool:
        """Whether a recorded chunk carries this frame's stamp (bags without inputs)."""
        skew = self.policy_rt.config.max_observation_skew_s
        lo = stamp - ((stamp - previous) // 2 if previous is not None
                      else s_to_ns(skew if math.isfinite(skew) else 0.05))
        i = bisect.bisect_right(self._stamps, lo)
        return i < len(self._stamps) and self._stamps[i] <= stamp + 1000

    def _on_joint_states(self, rec: Record, msg, arg) -> None:
        stamp = to_ns(msg.header.stamp.sec, msg.header.stamp.nanosec)
        names, positions = list(msg.name), msg.position
        # Several drivers may share the topic (an arm and a gripper): each set of joint
        # names is a stream of its own, whose stamps interleave with the others'.
        if not self._monotonic(rec.topic, stamp, tuple(names)):
            return
        try:
            self.policy_rt.on_joint_state(names, positions, stamp, rec.t_ns, rec.topic)
        except JointStateError:
            pass                   # counted by the runtime, like the node
        try:
            full = self.safety_rt.on_joint_state(names, positions, stamp, rec.t_ns, rec.topic)
        except JointStateError:
            return
        if full:
            merged = self.safety_rt.joints.merged(rec.t_ns * 1e-9)
            self.run.measured.append((rec.t_ns * 1e-9, merged.positions))
        if self._waiting:
            self._poll(rec.t_ns)

    def _on_estop(self, rec: Record, msg, arg) -> None:
        self._react(rec.t_ns, self.safety_rt.on_estop(bool(msg.data), rec.t_ns))

    def _on_recorded_commands(self, rec: Record, msg, arg) -> None:
        if self._follow_gate:
            self._open_gate(rec.t_ns)
        q = command_positions(rec.msgtype, msg, self.run.joint_names)
        if q is not None:
            self.run.recorded_commands.append((rec.t_ns * 1e-9, q))

    def _open_gate(self, t_ns: int) -> None:
        """Follow the recorded gate: open (if closed) and note that it was open at ``t_ns``."""
        self._last_recorded_cmd = max(self._last_recorded_cmd, t_ns * 1e-9)
        if not self._gate_open:
            self._gate_open = True
            self.core.set_enabled(True)

    def _on_recorded_events(self, rec: Record, msg, arg) -> None:
        self.run.recorded_events.append((rec.t_ns * 1e-9, str(msg.name)))

    def _on_recorded_execution(self, rec: Record, msg, arg) -> None:
        fields = execution_fields([str(d.label) for d in msg.layout.dim], list(msg.data))
        if fields is not None:
            self.run.recorded_executed.add(fields['chunk_stamp_ns'])

    def _on_recorded_chunks(self, rec: Record, msg, arg) -> None:
        chunk = chunk_positions(msg, self.run.joint_names)
        if chunk is not None:
            self.run.recorded_chunks[chunk[0]] = chunk[1]

    # ------------------------------------------------------------------ policy side
    def _poll(self, t_ns: int, force: bool = False) -> None:
        if force:
            self.policy_rt.allow_now()       # the recorded run inferred on this frame
        step = self.policy_rt.poll(t_ns)
        self._waiting = step.outcome == WAIT
        if self._waiting:
            self._push(step.wait_until_ns, 'poll', None)
        elif step.outcome == CHUNK:
            self.run.inferences += 1
            self._push(t_ns + self.delay_ns, 'chunk', step.chunk)

    def _rerun(self, t_ns: int, entry: RecordedInference) -> None:
        inputs: InferenceInputs = entry.inputs
        frames = {cam: self._frames.get(cam, {}).get(stamp)
                  for cam, stamp in inputs.frame_stamps_ns.items()}
        if any(item is None for item in frames.values()):
            return          # the last of its frames to arrive reruns it
        self._reran.add(inputs.chunk_stamp_ns)
        try:
            chunk = self.policy_rt.rerun(inputs, frames)
        except FrameError as exc:
            self.policy_rt.count(f'frame_{exc.reason}')
            return
        self.run.inferences += 1
        self.run.reran += 1
        at = entry.logged_ns
        if entry.adopted_ns is not None:
            at = entry.adopted_ns             # when the robot's controller adopted it
        elif entry.first_tick_ns is not None:
            # The robot's controller first ran it on that tick: handed in within the period
            # before it (at the recorder's receive time where that lies there).
            at = min(max(at, entry.first_tick_ns - self._period_ns + 1), entry.first_tick_ns - 1)
        elif entry.first_executed_ns is not None:
            # Feedback without tick times: the replay tick nearest to the one whose feedback
            # was logged then is the first to run it.
            at = entry.first_executed_ns - self._period_ns // 2
        self._push(max(at, t_ns), 'adopted' if entry.adopted_ns is not None else 'chunk', chunk)

    def _push(self, t_ns: int, kind: str, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t_ns, self._seq, kind, payload))

    def _deliver(self, t_ns: int, chunk: PolicyChunk) -> None:
        times_ns = chunk.times_ns
        self._out(t_ns, ACTION_CHUNK, TRAJECTORY, self.msgs.trajectory(
            chunk.joint_names, chunk.stamp_ns, times_ns, chunk.actions))
        self._out(t_ns, INFERENCE_INPUTS, FLOAT64_ARRAY,
                  self.msgs.inference_inputs(chunk.inputs))
        self.policy_rt.on_published(chunk, t_ns)
        names = list(chunk.joint_names)
        order = [names.index(n) for n in self.run.joint_names] \
            if set(names) == set(self.run.joint_names) else slice(None)
        self.run.chunks.append((t_ns * 1e-9, chunk.stamp_ns,
                                np.asarray(chunk.actions, np.float64)[:, order]))
        if chunk.surprise is not None:
            self._out(t_ns, SURPRISE, FLOAT32, self.msgs.float32(chunk.surprise))
            self.safety_rt.on_surprise(float(np.float32(chunk.surprise)), t_ns)
        # What the controller reads back from the header: the exact stamp and step times.
        self._react(t_ns, self.safety_rt.on_chunk(
            names, chunk.stamp_ns, [t * 1e-9 for t in times_ns], chunk.actions, t_ns))

    # ------------------------------------------------------------------ safety side
    def _tick(self, t_ns: int) -> None:
        if self._gate_open and self._follow_gate and \
                t_ns * 1e-9 - self._last_recorded_cmd > self._gate_gap_s:
            self._gate_open = False
            self.core.set_enabled(False)        # the recorded run stopped commanding
        tick = self.safety_rt.tick(t_ns)
        if tick.command is None:
            return
        if self.output_mode == 'forward_command':
            self._out(t_ns, COMMANDS, FLOAT64_ARRAY, self.msgs.float64_array(tick.command))
        else:
            self._out(t_ns, JOINT_TRAJECTORY, TRAJECTORY, self.msgs.trajectory(
                self.core.joint_names, 0, [self._period_ns], tick.command[None]))
        self.run.commands.append((t_ns * 1e-9, tick.command))
        if tick.chunk_latency_s is not None:
            self.run.latencies_s.append(tick.chunk_latency_s)
        if tick.execution is not None:
            self.policy_rt.on_execution(EXECUTION_LABELS, tick.execution, t_ns)
        self._react(t_ns, tick)

    def _following_tick(self, t_ns: int) -> Optional[int]:
        """Return the first tick after ``t_ns``: the next recorded one, or a period on."""
        if self._schedule is None:
            return t_ns + self._period_ns
        i = bisect.bisect_right(self._schedule, t_ns, self._schedule_i)
        self._schedule_i = i
        return self._schedule[i] if i < len(self._schedule) else None

    def _advance(self, t_ns: int, inclusive: bool) -> None:
        while True:
            tick = self._next_tick
            due = self._heap[0][0] if self._heap else None
            if due is not None and (tick is None or due <= tick):
                if due > t_ns or (due == t_ns and not inclusive):
                    return
                _, _, kind, payload = heapq.heappop(self._heap)
                self.now_ns = due
                if kind == 'adopted' and self._follow_gate and not self._gate_open:
                    # The robot adopted this chunk, so its gate was open by then.
                    self._open_gate(due)
                if kind in ('chunk', 'adopted'):
                    self._deliver(due, payload)
                elif self._waiting:
                    self._poll(due)              # the wait for a lagging part ends
                continue
            if tick is None or tick > t_ns or (tick == t_ns and not inclusive):
                return
            self.now_ns = tick
            self._next_tick = self._following_tick(tick)
            self._tick(tick)

    def finish(self) -> RunData:
        """Run the ticks and deliveries up to the last message; return the run data."""
        if self.run.last_ns is not None:
            self._advance(self.run.last_ns, inclusive=True)
        if self.reruns:
            for stamp, entry in self._recorded.items():
                if entry.inputs is None or stamp in self._reran:
                    continue
                # A frame the bag cannot hold (stamped before the recording's first frame
                # of that camera: the recorder had not yet matched the camera), or one lost.
                early = any(frame < self._first_frame_stamp.get(cam, frame + 1)
                            for cam, frame in entry.inputs.frame_stamps_ns.items())
                self.policy_rt.count('recorded_inference_before_recording' if early
                                     else 'recorded_inference_not_rerun')
        self.run.policy_counters = self.policy_rt.snapshot_counters()
        self.run.safety_counters = dict(self.core.counters)
        self.policy_rt.close()
        return self.run
