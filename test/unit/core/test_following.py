"""Following error: the monitor (core.following) and the controller's latched stop."""

from dataclasses import replace
import math
import time

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from wam_runtime.core import controller as c
from wam_runtime.core.following import describe, FollowingMonitor
from wam_runtime.core.gate import wrap_angle
from wam_runtime.core.limits import JointLimits
from wam_runtime.core.params import ConfigError
from wam_runtime.core.safety_config import build_safety

PERIOD = 0.01
PROPS = settings(max_examples=60, deadline=None, derandomize=True)


def ramp_command(t, speeds, t0=0.0):
    """Joint positions of a command moving at constant ``speeds`` from ``t0``."""
    return np.asarray(speeds) * max(0.0, t - t0)


def feed(mon, t_end, command, measured, state_offset=0.0):
    """Tick at PERIOD: command at t, a measurement at t + state_offset; return trip time."""
    t = 0.0
    while t < t_end:
        mon.on_command(t, command(t))
        ts = t + state_offset
        fault = mon.on_state(ts, measured(ts))
        if fault is not None:
            return ts, fault
        t = round(t + PERIOD, 9)
    return None, None


@PROPS
@given(delay=st.floats(0.0, 0.08), tol=st.floats(0.005, 0.2),
       frac=st.floats(0.0, 0.95), speed=st.floats(-2.0, 2.0),
       offset=st.floats(0.0, 0.0099), seed=st.integers(0, 1000))
def test_a_robot_following_the_delayed_command_within_tolerance_never_trips(
        delay, tol, frac, speed, offset, seed):
    rng = np.random.default_rng(seed)
    knots = np.cumsum(rng.uniform(-1, 1, 40)) * 0.05 + speed * np.arange(40) * 0.1

    def command(t):          # a piecewise-linear path through random knots, 3 joints
        x = np.interp(t, np.arange(40) * 0.1, knots)
        return np.array([x, -x, 0.5 * x])

    mon = FollowingMonitor(tol, 0.05, delay, PERIOD, 3)
    noise = np.random.default_rng(seed + 1)

    def measured(t):         # the robot at command(t - delay), off by up to frac * tol
        ref = mon.reference(t - delay)
        base = ref if ref is not None else command(0.0)
        return base + frac * tol * noise.uniform(-1, 1, 3)

    t_trip, _ = feed(mon, 3.5, command, measured, offset)
    assert t_trip is None


@PROPS
@given(delay=st.floats(0.0, 0.08), tol=st.floats(0.01, 0.2),
       timeout=st.floats(0.0, 0.3), speed=st.floats(0.3, 2.0),
       t_block=st.floats(0.1, 1.0), joint=st.integers(0, 2),
       sign=st.sampled_from([-1.0, 1.0]))
def test_a_joint_that_stops_following_trips_within_timeout_plus_one_tick(
        delay, tol, timeout, speed, t_block, joint, sign):
    speeds = np.array([0.2, -0.3, 0.4])
    speeds[joint] = sign * speed

    def command(t):
        return ramp_command(t, speeds)

    def measured(t):         # follows with exactly the delay, then ``joint`` is blocked
        q = command(t - delay)
        q[joint] = command(min(t, t_block) - delay)[joint]
        return q

    mon = FollowingMonitor(tol, timeout, delay, PERIOD, 3)
    t_trip, fault = feed(mon, 10.0, command, measured)
    # The first measurement (one per tick) beyond the tolerance: the error is
    # speed * (t - t_block) exactly, whatever the delay.
    ticks = np.round(np.arange(0.0, 10.0, PERIOD), 9)
    first = ticks[np.argmax(speed * (ticks - t_block) > tol)]
    assert t_trip is not None
    assert fault.joint == joint
    assert first + timeout - 1e-6 <= t_trip <= first + timeout + PERIOD + 1e-6
    assert abs(fault.error) > tol and fault.duration_s >= timeout
    assert fault.error == pytest.approx(fault.measured - fault.commanded)
    assert fault.error * sign < 0              # the joint stayed behind


@PROPS
@given(delay=st.floats(0.0, 0.08), lag_frac=st.floats(-0.999, 0.999),
       tol=st.floats(0.01, 0.2), duration=st.floats(1.0, 20.0))
def test_an_error_below_tolerance_never_trips_however_long(delay, lag_frac, tol, duration):
    def command(t):          # a slow oscillation that never stops moving
        return np.array([0.5 * math.sin(t), 0.3 * math.cos(0.7 * t)])

    def measured(t):         # a constant offset just inside the tolerance
        return command(t - delay) + lag_frac * tol

    mon = FollowingMonitor(tol, 0.0, delay, PERIOD, 2)
    assert feed(mon, duration, command, measured)[0] is None


def test_a_constant_lag_beyond_tolerance_trips_and_within_it_does_not():
    def command(t):
        return ramp_command(t, [1.0])

    for lag, trips in ((0.02, False), (0.05, False), (0.08, True)):
        mon = FollowingMonitor(0.05, 0.1, 0.02, PERIOD, 1)
        # error = 1 rad/s * (lag - delay): 0, 0.03 (inside 0.05), 0.06 (beyond)
        t_trip, _ = feed(mon, 3.0, command, lambda t, lag=lag: command(t - lag))
        assert (t_trip is not None) == trips, lag


def test_a_joint_whose_command_does_not_move_is_not_watched():
    # joint 1 is commanded still and stays 1 rad away (a gripper squeezing an object): no
    # fault while joint 0 moves; joint 0 blocked still trips.
    def command(t):
        return np.array([0.5 * t, 0.0])

    mon = FollowingMonitor(0.05, 0.05, 0.0, PERIOD, 2)
    assert feed(mon, 3.0, command, lambda t: command(t) + [0.0, 1.0])[0] is None
    mon.clear()
    t_trip, fault = feed(mon, 3.0, command, lambda t: np.array([min(0.5 * t, 0.2), 1.0]))
    assert t_trip is not None and fault.joint == 0


def test_watching_ends_one_delay_after_the_command_stops():
    def command(t):
        return np.array([min(t, 0.5)])          # moves, then holds from t = 0.5

    mon = FollowingMonitor(0.05, 0.0, 0.1, PERIOD, 1)
    # Measured 0.2 rad away only after the command has held for more than the delay.
    t_trip, _ = feed(mon, 3.0, command, lambda t: command(t - 0.1) + (0.2 if t > 0.75 else 0))
    assert t_trip is None


def test_continuous_joints_compare_the_short_way_round():
    def command(t):              # turning past +pi, unwrapped
        return np.array([2.5 + 1.0 * t, 0.1 * t])

    def measured(t):             # the driver reports the angle wrapped into [-pi, pi)
        q = command(t)
        return np.array([wrap_angle(q[0]), q[1]])

    mon = FollowingMonitor(0.05, 0.05, 0.0, PERIOD, 2, continuous=[True, False])
    assert feed(mon, 3.0, command, measured)[0] is None
    assert np.nanmax(np.abs(mon.error)) < 1e-9


def test_prismatic_tolerance_is_in_metres_and_zero_is_off():
    def command(t):
        return np.array([0.5 * t, 0.02 * t])     # a revolute joint and a slow prismatic one

    blocked = lambda t: np.array([0.5 * t, min(0.02 * t, 0.01)])  # noqa: E731
    mon = FollowingMonitor([0.1, 0.005], 0.05, 0.0, PERIOD, 2)
    t_trip, fault = feed(mon, 3.0, command, blocked)
    assert fault.joint == 1 and t_trip == pytest.approx(0.5 + 0.25 + 0.05, abs=PERIOD + 1e-6)
    mon = FollowingMonitor([0.1, 0.0], 0.05, 0.0, PERIOD, 2)    # 0 = off
    assert feed(mon, 3.0, command, blocked)[0] is None


def test_clock_going_back_restarts_the_history():
    mon = FollowingMonitor(0.05, 0.0, 0.02, PERIOD, 1)
    for k in range(20):
        mon.on_command(10.0 + k * PERIOD, [k * 0.01])
    mon.on_command(1.0, [5.0])                  # simulation reset: a new time base
    assert mon.reference(1.0)[0] == 5.0 and mon.reference(0.99) is None


def test_history_is_a_bounded_ring_and_interpolates():
    mon = FollowingMonitor(0.05, 0.0, 0.03, PERIOD, 2)
    for k in range(1000):
        mon.on_command(k * PERIOD, [k * 0.01, -k * 0.01])
    assert mon._t.size == 2 * mon.capacity < 30
    np.testing.assert_allclose(mon.reference(9.955), [9.955, -9.955])
    assert mon.reference(1.0) is None           # older than the history
    np.testing.assert_allclose(mon.reference(20.0), [9.99, -9.99])


def test_bad_parameters_are_refused():
    for kwargs in ({'timeout_s': -1}, {'delay_s': float('nan')}, {'period_s': 0},
                   {'tolerance': -0.1}):
        args = {'tolerance': 0.1, 'timeout_s': 0.1, 'delay_s': 0.02, 'period_s': PERIOD,
                'n_joints': 2}
        args.update(kwargs)
        with pytest.raises(ValueError):
            FollowingMonitor(**args)


def test_describe_names_the_joint_and_the_error():
    mon = FollowingMonitor(0.05, 0.0, 0.0, PERIOD, 1)
    _, fault = feed(mon, 1.0, lambda t: np.array([t]), lambda t: np.array([0.0]))
    text = describe('joint_3', fault, 'rad')
    assert text.startswith('joint_3: following error -0.0') and 'rad' in text


# ---------------------------------------------------------------- the controller
NAMES = ('j1', 'j2')
LIM = JointLimits.create(NAMES, [-2, -2], [2, 2], [2.0, 2.0], [20.0, 20.0])
CFG = c.ControllerConfig(limits=LIM, control_period_s=PERIOD, command_timeout_s=0.3,
                         state_timeout_s=0.2, max_chunk_age_s=0.5,
                         max_following_error_rad=0.05, following_error_timeout_s=0.1,
                         following_error_delay_s=0.02)


def _chunk(ctl, t, speed=1.0, n=10, dt=0.05):
    q0 = ctl.last_command
    pos = [[q0[0] + speed * dt * (k + 1), q0[1]] for k in range(n)]
    ctl.on_chunk(list(NAMES), t, [dt * (k + 1) for k in range(n)], pos, t)


def _run(ctl, t0, t1, robot, speed=1.0):
    """Tick from t0 to t1, a fresh chunk every 0.1 s; ``robot`` answers the commands."""
    out, t = [], t0
    while t < t1 - 1e-9:
        ctl.on_state(robot(t), t)
        if round(t / PERIOD) % 10 == 5 and ctl.fault is None:
            _chunk(ctl, t, speed)
        r = ctl.tick(t)
        out.append((t, r))
        robot.command(t, r.command)
        t = round(t + PERIOD, 9)
    return out


class Robot:
    """Follows commands with a delay; ``block_at`` freezes joint 0 from that time."""

    def __init__(self, delay=0.02, block_at=None):
        self.delay, self.block_at = delay, block_at
        self.hist = [(-1.0, np.zeros(2))]
        self.frozen = None

    def command(self, t, q):
        if q is not None:
            self.hist.append((t, q.copy()))

    def __call__(self, t):
        ts = [h[0] for h in self.hist]
        k = max(0, int(np.searchsorted(ts, t - self.delay, side='right')) - 1)
        q = self.hist[k][1].copy()
        if self.block_at is not None and t >= self.block_at:
            if self.frozen is None:
                self.frozen = q[0]
            q[0] = self.frozen
        return q


def test_controller_tracking_a_delayed_robot_never_trips():
    ctl = c.SafetyController(CFG)
    out = _run(ctl, 0.0, 3.0, Robot(delay=0.02), speed=0.5)
    assert ctl.fault is None
    assert sum(r.mode == c.MODE_TRACKING for _, r in out) > 250
    assert ctl.last_command[0] > 1.2


def test_controller_blocked_joint_makes_a_latched_controlled_stop():
    ctl = c.SafetyController(CFG)
    out = _run(ctl, 0.0, 1.5, Robot(delay=0.02, block_at=0.5))
    assert ctl.fault == c.FOLLOWING_ERROR
    events = [(t, iv) for t, r in out for iv in r.interventions
              if iv.reason == c.FOLLOWING_ERROR]
    t_fault, iv = events[0]
    assert iv.joint == 'j1' and iv.allowed - iv.requested < -0.05
    # At 1 rad/s the error passes 0.05 rad about 0.05 s after the block (plus the
    # 10 ms of the held command): latched by then + timeout + a tick or two.
    assert 0.5 + 0.05 + 0.1 - 0.02 <= t_fault <= 0.5 + 0.05 + 0.1 + 0.03
    assert ctl.following_fault.joint == 0 and 'j1' in describe('j1', ctl.following_fault)
    # A controlled stop within the limits: the command decelerates, then holds.
    cmds = np.array([r.command for t, r in out if t >= t_fault])
    steps = np.diff(cmds[:, 0]) / PERIOD
    assert np.all(np.abs(steps) <= 2.0 + 1e-9)
    assert np.all(np.abs(np.diff(steps)) <= 20.0 * PERIOD + 1e-6)
    assert out[-1][1].mode == c.MODE_FAULT and np.all(cmds[-10:] == cmds[-1])
    assert ctl.counters[c.FOLLOWING_ERROR] == 1
    # Latched: a new chunk is not executed until reset.
    held = ctl.last_command
    ctl.on_chunk(list(NAMES), 1.5, [0.05, 0.1], [held - 0.01, held - 0.02], 1.5)
    for t in (1.51, 1.52, 1.53):
        ctl.on_state(held, t)
        assert ctl.tick(t).mode == c.MODE_FAULT
    np.testing.assert_array_equal(ctl.last_command, held)
    ok, message = ctl.reset()
    assert ok and 'following_error' in message and ctl.fault is None


def test_following_error_is_off_by_default_and_cheap_when_off():
    ctl = c.SafetyController(replace(CFG, max_following_error_rad=float('inf')))
    assert not ctl.following.enabled
    _run(ctl, 0.0, 1.5, Robot(delay=0.02, block_at=0.5))
    assert ctl.fault is None


def test_tick_cost_stays_small_with_following_on():
    lim = JointLimits.create([f'j{i}' for i in range(7)], [-2] * 7, [2] * 7, [2.0] * 7,
                             [20.0] * 7)
    cost = {}
    for tol in (float('inf'), 0.05):
        ctl = c.SafetyController(c.ControllerConfig(
            limits=lim, max_following_error_rad=tol, following_error_delay_s=0.03))
        q = np.zeros(7)
        ctl.on_state(q, 0.0)
        ctl.tick(0.0)
        ctl.on_chunk(ctl.joint_names, 0.0, [0.05 * (k + 1) for k in range(100)],
                     [[0.001 * k] * 7 for k in range(100)], 0.0)
        times = []
        for k in range(1, 400):
            t = k * 0.01
            ctl.on_state(ctl.last_command, t)
            t0 = time.perf_counter()
            ctl.tick(t)
            times.append(time.perf_counter() - t0)
        cost[tol] = float(np.median(times))
    # The monitor adds a small part of a tick (ratio in one run: machines differ ~3x).
    assert cost[0.05] < 1.6 * cost[float('inf')] + 30e-6, cost


def test_build_safety_reads_the_parameters_per_unit():
    base = {'joint_names': ['a', 'b'], 'lower_limits_rad': [-1.0, -1.0],
            'upper_limits_rad': [1.0, 1.0], 'max_velocity_rad_s': [1.0, 1.0]}
    cfg = build_safety(base).config
    assert np.all(np.isinf(cfg.max_following_error_rad))   # off by default
    cfg = build_safety(dict(base, max_following_error_rad=0.1,
                            following_error_delay_s=0.04)).config
    np.testing.assert_array_equal(cfg.max_following_error_rad, [0.1, 0.1])
    assert cfg.following_error_delay_s == 0.04
    for bad in ({'max_following_error_rad': -0.1}, {'following_error_delay_s': 2.0},
                {'following_error_timeout_s': float('inf')},
                {'max_following_error_m': 0.01}):     # metres need the URDF's joint types
        with pytest.raises(ConfigError, match=next(iter(bad))):
            build_safety(dict(base, **bad))
