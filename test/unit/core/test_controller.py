"""SafetyController: chunk validation, sampling on the stamp's time base, watchdogs."""

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from wam_runtime.core import controller as c
from wam_runtime.core.limits import JointLimits

NAMES = ('j1', 'j2')
LIM = JointLimits.create(NAMES, [-1, -1], [1, 1], [2.0, 2.0])
CFG = c.ControllerConfig(limits=LIM, control_period_s=0.01, command_timeout_s=0.3,
                         state_timeout_s=0.2, max_chunk_age_s=0.5)


def chunk(stamp, n=5, dt=0.05, start=0.0, step=0.005, names=NAMES):
    times = [(k + 1) * dt for k in range(n)]
    pos = [[start + (k + 1) * step] * len(names) for k in range(n)]
    return list(names), stamp, times, pos


def run(ctl, t0, t1, period=0.01):
    out = []
    t = t0
    while t < t1 - 1e-9:
        ctl.on_state(ctl.last_command if ctl.last_command is not None else np.zeros(2), t)
        out.append((t, ctl.tick(t)))
        t += period
    return out


def test_nothing_is_commanded_before_a_measured_state():
    ctl = c.SafetyController(CFG)
    r = ctl.tick(0.0)
    assert r.command is None and r.mode == c.MODE_WAITING


def test_first_command_is_the_measured_position_not_a_stale_target():
    ctl = c.SafetyController(CFG)
    ctl.on_state(np.array([0.3, -0.2]), 0.0)
    r = ctl.tick(0.0)
    np.testing.assert_array_equal(r.command, [0.3, -0.2])
    assert r.mode == c.MODE_HOLDING


def test_tracks_a_chunk_on_its_stamp_time_base_and_measures_latency():
    ctl = c.SafetyController(CFG)
    ctl.on_state(np.zeros(2), 0.0)
    ctl.tick(0.0)
    ctl.on_chunk(*chunk(stamp=0.0), now_s=0.02)
    r = ctl.tick(0.03)
    assert r.mode == c.MODE_TRACKING
    assert r.chunk_latency_s == pytest.approx(0.03)
    # At t=0.1 the chunk says 2 steps (0.01); the gate allows it (2 rad/s * 0.01 s per tick).
    for t in np.arange(0.04, 0.105, 0.01):
        ctl.on_state(ctl.last_command, t)
        r = ctl.tick(t)
    np.testing.assert_allclose(r.command, [0.01, 0.01], atol=1e-9)


def test_reorders_joints_by_name():
    names, stamp, times, pos = chunk(stamp=0.0)
    pos = [[p[0], -p[0]] for p in pos]
    ch = c.make_chunk(['j2', 'j1'], stamp, times, pos, NAMES, 0.0, 1.0)
    np.testing.assert_allclose(ch.positions[:, 0], [-p[0] for p in pos])


@pytest.mark.parametrize('mutate,reason', [
    (lambda a: a.update(names=['j1', 'j3']), c.CHUNK_JOINTS),
    (lambda a: a.update(names=['j1']), c.CHUNK_JOINTS),
    (lambda a: a.update(names=['j1', 'j1']), c.CHUNK_JOINTS),
    (lambda a: a['pos'][2].__setitem__(0, float('nan')), c.CHUNK_NON_FINITE),
    (lambda a: a['pos'][2].__setitem__(1, float('inf')), c.CHUNK_NON_FINITE),
    (lambda a: a['pos'][2].append(0.0), c.CHUNK_SHAPE),
    (lambda a: a.update(times=[0.1, 0.1, 0.2, 0.3, 0.4]), c.CHUNK_TIME),
    (lambda a: a.update(times=[0.2, 0.1, 0.3, 0.4, 0.5]), c.CHUNK_TIME),
    (lambda a: a.update(stamp=-5.0), c.CHUNK_STALE),
    (lambda a: a.update(stamp=3.0), c.CHUNK_FUTURE),
    (lambda a: a.update(times=[], pos=[]), c.CHUNK_EMPTY),
])
def test_bad_chunks_are_rejected_counted_and_change_nothing(mutate, reason):
    ctl = c.SafetyController(CFG)
    ctl.on_state(np.zeros(2), 0.0)
    before = ctl.tick(0.0).command
    names, stamp, times, pos = chunk(stamp=0.0)
    args = {'names': names, 'stamp': stamp, 'times': times, 'pos': pos}
    mutate(args)
    with pytest.raises(c.ChunkError) as info:
        ctl.on_chunk(args['names'], args['stamp'], args['times'], args['pos'], now_s=0.01)
    assert info.value.reason == reason
    assert ctl.counters[reason] == 1
    ctl.on_state(np.zeros(2), 0.02)
    np.testing.assert_array_equal(ctl.tick(0.02).command, before)


def test_older_chunk_than_current_is_rejected():
    ctl = c.SafetyController(CFG)
    ctl.on_state(np.zeros(2), 0.0)
    ctl.on_chunk(*chunk(stamp=0.2), now_s=0.25)
    with pytest.raises(c.ChunkError):
        ctl.on_chunk(*chunk(stamp=0.1), now_s=0.26)


def test_silent_policy_runs_the_chunk_out_then_stops_and_times_out_after_its_end():
    """A heavy policy's long chunk is not cut at command_timeout_s after its arrival."""
    ctl = c.SafetyController(CFG)
    ctl.on_state(np.zeros(2), 0.0)
    ctl.on_chunk(*chunk(stamp=0.0, n=40, step=0.01), now_s=0.0)    # covers 2.0 s
    trace = run(ctl, 0.0, 3.0)
    tracking = [t for t, r in trace if r.mode == c.MODE_TRACKING]
    assert tracking[-1] == pytest.approx(2.0, abs=0.011)            # well past 0.3 s
    stopped_at = next(t for t, r in trace if r.mode != c.MODE_TRACKING)
    reasons = [(t, iv.reason) for t, r in trace for iv in r.interventions]
    assert (pytest.approx(stopped_at), c.CHUNK_EXHAUSTED) in reasons
    timeout_at = next(t for t, reason in reasons if reason == c.COMMAND_TIMEOUT)
    assert timeout_at == pytest.approx(stopped_at + CFG.command_timeout_s, abs=0.011)
    held = [r.command for t, r in trace if t > timeout_at]
    assert all(np.array_equal(h, held[0]) for h in held)
    assert ctl.counters[c.COMMAND_TIMEOUT] == 1 and ctl.counters[c.CHUNK_EXHAUSTED] == 1


def test_stale_joint_states_hold():
    ctl = c.SafetyController(CFG)
    ctl.on_state(np.zeros(2), 0.0)
    ctl.on_chunk(*chunk(stamp=0.0, n=40, step=0.01), now_s=0.0)
    ctl.tick(0.05)
    r = ctl.tick(0.3)   # state last seen at 0.0, timeout 0.2
    assert r.mode == c.MODE_HOLDING
    assert ctl.counters[c.STATE_TIMEOUT] == 1


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 0.3), st.floats(-2, 2), st.floats(0.005, 0.2)),
                min_size=1, max_size=8))
def test_random_chunk_streams_stay_in_limits(arrivals):
    """Chunks with random delays and targets, some far outside limits: output stays bounded."""
    ctl = c.SafetyController(CFG)
    t, prev = 0.0, None
    pending = sorted(arrivals)
    for k in range(150):
        t = k * 0.01
        ctl.on_state(prev if prev is not None else np.zeros(2), t)
        while pending and pending[0][0] <= t:
            delay, target, dt = pending.pop(0)
            try:
                ctl.on_chunk(NAMES, t - delay, [dt * (i + 1) for i in range(4)],
                             [[target, -target]] * 4, t)
            except c.ChunkError:
                pass
        r = ctl.tick(t)
        assert np.isfinite(r.command).all()
        assert np.all(np.abs(r.command) <= 1.0 + 1e-9)
        if prev is not None:
            assert np.all(np.abs(r.command - prev) <= 2.0 * 0.01 + 1e-9)
        prev = r.command


# ------------------------------------------------------------------ stops, faults, latches

DYN = JointLimits.create(NAMES, [-1, -1], [1, 1], [2.0, 2.0], [10.0, 10.0], [500.0, 500.0])


def _cfg(**kw):
    base = {'limits': DYN, 'control_period_s': 0.01, 'command_timeout_s': 0.3,
            'state_timeout_s': 0.2, 'max_chunk_age_s': 0.5}
    base.update(kw)
    return c.ControllerConfig(**base)


def _moving(ctl, until=0.6):
    """Track a fast chunk until ``until``; return the trace."""
    ctl.on_state(np.zeros(2), 0.0)
    ctl.on_chunk(NAMES, 0.0, [0.05 * (k + 1) for k in range(20)],
                 [[0.045 * (k + 1)] * 2 for k in range(20)], now_s=0.0)
    return run(ctl, 0.0, until)


def _check_limits(trace, lim=DYN, dt=0.01):
    cmds = np.array([r.command for _, r in trace])
    v = np.diff(cmds, axis=0) / dt
    a = np.diff(v, axis=0) / dt
    assert np.all(np.abs(v) <= lim.max_velocity + 1e-6)
    assert np.all(np.abs(a) <= lim.max_acceleration + 1e-6)
    return cmds, v


def test_chunk_running_out_fast_decelerates_within_limits_then_holds_and_times_out():
    ctl = c.SafetyController(_cfg())
    trace = _moving(ctl, 1.5)                 # the chunk ends at 1.0 s still moving fast
    cmds, v = _check_limits(trace)
    modes = [r.mode for _, r in trace]
    assert c.MODE_STOPPING in modes and modes[-1] == c.MODE_HOLDING
    first_stop = modes.index(c.MODE_STOPPING)
    assert trace[first_stop][0] == pytest.approx(1.0, abs=0.02)
    assert np.abs(v[first_stop - 2]).max() > 0.5        # it was moving fast
    assert np.all(cmds[-10:] == cmds[-1])
    assert ctl.counters[c.CHUNK_EXHAUSTED] == 1
    assert ctl.counters[c.COMMAND_TIMEOUT] == 1          # 0.3 s after the end


def test_estop_latches_until_released_and_reset():
    ctl = c.SafetyController(_cfg(command_timeout_s=5.0))
    _moving(ctl, 0.3)
    ctl.on_estop(True, 0.3)
    trace = run(ctl, 0.3, 0.8)
    _check_limits(trace)
    assert trace[-1][1].mode == c.MODE_FAULT and ctl.fault == c.ESTOP
    assert ctl.reset() == (False, 'e-stop is still pressed')
    ctl.on_estop(False, 0.8)
    # Released but not reset: still latched.
    assert run(ctl, 0.8, 0.9)[-1][1].mode == c.MODE_FAULT
    ok, msg = ctl.reset()
    assert ok and 'estop' in msg
    # The old chunk is not resumed after a reset.
    assert run(ctl, 0.9, 1.0)[-1][1].mode == c.MODE_HOLDING


def test_silent_estop_heartbeat_counts_as_pressed():
    ctl = c.SafetyController(_cfg(estop_timeout_s=0.1, command_timeout_s=5.0))
    ctl.on_state(np.zeros(2), 0.0)
    ctl.on_estop(False, 0.0)
    ctl.on_chunk(NAMES, 0.0, [0.1 * (k + 1) for k in range(20)],
                 [[0.05 * (k + 1)] * 2 for k in range(20)], now_s=0.0)
    trace = []
    for k in range(60):
        t = k * 0.01
        if t < 0.2:
            ctl.on_estop(False, t)          # heartbeat until 0.2 s, then silence
        ctl.on_state(ctl.last_command if ctl.last_command is not None else np.zeros(2), t)
        trace.append((t, ctl.tick(t)))
    assert ctl.fault == c.ESTOP_HEARTBEAT
    assert trace[25][1].mode == c.MODE_TRACKING
    assert trace[-1][1].mode == c.MODE_FAULT


def test_monitored_standstill_latches_on_drift():
    ctl = c.SafetyController(_cfg(standstill_tolerance_rad=0.05, standstill_settle_s=0.1))
    ctl.on_state(np.zeros(2), 0.0)
    for k in range(30):
        ctl.on_state(np.zeros(2), k * 0.01)
        ctl.tick(k * 0.01)
    assert ctl.fault is None
    ctl.on_state(np.array([0.0, 0.2]), 0.3)    # pushed away while holding
    r = ctl.tick(0.3)
    assert ctl.fault == c.STANDSTILL and r.mode == c.MODE_FAULT
    assert r.interventions[-1].joint == 'j2'


def test_repeated_interventions_escalate_to_a_latched_stop():
    ctl = c.SafetyController(_cfg(escalation_max_interventions=5, escalation_window_s=1.0,
                                  command_timeout_s=5.0))
    ctl.on_state(np.zeros(2), 0.0)
    ctl.tick(0.0)
    for k in range(6):
        with pytest.raises(c.ChunkError):
            ctl.on_chunk(['j1', 'nope'], 0.0, [0.1], [[0.0, 0.0]], now_s=0.01 * k)
    assert ctl.fault == c.ESCALATION


def test_disabling_stops_first_then_closes_and_enabling_starts_from_measured():
    ctl = c.SafetyController(_cfg(command_timeout_s=5.0))
    trace = _moving(ctl, 0.4)
    ctl.set_enabled(False)
    trace += run(ctl, 0.4, 1.0)
    _check_limits([x for x in trace if x[1].command is not None])
    assert trace[-1][1].mode == c.MODE_DISABLED and not ctl.enabled
    with pytest.raises(c.ChunkError) as info:
        ctl.on_chunk(*chunk(stamp=1.0), now_s=1.0)
    assert info.value.reason == c.CHUNK_DISABLED
    # A closed gate refuses chunks without counting them (nor towards escalation): the
    # policy may keep publishing while an operator has the robot disabled.
    ctl.reject(c.ChunkError(c.CHUNK_DISABLED, 'the gate is disabled'), 1.0)
    assert c.CHUNK_DISABLED not in ctl.counters
    ctl.set_enabled(True)
    ctl.on_state(np.array([0.5, -0.5]), 1.0)
    np.testing.assert_array_equal(ctl.tick(1.0).command, [0.5, -0.5])


def test_chunk_start_far_from_measured_is_rejected():
    ctl = c.SafetyController(_cfg(max_start_distance_rad=0.2))
    ctl.on_state(np.zeros(2), 0.0)
    with pytest.raises(c.ChunkError) as info:
        ctl.on_chunk(NAMES, 0.0, [0.1, 0.2], [[0.5, 0.0], [0.6, 0.0]], now_s=0.0)
    assert info.value.reason == c.CHUNK_START_FAR and 'j1' in str(info.value)


@pytest.mark.parametrize('policy', ['reject', 'clamp'])
def test_chunk_points_outside_limits(policy):
    ctl = c.SafetyController(_cfg(chunk_limit_policy=policy))
    ctl.on_state(np.zeros(2), 0.0)
    pts = [[0.1, 0.0], [1.5, 0.0]]
    if policy == 'reject':
        with pytest.raises(c.ChunkError) as info:
            ctl.on_chunk(NAMES, 0.0, [0.1, 0.2], pts, now_s=0.0)
        assert info.value.reason == c.CHUNK_LIMITS
    else:
        ch = ctl.on_chunk(NAMES, 0.0, [0.1, 0.2], pts, now_s=0.0)
        assert ch.positions[:, 0].max() == pytest.approx(1.0)


def test_clock_jumps_never_widen_the_window():
    ctl = c.SafetyController(_cfg(command_timeout_s=5.0, state_timeout_s=50.0))
    _moving(ctl, 0.3)
    before = ctl.last_command
    ctl.on_state(before, 10.0)
    r = ctl.tick(10.0)      # +9.7 s: dt capped at one period, chunk long gone -> stop
    assert np.all(np.abs(r.command - before) <= DYN.max_velocity * 0.01 + 1e-9)
    r2 = ctl.tick(5.0)      # backwards: one repeated command, the old chunk is dropped
    np.testing.assert_array_equal(r2.command, r.command)
    assert ctl.counters[c.CLOCK_JUMP_BACK] == 1
    ctl.on_state(r2.command, 5.0)
    ctl.on_chunk(*chunk(stamp=5.0), now_s=5.0)    # a chunk on the new time base is taken
    assert ctl.tick(5.01).mode == c.MODE_TRACKING


def test_chunk_exhausted_stops():
    ctl = c.SafetyController(_cfg(command_timeout_s=5.0))
    ctl.on_state(np.zeros(2), 0.0)
    ctl.on_chunk(NAMES, 0.0, [0.05, 0.1], [[0.01, 0.01], [0.02, 0.02]], now_s=0.0)
    trace = run(ctl, 0.0, 0.4)
    assert ctl.counters.get(c.CHUNK_EXHAUSTED) == 1
    assert trace[-1][1].mode == c.MODE_HOLDING


def test_speed_limit_slows_playback_and_zero_stops_then_resumes():
    ctl = c.SafetyController(_cfg(command_timeout_s=5.0))
    ctl.on_state(np.zeros(2), 0.0)
    ctl.on_chunk(NAMES, 0.0, [0.1 * (k + 1) for k in range(30)],
                 [[0.02 * (k + 1)] * 2 for k in range(30)], now_s=0.0)
    run(ctl, 0.0, 0.5)
    ctl.set_speed_limit(0.5)
    run(ctl, 0.5, 1.0)
    assert ctl.scheduler.speed == pytest.approx(0.5)
    ctl.set_speed_limit(0.0)
    trace = run(ctl, 1.0, 1.6)
    assert trace[-1][1].mode == c.MODE_HOLDING
    assert ctl.counters[c.SURPRISE_STOP] == 1
    _check_limits(trace)
    ctl.set_speed_limit(1.0)
    # The clock did not run while stopped; it was 0.25 s late from the slow playback and
    # stopped 0.6 s: steps due more than max_chunk_age_s (1 s) ago are never executed.
    late = run(ctl, 1.6, 1.7)
    assert ctl.counters[c.EXECUTION_LATE] == 1
    assert late[-1][1].mode == c.MODE_HOLDING
    q = ctl.last_command
    ctl.on_chunk(NAMES, 1.7, [0.1 * (k + 1) for k in range(5)],
                 [list(q + 0.01 * (k + 1)) for k in range(5)], now_s=1.7)
    assert ctl.scheduler.lag_s() == 0.0          # resynchronised by the fresh chunk
    assert run(ctl, 1.7, 1.8)[-1][1].mode == c.MODE_TRACKING
    assert ctl.scheduler.lag_s() < 0.02          # only while the speed slews back to 1
