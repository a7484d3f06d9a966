"""The safety gate: unit cases and hypothesis properties over random limits and commands."""

from hypothesis import assume, given, settings, strategies as st
import numpy as np
import pytest

from wam_runtime.core.gate import (
    ACCELERATION_LIMIT, braking_speed, gate_command, gate_step, GateState, JERK_LIMIT,
    NON_FINITE, POSITION_LIMIT, VELOCITY_LIMIT, WORKSPACE_HOLD, WORKSPACE_LIMIT)
from wam_runtime.core.limits import JointLimits, LimitsError

# Overflow or invalid arithmetic inside the gate is a finding, not noise.
pytestmark = pytest.mark.filterwarnings('error::RuntimeWarning')

NAMES = ('a', 'b', 'c')
LIM = JointLimits.create(NAMES, [-1, -2, -3], [1, 2, 3], [1.0, 2.0, 0.5])
DT = 0.01


def test_in_limit_command_passes_unchanged():
    prev = np.array([0.1, 0.2, 0.3])
    req = prev + np.array([0.005, -0.01, 0.004])
    res = gate_command(req, prev, LIM, DT, DT)
    np.testing.assert_array_equal(res.command, req)
    assert res.interventions == []


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_non_finite_holds_every_joint(bad):
    prev = np.array([0.1, 0.2, 0.3])
    res = gate_command(np.array([0.1, bad, 0.3]), prev, LIM, DT, DT)
    np.testing.assert_array_equal(res.command, prev)
    assert [(i.reason, i.joint) for i in res.interventions] == [(NON_FINITE, 'b')]


def test_position_limit_and_margin():
    prev = np.array([0.995, 0.0, 0.0])
    res = gate_command(np.array([1.5, 0.0, 0.0]), prev, LIM, DT, DT, margin_rad=0.01)
    assert res.command[0] == pytest.approx(0.99)
    assert res.interventions[0].reason == POSITION_LIMIT
    assert res.interventions[0].requested == 1.5


def test_velocity_scaling_keeps_direction():
    prev = np.zeros(3)
    req = np.array([0.5, 0.5, 0.0])
    res = gate_command(req, prev, LIM, DT, DT)
    # joint a is the binding one: 1 rad/s * 0.01 s, and b moves as far, not its own 0.02
    np.testing.assert_allclose(res.command, [0.01, 0.01, 0.0])
    assert [(i.reason, i.joint) for i in res.interventions] == [
        (VELOCITY_LIMIT, 'a'), (VELOCITY_LIMIT, 'b')]


@pytest.mark.parametrize('dt', [0.0, -0.5, float('nan'), float('-inf')])
def test_non_positive_or_invalid_dt_holds(dt):
    prev = np.array([0.1, 0.2, 0.3])
    res = gate_command(prev + 0.1, prev, LIM, dt, DT)
    np.testing.assert_array_equal(res.command, prev)


def test_clock_jump_does_not_widen_window():
    prev = np.zeros(3)
    res = gate_command(np.full(3, 0.9), prev, LIM, 5.0, DT)
    assert np.all(np.abs(res.command - prev) <= LIM.max_velocity * DT + 1e-12)


@pytest.mark.parametrize('kwargs,field', [
    ({'lower': [0, 0, 0], 'upper': [0, 1, 1]}, "lower_limits_rad/upper_limits_rad: joint 'a'"),
    ({'max_velocity': [1, 0, 1]}, "max_velocity_rad_s: joint 'b'"),
    ({'lower': [0, 0]}, 'lower_limits_rad: expected 3 values'),
    ({'upper': [1, float('nan'), 1]}, "upper_limits_rad: joint 'b' is not finite"),
    ({'names': ('a', 'a', 'c')}, 'joint_names: duplicates'),
])
def test_bad_limits_name_field_and_joint(kwargs, field):
    args = {'names': NAMES, 'lower': [-1, -1, -1], 'upper': [1, 1, 1],
            'max_velocity': [1, 1, 1]}
    args.update(kwargs)
    with pytest.raises(LimitsError, match=field.replace('(', r'\(')):
        JointLimits.create(args['names'], args['lower'], args['upper'], args['max_velocity'])


# ------------------------------------------------------------------ properties

finite = st.floats(-1e3, 1e3, allow_nan=False)
anything = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(1e308),
                     st.just(-1e308))


@st.composite
def limit_sets(draw, n=None):
    n = n or draw(st.integers(1, 7))
    lo = np.array(draw(st.lists(st.floats(-3, 0), min_size=n, max_size=n)))
    span = np.array(draw(st.lists(st.floats(0.05, 4), min_size=n, max_size=n)))
    vmax = np.array(draw(st.lists(st.floats(0.01, 10), min_size=n, max_size=n)))
    return JointLimits.create([f'j{i}' for i in range(n)], lo, lo + span, vmax)


@st.composite
def scenario(draw):
    lim = draw(limit_sets())
    n = len(lim.joint_names)
    u = np.array(draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)))
    prev = lim.lower + u * (lim.upper - lim.lower)
    req = np.array(draw(st.lists(anything, min_size=n, max_size=n)))
    dt = draw(st.one_of(st.floats(-1, 1), st.just(0.0), st.floats(1, 100)))
    nominal = draw(st.floats(0.001, 0.05))
    margin = draw(st.floats(0, 0.02))
    return lim, prev, req, dt, nominal, margin


@settings(max_examples=400, deadline=None)
@given(scenario())
def test_every_output_is_finite_and_inside_limits(s):
    lim, prev, req, dt, nominal, margin = s
    assume(np.all(lim.upper - lim.lower > 2 * margin))
    prev = np.clip(prev, lim.lower + margin, lim.upper - margin)
    out = gate_command(req, prev, lim, dt, nominal, margin).command
    assert np.isfinite(out).all()
    assert np.all(out >= lim.lower + margin - 1e-9) and np.all(out <= lim.upper - margin + 1e-9)
    step_bound = lim.max_velocity * min(max(dt, 0.0), nominal)
    assert np.all(np.abs(out - prev) <= step_bound + 1e-9)


@settings(max_examples=300, deadline=None)
@given(scenario())
def test_gating_twice_changes_nothing(s):
    lim, prev, req, dt, nominal, margin = s
    assume(np.all(lim.upper - lim.lower > 2 * margin))
    prev = np.clip(prev, lim.lower + margin, lim.upper - margin)
    once = gate_command(req, prev, lim, dt, nominal, margin)
    twice = gate_command(once.command, prev, lim, dt, nominal, margin)
    np.testing.assert_allclose(twice.command, once.command, atol=1e-9)
    assert all(i.reason != POSITION_LIMIT for i in twice.interventions)


@settings(max_examples=300, deadline=None)
@given(limit_sets(), st.data())
def test_in_limit_commands_pass_unchanged(lim, data):
    n = len(lim.joint_names)
    u = np.array(data.draw(st.lists(st.floats(0.1, 0.9), min_size=n, max_size=n)))
    prev = lim.lower + u * (lim.upper - lim.lower)
    frac = np.array(data.draw(st.lists(st.floats(-0.99, 0.99), min_size=n, max_size=n)))
    req = np.clip(prev + frac * lim.max_velocity * DT, lim.lower, lim.upper)
    res = gate_command(req, prev, lim, DT, DT)
    np.testing.assert_array_equal(res.command, req)
    assert res.interventions == []


@settings(max_examples=200, deadline=None)
@given(limit_sets(), st.lists(st.lists(anything, min_size=7, max_size=7), min_size=1,
                              max_size=40))
def test_adversarial_sequences_stay_bounded(lim, seq):
    n = len(lim.joint_names)
    prev = (lim.lower + lim.upper) / 2
    for raw in seq:
        out = gate_command(np.array(raw[:n]), prev, lim, DT, DT).command
        assert np.isfinite(out).all()
        assert np.all(out >= lim.lower - 1e-9) and np.all(out <= lim.upper + 1e-9)
        assert np.all(np.abs(out - prev) <= lim.max_velocity * DT + 1e-9)
        prev = out


# ------------------------------------------------------------------ acceleration and jerk

DYN = JointLimits.create(NAMES, [-1, -2, -3], [1, 2, 3], [1.0, 2.0, 0.5], [5.0, 8.0, 2.0],
                         [100.0, 200.0, 50.0])


def _run(lim, targets, dt=DT, start=None, scaling='uniform', margin=0.0, ok=None):
    """Gate a sequence; return positions (with the start) and the results."""
    state = GateState.at_rest(np.zeros(len(lim.joint_names)) if start is None else start)
    pos, results = [state.position.copy()], []
    for r in targets:
        res = gate_step(r, state, lim, dt, dt, margin, scaling, ok)
        state = res.state
        pos.append(res.command)
        results.append(res)
    return np.array(pos), results


def _derivs(pos, dt=DT):
    v = np.diff(pos, axis=0) / dt
    a = np.diff(v, axis=0) / dt
    j = np.diff(a, axis=0) / dt
    return v, a, j


def test_acceleration_and_jerk_ramp_up_from_rest():
    pos, results = _run(DYN, [np.array([0.9, 1.9, 2.9])] * 60)
    v, a, j = _derivs(pos)
    assert np.all(np.abs(a) <= DYN.max_acceleration + 1e-6)
    assert np.all(np.abs(j) <= DYN.max_jerk + 1e-6)
    assert results[0].interventions[0].reason in (JERK_LIMIT, ACCELERATION_LIMIT)
    assert pos[-1][2] > pos[1][2] > 0


def test_controlled_stop_from_full_speed_decelerates_within_limits():
    lim = DYN
    pos, _ = _run(lim, [np.array([0.95, 1.95, 2.95])] * 80)
    state_pos = pos[-1]
    # now hold: target = current position, per joint (what the controller's stop does)
    v_state = (pos[-1] - pos[-2]) / DT
    assert np.abs(v_state).max() > 0.1
    state = GateState(pos[-1], v_state, (v_state - (pos[-2] - pos[-3]) / DT) / DT)
    seq = [state_pos]
    for _ in range(200):
        res = gate_step(state.position, state, lim, DT, DT, 0.0, 'per_joint')
        state = res.state
        seq.append(res.command)
    full = np.vstack([pos[:-1], np.array(seq)])
    v, a, j = _derivs(full)
    assert np.all(np.abs(a) <= lim.max_acceleration + 1e-6)
    assert np.abs(v[-5:]).max() < 1e-9                  # it came to rest
    assert np.all(full <= lim.upper + 1e-12)


@st.composite
def dyn_limit_sets(draw):
    n = draw(st.integers(1, 7))
    lo = np.array(draw(st.lists(st.floats(-3, 0), min_size=n, max_size=n)))
    span = np.array(draw(st.lists(st.floats(0.05, 4), min_size=n, max_size=n)))
    vmax = np.array(draw(st.lists(st.floats(0.05, 5), min_size=n, max_size=n)))
    amax = np.array(draw(st.lists(st.floats(0.5, 50), min_size=n, max_size=n)))
    jmax = np.array(draw(st.lists(st.floats(10, 2000), min_size=n, max_size=n)))
    return JointLimits.create([f'j{i}' for i in range(n)], lo, lo + span, vmax, amax, jmax)


@settings(max_examples=150, deadline=None)
@given(dyn_limit_sets(), st.data())
def test_random_and_adversarial_sequences_respect_every_limit(lim, data):
    """From rest inside the limits, any request sequence stays inside all limits."""
    n = len(lim.joint_names)
    u = np.array(data.draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)))
    start = lim.lower + u * (lim.upper - lim.lower)
    steps = data.draw(st.integers(5, 120))
    targets = []
    for _ in range(steps):
        kind = data.draw(st.sampled_from(['far', 'limit', 'wild', 'hold']))
        if kind == 'far':
            t = np.array(data.draw(st.lists(st.floats(-10, 10), min_size=n, max_size=n)))
        elif kind == 'limit':
            t = np.where(data.draw(st.booleans()), lim.upper + 1, lim.lower - 1)
        elif kind == 'wild':
            t = np.array(data.draw(st.lists(anything, min_size=n, max_size=n)))
        else:
            t = targets[-1] if targets else start
        targets.append(np.broadcast_to(t, (n,)).astype(float))
    scaling = data.draw(st.sampled_from(['uniform', 'per_joint']))
    pos, _ = _run(lim, targets, start=start, scaling=scaling)
    assert np.isfinite(pos).all()
    assert np.all(pos >= lim.lower - 1e-9) and np.all(pos <= lim.upper + 1e-9)
    v, a, j = _derivs(pos)
    assert np.all(np.abs(v) <= lim.max_velocity * (1 + 1e-6) + 1e-9)
    assert np.all(np.abs(a) <= lim.max_acceleration * (1 + 1e-6) + 1e-6)
    assert np.all(np.abs(j) <= lim.max_jerk * (1 + 1e-6) + 1e-3)


@settings(max_examples=100, deadline=None)
@given(dyn_limit_sets(), st.data())
def test_in_window_requests_pass_and_regating_is_idempotent(lim, data):
    n = len(lim.joint_names)
    pos, results = _run(lim, [lim.upper + 1.0] * data.draw(st.integers(1, 30)),
                        start=(lim.lower + lim.upper) / 2)
    state = results[-1].state
    req = np.array(data.draw(st.lists(st.floats(-5, 5), min_size=n, max_size=n)))
    once = gate_step(req, state, lim, DT, DT)
    twice = gate_step(once.command, state, lim, DT, DT)
    np.testing.assert_array_equal(twice.command, once.command)
    assert twice.interventions == []


# ------------------------------------------------------------------ workspace hook

def test_workspace_guard_retreats_along_the_path_or_holds():
    lim = JointLimits.create(NAMES, [-1] * 3, [1] * 3, [10.0] * 3)

    def ok(q, prev, dt):
        return q[0] <= 0.05        # a wall at x = 0.05 for joint a

    res = gate_step(np.array([0.08, 0.08, 0.0]), GateState.at_rest(np.zeros(3)), lim, DT, DT,
                    workspace_ok=ok)
    assert res.command[0] == pytest.approx(0.05, abs=1e-3)
    assert res.command[1] == pytest.approx(res.command[0])   # same path, scaled
    assert res.interventions[-1].reason == WORKSPACE_LIMIT
    res = gate_step(np.array([0.09, 0.0, 0.0]), GateState.at_rest(np.array([0.06, 0, 0])),
                    lim, DT, DT, workspace_ok=ok)
    np.testing.assert_array_equal(res.command, [0.06, 0, 0])
    assert res.interventions[-1].reason == WORKSPACE_HOLD


def test_braking_bounds_hold_beyond_float_range():
    """Absurd distances give a bound that still holds, never NaN, inf or a warning."""
    d = np.array([0.0, 1e-9, 1.0, 1e10, 1e300, 1.7e308, np.inf])
    for acc in (1e-3, 10.0, 1e300):
        v = braking_speed(d, 0.01, np.full(d.shape, acc), np.full(d.shape, 0.02))
        assert v[0] == 0.0 and np.all(np.isfinite(v)) and np.all(np.diff(v) >= 0), (acc, v)
        # v * lead + v^2 / (2 a) <= d, divided by d to stay in range.
        v, dd = v[1:-1], d[1:-1]
        r = v / np.sqrt(dd)
        assert np.all(v * (0.01 + 0.02) / dd + r * r / (2 * acc) <= 1 + 1e-9), (acc, v)
    # Unlimited acceleration: no braking bound.
    assert np.all(braking_speed(d, 0.01, np.full(d.shape, np.inf), np.zeros(d.shape)) == np.inf)


@pytest.mark.parametrize('dt', [5e-324, 1e-310, 1e-200, 9e-10, 0.0, -1.0])
@pytest.mark.parametrize('dynamic', [True, False])
def test_vanishing_steps_hold_without_overflow(dt, dynamic):
    extra = (np.array([5.0, 5.0]), np.array([100.0, 100.0])) if dynamic else ()
    lim = JointLimits.create(['a', 'b'], np.array([-1.0, -1.0]), np.array([1.0, 1.0]),
                             np.array([1.0, 1.0]), *extra)
    for req in (np.array([1e308, -1e308]), np.array([np.nan, np.inf]), np.array([0.5, -0.5])):
        res = gate_command(req, np.zeros(2), lim, dt, 0.01, 0.0)
        assert np.all(res.command == 0.0)      # below 1 ns no time has passed: no motion
