"""Playback speed of the chunk scheduler: slow down before chunks run out, catch up after.

``ChunkArrivals`` keeps the recent chunk delays (arrival minus stamp) and the intervals
between arrivals, as medians and a spread (how irregular they were): when the next chunk
can be expected. ``next_playback_speed`` slews the playback speed towards what that
expectation needs: slower than real time (not below ``min_playback_speed``) when the
newest chunk would run out first, faster (up to ``max_playback_speed``) while more
coverage than needed and a lag allow working the lag off, and back to full speed in time
to stay inside ``max_lag_s``. ``core.scheduler.ChunkScheduler`` owns the clock they drive.
"""

from collections import deque
import math
import statistics
from typing import Any, Deque, Optional, Sequence

# Chunk intervals and delays are estimated over this many recent chunks (median).
ESTIMATE_WINDOW = 7
# Coverage kept beyond the next expected chunk, besides delay_margin_s and the measured
# jitter: this fraction of the typical chunk delay.
DELAY_RESERVE = 0.25


class ChunkArrivals:
    """Recent chunk delays and arrival intervals: their medians and their spread."""

    def __init__(self) -> None:
        """Start without any chunk (every estimate 0)."""
        self._delays: Deque[float] = deque(maxlen=ESTIMATE_WINDOW)
        self._intervals: Deque[float] = deque(maxlen=ESTIMATE_WINDOW)
        self.delay_s = 0.0          # typical delay, arrival minus stamp (median)
        self.interval_s = 0.0       # typical interval between arrivals (median)
        self.spread_s = 0.0         # how irregular recent chunks were (s)
        self.last_s: Optional[float] = None     # the last arrival

    def add(self, delay_s: float, now_s: float) -> None:
        """Count a chunk arriving at ``now_s`` ``delay_s`` after its stamp."""
        self._delays.append(delay_s)
        self.delay_s = _median(self._delays)
        if self.last_s is not None:
            self._intervals.append(max(0.0, now_s - self.last_s))
            self.interval_s = _median(self._intervals)
        # How much later than expected the next chunk may come: as late as the slowest of
        # the recent inferences (the worst delay beyond the typical one), as irregular as
        # recent arrivals (twice the median absolute deviation of the intervals: one pause
        # in the stream does not count), and at least a quarter of the typical delay (a
        # slower inference on a busier machine).
        self.spread_s = max(max(self._delays) - self.delay_s,
                            2.0 * _mad(self._intervals, self.interval_s),
                            DELAY_RESERVE * self.delay_s)
        self.last_s = now_s


def next_playback_speed(cfg: Any, speed: float, dt: float, lag: float,
                        remaining_s: Optional[float], arrivals: ChunkArrivals,
                        now_s: float, speed_cap: float = 1.0) -> float:
    """Return ``speed`` slewed over ``dt`` towards what coverage and ``lag`` need.

    ``cfg`` is the scheduler's ``SchedulerConfig`` (speeds, slew, margin, ``max_lag_s``),
    ``remaining_s`` the playback time left in the newest chunk (None without a chunk),
    ``lag`` how late playback ran before ``dt``, ``now_s`` the time sampled now and
    ``speed_cap`` an outside limit (surprise) that also rules out catching up.
    """
    # Falling behind: the newest chunk would run out before the next one can be expected
    # (the last arrival + the typical interval between chunks, a median: one pause or
    # one slow inference is not "falling behind") plus a margin and the spread of
    # recent delays and intervals (irregular chunks may come late); once that chunk is
    # overdue, before another interval has passed. Play just slowly enough to get
    # there, but not below min_playback_speed.
    target = 1.0
    if remaining_s is not None and arrivals.last_s is not None:
        due = arrivals.last_s + arrivals.interval_s - now_s
        need = (due if due > 0 else arrivals.interval_s) + cfg.delay_margin_s \
            + arrivals.spread_s
        if remaining_s < need:
            target = max(cfg.min_playback_speed, remaining_s / need)
        elif lag > 0:
            # More coverage than needed and a lag: work the lag off, as far as the
            # coverage allows (the lag a slow model needs stays). Playing faster
            # uses up both; slow enough that the speed, slewing back, reaches 1 just
            # as the lag or the spare coverage is gone.
            spare = min(lag, remaining_s - need)
            brake = math.sqrt(2.0 * cfg.speed_slew_per_s * spare)
            target = min(1.0 + brake, cfg.max_playback_speed)
    # The lag grows while playback is slower than real time: back to full speed in time
    # to stay delay_margin_s inside max_lag_s (the speed slews at speed_slew_per_s).
    if target < 1.0 and math.isfinite(cfg.max_lag_s):
        slack = 1.0 - speed
        settle = slack * slack / (2 * cfg.speed_slew_per_s) if cfg.speed_slew_per_s > 0 \
            else 0.0
        if lag + settle + slack * dt >= cfg.max_lag_s - cfg.delay_margin_s:
            target = 1.0
    if speed_cap < 1.0:       # an outside limit (surprise): no catching up either
        target = min(target, speed_cap)
    floor = min(cfg.min_playback_speed, speed_cap)
    step = cfg.speed_slew_per_s * dt
    speed = min(speed + step, max(speed - step, float(target)))
    return min(cfg.max_playback_speed, max(floor, speed))


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def _mad(values: Sequence[float], center: float) -> float:
    """Return the median absolute deviation of ``values`` from ``center`` (0 without any)."""
    return _median([abs(v - center) for v in values])
