"""The safety controller's logic: chunk intake, time-based sampling, watchdogs, the gate.

``SafetyController`` is driven by three calls: ``on_state`` (measured joint positions),
``on_chunk`` (an action chunk from the policy) and ``tick`` (once per control period). It
fails closed: until it has a measured state it commands nothing; without a fresh valid
chunk, or with a stale state, it holds the last command it published.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from wam_runtime.core.gate import gate_command, Intervention, JointLimits

# Chunk rejection reasons.
CHUNK_NON_FINITE = 'chunk_non_finite'
CHUNK_JOINTS = 'chunk_joint_mismatch'
CHUNK_SHAPE = 'chunk_malformed'
CHUNK_TIME = 'chunk_time_not_increasing'
CHUNK_STALE = 'chunk_stale'
CHUNK_FUTURE = 'chunk_future_stamp'
CHUNK_EMPTY = 'chunk_empty'
CHUNK_DISABLED = 'chunk_while_disabled'
# Watchdog reasons.
COMMAND_TIMEOUT = 'command_timeout'
STATE_TIMEOUT = 'state_timeout'

MODE_DISABLED = 'disabled'
MODE_WAITING = 'waiting_for_state'
MODE_TRACKING = 'tracking'
MODE_HOLDING = 'holding'


class ChunkError(ValueError):
    """A chunk is rejected; ``reason`` is the code counted on /diagnostics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f'{reason}: {detail}')
        self.reason = reason


@dataclass(frozen=True)
class Chunk:
    """A validated action chunk in the controller's joint order, on absolute time."""

    stamp_s: float
    times_s: np.ndarray      # (N,) absolute times, strictly increasing
    positions: np.ndarray    # (N, J)


def make_chunk(joint_names: Sequence[str], stamp_s: float, time_from_start_s: Sequence[float],
               positions: Sequence[Sequence[float]], controller_joints: Sequence[str],
               now_s: float, max_chunk_age_s: float, max_future_s: float = 0.05) -> Chunk:
    """Validate a received chunk and reorder it to ``controller_joints``; raise ChunkError."""
    names = list(joint_names)
    if len(set(names)) != len(names):
        raise ChunkError(CHUNK_JOINTS, f'duplicated joint names {names}')
    if set(names) != set(controller_joints):
        missing = sorted(set(controller_joints) - set(names))
        unknown = sorted(set(names) - set(controller_joints))
        raise ChunkError(CHUNK_JOINTS, f'missing {missing}, unknown {unknown}')
    t = np.asarray(time_from_start_s, dtype=np.float64)
    if t.size == 0:
        raise ChunkError(CHUNK_EMPTY, 'no points')
    try:
        p = np.asarray(positions, dtype=np.float64)
    except ValueError:
        raise ChunkError(CHUNK_SHAPE, 'points have different lengths') from None
    if p.shape != (t.size, len(names)):
        raise ChunkError(CHUNK_SHAPE, f'positions shape {p.shape}, expected '
                                      f'({t.size}, {len(names)})')
    if not (np.isfinite(p).all() and np.isfinite(t).all() and np.isfinite(stamp_s)):
        raise ChunkError(CHUNK_NON_FINITE, 'NaN or Inf in positions, times or stamp')
    if t[0] < 0 or np.any(np.diff(t) <= 0):
        raise ChunkError(CHUNK_TIME, f'time_from_start must be >= 0 and strictly increasing, '
                                     f'got {t.tolist()[:4]}...')
    age = now_s - stamp_s
    if age > max_chunk_age_s:
        raise ChunkError(CHUNK_STALE, f'stamp is {age:.3f} s old (max {max_chunk_age_s} s)')
    if age < -max_future_s:
        raise ChunkError(CHUNK_FUTURE, f'stamp is {-age:.3f} s in the future')
    order = [names.index(n) for n in controller_joints]
    return Chunk(float(stamp_s), stamp_s + t, p[:, order])


def sample_chunk(times_s: np.ndarray, positions: np.ndarray, t: float) -> np.ndarray:
    """Linearly interpolate a chunk at time ``t`` (clamped to its first and last point)."""
    if t <= times_s[0]:
        return positions[0].copy()
    if t >= times_s[-1]:
        return positions[-1].copy()
    i = int(np.searchsorted(times_s, t, side='right'))
    a = (t - times_s[i - 1]) / (times_s[i] - times_s[i - 1])
    return positions[i - 1] + a * (positions[i] - positions[i - 1])


@dataclass
class ControllerConfig:
    """Everything the safety controller needs besides its inputs."""

    limits: JointLimits
    control_period_s: float = 0.01
    command_timeout_s: float = 0.5
    state_timeout_s: float = 0.5
    max_chunk_age_s: float = 1.0
    position_margin_rad: float = 0.0


@dataclass
class TickResult:
    """What one control tick decided."""

    command: Optional[np.ndarray]
    mode: str
    interventions: List[Intervention] = field(default_factory=list)
    chunk_latency_s: Optional[float] = None   # set on the first tick that uses a new chunk


class SafetyController:
    """Fail-closed chunk executor: measured state + chunks in, gated commands out."""

    def __init__(self, config: ControllerConfig, enabled: bool = True) -> None:
        """Start with no state, no chunk and no previous command."""
        self.config = config
        self.enabled = enabled
        self.joint_names = config.limits.joint_names
        self._state: Optional[np.ndarray] = None
        self._state_time = -np.inf
        self._chunk: Optional[Chunk] = None
        self._chunk_time = -np.inf
        self._last_cmd: Optional[np.ndarray] = None
        self._last_tick: Optional[float] = None
        self._new_chunk = False
        self._watchdog: Optional[str] = None
        self.counters: Dict[str, int] = {}

    def count(self, reason: str, n: int = 1) -> None:
        """Add ``n`` to the counter for ``reason``."""
        self.counters[reason] = self.counters.get(reason, 0) + n

    @property
    def last_command(self) -> Optional[np.ndarray]:
        """The last command published (None before the first)."""
        return None if self._last_cmd is None else self._last_cmd.copy()

    def set_enabled(self, enabled: bool) -> None:
        """Open or close the gate.

        Enabling starts from the measured position, never from an earlier target or chunk.
        """
        if enabled and not self.enabled:
            self._last_cmd = None
            self._chunk = None
            self._watchdog = None
            self._new_chunk = False
        self.enabled = enabled

    def on_state(self, positions: np.ndarray, now_s: float) -> None:
        """Record measured positions in the controller's joint order."""
        self._state = np.asarray(positions, dtype=np.float64).copy()
        self._state_time = now_s

    def on_chunk(self, joint_names: Sequence[str], stamp_s: float,
                 time_from_start_s: Sequence[float], positions: Sequence[Sequence[float]],
                 now_s: float) -> Chunk:
        """Validate and adopt a chunk; raise ChunkError (and count it) on rejection."""
        if not self.enabled:
            raise ChunkError(CHUNK_DISABLED, 'the gate is disabled')
        try:
            chunk = make_chunk(joint_names, stamp_s, time_from_start_s, positions,
                               self.joint_names, now_s, self.config.max_chunk_age_s)
        except ChunkError as exc:
            self.count(exc.reason)
            raise
        if self._chunk is not None and chunk.stamp_s < self._chunk.stamp_s:
            self.count(CHUNK_STALE)
            raise ChunkError(CHUNK_STALE, 'older than the chunk being executed')
        start = self._last_cmd if self._last_cmd is not None else self._state
        if start is not None and now_s < chunk.times_s[0]:
            # Blend in from where the command stream is now, instead of stepping to point 0.
            chunk = Chunk(chunk.stamp_s, np.concatenate(([now_s], chunk.times_s)),
                          np.vstack((start, chunk.positions)))
        self._chunk = chunk
        self._chunk_time = now_s
        self._new_chunk = True
        return chunk

    def tick(self, now_s: float) -> TickResult:
        """Compute the command for this control period."""
        cfg = self.config
        if not self.enabled:
            return TickResult(None, MODE_DISABLED)
        if self._state is None:
            return TickResult(None, MODE_WAITING)
        if self._last_cmd is None:
            self._last_cmd = self._state.copy()
            self._last_tick = now_s - cfg.control_period_s
        dt = now_s - self._last_tick
        self._last_tick = now_s
        watchdog = None
        if now_s - self._state_time > cfg.state_timeout_s:
            watchdog = STATE_TIMEOUT
        elif self._chunk is None or now_s - self._chunk_time > cfg.command_timeout_s:
            watchdog = COMMAND_TIMEOUT if self._chunk is not None else None
        result = TickResult(None, MODE_TRACKING)
        if watchdog is not None or self._chunk is None:
            if watchdog is not None and watchdog != self._watchdog:
                self.count(watchdog)
                result.interventions.append(
                    Intervention(watchdog, '', float('nan'), float('nan')))
            self._watchdog = watchdog
            requested = self._last_cmd
            result.mode = MODE_HOLDING
        else:
            self._watchdog = None
            requested = sample_chunk(self._chunk.times_s, self._chunk.positions, now_s)
        gated = gate_command(requested, self._last_cmd, cfg.limits, dt, cfg.control_period_s,
                             cfg.position_margin_rad)
        for iv in gated.interventions:
            self.count(iv.reason)
        result.interventions.extend(gated.interventions)
        if self._new_chunk and result.mode == MODE_TRACKING:
            result.chunk_latency_s = now_s - self._chunk.stamp_s
            self._new_chunk = False
        self._last_cmd = gated.command
        result.command = gated.command.copy()
        return result
