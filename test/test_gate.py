"""The safety gate: unit cases and hypothesis properties over random limits and commands."""

from hypothesis import assume, given, settings, strategies as st
import numpy as np
import pytest

from wam_runtime.core.gate import (
    gate_command, JointLimits, LimitsError, NON_FINITE, POSITION_LIMIT, VELOCITY_LIMIT)

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
    # joint a is the binding one: 1 rad/s * 0.01 s
    np.testing.assert_allclose(res.command, [0.01, 0.01, 0.0])
    assert res.interventions[-1].reason == VELOCITY_LIMIT
    assert res.interventions[-1].joint == 'a'


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
