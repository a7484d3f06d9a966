"""The policy loop: frames, joint states and execution feedback in, action chunks out.

``PolicyRuntime`` is what ``policy_node``, the offline replay and the simulator evaluator
all run. It decides when to infer (the rate window, or earlier when the executing chunk is
about to run out), assembles the observation (latest frame per camera + the joint state
nearest to them, waiting a little for a lagging part), preprocesses the frames, builds the
real-time-chunking prefix, runs the model and the world-model surprise, and says exactly
what the inference ran on (``InferenceInputs``), so that a recorded run can be rerun bit for
bit (``rerun``). Time is always passed in (integer nanoseconds of the driver's clock: the
node's ROS clock, the bag's log time, the simulator's time); the runtime never reads a
clock (``perf`` only times stages for the statistics).

A driver calls ``on_frame`` / ``on_joint_state`` / ``on_execution`` as inputs arrive and
``poll(now_ns)`` when a frame arrived or a wait it was told of ends; ``poll`` returns a
``Poll``: nothing to do, too early (a good moment to ``prepare_arrived``), wait for the
lagging part until ``wait_until_ns``, or a ``PolicyChunk``. After publishing a chunk the
driver calls ``on_published(chunk, now_ns)``.
"""

from dataclasses import dataclass, field
import math
import threading
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import numpy as np

from wam_runtime.core.contract import ModelContract
from wam_runtime.core.image import FrameError, Prepared, TensorBuilder
from wam_runtime.core.inference import OnnxPolicy
from wam_runtime.core.interfaces import execution_fields, InferenceInputs
from wam_runtime.core.joint_states import JointStateError, JointStateMerge
from wam_runtime.core.observation import NO_NEW_FRAME, NotReady, Observation, \
    ObservationAssembler
from wam_runtime.core.policy_config import check_against_contract, PolicyConfig, RATE_WINDOW
from wam_runtime.core.realtime import ExecutionTracker
from wam_runtime.core.stamps import s_to_ns
from wam_runtime.core.stats import RateMeter, RollingStats
from wam_runtime.core.surprise import SurpriseMonitor

# Poll outcomes.
IDLE = 'idle'            # no new frame: nothing to do
EARLY = 'early'          # a new frame inside the rate window: the next one after it infers
WAIT = 'wait'            # a part of the observation lags: poll again at new data or the time
REJECTED = 'rejected'    # no inference this time; the reason was counted
CHUNK = 'chunk'          # an inference ran

# Rejections that mean "no inference this time" rather than "a bad input".
OBSERVATION_REASONS = ('observation_stale', 'observation_skewed', 'observation_from_future')


def surprise_max_gap_s(inference_rate_hz: float, prediction_dt_s: float) -> float:
    """Return the longest gap over which a world-model prediction is still compared (s)."""
    return max(2.5 / inference_rate_hz, 2.5 * prediction_dt_s)


@dataclass
class PolicyChunk:
    """One inference's result: absolute targets (contract action order) and what it ran on."""

    stamp_ns: int                       # the observation's oldest stamp: the chunk's stamp
    joint_names: Sequence[str]
    dt_s: float
    actions: np.ndarray                 # (horizon, joints), float64
    inputs: InferenceInputs
    surprise: Optional[float] = None
    received_s: Optional[float] = None  # receive time of the newest frame (driver's clock)
    taken_s: Optional[float] = None     # when the observation was taken (driver's clock)
    skew_s: float = 0.0
    inference_s: float = 0.0

    @property
    def times_ns(self) -> Sequence[int]:
        """Return each step's time from the stamp (integer ns)."""
        return [s_to_ns((k + 1) * self.dt_s) for k in range(len(self.actions))]


@dataclass
class Poll:
    """What one ``poll`` did."""

    outcome: str
    chunk: Optional[PolicyChunk] = None
    reason: str = ''
    wait_until_ns: Optional[int] = None


@dataclass
class PolicyStats:
    """Rolling statistics of the policy loop (seconds)."""

    preprocess: RollingStats = field(default_factory=lambda: RollingStats(1000))
    arrival_preprocess: RollingStats = field(default_factory=lambda: RollingStats(1000))
    age_at_publish: RollingStats = field(default_factory=lambda: RollingStats(1000))
    skew: RollingStats = field(default_factory=lambda: RollingStats(1000))
    chunk_rate: RateMeter = field(default_factory=RateMeter)


class PolicyRuntime:
    """One policy loop; call its input methods and ``poll`` from the driver's threads.

    The input methods and ``poll`` may run on different threads (counters take a lock, the
    assembler is thread-safe); ``poll``, ``rerun``, ``prepare_arrived`` and
    ``on_published`` must run on one thread.
    """

    def __init__(self, config: PolicyConfig, policy: OnnxPolicy, preprocess_threads: int = 1,
                 perf: Callable[[], float] = time.perf_counter) -> None:
        """Build the loop around a loaded model; raise ConfigError if they do not fit."""
        contract: ModelContract = policy.contract
        check_against_contract(config, contract)
        self.config = config
        self.policy = policy
        self.contract = contract
        self.cameras = [c.name for c in contract.cameras]
        self._perf = perf
        self.tensors = TensorBuilder(contract.cameras, max(1, preprocess_threads),
                                     config.params['fast_jpeg_decode'])
        self.on_arrival = {'arrival': list(self.cameras), 'inference': [],
                           'auto': [n for n in self.cameras
                                    if n not in config.compressed_cameras]
                           }[config.preprocess_on]
        self.assembler = ObservationAssembler(self.cameras, config.max_observation_age_s,
                                              config.max_observation_skew_s)
        # joint_states from any number of publishers, merged per joint; a state is used
        # while every contract joint was heard within max_observation_age_s.
        self.joints = JointStateMerge(contract.state.joint_names, config.max_observation_age_s)
        self._incomplete_since: Optional[float] = None
        act = contract.action
        self.tracker = ExecutionTracker(act.dt_s, act.horizon)
        wm = contract.world_model
        self.surprise = None if wm is None else SurpriseMonitor(
            config.surprise_metric,
            max_gap_s=surprise_max_gap_s(config.inference_rate_hz, wm.prediction_dt_s))
        self.stats = PolicyStats()
        self.counters: Dict[str, int] = {}
        self._lock = threading.Lock()
        self._period_ns = s_to_ns(config.period_s)
        self._window_ns = s_to_ns(RATE_WINDOW * config.period_s)
        self._skew_wait_ns = s_to_ns(config.skew_wait_s)
        self._next_allowed_ns = -math.inf
        self._attempt_started_ns: Optional[int] = None
        self._new_frame = False

    # ------------------------------------------------------------------ inputs
    def count(self, reason: str, n: int = 1) -> None:
        """Add ``n`` to the counter for ``reason``."""
        with self._lock:
            self.counters[reason] = self.counters.get(reason, 0) + n

    def allow_now(self) -> None:
        """Let the next poll infer whatever the rate window (a schedule decides instead)."""
        self._next_allowed_ns = -math.inf

    def on_frame(self, camera: str, stamp_ns: int, item: Any, now_ns: int) -> None:
        """Take a camera frame (an image item of ``core.image``) stamped ``stamp_ns``."""
        self.assembler.put_frame(camera, stamp_ns, item, now_ns * 1e-9)
        self._new_frame = True

    def on_joint_state(self, names: Sequence[str], positions: Sequence[float], stamp_ns: int,
                       now_ns: int, source: str = '') -> bool:
        """Merge a joint_states message; return whether a complete state was stored.

        A bad message is counted (``joint_state_rejected``) and raises JointStateError.
        """
        now = now_ns * 1e-9
        try:
            self.joints.update(names, positions, now, stamp_ns, source)
        except JointStateError:
            self.count('joint_state_rejected')
            raise
        merged = self.joints.merged(now)
        if merged is None:
            if self._incomplete_since is None:
                self._incomplete_since = now
            return False
        self._incomplete_since = None
        # Stamped with its oldest joint's stamp: an observation is as old as its oldest part.
        self.assembler.put_state(merged.stamp_ns, merged.positions)
        return True

    def incomplete_for_s(self, now_ns: int) -> float:
        """Return for how long joint_states have been incomplete (0 while complete)."""
        since = self._incomplete_since
        return 0.0 if since is None else max(0.0, now_ns * 1e-9 - since)

    def on_execution(self, labels: Sequence[str], data: Sequence[float], now_ns: int) -> bool:
        """Take ``safety/execution`` feedback; count and drop it when malformed."""
        fields = execution_fields(labels, data)
        if fields is None:
            self.count('execution_feedback_rejected')
            return False
        self.tracker.on_feedback(fields['chunk_stamp_ns'], fields['remaining_s'],
                                 fields['playback_speed'], now_ns * 1e-9)
        return True

    # ------------------------------------------------------------------ the loop
    def poll(self, now_ns: int) -> Poll:
        """Infer now if it is time and an observation is ready; say what happened."""
        started = self._attempt_started_ns
        if started is None:
            if not self._new_frame:
                return Poll(IDLE)
            cfg = self.config
            if now_ns < self._next_allowed_ns and not (
                    cfg.inference_trigger == 'remaining'
                    and self.tracker.should_infer(now_ns * 1e-9, cfg.trigger_remaining_s)):
                self._new_frame = False      # too early: the first frame after it infers
                return Poll(EARLY)
            started = now_ns
        self._new_frame = False
        try:
            obs = self.assembler.take(now_ns)
        except NotReady as exc:
            if exc.waitable and now_ns - started < self._skew_wait_ns:
                self._attempt_started_ns = started     # the lagging part may come
                return Poll(WAIT, wait_until_ns=started + self._skew_wait_ns)
            self._attempt_started_ns = None
            if exc.reason == NO_NEW_FRAME:
                return Poll(IDLE)
            # A rejection never uses up the rate window.
            self.count(exc.reason)
            return Poll(REJECTED, reason=exc.reason)
        self._attempt_started_ns = None
        return self._infer(obs, started, now_ns)

    def _infer(self, obs: Observation, started_ns: int, now_ns: int) -> Poll:
        t0 = self._perf()
        try:
            tensors = self.tensors(obs.frames)
        except FrameError as exc:
            reason = f'frame_{exc.reason}'
            self.count(reason)
            return Poll(REJECTED, reason=f'{reason}: {exc}')
        self.stats.preprocess.add(self._perf() - t0)
        # An inference that starts uses up the rate window, also if the model then fails.
        self._next_allowed_ns = started_ns + self._window_ns
        targets, delay = (None, 0) if self.contract.prefix is None else \
            self.tracker.prefix(obs.stamp_ns)
        inputs = InferenceInputs(obs.stamp_ns, dict(obs.frame_stamps_ns), obs.state_stamp_ns,
                                 np.asarray(obs.state, np.float64).copy(), targets, delay)
        chunk = self._run(tensors, inputs)
        chunk.received_s = obs.received_s
        chunk.taken_s = now_ns * 1e-9
        chunk.skew_s = obs.skew_s
        return Poll(CHUNK, chunk=chunk)

    def _run(self, tensors: Mapping[str, np.ndarray], inputs: InferenceInputs) -> PolicyChunk:
        prefix = None
        if self.contract.prefix is not None:
            prefix = self.policy.prefix_feeds(inputs.prefix_targets, inputs.prefix_delay_steps,
                                              inputs.state)
        out = self.policy.run(tensors, inputs.state, prefix=prefix)
        value = None
        if self.surprise is not None:
            value = self.surprise.update(inputs.chunk_stamp_ns * 1e-9, out.embedding,
                                         out.predicted_embedding)
        act = self.contract.action
        return PolicyChunk(inputs.chunk_stamp_ns, act.joint_names, act.dt_s, out.actions,
                           inputs, value, inference_s=out.inference_s)

    def rerun(self, inputs: InferenceInputs, frames: Mapping[str, Any]) -> PolicyChunk:
        """Run one inference on exactly the recorded inputs (the frames they name).

        The prefix is the recorded one; when the prefix this runtime would have built
        differs from it, ``prefix_differs`` is counted (the replay's execution history
        drifted from the robot's), but the recorded prefix is used, so the chunk is the
        recorded one bit for bit. Raises FrameError for a frame that cannot be used.
        """
        if self.contract.prefix is not None:
            targets, delay = self.tracker.prefix(inputs.chunk_stamp_ns)
            same = delay == inputs.prefix_delay_steps and (
                (targets is None and inputs.prefix_targets is None)
                or (targets is not None and inputs.prefix_targets is not None
                    and np.array_equal(targets, inputs.prefix_targets)))
            if not same:
                self.count('prefix_differs')
        tensors = self.tensors({c: frames[c] for c in self.cameras})
        return self._run(tensors, inputs)

    def prepare_arrived(self) -> None:
        """Turn the latest raw frame of every on-arrival camera into its model tensor."""
        for camera in self.on_arrival:
            item = self.assembler.latest_item(camera)
            if item is None or isinstance(item, Prepared):
                continue
            t0 = self._perf()
            try:
                prepared = self.tensors.pipelines[camera].prepare(item)
            except FrameError:
                continue          # counted when an inference uses the frame
            self.assembler.replace_item(camera, item, prepared)
            self.stats.arrival_preprocess.add(self._perf() - t0)

    def on_published(self, chunk: PolicyChunk, now_ns: int) -> None:
        """Record that ``chunk`` was published (delivered) at ``now_ns``."""
        now = now_ns * 1e-9
        self.tracker.on_published(chunk.stamp_ns, chunk.actions, now)
        age = (now_ns - chunk.stamp_ns) * 1e-9
        self.tracker.on_delay(age)
        self.stats.age_at_publish.add(age)
        self.stats.skew.add(chunk.skew_s)
        self.stats.chunk_rate.tick(now)

    def snapshot_counters(self) -> Dict[str, int]:
        """Return a copy of the counters."""
        with self._lock:
            return dict(self.counters)

    def close(self) -> None:
        """Stop the preprocessing threads."""
        self.tensors.close()
