"""Chunk scheduler: time base, interpolation, blending, time scaling (unit + hypothesis)."""

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from wam_runtime.core.scheduler import (
    BLEND_MODES, ChunkScheduler, ENSEMBLE_FADE_S, RESYNC_TOLERANCE_S, SchedulerConfig)
from wam_runtime.core.tracks import evaluate, hermite_tangents, Track

DT = 0.05
H = 16


def _chunk(stamp, q0, speed, n=H, dt=DT):
    t = stamp + dt * np.arange(1, n + 1)
    return t, q0 + speed * (t - stamp)[:, None]


def test_cubic_hermite_is_c1_and_reproduces_lines():
    t = np.array([0.0, 0.1, 0.25, 0.3])
    p = np.array([[0.0], [0.1], [0.25], [0.3]])         # a line: slope 1
    tr = Track(t, p, hermite_tangents(t, p), 0.0, 0)
    for x in np.linspace(0, 0.3, 31):
        assert evaluate(tr, x, True)[0] == pytest.approx(x, abs=1e-12)
    q = np.array([[0.0], [0.3], [-0.2], [0.1]])
    tr = Track(t, q, hermite_tangents(t, q), 0.0, 0)
    eps = 1e-6
    for knot in t[1:-1]:          # velocity continuous across the knots
        left = (evaluate(tr, knot, True) - evaluate(tr, knot - eps, True)) / eps
        right = (evaluate(tr, knot + eps, True) - evaluate(tr, knot, True)) / eps
        assert left[0] == pytest.approx(right[0], abs=1e-3)


def test_steps_already_past_are_dropped_not_replayed():
    s = ChunkScheduler(SchedulerConfig())
    s.sample(10.0)
    t, p = _chunk(9.9, np.zeros(2), 0.1)              # 100 ms late: 1 step (9.95) is past
    rep = s.add(9.9, t, p, now_s=10.0, current=np.zeros(2))
    assert rep.dropped_steps == 2 and rep.delay_s == pytest.approx(0.1)
    assert s.stats.delay_worst_s == pytest.approx(0.1)


@pytest.mark.parametrize('blend', BLEND_MODES)
def test_time_scaling_slows_instead_of_stalling_then_recovers(blend):
    cfg = SchedulerConfig(blend=blend, min_playback_speed=0.4, speed_slew_per_s=4.0)
    s = ChunkScheduler(cfg)
    q = np.zeros(1)
    now = 0.0
    s.sample(now)
    for k in range(5):             # chunks every 100 ms, 20 ms after their observation
        if k:
            now += 0.1
            q = s.sample(now)
        t, p = _chunk(now - 0.02, q, 0.5)
        s.add(now - 0.02, t, p, now, current=q)
    start = now
    speeds, targets = [], []
    while now < 1.5:                 # no new chunk: inference has stalled
        now += 0.01
        target = s.sample(now)
        if target is None:
            break
        speeds.append(s.speed)
        targets.append(target[0])
    assert min(speeds) == pytest.approx(0.4)
    assert np.all(np.abs(np.diff(speeds)) <= 4.0 * 0.01 + 1e-9)     # smooth
    assert np.all(np.diff(targets) >= -1e-12)                        # never goes back
    assert now - start > 0.78 + 0.05   # the chunk's rest lasted longer than its length
    # Chunks arrive in time again: back to full speed, and the lag built up while the
    # speed slewed back is worked off smoothly (never above max_playback_speed).
    lags, speeds = [], []
    for k in range(300):
        now += 0.01
        if k % 10 == 0:
            t, p = _chunk(now - 0.02, np.array([targets[-1]]), 0.5)
            s.add(now - 0.02, t, p, now, current=np.array([targets[-1]]))
        targets.append(s.sample(now)[0])
        lags.append(s.lag_s())
        speeds.append(s.speed)
    assert np.all(np.abs(np.diff(speeds)) <= 4.0 * 0.01 + 1e-9)
    assert max(speeds) <= cfg.max_playback_speed
    top = int(np.argmax(lags))
    assert np.all(np.diff(lags[top:]) <= 1e-12)          # once back at speed: only shrinks
    assert s.lag_s() < 1e-3 and s.speed == pytest.approx(1.0, abs=1e-2)


@st.composite
def arrivals(draw):
    n = draw(st.integers(1, 12))
    gaps = draw(st.lists(st.floats(0.02, 0.4), min_size=n, max_size=n))
    delays = draw(st.lists(st.floats(0.0, 0.3), min_size=n, max_size=n))
    offsets = draw(st.lists(st.floats(-0.05, 0.05), min_size=n, max_size=n))
    return list(zip(np.cumsum(gaps), delays, offsets))


def _reference(t):
    """Return the motion every chunk tries to follow (policies that roughly agree)."""
    return np.array([0.5 * np.sin(t), 0.3 * np.cos(2 * t) - 0.3])


def _disagreement(tracks, taus, cubic):
    """Return the largest distance between any two tracks at any of ``taus``."""
    d = 0.0
    for tau in taus:
        at = np.array([evaluate(tr, tau, cubic) for tr in tracks])
        if len(at) > 1:
            d = max(d, float(np.max(at.max(axis=0) - at.min(axis=0))))
    return d


def _fade_rate(blend, tracks, tau, cfg):
    """Return a bound on how fast the blend weights move per second of playback at ``tau``.

    crossfade: each chunk still fading in moves its smoothstep weight at most 1.5 / span;
    temporal_ensemble: ACT weights exp(-m i) times each chunk's fade-out over its last
    ENSEMBLE_FADE_S, normalised; the normalised weights move at most twice the fading
    weights' rate over their sum.
    """
    if blend == 'latest' or len(tracks) < 2:
        return 0.0
    if blend == 'crossfade':
        return 1.5 / cfg.crossfade_s * (len(tracks) - 1)
    c = np.exp(-cfg.ensemble_decay * np.arange(len(tracks)))
    left = np.array([t.end - tau for t in tracks])
    live = left >= 0
    w = c * np.clip(left / ENSEMBLE_FADE_S, 0.0, 1.0)
    dw = np.where(live & (left < ENSEMBLE_FADE_S), c / ENSEMBLE_FADE_S, 0.0)
    return 2.0 * float(dw.sum()) / max(float(w.sum()), 1e-12)


@settings(max_examples=200, deadline=None)
@given(arrivals(), st.sampled_from(BLEND_MODES), st.sampled_from(['cubic', 'linear']),
       st.lists(st.floats(0.002, 0.02), min_size=300, max_size=300))
def test_monotonic_time_no_replay_and_bounded_splices(arrivals, blend, interp, ticks):
    """Check time, replay and splice bounds under random arrivals, delays, disagreements.

    Time only moves forward, no instant is replayed, past steps are dropped, and each target
    step is bounded by the tracks' own slopes (cubic Hermite with averaged tangents moves at
    most twice the steepest secant) plus, for fading blends, the fade rate times the
    disagreement of the tracks being blended at that moment.
    """
    cfg = SchedulerConfig(blend=blend, interpolation=interp)
    cubic = interp == 'cubic'
    s = ChunkScheduler(cfg)
    now, cmd = 0.0, _reference(0.0)
    taus, prev = [], None
    slope = 0.0
    pending = list(arrivals)
    s.sample(now)
    for dt in ticks:
        now += dt
        while pending and pending[0][0] <= now:
            _, delay, offset = pending.pop(0)
            stamp = now - delay
            t = stamp + DT * np.arange(1, H + 1)
            p = np.array([_reference(x) + offset for x in t])
            before, lag_before = s.playback_time, s.lag_s()
            rep = s.add(stamp, t, p, now, current=cmd)
            # A clock that moves up drops the steps it skips too; adopting a chunk never
            # makes the clock later, and moves it at most up to the chunk's first step
            # (or wall time, where that comes first).
            assert rep.dropped_steps == int(np.sum(t <= before + rep.lag_s))
            assert s.lag_s() <= lag_before + 1e-12
            if rep.lag_s > RESYNC_TOLERANCE_S:
                assert s.playback_time <= max(t[0], before) + 1e-12
            tr = s._tracks[-1]
            if len(tr.times) > 1:
                slope = max(slope, float(np.max(np.abs(np.diff(tr.positions, axis=0)
                                                       / np.diff(tr.times)[:, None]))))
        tau_before = s.playback_time
        blended = list(s._tracks)
        target = s.sample(now)
        assert s.playback_time >= tau_before                  # monotonic
        taus.append(s.playback_time)
        if target is None:
            prev = None
            continue
        assert np.isfinite(target).all()
        if prev is not None:
            dtau = s.playback_time - tau_before
            speed = (2.0 if cubic else 1.0) * slope
            spread = _disagreement(blended, (tau_before, s.playback_time), cubic) \
                + 2.0 * speed * dtau
            fade = max(_fade_rate(blend, blended, tau, cfg)
                       for tau in (tau_before, s.playback_time))
            bound = (speed + fade * spread) * dtau + 1e-9
            assert np.all(np.abs(target - prev) <= bound), (np.abs(target - prev), bound)
        prev = cmd = target
    assert np.all(np.diff(taus) > 0)                             # no instant replayed


def test_a_chunk_arriving_mid_crossfade_does_not_cut_the_fade_short():
    cfg = SchedulerConfig(blend='crossfade', crossfade_s=0.1, interpolation='linear')
    s = ChunkScheduler(cfg)
    now = 0.0
    s.sample(now)
    t, p = _chunk(now, np.zeros(1), 0.0)            # hold at 0
    s.add(now, t, p, now)
    out = [s.sample(now)[0]]
    for k in range(30):
        now += 0.01
        if k in (5, 10):                             # two chunks at 1.0, 50 ms apart
            t, p = _chunk(now, np.ones(1), 0.0)
            s.add(now, t, p, now, current=np.array([out[-1]]))
        out.append(s.sample(now)[0])
    steps = np.abs(np.diff(out))
    # Half-way through the first fade the second chunk arrives: the blend goes on from where
    # it was (the old rule restarted it from the first chunk: a 0.54 step).
    assert steps.max() < 0.25, steps
    assert out[-1] == pytest.approx(1.0)
    assert np.all(np.diff(out) >= -1e-12)
