"""Chunk scheduler: turns timed action chunks into a target at any control tick.

A chunk's time base is its stamp (the observation time): step ``k`` is due at
``stamp + t_k``. The scheduler keeps a playback clock that normally follows wall time;
when the executing chunk would run out before the next one can be expected (inference
falling behind), it slows playback smoothly down to ``min_playback_speed`` instead of
stalling or jumping. The slack this builds up (the lag, wall time minus the playback clock)
is kept while late chunks keep arriving: a slow model's chunks then cover every tick. The
lag only shrinks: a new chunk whose first step is due after the playback clock moves the
clock up to that step (never past wall time: nothing of the new plan is skipped, only the
superseded rest of the old one), and a lag that would break ``max_lag_s`` is dropped
whole (a resync to wall time). Playback returns to full speed before the lag can pass
``max_lag_s``; the clock does not run while the controller is stopped
(``sample(run=False)``), and a step due more than ``max_lag_s`` ago is never returned. New
chunks are blended with the one executing (``latest``, ``temporal_ensemble`` or
``crossfade``) from the last command. Sampling is cubic Hermite (C1) by default, or linear.
The playback speed and the arrival estimates it rests on are in ``core.playback``.

The scheduler only proposes targets; every target still passes the safety gate.
"""

from collections import deque
from dataclasses import dataclass, field
import math
from typing import Deque, List, Optional, Tuple

import numpy as np

from wam_runtime.core.playback import ChunkArrivals, next_playback_speed
from wam_runtime.core.tracks import evaluate, hermite_tangents, Track, velocity

BLEND_MODES = ('latest', 'temporal_ensemble', 'crossfade')
ENSEMBLE_FADE_S = 0.1
INTERPOLATIONS = ('cubic', 'linear')
# A lag below this (s) is clock noise, not lateness: a chunk arriving then keeps the blend.
RESYNC_TOLERANCE_S = 1e-3
# The largest max_playback_speed accepted: a lag no longer needed is worked off at most
# this much faster than real time.
MAX_PLAYBACK_SPEED = 2.0


@dataclass
class SchedulerConfig:
    """How chunks are sampled, blended and time-scaled."""

    blend: str = 'latest'
    interpolation: str = 'cubic'
    ensemble_decay: float = 0.1        # ACT's m: weight exp(-m * i), i = 0 for the oldest
    crossfade_s: float = 0.1
    min_playback_speed: float = 0.5
    max_playback_speed: float = 1.25   # working off a lag that is no longer needed
    speed_slew_per_s: float = 2.0      # how fast playback speed may change (1/s)
    delay_margin_s: float = 0.05       # coverage kept beyond the next expected chunk (s)
    max_lag_s: float = math.inf        # never return a step due longer ago than this

    def __post_init__(self) -> None:
        """Validate; raise ValueError naming the field."""
        if self.blend not in BLEND_MODES:
            raise ValueError(f'blend: {self.blend!r} is not one of {list(BLEND_MODES)}')
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f'interpolation: {self.interpolation!r} is not one of '
                             f'{list(INTERPOLATIONS)}')
        if not 0.0 < self.min_playback_speed <= 1.0:
            raise ValueError('min_playback_speed: must be in (0, 1]')
        if not 1.0 < self.max_playback_speed <= MAX_PLAYBACK_SPEED:
            raise ValueError(f'max_playback_speed: must be in (1, {MAX_PLAYBACK_SPEED:g}]')
        for name in ('ensemble_decay', 'crossfade_s', 'speed_slew_per_s', 'delay_margin_s'):
            if not getattr(self, name) >= 0:
                raise ValueError(f'{name}: must be >= 0')
        if not self.max_lag_s > 0:
            raise ValueError('max_lag_s: must be > 0')


@dataclass
class ChunkReport:
    """What happened to one chunk when it arrived."""

    stamp_s: float
    delay_s: float                 # arrival (now) - stamp
    dropped_steps: int             # steps already in the past on the playback clock
    splice_position_jump: float    # max |new - old| where the new plan starts (rad)
    splice_velocity_jump: float    # max |new' - old'| there (rad/s)
    playback_speed: float
    gap_s: float                   # time the previous coverage had already run out
    lag_s: float = 0.0             # how far this chunk moved a late playback clock up (s)


@dataclass
class SchedulerStats:
    """Running figures for diagnostics and the replay report."""

    chunks: int = 0
    delay_mean_s: float = 0.0
    delay_worst_s: float = 0.0
    dropped_steps: int = 0
    max_splice_position_jump: float = 0.0
    max_splice_velocity_jump: float = 0.0
    min_playback_speed_seen: float = 1.0
    max_playback_speed_seen: float = 1.0
    gap_total_s: float = 0.0
    resyncs: int = 0               # chunks that moved a late playback clock up
    lag_max_s: float = 0.0         # the most lag one such chunk removed (s)
    too_late: int = 0              # times the clock fell more than max_lag_s behind
    recent: Deque[ChunkReport] = field(default_factory=lambda: deque(maxlen=200))


class ChunkScheduler:
    """Playback clock + active chunks -> target position per tick."""

    def __init__(self, config: SchedulerConfig) -> None:
        """Start empty; the first ``sample`` call anchors the playback clock."""
        self.config = config
        self._tracks: List[Track] = []
        self._tau: Optional[float] = None
        self._last_now: Optional[float] = None
        self._speed = 1.0
        self._arrivals = ChunkArrivals()    # recent delays and intervals (core.playback)
        self.too_late = False       # the last sample found the clock beyond max_lag_s
        self._held = False          # the clock was held (stopped) since the last chunk
        self._count = 0
        self.speed_cap = 1.0        # an outside limit on playback speed (e.g. surprise)
        self.stats = SchedulerStats()

    @property
    def playback_time(self) -> Optional[float]:
        """The playback clock (on the chunks' time base)."""
        return self._tau

    @property
    def speed(self) -> float:
        """Playback speed now (1 = real time)."""
        return self._speed

    @property
    def active(self) -> bool:
        """Whether some chunk still covers the playback clock."""
        return bool(self._tracks) and self._tau is not None and \
            self._tau <= self._tracks[-1].end

    def remaining_s(self) -> float:
        """Playback time left in the newest chunk (0 without one)."""
        if not self._tracks or self._tau is None:
            return 0.0
        return max(0.0, self._tracks[-1].end - self._tau)

    def lag_s(self) -> float:
        """Return how late playback runs: the last sample's time minus the playback clock."""
        if self._tau is None or self._last_now is None:
            return 0.0
        return float(self._last_now - self._tau)

    def executed_step(self) -> int:
        """Return the newest chunk's own step index most recently due (-1 before its first).

        ``k`` is the index in the chunk as received (``points[k]``): the last step whose
        due time ``stamp + time_from_start[k]`` is at or before the playback clock.
        """
        if not self._tracks or self._tau is None:
            return -1
        tr = self._tracks[-1]
        steps = tr.steps if tr.steps is not None else tr.times
        return int(np.searchsorted(steps, self._tau, side='right')) - 1

    @property
    def interval_estimate_s(self) -> float:
        """Typical interval between chunk arrivals (median of the recent ones; 0 before)."""
        return self._arrivals.interval_s

    @property
    def delay_estimate_s(self) -> float:
        """Typical chunk delay, arrival minus stamp (median of the recent ones; 0 before)."""
        return self._arrivals.delay_s

    def clear(self) -> None:
        """Forget every chunk (the playback clock re-anchors on the next sample)."""
        self._tracks.clear()
        self._tau = None
        self._speed = 1.0
        self.too_late = False

    def add(self, stamp_s: float, times_s: np.ndarray, positions: np.ndarray, now_s: float,
            current: Optional[np.ndarray] = None,
            current_time_s: Optional[float] = None) -> ChunkReport:
        """Adopt a validated chunk (absolute ``times_s``) and report on the splice.

        ``current`` is the last command and ``current_time_s`` the playback time it was
        commanded at; the new chunk is blended in from there instead of stepping. A playback
        clock behind the chunk's first step moves up to it (at most to the last sample's
        time), one whose lag would break ``max_lag_s`` to that time: the chunk then starts
        from ``current`` there alone (the older chunks' superseded plans are dropped).
        """
        cfg = self.config
        cubic = cfg.interpolation == 'cubic'
        first = float(times_s[0]) if len(times_s) else math.inf
        catch_up, joins = self._catch_up(first)
        if catch_up > RESYNC_TOLERANCE_S:
            # The clock is behind the new plan's first step (held through a stop, or slowed
            # down more than this chunk needs), or its lag would break max_lag_s: move it up
            # and start the new chunk from the last command.
            self.stats.resyncs += 1
            self.stats.lag_max_s = max(self.stats.lag_max_s, catch_up)
            self._tracks = []
            self._tau += catch_up
            current_time_s = None
        self.too_late = False
        self._held = False
        tau = self._tau if self._tau is not None else now_s
        delay = now_s - stamp_s
        self._arrivals.add(delay, now_s)
        keep = times_s > tau
        dropped = int(np.count_nonzero(~keep))
        times, pos = times_s[keep], positions[keep]
        old = self._tracks[-1] if self._tracks else None
        if joins:
            # The new plan starts ahead of the clock: the old plan's steps lead up to it.
            lead = (old.times > tau) & (old.times < first)
            times = np.concatenate((old.times[lead], times))
            pos = np.vstack((old.positions[lead], pos))
        gap = max(0.0, tau - old.end) if old is not None else 0.0
        if current is not None and len(times):
            t0 = tau if current_time_s is None else min(current_time_s, tau)
            if t0 < times[0]:
                times = np.concatenate(([t0], times))
                pos = np.vstack((current, pos))
        if len(times) == 0:     # everything was in the past: keep only the end point
            times, pos = np.array([tau + 1e-3]), positions[-1:]
        track = Track(times, pos, hermite_tangents(times, pos) if cubic else
                      np.zeros_like(pos), tau, self._count, np.asarray(times_s))
        self._count += 1
        jump_p = jump_v = 0.0
        if old is not None and len(times_s) and tau <= old.end:
            # Disagreement of the two plans where the new one starts (before the blend-in
            # from the last command, which hides it).
            raw = Track(times_s, positions, hermite_tangents(times_s, positions) if cubic
                        else np.zeros_like(positions), tau, -1)
            t = min(max(tau, float(times_s[0])), old.end)
            jump_p = float(np.max(np.abs(evaluate(raw, t, cubic) - evaluate(old, t, cubic))))
            jump_v = float(np.max(np.abs(velocity(raw, t, cubic)
                                         - velocity(old, t, cubic))))
        if cfg.blend == 'latest':
            self._tracks = [track]
        else:
            self._tracks.append(track)
        report = ChunkReport(stamp_s, delay, dropped, jump_p, jump_v, self._speed, gap,
                             catch_up if catch_up > RESYNC_TOLERANCE_S else 0.0)
        s = self.stats
        s.chunks += 1
        s.delay_mean_s += (delay - s.delay_mean_s) / s.chunks
        s.delay_worst_s = max(s.delay_worst_s, delay)
        s.dropped_steps += dropped
        s.max_splice_position_jump = max(s.max_splice_position_jump, jump_p)
        s.max_splice_velocity_jump = max(s.max_splice_velocity_jump, jump_v)
        s.gap_total_s += gap
        s.recent.append(report)
        return report

    def _catch_up(self, first_due_s: float) -> Tuple[float, bool]:
        """Return how far a new chunk moves the playback clock forward, and if it joins.

        A clock behind the chunk's first step moves up to it (never past wall time, the
        last sample) unless the executing plan still runs into the new one: then the chunk
        joins it and the clock stays (0, True). The whole lag goes when keeping it would
        leave less than ``delay_margin_s`` to ``max_lag_s``.
        """
        if self._tau is None or self._last_now is None:
            return 0.0, False
        lag = self._last_now - self._tau
        if lag > self.config.max_lag_s - self.config.delay_margin_s:
            return max(0.0, lag), False
        ahead = min(first_due_s, self._last_now) - self._tau
        if ahead <= RESYNC_TOLERANCE_S:
            return 0.0, False
        if self._joins(first_due_s):
            return 0.0, True
        return ahead, False

    def _joins(self, first_due_s: float) -> bool:
        """Whether a new chunk whose first step is ahead of the clock joins the running plan.

        It does while the clock is still inside the executing plan and was not held by a
        stop since: the clock keeps its lag and runs on along the old plan into the new one
        (a slow model's chunks tile playback time instead of each pulling the clock
        forward). After a stop the arm is at rest, and the clock moves up instead.
        """
        old = self._tracks[-1] if self._tracks else None
        return old is not None and not self._held and self._tau is not None and \
            self._tau < first_due_s and self._tau <= old.end

    def sample(self, now_s: float, run: bool = True) -> Optional[np.ndarray]:
        """Advance the playback clock to ``now_s`` and return the target.

        None: no chunk covers the clock, or (``too_late``) the step due is older than
        ``max_lag_s``. With ``run=False`` (the controller is stopped) the clock holds.
        """
        cfg = self.config
        if self._tau is None or self._last_now is None:
            self._tau, self._last_now = now_s, now_s
        dt = now_s - self._last_now
        lag = self.lag_s()
        self._last_now = now_s
        if dt > 0 and run:
            self._update_speed(dt, lag)
            self._tau = min(self._tau + self._speed * dt, now_s)   # never ahead of time
        elif dt > 0:
            self._held = True
        if not self._tracks:
            return None
        if now_s - self._tau > cfg.max_lag_s:     # the step due is older than allowed
            if not self.too_late:
                self.stats.too_late += 1
            self.too_late = True
            return None
        tau = self._tau
        cubic = cfg.interpolation == 'cubic'
        newest = self._tracks[-1]
        if tau > newest.end:
            return None
        if cfg.blend == 'latest' or len(self._tracks) == 1:
            return evaluate(newest, tau, cubic)
        if cfg.blend == 'crossfade':
            # Each chunk fades in over crossfade_s on top of the blend of those before it,
            # so a chunk arriving while another still fades in never cuts that fade short.
            span = cfg.crossfade_s
            alphas = [1.0 if span <= 0 else min(1.0, max(0.0, (tau - t.arrival_tau) / span))
                      for t in self._tracks]
            done = max(i for i, a in enumerate(alphas) if i == 0 or a >= 1.0)
            if done:
                self._tracks, alphas = self._tracks[done:], alphas[done:]
            x = evaluate(self._tracks[0], tau, cubic)
            for t, a in zip(self._tracks[1:], alphas[1:]):
                a = a * a * (3 - 2 * a)          # smoothstep: C1 at both ends of the fade
                x = (1 - a) * x + a * evaluate(t, tau, cubic)
            return x
        # Temporal ensemble over the chunks that still cover tau (ACT weights), each faded
        # out over its last ENSEMBLE_FADE_S so that a chunk ending never makes a jump.
        self._tracks = [t for t in self._tracks if t.end >= tau]
        w = np.array([math.exp(-cfg.ensemble_decay * i)
                      * min(1.0, (t.end - tau) / ENSEMBLE_FADE_S)
                      for i, t in enumerate(self._tracks)])
        w[-1] = max(w[-1], 1e-12)      # the newest always counts
        w /= w.sum()
        return sum(wi * evaluate(t, tau, cubic) for wi, t in zip(w, self._tracks))

    def _update_speed(self, dt: float, lag: float) -> None:
        """Slew the playback speed towards what coverage and ``lag`` (before ``dt``) need."""
        self._speed = next_playback_speed(
            self.config, self._speed, dt, lag, self.remaining_s() if self._tracks else None,
            self._arrivals, self._last_now, self.speed_cap)
        self.stats.min_playback_speed_seen = min(self.stats.min_playback_speed_seen,
                                                 self._speed)
        self.stats.max_playback_speed_seen = max(self.stats.max_playback_speed_seen,
                                                 self._speed)
