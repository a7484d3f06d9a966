"""The safety loop: joint states, chunks, e-stop and surprise in; gated commands out.

``SafetyRuntime`` is what ``safety_controller``, the offline replay and the simulator
evaluator all run around ``core.controller.SafetyController``: the per-joint merge of
joint_states from any number of publishers (the measured positions of held joints, such as
fingers or a second arm, go to the workspace guard), chunk intake as arrays (one
validation, then adoption), the control tick, the ``safety/execution`` feedback, the
``safety/events`` it publishes and the incident-bag triggers (every stop, and bursts of
chunk rejections). Time is passed in as integer nanoseconds of the driver's clock.

Not thread-safe: a driver with several threads calls it under one lock, except
``prepare_chunk`` (it only reads), which may run outside it.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from wam_runtime.core import controller as ctl, following
from wam_runtime.core.chunks import check_points, Chunk, ChunkError
from wam_runtime.core.interfaces import Event, execution_data, safety_event
from wam_runtime.core.joint_states import JointStateError, JointStateMerge
from wam_runtime.core.safety_config import SafetySetup

# Interventions that are a stop: each triggers an incident bag.
STOP_EVENTS = (ctl.COMMAND_TIMEOUT, ctl.STATE_TIMEOUT, ctl.CHUNK_EXHAUSTED,
               ctl.EXECUTION_LATE) + ctl.LATCHING
# A burst of chunk rejections triggers an incident bag at these counts, not at every one.
REJECTION_BURSTS = (5, 50, 500)


@dataclass
class Reaction:
    """What an input caused: events to publish, incident bags to trigger (their reasons)."""

    events: List[Event] = field(default_factory=list)
    incidents: List[str] = field(default_factory=list)


@dataclass
class SafetyTick(Reaction):
    """One control tick: the command (None: nothing is published) and its side outputs."""

    command: Optional[np.ndarray] = None
    mode: str = ctl.MODE_DISABLED
    execution: Optional[List[float]] = None   # safety/execution data, or None
    stops: List[str] = field(default_factory=list)
    chunk_latency_s: Optional[float] = None
    chunk_stamp_ns: Optional[int] = None


class SafetyRuntime:
    """One safety loop around a ``SafetyController`` built from a ``SafetySetup``."""

    def __init__(self, setup: SafetySetup, enabled: bool = False) -> None:
        """Build the controller (gate closed unless ``enabled``) and the joint-state merge."""
        self.setup = setup
        self.controller = ctl.SafetyController(setup.config, enabled=enabled,
                                               governor=setup.governor)
        self.joint_names = self.controller.joint_names
        self.guard = setup.workspace
        # Joints the gate does not command but the workspace's kinematics hold (fingers, a
        # second arm): kept at their measured values, mimic joints follow their leader.
        self.held = list(getattr(getattr(self.guard, 'kin', None), 'held_names', ()))
        self.joints = JointStateMerge(self.joint_names, setup.config.state_timeout_s,
                                      self.held)
        self._incomplete_since: Optional[float] = None
        self._adopted: Tuple[Optional[int], int] = (None, 0)   # (chunk stamp, when) ns

    # ------------------------------------------------------------------ inputs
    def on_joint_state(self, names: Sequence[str], positions: Sequence[float], stamp_ns: int,
                       now_ns: int, source: str = '') -> bool:
        """Merge a joint_states message; return whether the controller got a full state.

        A bad message is counted (``joint_state_rejected``) and raises JointStateError.
        """
        now = now_ns * 1e-9
        try:
            self.joints.update(names, positions, now, stamp_ns, source)
        except JointStateError:
            self.controller.count('joint_state_rejected')
            raise
        if self.held and self.guard is not None:
            self.guard.set_held(self.joints.values(self.held))
        merged = self.joints.merged(now)
        if merged is None:
            if self._incomplete_since is None:
                self._incomplete_since = now
            return False
        self._incomplete_since = None
        # The state is as old as its oldest joint: state_timeout_s applies per joint.
        self.controller.on_state(merged.positions, min(merged.oldest_received_s, now))
        return True

    def incomplete_for_s(self, now_ns: int) -> float:
        """Return for how long joint_states have been incomplete (0 while complete)."""
        since = self._incomplete_since
        return 0.0 if since is None else max(0.0, now_ns * 1e-9 - since)

    def check_size(self, points: int) -> None:
        """Raise ChunkError (``chunk_too_large``) before a chunk of ``points`` is decoded."""
        check_points(points, self.controller.config.max_chunk_points)

    def prepare_chunk(self, joint_names: Sequence[str], stamp_ns: int,
                      times_s: Sequence[float], positions: np.ndarray, now_ns: int) -> Chunk:
        """Validate a chunk (shape, age, limits, workspace); raise ChunkError. Read only."""
        return self.controller.prepare_chunk(joint_names, stamp_ns * 1e-9, times_s, positions,
                                             now_ns * 1e-9, stamp_ns)

    def adopt(self, chunk: Chunk, now_ns: int) -> Reaction:
        """Adopt a prepared chunk; a refusal is counted and reported like a rejection."""
        try:
            self.controller.adopt_chunk(chunk, now_ns * 1e-9)
        except ChunkError as exc:
            return self.reject(exc, chunk.stamp_ns, now_ns)
        self._adopted = (chunk.stamp_ns, now_ns)
        return Reaction()

    def on_chunk(self, joint_names: Sequence[str], stamp_ns: int, times_s: Sequence[float],
                 positions: np.ndarray, now_ns: int) -> Reaction:
        """Validate and adopt a chunk in one step (single-threaded drivers)."""
        try:
            chunk = self.prepare_chunk(joint_names, stamp_ns, times_s, positions, now_ns)
        except ChunkError as exc:
            return self.reject(exc, stamp_ns, now_ns)
        return self.adopt(chunk, now_ns)

    def reject(self, error: ChunkError, stamp_ns: Optional[int], now_ns: int) -> Reaction:
        """Count a rejected chunk; return its event and, on a burst, an incident trigger.

        A chunk that arrives while the gate is closed is counted by nothing and reported
        by nothing.
        """
        c = self.controller
        c.reject(error, now_ns * 1e-9)
        if error.reason == ctl.CHUNK_DISABLED:
            return Reaction()
        out = Reaction([safety_event(error.reason, '', float('nan'), float('nan'), stamp_ns,
                                     False, str(error))])
        if c.counters.get(error.reason, 0) in REJECTION_BURSTS:
            out.incidents.append(f'{error.reason}_burst')
        return out

    def on_estop(self, pressed: bool, now_ns: int) -> Reaction:
        """Take an e-stop message; pressing latches a fault (reported once)."""
        c = self.controller
        was = c.fault
        c.on_estop(bool(pressed), now_ns * 1e-9)
        if c.fault and c.fault != was:
            return Reaction([safety_event(c.fault, '', float('nan'), float('nan'), None,
                                          c.fault in ctl.LATCHING, 'e-stop pressed')])
        return Reaction()

    def on_surprise(self, value: float, now_ns: int) -> None:
        """Take a world-model surprise value (``policy/surprise``)."""
        self.controller.on_surprise(float(value), now_ns * 1e-9)

    # ------------------------------------------------------------------ tick
    def tick(self, now_ns: int) -> SafetyTick:
        """Run one control period: the gated command and what it reports."""
        c = self.controller
        result = c.tick(now_ns * 1e-9)
        out = SafetyTick(command=result.command, mode=c.fault or result.mode,
                         chunk_latency_s=result.chunk_latency_s,
                         chunk_stamp_ns=result.chunk_stamp_ns)
        if result.command is None:
            return out
        if result.chunk_stamp_ns is not None:
            s = c.scheduler
            out.execution = execution_data(result.chunk_stamp_ns, s.executed_step(),
                                           s.remaining_s(), s.speed, s.lag_s(), now_ns,
                                           self._adopted[1] if self._adopted[0] ==
                                           result.chunk_stamp_ns else None)
        for iv in result.interventions:
            fault = c.following_fault if iv.reason == ctl.FOLLOWING_ERROR else None
            text = following.describe(self.joint_names[fault.joint], fault) if fault else ''
            out.events.append(safety_event(iv.reason, iv.joint, iv.requested, iv.allowed,
                                           result.chunk_stamp_ns, iv.reason in ctl.LATCHING,
                                           text))
            if iv.reason in STOP_EVENTS:
                out.stops.append(iv.reason)
                out.incidents.append(iv.reason)
        return out

    # ------------------------------------------------------------------ reporting
    def diagnostics(self, now_ns: int) -> Dict[str, Any]:
        """Return the loop's figures for /diagnostics: scheduler, joint states, counters."""
        c = self.controller
        sched = c.scheduler
        st = sched.stats
        values: Dict[str, Any] = {
            'chunk_delay_ms_mean': st.delay_mean_s * 1e3,
            'chunk_delay_ms_worst': st.delay_worst_s * 1e3,
            'chunk_dropped_steps': st.dropped_steps,
            'splice_position_jump_max_rad': st.max_splice_position_jump,
            'splice_velocity_jump_max_rad_s': st.max_splice_velocity_jump,
            'playback_speed': sched.speed,
            'playback_speed_min': st.min_playback_speed_seen,
            'playback_speed_max': st.max_playback_speed_seen,
            'coverage_gap_s_total': st.gap_total_s,
            'playback_lag_ms': sched.lag_s() * 1e3,
            'playback_resyncs': st.resyncs,
            'playback_lag_resynced_ms_max': st.lag_max_s * 1e3,
        }
        recent = list(st.recent)
        if recent:
            jumps = np.array([[r.splice_position_jump, r.splice_velocity_jump] for r in recent])
            p50, p99 = np.percentile(jumps, [50, 99], axis=0)
            values.update({'splice_position_jump_rad_p50': p50[0],
                           'splice_position_jump_rad_p99': p99[0],
                           'splice_velocity_jump_rad_s_p50': p50[1],
                           'splice_velocity_jump_rad_s_p99': p99[1]})
        j = self.joints
        values.update(j.diagnostics(now_ns * 1e-9))
        if j.unknown:       # a counter like the others: present once it counted
            values['count_joint_state_unknown_name'] = sum(j.unknown.values())
        values.update({f'count_{k}': v for k, v in sorted(c.counters.items())})
        return values
