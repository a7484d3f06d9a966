"""Continuous joints: endless limits, wrapped measurements and chunks, the short way round."""

import math
import warnings

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from wam_runtime.core import controller as c
from wam_runtime.core.gate import gate_step, GateState, unwrap_near, wrap_angle
from wam_runtime.core.limits import JointLimits, LimitsError

NAMES = ('wrist', 'elbow')
INF = math.inf
LIM = JointLimits.create(NAMES, [-INF, -1.0], [INF, 1.0], [2.0, 2.0], [20.0, 20.0],
                         [2000.0, 2000.0], continuous=[True, False])
PERIOD = 0.01


def _controller(**kw):
    cfg = c.ControllerConfig(limits=LIM, control_period_s=PERIOD, command_timeout_s=0.3,
                             state_timeout_s=0.2, max_chunk_age_s=0.5,
                             standstill_tolerance_rad=0.05, **kw)
    return c.SafetyController(cfg)


def test_only_continuous_joints_may_be_endless():
    with pytest.raises(LimitsError, match="'elbow'"):
        JointLimits.create(NAMES, [-INF, -INF], [INF, INF], [1, 1], continuous=[True, False])
    with pytest.raises(LimitsError, match="'wrist'"):
        JointLimits.create(NAMES, [-INF, -1], [1.0, 1], [1, 1], continuous=[True, False])


def test_gate_with_endless_limits_is_finite_and_silent():
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        state = GateState.at_rest(np.array([100.0, 0.0]))
        for _ in range(50):
            res = gate_step(np.array([1e6, 0.5]), state, LIM, PERIOD, PERIOD)
            state = res.state
            assert np.isfinite(res.command).all()
    assert state.position[0] > 100.0 and abs(state.velocity[0]) <= 2.0 + 1e-9


@given(st.floats(-50, 50), st.floats(-50, 50))
def test_unwrap_near_picks_the_nearest_turn(measured, reference):
    out = unwrap_near(np.array([measured, 0.3]), np.array([reference, 0.9]),
                      np.array([True, False]))
    assert abs(out[0] - reference) <= math.pi + 1e-9
    assert math.isclose(wrap_angle(out[0]), wrap_angle(measured), abs_tol=1e-9) or \
        abs(abs(wrap_angle(out[0]) - wrap_angle(measured)) - 2 * math.pi) < 1e-9
    assert out[1] == 0.3


def _run(ctl, t0, t1, wrap_measured=True, start=(3.0, 0.0)):
    out, t = [], t0
    while t < t1 - 1e-9:
        q = ctl.last_command if ctl.last_command is not None else np.array(start)
        meas = q.copy()
        if wrap_measured:
            meas[0] = wrap_angle(meas[0])          # the driver reports within [-pi, pi)
        ctl.on_state(meas, t)
        out.append(ctl.tick(t))
        t += PERIOD
    return out


@settings(max_examples=60, deadline=None)
@given(st.floats(-3.1, 3.1), st.floats(-1.5, 1.5), st.integers(0, 3))
def test_wrapped_chunks_and_measurements_cross_pi_the_short_way(start, speed, turns):
    """A smooth motion sent as wrapped angles (any whole turns off) is executed unwrapped."""
    ctl = _controller()
    first = _run(ctl, 0.0, 0.05, start=(start, 0.0))
    assert first[-1].command[0] == pytest.approx(start)
    t0 = 0.05
    dt = 0.05
    true = start + speed * dt * np.arange(1, 31)              # may cross +-pi
    sent = wrap_angle(true) + 2 * math.pi * turns             # wrapped, then off by turns
    ctl.on_chunk(list(NAMES), t0, [dt * (k + 1) for k in range(30)],
                 [[a, 0.0] for a in sent], now_s=t0)
    trace = _run(ctl, t0, t0 + 1.8)
    cmds = np.array([r.command for r in trace])
    steps = np.abs(np.diff(np.vstack([first[-1].command, cmds])[:, 0]))
    assert steps.max() <= 2.0 * PERIOD + 1e-9                   # never a 2 pi jump
    # The short way round: where the unwrapped motion ends, give or take the controlled
    # stop's braking distance after the chunk runs out (v^2 / 2a).
    assert cmds[-1, 0] == pytest.approx(true[-1], abs=speed ** 2 / (2 * 20.0) + 0.02)
    assert ctl.fault is None                                     # no false standstill drift


def test_start_distance_and_standstill_are_wrap_aware():
    ctl = _controller(max_start_distance_rad=0.2)
    _run(ctl, 0.0, 0.05, start=(3.1, 0.0))
    # -3.1 is 0.083 rad from 3.1 the short way: accepted, not "6.2 rad too far".
    ctl.on_chunk(list(NAMES), 0.05, [0.05, 0.1], [[-3.1, 0.0], [-3.05, 0.0]], now_s=0.05)
    trace = _run(ctl, 0.05, 1.2)
    assert 3.12 < trace[-1].command[0] < 3.4                       # across +pi, not back
    assert ctl.fault is None and c.CHUNK_START_FAR not in ctl.counters


# ------------------------------------------------------------------ live, over DDS

@pytest.mark.ros
@pytest.mark.slow
def test_live_rail_and_continuous_wrist_cross_pi_with_wrapped_joint_states(
        proc_env, tmp_path, ros_context):
    """A prismatic rail (metres) + an arm with continuous joints, against the real node.

    The robot reports continuous joints wrapped into [-pi, pi) and the policy sends wrapped
    angles: the commanded wrist crosses +pi continuously (no 2 pi jump), the rail stays
    inside its limits minus its metre margin, nothing is rejected.
    """
    import threading
    import rclpy
    from builtin_interfaces.msg import Time
    from rclpy.qos import qos_profile_sensor_data, QoSProfile
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
    from test_byo_robot import _arm, _joint, _robot, ARM_JOINTS, CONT_TYPES
    from wam_runtime.core.safety_config import build_safety
    from wam_runtime.processes import NodeProcess, wait_for, write_params
    from wam_runtime.ros.conversions import s_to_duration

    urdf = tmp_path / 'rail_cont.urdf'
    urdf.write_text(_robot(_joint('rail', 'prismatic', 'base_link', 'carriage', '0 0 0',
                                  '1 0 0', -0.5, 0.8, 0.3),
                           *_arm('', 'carriage', CONT_TYPES)))
    joints = ['rail'] + ARM_JOINTS
    params = {
        'autostart': True, 'joint_names': joints, 'urdf_path': str(urdf),
        'max_acceleration_rad_s2': [10.0] * 7, 'max_jerk_rad_s3': [1000.0] * 7,
        'max_acceleration_m_s2': [2.0], 'max_velocity_m_s': [0.25],
        'position_margin_m': 0.05, 'control_rate_hz': 100.0, 'command_timeout_s': 0.5,
        'state_timeout_s': 0.5, 'max_chunk_age_s': 0.5, 'max_start_distance_rad': 0.3,
        'diagnostics_period_s': 0.2,
    }
    setup = build_safety(params)
    lim = setup.config.limits
    assert list(lim.continuous) == [False] + [t == 'continuous' for t in CONT_TYPES]
    wrist = joints.index('joint_7')                   # continuous
    assert lim.continuous[wrist] and np.isinf(lim.upper[wrist])
    q0 = np.clip(np.zeros(8), lim.lower + 0.1, lim.upper - 0.1)   # inside every limit
    q0[wrist] = 2.9
    proc = NodeProcess('wam_runtime.ros.safety_controller', proc_env, 'safety_controller',
                       write_params(str(tmp_path / 's.yaml'), 'safety_controller', params),
                       log_dir=str(tmp_path))
    node = ros_context(rclpy.create_node('rail_robot', context=ros_context.context))
    lock = threading.Lock()
    state = {'q': q0.copy(), 'cmds': [], 'diag': {}}

    def on_cmd(msg):
        with lock:
            state['q'] = np.asarray(msg.data, dtype=float)
            state['cmds'].append(state['q'])

    def on_diag(msg):
        for st_ in msg.status:
            if st_.name.endswith(': safety'):
                state['diag'] = {kv.key: kv.value for kv in st_.values}

    js_pub = node.create_publisher(JointState, 'joint_states', qos_profile_sensor_data)
    chunk_pub = node.create_publisher(JointTrajectory, 'policy/action_chunk',
                                      QoSProfile(depth=10))

    def publish_state():
        with lock:
            q = state['q'].copy()
        q[lim.continuous] = wrap_angle(q[lim.continuous])       # as a driver reports them
        msg = JointState(name=joints, position=q.tolist())
        msg.header.stamp = node.get_clock().now().to_msg()
        js_pub.publish(msg)

    from diagnostic_msgs.msg import DiagnosticArray
    node.create_subscription(Float64MultiArray, 'commands', on_cmd, 100)
    node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)
    node.create_timer(0.01, publish_state)
    try:
        assert wait_for(lambda: len(state['cmds']) > 20, 40.0), proc.output()[-3000:]
        assert wait_for(lambda: chunk_pub.get_subscription_count() > 0, 30.0)
        with lock:
            start = state['q'].copy()
        ns = node.get_clock().now().nanoseconds
        msg = JointTrajectory(joint_names=joints)
        msg.header.stamp = Time(sec=ns // 10 ** 9, nanosec=ns % 10 ** 9)
        for k in range(20):                             # wrist +0.8 rad, rail +0.2 m
            p = start.copy()
            p[wrist] = wrap_angle(start[wrist] + 0.04 * (k + 1))
            p[0] = start[0] + 0.01 * (k + 1)
            msg.points.append(JointTrajectoryPoint(positions=p.tolist(),
                                                   time_from_start=s_to_duration(
                                                       0.05 * (k + 1))))
        chunk_pub.publish(msg)
        assert wait_for(lambda: state['diag'].get('mode') == 'tracking', 10.0), \
            {k: v for k, v in state['diag'].items() if k.startswith('count')}
        assert wait_for(lambda: state['diag'].get('mode') in ('holding', 'stopping')
                        and state['cmds'][-1][wrist] > 3.5, 10.0), (state['cmds'][-1], start)
        with lock:
            cmds = np.array(state['cmds'])
        steps = np.abs(np.diff(cmds, axis=0))
        assert steps[:, wrist].max() <= lim.max_velocity[wrist] * 0.01 + 1e-9
        assert cmds[:, wrist].max() > math.pi + 0.3                # crossed +pi unwrapped
        assert cmds[:, 0].max() <= lim.upper[0] - 0.05 + 1e-9      # rail: limit - margin (m)
        assert steps[:, 0].max() <= 0.25 * 0.01 + 1e-9             # rail: 0.25 m/s
        rejected = {k: v for k, v in state['diag'].items()
                    if k.startswith('count_chunk_') and k != 'count_chunk_exhausted' and int(v)}
        assert not rejected, rejected
        assert proc.alive()
    finally:
        proc.stop()
