"""Property test: a slow model's late chunks are played with slack instead of stalling.

Chunks arrive every ``interval`` (with jitter), stamped ``delay`` before they arrive, their
steps due from ``first`` to ``last`` after the stamp. A playback lag below
``max_chunk_age_s`` covers every tick at a speed of at least ``min_playback_speed`` when the
chunk's span covers the playback time of one interval at that speed, and a clock that far
behind still executes steps younger than ``max_chunk_age_s``. The promise
(SafetyController + ChunkScheduler + gate, in process): whenever that holds (with the
scheduler's ``delay_margin_s`` and one control period as margin), no ``chunk_exhausted``
after warm-up, playback never slower than ``min_playback_speed``, and never a step older
than ``max_chunk_age_s``. (With ``min_playback_speed`` 1 nothing builds slack: such chunks
stall as they always did.)
"""

import math

from hypothesis import assume, given, settings, strategies as st
import numpy as np

from wam_runtime.core import controller as c
from wam_runtime.core.limits import JointLimits
from wam_runtime.core.scheduler import SchedulerConfig

NAMES = ('j1', 'j2')
LIM = JointLimits.create(NAMES, [-5, -5], [5, 5], [3.0, 3.0], [40.0, 40.0])
PERIOD = 0.01
MAX_AGE = 1.0
MARGIN = SchedulerConfig().delay_margin_s
STEP = 0.01          # spacing of a chunk's steps (s)
WARM_UP = 12         # chunks: the interval estimate (a median of 7) and the lag settle


def _reference(t: float) -> np.ndarray:
    """Return what every chunk tries to follow: a smooth motion well inside the limits."""
    return np.array([0.4 * math.sin(1.3 * t), 0.3 * math.cos(0.9 * t)])


@settings(max_examples=120, deadline=None, derandomize=True)
@given(interval=st.floats(0.03, 0.3), delay=st.floats(0.0, 0.6),
       first=st.floats(0.0, 0.1), span=st.floats(0.02, 1.0),
       jitter=st.floats(0.0, 0.3), min_speed=st.sampled_from([0.25, 0.5, 0.8, 0.95]),
       blend=st.sampled_from(['latest', 'temporal_ensemble', 'crossfade']),
       seed=st.integers(0, 2 ** 16))
def test_late_chunks_never_stall_while_some_lag_covers_them(
        interval, delay, first, span, jitter, min_speed, blend, seed):
    rng = np.random.default_rng(seed)
    jitter_s = min(jitter * interval, 0.5 * MARGIN)
    longest = interval + jitter_s
    # Feasible: the span covers the playback of the longest interval at min_speed (with
    # the margin the scheduler keeps and one tick), and the lag that needs stays young.
    assume(span >= min_speed * longest + MARGIN + PERIOD)
    assume(delay - first + (1 - min_speed) * longest + MARGIN + PERIOD < MAX_AGE)
    assume(delay + longest < MAX_AGE)
    cfg = c.ControllerConfig(
        limits=LIM, control_period_s=PERIOD, command_timeout_s=0.5, state_timeout_s=0.5,
        max_chunk_age_s=MAX_AGE,
        scheduler=SchedulerConfig(blend=blend, min_playback_speed=min_speed))
    ctl = c.SafetyController(cfg)
    sched = ctl.scheduler
    steps = first + STEP * np.arange(int(span / STEP) + 1)
    # Warm-up: the interval estimate settles, and the lag the chunks need builds up at
    # (1 - min_speed) s per s (plus the time the speed takes to slew).
    needed = max(0.0, longest + delay + MARGIN - steps[-1])
    warm_up_s = needed / (1.0 - min_speed) + 0.5
    t, arrival, chunks = 0.0, 0.0, 0
    exhausted_after_warm_up = 0
    ticks = 0
    warm = False
    while not warm or ticks < 25 * interval / PERIOD:
        q = ctl.last_command if ctl.last_command is not None else _reference(-delay)
        ctl.on_state(q, t)
        if t >= arrival - 1e-12:
            stamp = t - delay
            ctl.on_chunk(list(NAMES), stamp, steps,
                         [_reference(stamp + x) for x in steps], now_s=t)
            chunks += 1
            arrival += interval + rng.uniform(-jitter_s, jitter_s)
        before = ctl.counters.get(c.CHUNK_EXHAUSTED, 0)
        r = ctl.tick(t)
        assert r.command is not None
        if r.mode == c.MODE_TRACKING:
            # The step executed is never older than max_chunk_age_s.
            assert t - sched.playback_time <= MAX_AGE + 1e-9
        warm = chunks > WARM_UP and t > warm_up_s
        if warm:
            ticks += 1
            exhausted_after_warm_up += ctl.counters.get(c.CHUNK_EXHAUSTED, 0) - before
            assert r.mode == c.MODE_TRACKING, (r.mode, ctl.stop_reason, sched.lag_s())
            assert sched.speed >= min_speed - 1e-9
        t = round(t + PERIOD, 9)
    assert ticks > 0
    assert exhausted_after_warm_up == 0
    assert ctl.counters.get(c.EXECUTION_LATE, 0) == 0


def test_the_slow_model_of_the_issue_plays_at_full_speed_with_a_bounded_lag():
    """Chunks every 100 ms covering 50-150 ms after a stamp 120 ms old: no standing still."""
    cfg = c.ControllerConfig(limits=LIM, control_period_s=PERIOD, command_timeout_s=0.5,
                             state_timeout_s=0.5, max_chunk_age_s=MAX_AGE)
    ctl = c.SafetyController(cfg)
    steps = 0.05 + STEP * np.arange(11)
    t, still, ticks, lags, prev = 0.0, 0, 0, [], None
    while t < 4.0:
        q = ctl.last_command if ctl.last_command is not None else _reference(-0.12)
        ctl.on_state(q, t)
        if round(t * 100) % 10 == 0:
            stamp = t - 0.12
            ctl.on_chunk(list(NAMES), stamp, steps, [_reference(stamp + x) for x in steps],
                         now_s=t)
        r = ctl.tick(t)
        if t >= 1.0:
            ticks += 1
            still += prev is not None and bool(np.all(r.command == prev))
            lags.append(ctl.scheduler.lag_s())
            assert r.mode == c.MODE_TRACKING
        prev = r.command
        t = round(t + PERIOD, 9)
    assert still == 0
    # The lag the chunks need (interval + margin + a reserve of a quarter of the delay -
    # the 30 ms of future each one brings), and no more.
    assert 0.07 <= min(lags) and max(lags) <= 0.1 + MARGIN + 0.25 * 0.12 - 0.03 + 1e-6
    assert ctl.scheduler.speed == 1.0 or abs(ctl.scheduler.speed - 1.0) < 1e-6
    # And when chunks arrive in time again the lag is worked off: no jump, within limits.
    steps = 0.05 + STEP * np.arange(40)
    lags, interventions = [], 0
    while t < 6.0:
        ctl.on_state(ctl.last_command, t)
        if round(t * 100) % 10 == 0:
            stamp = t - 0.01
            ctl.on_chunk(list(NAMES), stamp, steps, [_reference(stamp + x) for x in steps],
                         now_s=t)
        r = ctl.tick(t)
        interventions += len(r.interventions)
        lags.append(ctl.scheduler.lag_s())
        t = round(t + PERIOD, 9)
    assert np.all(np.diff(lags) <= 1e-9)
    assert lags[-1] < 1e-3 and interventions == 0
