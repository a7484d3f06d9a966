"""The safety controller's logic: chunk intake, time-based sampling, watchdogs, stops, gate.

``SafetyController`` is driven by ``on_state`` (measured joint positions), ``on_chunk`` (an
action chunk), ``on_estop`` and ``tick`` (once per control period). It fails closed:

- disabled, it commands nothing; enabled, it starts from the measured position;
- before the first measured state it commands nothing;
- at the end of the chunk's coverage (``chunk_exhausted``; still stopped
  ``command_timeout_s`` later without a new chunk: ``command_timeout``), without joint
  states for ``state_timeout_s``, or when the step due is older than ``max_chunk_age_s``
  (``execution_late``), it makes a controlled stop (the gate's jerk-limited stop) and
  holds; the playback clock does not run while stopped, and the next chunk brings it up to
  its first step (``core.scheduler``);
- an e-stop, a measured drift while holding (monitored standstill), a joint that does not
  follow its commands (``following_error``, core.following) or too many interventions
  within a window latch a fault: it stops and holds until the cause is gone and ``reset``
  is called.

Every command leaves through ``gate_step``. The e-stop, escalation and standstill rules are
in ``core.controller_monitors``, the chunk checks in ``core.chunks``.
"""

from dataclasses import replace
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from wam_runtime.core.chunks import (  # noqa: F401 (the chunk reasons: public here too)
    check_age, check_chunk, check_points, Chunk, CHUNK_BACKLOG, CHUNK_DISABLED, CHUNK_EMPTY,
    CHUNK_FUTURE, CHUNK_JOINTS, CHUNK_LIMITS, CHUNK_NON_FINITE, CHUNK_SHAPE, CHUNK_STALE,
    CHUNK_START_FAR, CHUNK_TIME, CHUNK_TOO_LARGE, CHUNK_WORKSPACE, ChunkError, make_chunk,
    validate_chunk)
from wam_runtime.core.controller_config import (  # noqa: F401 (public here too)
    CHUNK_EXHAUSTED, CLOCK_JUMP_BACK, COMMAND_TIMEOUT, ControllerConfig, DISABLING, ESCALATION,
    ESTOP, ESTOP_HEARTBEAT, EXECUTION_LATE, FOLLOWING_ERROR, LATCHING, MODE_DISABLED,
    MODE_FAULT, MODE_HOLDING, MODE_STOPPING, MODE_TRACKING, MODE_WAITING, STANDSTILL,
    STATE_TIMEOUT, SURPRISE_STOP, TickResult)
from wam_runtime.core.controller_monitors import EscalationWindow, EstopMonitor, marker, \
    StandstillMonitor
from wam_runtime.core.following import FollowingFault, FollowingMonitor
from wam_runtime.core.gate import gate_step, GateState, Intervention, unwrap_near
from wam_runtime.core.scheduler import ChunkReport, ChunkScheduler
from wam_runtime.core.surprise import SurpriseGovernor


class SafetyController:
    """Fail-closed chunk executor: measured state + chunks in, gated commands out."""

    def __init__(self, config: ControllerConfig, enabled: bool = True,
                 governor: Optional[SurpriseGovernor] = None) -> None:
        """Start with no state, no chunk and no previous command.

        ``governor`` (optional) turns world-model surprise into a playback speed limit.
        """
        self.config = config
        self.governor = governor
        self._surprise_reason = 'nominal'
        self.enabled = enabled
        self.joint_names = config.limits.joint_names
        self._state: Optional[np.ndarray] = None
        self._state_time = -np.inf
        self._chunk: Optional[Chunk] = None       # the newest accepted chunk
        self._exhausted_since: Optional[float] = None
        # A step due longer ago than max_chunk_age_s is never executed.
        self.scheduler = ChunkScheduler(replace(
            config.scheduler, max_lag_s=min(config.scheduler.max_lag_s,
                                            config.max_chunk_age_s)))
        self.last_report: Optional[ChunkReport] = None
        self._gate: Optional[GateState] = None
        self._last_tick: Optional[float] = None
        self._new_chunk = False
        self._stop_reason: Optional[str] = None
        self._standstill = StandstillMonitor()
        self._fault: Optional[str] = None
        self._estop = EstopMonitor()
        self._escalation = EscalationWindow()
        self._disable_requested = False
        self._surprise_stop = False
        self.counters: Dict[str, int] = {}
        self.following = FollowingMonitor(
            config.max_following_error_rad, config.following_error_timeout_s,
            config.following_error_delay_s, config.control_period_s, len(self.joint_names),
            config.limits.continuous)
        self.following_fault: Optional[FollowingFault] = None

    # ------------------------------------------------------------------ bookkeeping
    def count(self, reason: str, n: int = 1) -> None:
        """Add ``n`` to the counter for ``reason``."""
        self.counters[reason] = self.counters.get(reason, 0) + n

    @property
    def last_command(self) -> Optional[np.ndarray]:
        """The last command published (None before the first)."""
        return None if self._gate is None else self._gate.position.copy()

    @property
    def gate_state(self) -> Optional[GateState]:
        """Position, velocity and acceleration of the command stream."""
        return self._gate

    @property
    def fault(self) -> Optional[str]:
        """The latched fault, if any."""
        return self._fault

    @property
    def stop_reason(self) -> Optional[str]:
        """Why the controller is stopping or holding (None while tracking)."""
        return self._stop_reason

    # ------------------------------------------------------------------ inputs
    def set_enabled(self, enabled: bool) -> None:
        """Open or close the gate.

        Enabling starts from the measured position, never from an earlier target or chunk.
        Disabling first makes a controlled stop; the gate closes once the arm holds.
        """
        if enabled:
            if not self.enabled or self._disable_requested:
                self._gate = None
                self._chunk = None
                self.scheduler.clear()
                self._stop_reason = None
                self._new_chunk = False
                self._escalation.clear()
            self._disable_requested = False
            self.enabled = True
        elif self.enabled:
            if self._gate is None:
                self.enabled = False
            else:
                self._disable_requested = True

    def on_surprise(self, surprise: float, now_s: float) -> None:
        """Record a world-model surprise value (ignored without a governor)."""
        if self.governor is not None:
            self.governor.update(float(surprise), now_s)

    def set_speed_limit(self, scale: float, reason: str = '') -> None:
        """Limit playback speed to ``scale`` in [0, 1]; 0 makes a controlled stop.

        The world-model monitor uses this: slow down when the model is surprised, stop when
        it is very surprised; tracking resumes when the scale rises again.
        """
        scale = float(scale) if np.isfinite(scale) else 0.0
        self.scheduler.speed_cap = min(1.0, max(0.0, scale))
        self._surprise_stop = scale <= 0.0

    def on_state(self, positions: np.ndarray, now_s: float) -> None:
        """Record measured positions in the controller's joint order.

        Continuous joints may be reported wrapped at +-pi: they are taken by whole turns
        nearest the last command (or the last measurement), never as a jump of 2 pi.
        """
        q = np.asarray(positions, dtype=np.float64).copy()
        ref = self._gate.position if self._gate is not None else self._state
        if ref is not None:
            q = unwrap_near(q, ref, self.config.limits.continuous)
        self._state = q
        self._state_time = now_s

    def on_estop(self, pressed: bool, now_s: float) -> None:
        """Record an e-stop message; pressing latches a fault."""
        self._estop.on_message(pressed, now_s)
        if pressed:
            self._latch(ESTOP)

    def reset(self) -> Tuple[bool, str]:
        """Clear a latched fault if its cause is gone; return (done, message)."""
        if self._fault is None:
            return True, 'no fault latched'
        refusal = self._estop.reset_refusal(self._fault == ESTOP_HEARTBEAT)
        if refusal is not None:
            return False, refusal
        old, self._fault = self._fault, None
        self._escalation.clear()
        self._chunk = None   # never resume a chunk from before the fault
        self.scheduler.clear()
        return True, f'cleared {old}'

    def _latch(self, reason: str) -> None:
        if self._fault is None:
            self._fault = reason
            self.count(reason)

    def on_chunk(self, joint_names: Sequence[str], stamp_s: float,
                 time_from_start_s: Sequence[float], positions: Sequence[Sequence[float]],
                 now_s: float, stamp_ns: Optional[int] = None) -> Chunk:
        """Validate and adopt a chunk; raise ChunkError (and count it) on rejection.

        ``stamp_ns`` is the exact header stamp in integer nanoseconds (by default
        ``stamp_s`` rounded); it is what ``TickResult.chunk_stamp_ns`` reports.
        """
        try:
            chunk = self.prepare_chunk(joint_names, stamp_s, time_from_start_s, positions,
                                       now_s, stamp_ns)
            return self.adopt_chunk(chunk, now_s)
        except ChunkError as exc:
            self.reject(exc, now_s)
            raise

    def reject(self, error: ChunkError, now_s: float) -> None:
        """Count a rejected chunk, towards escalation too (a closed gate counts nothing)."""
        if error.reason != CHUNK_DISABLED:
            self.count(error.reason)
            self._note_intervention(now_s)

    def adopt_chunk(self, chunk: Chunk, now_s: float) -> Chunk:
        """Adopt a chunk from ``prepare_chunk``; raise ChunkError (not counted) if refused.

        Quick (the expensive checks are in ``prepare_chunk``): call it under the lock that
        serialises the controller's inputs and ticks.
        """
        if not self.enabled or self._disable_requested:
            raise ChunkError(CHUNK_DISABLED, 'the gate is disabled')
        if self._chunk is not None and chunk.stamp_s < self._chunk.stamp_s:
            raise ChunkError(CHUNK_STALE, 'older than the chunk being executed')
        check_age(chunk.stamp_s, now_s, self.config.max_chunk_age_s)   # again: time passed
        current = self._gate.position if self._gate is not None else self._state
        self.last_report = self.scheduler.add(chunk.stamp_s, chunk.times_s, chunk.positions,
                                              now_s, current=current)
        self._chunk = chunk
        self._exhausted_since = None
        self._new_chunk = True
        return chunk

    def prepare_chunk(self, joint_names: Sequence[str], stamp_s: float,
                      time_from_start_s: Sequence[float],
                      positions: Sequence[Sequence[float]], now_s: float,
                      stamp_ns: Optional[int] = None) -> Chunk:
        """Validate a chunk against the limits and the workspace; raise ChunkError.

        Does not change the controller and may run on another thread than ``tick`` (it
        reads the last measured state only); ``adopt_chunk`` then takes it.
        """
        if not self.enabled or self._disable_requested:
            raise ChunkError(CHUNK_DISABLED, 'the gate is disabled')
        state, gate = self._state, self._gate
        return validate_chunk(joint_names, stamp_s, time_from_start_s, positions, now_s,
                              self.config, self.joint_names, state,
                              gate.position if gate is not None else state, stamp_ns)

    def _note_intervention(self, now_s: float) -> None:
        cfg = self.config
        if self._escalation.note(now_s, cfg.escalation_max_interventions,
                                 cfg.escalation_window_s):
            self._latch(ESCALATION)

    # ------------------------------------------------------------------ control tick
    def _watchdogs(self, now_s: float) -> Optional[str]:
        cfg = self.config
        if self._estop.heartbeat_lost(now_s, cfg.estop_timeout_s):
            self._latch(ESTOP_HEARTBEAT)
        if self._fault is not None:
            return self._fault
        if self._disable_requested:
            return DISABLING
        if self._surprise_stop:
            return SURPRISE_STOP
        if now_s - self._state_time > cfg.state_timeout_s:
            return STATE_TIMEOUT
        if self._chunk is None:
            return None
        # The chunk ran out: stopped (the clock holds) until a new chunk comes. Heavy
        # policies: the command timeout counts from the end of the chunk's coverage.
        if self._exhausted_since is not None:
            if now_s - self._exhausted_since > cfg.command_timeout_s:
                return COMMAND_TIMEOUT
            return CHUNK_EXHAUSTED
        return None

    def tick(self, now_s: float) -> TickResult:
        """Compute the command for this control period."""
        cfg = self.config
        if not self.enabled:
            return TickResult(None, MODE_DISABLED)
        if self._state is None:
            return TickResult(None, MODE_WAITING)
        if self._gate is None:
            self._gate = GateState.at_rest(self._state)
            self.following.clear()     # a new command stream
            self._last_tick = now_s - cfg.control_period_s
        dt = now_s - self._last_tick      # <= 0 after a backward clock jump: one held tick
        self._last_tick = now_s
        surprise = self._apply_governor(now_s)
        jumped = dt < -cfg.control_period_s
        if jumped:
            # Time went backwards (simulation reset, bag loop): every stamp we hold is now in
            # the future. Drop the chunk so that new chunks are not refused as "older".
            self.count(CLOCK_JUMP_BACK)
            self._chunk = None
            self._exhausted_since = None
            self.scheduler.clear()
            self._state_time = min(self._state_time, now_s)
        stop = self._watchdogs(now_s)
        # The playback clock runs only while tracking (a new chunk resynchronises it).
        target = self.scheduler.sample(now_s, run=stop is None) \
            if self._chunk is not None else None
        if stop is None:
            if self._chunk is None:
                stop = ''              # nothing to track yet: hold quietly
            elif self.scheduler.too_late:
                # The step due is older than max_chunk_age_s (the clock was held through a
                # long stop): never execute it; wait for a fresh chunk.
                stop = EXECUTION_LATE
                self._chunk = None
                self._exhausted_since = None
                self.scheduler.clear()
            elif target is None:
                stop = CHUNK_EXHAUSTED  # the playback clock ran past the newest chunk
                if self._exhausted_since is None:
                    self._exhausted_since = now_s
        result = TickResult(None, MODE_TRACKING)
        if surprise is not None:
            result.interventions.append(surprise)
        if jumped:
            result.interventions.append(marker(CLOCK_JUMP_BACK))
        if stop is not None:
            if stop and stop != self._stop_reason and stop != DISABLING:
                if stop not in LATCHING:
                    self.count(stop)
                result.interventions.append(marker(stop))
            self._stop_reason = stop
            requested = self._gate.position       # brake towards where we are
            scaling = 'per_joint'
            self._new_chunk = False
        else:
            self._stop_reason = None
            self._standstill.clear()
            requested = target
            scaling = cfg.scaling
        gated = gate_step(requested, self._gate, cfg.limits, dt, cfg.control_period_s,
                          cfg.position_margin_rad, scaling, cfg.workspace_ok,
                          stop=stop is not None)
        self._gate = gated.state
        for iv in gated.interventions:
            self.count(iv.reason)
        if gated.interventions and stop is None:
            self._note_intervention(now_s)
        result.interventions.extend(gated.interventions)
        result.command = gated.command.copy()
        if self.following.enabled:
            self._check_following(now_s, result)
        if self._chunk is not None:
            result.chunk_stamp_s = self._chunk.stamp_s
            result.chunk_stamp_ns = self._chunk.stamp_ns
        if stop is None:
            if self._new_chunk and self._chunk is not None:
                result.chunk_latency_s = now_s - self._chunk.stamp_s
                self._new_chunk = False
            return result
        moving = np.any(np.abs(self._gate.velocity) > 1e-9)
        if moving:
            result.mode = MODE_STOPPING
            self._standstill.clear()
        else:
            result.mode = MODE_HOLDING
            self._monitor_standstill(now_s, result)
        if self._fault is not None:
            result.mode = MODE_FAULT
        elif self._disable_requested and result.mode == MODE_HOLDING:
            self._disable_requested = False
            self.enabled = False
        return result

    def _apply_governor(self, now_s: float) -> Optional[Intervention]:
        """Limit playback speed by surprise; return an intervention when the reason changes."""
        if self.governor is None:
            return None
        decision = self.governor.scale(now_s)
        self.set_speed_limit(decision.scale)
        if decision.reason == self._surprise_reason:
            return None
        self._surprise_reason = decision.reason
        self.count(decision.reason)
        return marker(decision.reason, decision.scale)

    def _monitor_standstill(self, now_s: float, result: TickResult) -> None:
        cfg = self.config
        drift = self._standstill.drifting(
            now_s, self._state, self._state_time, self._gate.position, self.joint_names,
            cfg.standstill_tolerance_rad, cfg.standstill_settle_s, cfg.state_timeout_s)
        if drift is not None and self._fault is None:
            self._latch(STANDSTILL)
            result.interventions.append(drift)

    def _check_following(self, now_s: float, result: TickResult) -> None:
        """Feed the command just issued and the newest state; latch a sustained error."""
        mon = self.following
        mon.on_command(now_s, self._gate.position)
        fault = mon.on_state(self._state_time, self._state)
        if fault is not None and self._fault is None:
            self._latch(FOLLOWING_ERROR)
            self.following_fault = fault       # the details, for the event text
            result.interventions.append(Intervention(
                FOLLOWING_ERROR, self.joint_names[fault.joint], fault.commanded, fault.measured))
            result.mode = MODE_FAULT
