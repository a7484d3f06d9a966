"""Property tests: the playback clock never acts on stale time; chunk intake decodes exactly.

The clock promises (SafetyController + ChunkScheduler, random event sequences): adopting a
chunk never makes the clock later, and after a stop it brings the clock up to the new
chunk's first step (or wall time, where that comes first); the clock does not run while the
controller is stopped; a step due more than ``max_chunk_age_s`` ago is never executed; the
lag is what ``safety/execution`` reports. The intake promise: the CDR reader returns exactly what
rclpy's deserializer does, for any trajectory, and reads the size before decoding.
"""

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from wam_runtime.core import controller as c
from wam_runtime.core.limits import JointLimits
from wam_runtime.core.scheduler import RESYNC_TOLERANCE_S, SchedulerConfig

NAMES = ('j1', 'j2')
LIM = JointLimits.create(NAMES, [-3, -3], [3, 3], [2.0, 2.0], [20.0, 20.0])
PERIOD = 0.01
MAX_AGE = 0.5

EVENTS = st.lists(st.tuples(
    st.sampled_from(['chunk', 'chunk', 'chunk', 'pause', 'outage', 'disable', 'surprise']),
    st.floats(0.0, 0.3),          # chunk delay (stamp before arrival) or event length / 3
    st.integers(2, 30)),          # chunk points
    min_size=3, max_size=25)


@settings(max_examples=150, deadline=None)
@given(EVENTS, st.sampled_from(['latest', 'temporal_ensemble', 'crossfade']))
def test_the_clock_never_acts_on_stale_time(events, blend):
    cfg = c.ControllerConfig(limits=LIM, control_period_s=PERIOD, command_timeout_s=0.3,
                             state_timeout_s=0.2, max_chunk_age_s=MAX_AGE,
                             scheduler=SchedulerConfig(blend=blend))
    ctl = c.SafetyController(cfg)
    sched = ctl.scheduler
    t = 0.0
    state_on = True
    stopped_before = False
    stopped_since_chunk = False

    def tick(n=1):
        nonlocal t, stopped_before, stopped_since_chunk
        for _ in range(n):
            if state_on:
                q = ctl.last_command if ctl.last_command is not None else np.zeros(2)
                ctl.on_state(q, t)
            tau_before, reason_before = sched.playback_time, ctl.stop_reason
            r = ctl.tick(t)
            if r.mode == c.MODE_TRACKING:
                # Executing: the step due is never older than max_chunk_age_s.
                assert t - sched.playback_time <= MAX_AGE + 1e-9
                assert sched.lag_s() == pytest.approx(t - sched.playback_time)
            stopped = r.mode in (c.MODE_STOPPING, c.MODE_HOLDING, c.MODE_FAULT,
                                 c.MODE_DISABLED)
            if stopped and stopped_before and ctl.stop_reason == reason_before and \
                    tau_before is not None and sched.playback_time is not None:
                # Stopped (after the tick that found the reason): the clock holds; only a
                # chunk or a clear re-anchors it. (A stop whose cause went away lets the
                # clock run on the tick that finds the next reason, e.g. the chunk ran
                # out meanwhile.)
                assert sched.playback_time == tau_before
            stopped_before = stopped
            stopped_since_chunk |= stopped
            t += PERIOD

    tick(5)
    for kind, x, n in events:
        if kind == 'chunk':
            q = ctl.last_command if ctl.last_command is not None else np.zeros(2)
            lag_before = sched.lag_s()
            try:
                ctl.on_chunk(list(NAMES), t - x, [0.05 * (k + 1) for k in range(n)],
                             [list(q + 0.002 * (k + 1)) for k in range(n)], now_s=t)
            except c.ChunkError as exc:
                assert exc.reason in (c.CHUNK_STALE, c.CHUNK_DISABLED)
            else:
                # Adopted: the clock is never later than before, and after a stop it is
                # back at the new chunk's first step (steps due at t - x + 0.05 k).
                assert sched.lag_s() <= lag_before + 1e-12
                if stopped_since_chunk:
                    assert sched.lag_s() <= max(RESYNC_TOLERANCE_S, x - 0.05) + 1e-9
                stopped_before = stopped_since_chunk = False
            tick(int(x * 100) + 1)
        elif kind == 'pause':
            tick(int(x * 300) + 1)
        elif kind == 'outage':
            state_on = False
            tick(int(x * 300) + 1)
            state_on = True
            tick(2)
        elif kind == 'disable':
            ctl.set_enabled(False)
            tick(int(x * 300) + 1)
            ctl.set_enabled(True)
            tick(2)
        else:
            ctl.set_speed_limit(0.0)
            tick(int(x * 300) + 1)
            ctl.set_speed_limit(1.0)
            tick(2)


# ------------------------------------------------------------------ intake
# ROS strings are C strings on the wire: no NUL inside.
TEXT = st.characters(blacklist_characters='\x00', blacklist_categories=('Cs',))


def _msg(data, names, n):
    from builtin_interfaces.msg import Duration
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
    msg = JointTrajectory(joint_names=names)
    msg.header.stamp.sec = data.draw(st.integers(0, 2 ** 31 - 1))
    msg.header.stamp.nanosec = data.draw(st.integers(0, 999_999_999))
    msg.header.frame_id = data.draw(st.text(TEXT, max_size=9))
    floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
    for _ in range(n):
        extra = data.draw(st.integers(0, 3))
        msg.points.append(JointTrajectoryPoint(
            positions=data.draw(st.lists(floats, min_size=len(names), max_size=len(names))),
            velocities=[0.5] * extra, accelerations=[0.25] * (3 - extra),
            effort=[1.0] * data.draw(st.integers(0, 2)),
            time_from_start=Duration(sec=data.draw(st.integers(-5, 10 ** 6)),
                                     nanosec=data.draw(st.integers(0, 999_999_999)))))
    return msg


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_cdr_reader_equals_rclpy_for_any_trajectory(data):
    from rclpy.serialization import serialize_message
    from wam_runtime.ros.chunk_intake import TrajectoryReader
    from wam_runtime.ros.conversions import trajectory_arrays
    names = data.draw(st.lists(st.text(TEXT, min_size=1, max_size=12), min_size=1,
                               max_size=8))
    msg = _msg(data, names, data.draw(st.integers(0, 12)))
    reader = TrajectoryReader(serialize_message(msg))
    assert reader.joint_names == list(names)
    assert reader.points == len(msg.points)
    assert reader.stamp_ns == msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec
    times, positions = reader.decode()
    _, t_ref, p_ref = trajectory_arrays(msg)
    np.testing.assert_array_equal(positions.reshape(len(msg.points), len(names)),
                                  np.asarray(p_ref, dtype=np.float64).reshape(
                                      len(msg.points), len(names)))
    np.testing.assert_array_equal(times, np.asarray(t_ref, dtype=np.float64))


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_ragged_or_truncated_bytes_are_an_error_not_a_crash(data):
    from rclpy.serialization import serialize_message
    from wam_runtime.ros.chunk_intake import CdrError, TrajectoryReader
    msg = _msg(data, ['a', 'b'], 3)
    msg.points[1].positions = [0.0] * data.draw(st.sampled_from([0, 1, 3]))
    raw = serialize_message(msg)
    with pytest.raises(CdrError):
        TrajectoryReader(raw).decode()
    cut = data.draw(st.integers(0, len(raw) - 1))
    try:
        TrajectoryReader(raw[:cut]).decode()
    except CdrError:
        pass
