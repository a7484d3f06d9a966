"""The controlled stop always settles: the gate's jerk-limited stop, against its analytic time.

Promise: from any motion state consistent with the limits (|v| <= V, |a| <= A, and the
velocity left after ramping the acceleration away stays within V), the gate's stop brings
every joint to v = 0 and a = 0 within ceil(T_stop / dt) + 2 ticks, where T_stop is the
continuous-time minimum stopping time (``braking.stop_time``), without passing its stopping
point by more than 1e-6 rad, and every tick keeps the velocity, acceleration and jerk limits
(checked on the commanded positions, as test/unit/core/test_gate.py does).
"""

import math

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from wam_runtime.core.braking import stop_time
from wam_runtime.core.gate import braking_path, gate_step, GateState
from wam_runtime.core.limits import JointLimits

pytestmark = pytest.mark.filterwarnings('error::RuntimeWarning')

FAR_LIMIT = 1e4          # position limits far away: the stop alone is under test
MAX_TICKS = 3000         # keeps each example short (the rate is lowered for long stops)
EXTRA = 20               # ticks simulated past the bound, to see that it stays at rest


def _limits(vmax, amax, jmax, lower=None, upper=None):
    n = len(vmax)
    return JointLimits.create(
        [f'j{i}' for i in range(n)], [-FAR_LIMIT] * n if lower is None else lower,
        [FAR_LIMIT] * n if upper is None else upper, vmax, amax, jmax)


def _stop(lim, state, dt, ticks, stop=None):
    """Run the controller's stop (request = where we are, per joint); return positions."""
    pos = [state.position.copy()]
    for _ in range(ticks):
        res = gate_step(state.position, state, lim, dt, dt, 0.0, 'per_joint', stop=stop)
        state = res.state
        pos.append(res.command.copy())
    return np.array(pos), state


def _history(state, dt):
    """Two earlier positions whose backward differences are the state's v and a."""
    p, v, a = state.position, state.velocity, state.acceleration
    p1 = p - v * dt
    return np.array([p1 - (v - a * dt) * dt, p1])


def _check_limits(lim, pos, dt):
    v = np.diff(pos, axis=0) / dt
    a = np.diff(v, axis=0) / dt
    j = np.diff(a, axis=0) / dt
    # v[0] is the history's own velocity before the start (not commanded by the stop).
    assert np.all(np.abs(v[1:]) <= lim.max_velocity * (1 + 1e-6) + 1e-9), \
        np.abs(v).max(axis=0)
    assert np.all(np.abs(a) <= lim.max_acceleration * (1 + 1e-6) + 1e-6), \
        np.abs(a).max(axis=0)
    assert np.all(np.abs(j) <= lim.max_jerk * (1 + 1e-6) + 1e-3), np.abs(j).max(axis=0)
    return v, a


def _settle_tick(v, a, tol_v=1e-9, tol_a=1e-6):
    """Per joint: the first tick from which v and a stay at 0 (len when never)."""
    moving = (np.abs(v) > tol_v) | (np.abs(a) > tol_a)
    out = []
    for col in moving.T:
        idx = np.flatnonzero(col)
        out.append(0 if idx.size == 0 else int(idx[-1]) + 1)
    return np.array(out)


def _overshoot(pos, v, tol_v=1e-6):
    """Per joint: how far the stop went past its stopping point, and whether v reversed.

    ``v[k]`` is the velocity into ``pos[k]``. The approach direction s is the sign of the
    last motion faster than ``tol_v`` (slower is float noise: a 1e-9 rad/s step is far
    below a nanoradian). From the first tick moving that way on, the position must not pass
    the end and the velocity must not turn back; one turn before that is the initial
    state's own doing (a stop cannot avoid it).
    """
    end = pos[-1]
    over, reversed_ = np.zeros(pos.shape[1]), np.zeros(pos.shape[1], bool)
    for i in range(pos.shape[1]):
        moving = np.flatnonzero(np.abs(v[:, i]) > tol_v)
        if moving.size == 0:
            continue
        s = math.copysign(1.0, v[moving[-1], i])
        first = int(np.flatnonzero(s * v[:, i] > tol_v)[0])
        over[i] = max(0.0, float(np.max(s * (pos[first:, i] - end[i]))))
        reversed_[i] = bool(np.any(s * v[first:, i] < -tol_v))
    return over, reversed_


@st.composite
def stop_cases(draw):
    """Random limits (J small or large relative to A, or none), rate and initial state."""
    n = draw(st.integers(1, 3))
    vmax, amax, jmax, v0, a0 = [], [], [], [], []
    for _ in range(n):
        vm = draw(st.floats(0.05, 3.0))
        kind = draw(st.sampled_from(['both', 'both', 'both', 'no_jerk', 'no_acc', 'none']))
        am = 10 ** draw(st.floats(0.0, 2.0))                    # 1 .. 100 rad/s^2
        jm = am * 10 ** draw(st.floats(-0.5, 3.3))              # J / A: 0.3 .. 2000 /s
        am = am if kind in ('both', 'no_jerk') else math.inf
        jm = jm if kind in ('both', 'no_acc') else math.inf
        fv = draw(st.sampled_from([-1.0, 1.0, 0.0]) | st.floats(-1.0, 1.0))
        fa = draw(st.sampled_from([-1.0, 1.0, 0.0]) | st.floats(-1.0, 1.0))
        v = fv * vm
        # Consistent: the velocity after ramping the acceleration to 0 stays within V.
        same = fa * v > 0
        room = vm - abs(v) if same else vm + abs(v)
        a_cap = min(am if math.isfinite(am) else 50.0,
                    math.sqrt(2.0 * jm * room) if math.isfinite(jm) else math.inf)
        vmax.append(vm)
        amax.append(am)
        jmax.append(jm)
        v0.append(v)
        a0.append(fa * a_cap)
    hz = draw(st.floats(50.0, 1000.0))
    return (np.array(vmax), np.array(amax), np.array(jmax), np.array(v0), np.array(a0), hz)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(stop_cases())
def test_stop_settles_within_its_analytic_time_without_overshoot(case):
    vmax, amax, jmax, v0, a0, hz = case
    lim = _limits(vmax, amax, jmax)
    t_stop = stop_time(v0, a0, amax, jmax)
    hz = min(hz, max(50.0, MAX_TICKS / max(float(t_stop.max()), 1e-9)))
    dt = 1.0 / hz
    bound = np.ceil(t_stop / dt - 1e-9).astype(int) + 2
    state = GateState(np.zeros(len(v0)), v0, a0)
    pos, _ = _stop(lim, state, dt, int(bound.max()) + EXTRA)
    full = np.vstack([_history(state, dt), pos])
    v, a = _check_limits(lim, full, dt)
    # v[k + 1] and a[k] belong to the state after k ticks (v[0] is the one before it).
    settle = _settle_tick(v[1:], a)
    assert np.all(settle <= bound), (settle, bound, t_stop / dt)
    over, reversed_ = _overshoot(pos, v[1:])
    assert np.all(over <= 1e-6), over
    assert not reversed_.any()


@pytest.mark.parametrize('amax, jmax, hz', [
    (30.0, 100.0, 500.0),          # the case: used to ring for 1000 ticks
    (15.0, 1500.0, 250.0),         # realistic limits
    (30.0, 100.0, 1000.0),
])
def test_low_jerk_stop_from_full_speed_settles(amax, jmax, hz):
    dt = 1.0 / hz
    lim = _limits([2.0], [amax], [jmax])
    # Cruising, already braking hard, and accelerating so that the stop touches V.
    for a_start in (0.0, -0.9 * min(amax, math.sqrt(4.0 * jmax)),
                    0.5 * min(amax, math.sqrt(2.0 * jmax))):
        v_start = 2.0 - (0.5 * a_start * a_start / jmax if a_start > 0 else 0.0)
        state = GateState(np.zeros(1), np.array([v_start]), np.array([a_start]))
        t_stop = float(stop_time(state.velocity, state.acceleration, lim.max_acceleration,
                                 lim.max_jerk)[0])
        pos, end = _stop(lim, state, dt, 1000)
        v, a = _check_limits(lim, np.vstack([_history(state, dt), pos]), dt)
        settle = int(_settle_tick(v[1:], a)[0])
        assert settle <= math.ceil(t_stop / dt) + 2
        assert settle >= t_stop / dt - 2        # and T_stop is no loose bound
        assert np.all(np.diff(pos[:, 0]) >= -1e-12)    # never back: no ringing
        assert end.velocity[0] == pytest.approx(0.0, abs=1e-9)


def test_stop_time_closed_forms():
    inf = math.inf
    # A triangle of jerk: 2 sqrt(v / J); a trapezoid: v / A + A / J; a ramp: |a| / J.
    assert stop_time(1.0, 0.0, inf, 4.0) == pytest.approx(1.0)
    assert stop_time(-1.0, 0.0, 1.0, 100.0) == pytest.approx(1.01)
    assert stop_time(0.5, -1.0, inf, 1.0) == pytest.approx(1.0)
    assert stop_time(-0.5, 1.0, 10.0, 1.0) == pytest.approx(1.0)
    assert stop_time(2.0, 5.0, 4.0, inf) == pytest.approx(0.5)        # no jerk limit
    assert stop_time(2.0, 5.0, inf, inf) == 0.0                       # no limit at all
    # Accelerating away first: up to a_p, the hold and the ramp back.
    t = stop_time(1.0, 2.0, 3.0, 10.0)
    assert t == pytest.approx((2 + 3) / 10 + 1 / 3 + 4 / 60)
    # Continuous in the limits: the two branches meet where a_p == A.
    a_p = math.sqrt(10.0 * 1.0 + 0.5)
    assert stop_time(1.0, 1.0, a_p, 10.0) == pytest.approx(stop_time(1.0, 1.0, inf, 10.0))


def test_explicit_stop_ignores_the_request_and_holds_at_rest():
    lim = _limits([2.0], [30.0], [100.0])
    dt = 0.002
    moving = GateState(np.zeros(1), np.array([1.5]), np.zeros(1))
    stop = gate_step([-5.0], moving, lim, dt, dt, 0.0, 'uniform', stop=True)
    auto = gate_step(moving.position, moving, lim, dt, dt, 0.0, 'per_joint')
    np.testing.assert_array_equal(stop.command, auto.command)
    assert stop.command[0] > 0.0                       # it goes on, slowing down
    rest = GateState.at_rest(np.array([0.3]))
    held = gate_step(rest.position, rest, lim, dt, dt, 0.0, 'per_joint')
    np.testing.assert_array_equal(held.command, [0.3])
    assert held.interventions == []


def test_position_limits_keep_priority_over_the_stop():
    """Too close to a limit to stop in time: the limit wins, then it holds (no ringing)."""
    dt = 0.004
    lim = _limits([2.0], [30.0], [100.0], lower=[-1.0], upper=[0.05])
    state = GateState(np.zeros(1), np.array([2.0]), np.zeros(1))
    pos, end = _stop(lim, state, dt, 400, stop=True)
    assert np.all(pos <= 0.05 + 1e-12) and np.all(pos >= -1.0)
    assert np.all(np.diff(pos[:, 0]) >= 0.0)           # up to the limit, never back
    assert end.velocity[0] == 0.0 and end.acceleration[0] == 0.0


def test_stop_from_within_the_braking_distance_stays_inside_every_limit():
    """From the braking-speed ceiling itself the stop ends short of the limit, smoothly."""
    dt = 0.004
    lim = _limits([2.0], [30.0], [100.0], lower=[-1.0], upper=[1.0])
    distance = 1.0 * (dt + lim.brake_ramp_s[0]) + 1.0 / (2 * 30.0)   # from 1 rad/s
    state = GateState(np.array([1.0 - distance]), np.array([1.0]), np.zeros(1))
    pos, end = _stop(lim, state, dt, 400)
    _check_limits(lim, np.vstack([_history(state, dt), pos]), dt)
    assert np.all(pos < 1.0) and end.velocity[0] == pytest.approx(0.0, abs=1e-9)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(stop_cases())
def test_braking_path_is_the_stop_and_its_rest_is_the_successors_path(case):
    vmax, amax, jmax, v0, a0, hz = case
    lim = _limits(vmax, amax, jmax)
    dt = 1.0 / max(hz, 200.0)
    state = GateState(np.zeros(len(v0)), v0, a0)
    path = braking_path(state, lim, dt)
    if path is None or len(path) == 0:
        return
    pos, _ = _stop(lim, state, dt, len(path), stop=True)
    np.testing.assert_array_equal(path, pos[1:])
    nxt = state.advance(path[0], dt)
    rest = braking_path(nxt, lim, dt)
    np.testing.assert_array_equal(rest, path[1:])


def test_controller_stop_at_the_chunk_end_settles_with_low_jerk_limits():
    """The issue's limits in the controller: chunk runs out at full speed, the stop holds."""
    from wam_runtime.core import controller as ctl
    period = 0.002
    lim = _limits([2.0], [30.0], [100.0], lower=[-10.0], upper=[10.0])
    cfg = ctl.ControllerConfig(limits=lim, control_period_s=period, command_timeout_s=5.0,
                               state_timeout_s=1.0, max_chunk_age_s=5.0)
    c = ctl.SafetyController(cfg)
    c.on_state(np.zeros(1), 0.0)
    c.tick(0.0)
    times = [0.05 * (k + 1) for k in range(20)]          # 1 s of a target far ahead
    c.on_chunk(['j0'], 0.0, times, [[3.0 * t] for t in times], 0.0)
    cmds, modes, start, before = [], [], None, None
    for k in range(1, 2000):
        t = k * period
        c.on_state(c.last_command, t)
        prev = c.gate_state
        r = c.tick(t)
        cmds.append(r.command[0])
        modes.append(r.mode)
        if start is None and r.mode == ctl.MODE_STOPPING:
            start, before = len(modes) - 1, prev
        if start is not None and r.mode == ctl.MODE_HOLDING:
            break
    assert start is not None and modes[-1] == ctl.MODE_HOLDING
    assert before.velocity[0] == pytest.approx(2.0)         # it stopped from full speed
    assert np.all(np.diff(cmds) >= -1e-12)                  # never back: no ringing
    t_stop = float(stop_time(before.velocity, before.acceleration, lim.max_acceleration,
                             lim.max_jerk)[0])
    ticks = len(modes) - start                              # the last one is at rest
    assert ticks <= math.ceil(t_stop / period) + 2, (ticks, t_stop / period)
