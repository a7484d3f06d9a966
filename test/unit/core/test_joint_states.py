"""Per-joint merge of joint_states from several publishers (core.joint_states)."""

import math

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from wam_runtime.core.joint_states import (
    JointStateError, JointStateMerge, MALFORMED, NON_FINITE)

ARM_L = [f'left_joint_{i}' for i in range(1, 8)]
ARM_R = [f'right_joint_{i}' for i in range(1, 8)]
GRIPPER = ['finger_joint']


def test_two_arms_and_a_gripper_merge_into_one_state():
    merge = JointStateMerge(ARM_L + ARM_R + GRIPPER, max_age_s=0.1)
    merge.update(ARM_L, np.arange(7) * 0.1, 1.0, stamp_ns=1_000, source='/left')
    assert merge.merged(1.0) is None
    assert merge.missing() == ARM_R + GRIPPER
    merge.update(list(reversed(ARM_R)), np.arange(7)[::-1] * -0.1, 1.01, 2_000, '/right')
    assert merge.missing() == GRIPPER and merge.merged(1.01) is None
    merge.update(GRIPPER + ['unused_wheel'], [0.04, 3.0], 1.02, 1_500, '/gripper')
    out = merge.merged(1.02)
    assert out is not None
    np.testing.assert_allclose(out.positions[:7], np.arange(7) * 0.1)
    np.testing.assert_allclose(out.positions[7:14], np.arange(7) * -0.1)
    assert out.positions[14] == 0.04
    assert out.oldest_received_s == 1.0 and out.stamp_ns == 1_000
    assert merge.unknown == {'unused_wheel': 1}
    assert merge.source_of('right_joint_3') == '/right'
    assert merge.sources['/gripper'] == ('finger_joint', 'unused_wheel')


def test_a_silent_source_makes_the_state_stale_per_joint():
    merge = JointStateMerge(ARM_L + GRIPPER, max_age_s=[0.1] * 7 + [0.5])
    merge.update(ARM_L, np.zeros(7), 0.0, source='/arm')
    merge.update(GRIPPER, [0.02], 0.0, source='/gripper')
    for t in np.arange(0.01, 0.5, 0.01):          # the arm keeps publishing
        merge.update(ARM_L, np.zeros(7), t, source='/arm')
        assert merge.merged(t) is not None        # the gripper's own limit is 0.5 s
    merge.update(ARM_L, np.zeros(7), 0.6, source='/arm')
    assert merge.merged(0.6) is None
    assert merge.stale(0.6) == GRIPPER
    report = merge.report(0.6)
    assert 'finger_joint (0.60 s > 0.5 s, from /gripper)' in report
    assert "/arm: ['left_joint_1'" in report
    merge.update(GRIPPER, [0.03], 0.61, source='/gripper')
    assert merge.merged(0.61).positions[-1] == 0.03


def test_a_needed_joint_nobody_publishes_is_named_with_the_sources_heard():
    merge = JointStateMerge(ARM_L + GRIPPER)
    assert 'no joint_states message received' in merge.report(0.0)
    merge.update(ARM_L + ['finger_joint_typo'], np.zeros(8), 0.0, source='/franka')
    report = merge.report(0.0)
    assert "no value yet for ['finger_joint']" in report
    assert "/franka: ['left_joint_1'" in report and 'finger_joint_typo' in report
    assert merge.unknown == {'finger_joint_typo': 1}


@pytest.mark.parametrize('names,positions,reason', [
    (ARM_L, np.zeros(6), MALFORMED),
    (ARM_L[:2] + ARM_L[:1], np.zeros(3), MALFORMED),
    (ARM_L, [0.0] * 6 + [math.nan], NON_FINITE),
    (['finger_joint'], [math.inf], NON_FINITE),
])
def test_bad_messages_are_rejected_whole_and_lose_nothing(names, positions, reason):
    merge = JointStateMerge(ARM_L, tracked_names=GRIPPER)
    merge.update(ARM_L + GRIPPER, np.full(8, 0.5), 0.0)
    with pytest.raises(JointStateError) as err:
        merge.update(names, positions, 0.01)
    assert err.value.reason == reason
    np.testing.assert_array_equal(merge.merged(0.01).positions, np.full(7, 0.5))
    assert merge.values(GRIPPER) == {'finger_joint': 0.5}


def test_non_finite_values_of_unused_joints_do_not_reject_the_message():
    merge = JointStateMerge(ARM_L)
    merge.update(ARM_L + ['camera_pan'], [0.0] * 7 + [math.nan], 0.0)
    assert merge.merged(0.0) is not None


def test_tracked_joints_are_kept_but_not_required():
    merge = JointStateMerge(ARM_L, tracked_names=GRIPPER + ['finger_joint_2'])
    merge.update(ARM_L, np.ones(7), 0.0)
    assert merge.merged(0.0) is not None
    assert merge.values(GRIPPER + ['left_joint_2', 'nothing']) == {'left_joint_2': 1.0}
    merge.update(GRIPPER, [0.035], 0.0)
    assert merge.values(GRIPPER) == {'finger_joint': 0.035}
    assert merge.unknown == {}


def test_a_clock_that_jumps_back_never_yields_a_negative_age():
    merge = JointStateMerge(ARM_L, max_age_s=0.1)
    merge.update(ARM_L, np.zeros(7), 100.0)
    assert merge.merged(5.0) is not None and merge.ages(5.0).max() == 0.0


def test_bad_construction_is_refused():
    with pytest.raises(ValueError, match='duplicate'):
        JointStateMerge(['a', 'a'])
    with pytest.raises(ValueError, match='max_age_s'):
        JointStateMerge(['a', 'b'], max_age_s=[0.1])
    with pytest.raises(ValueError, match='max_age_s'):
        JointStateMerge(['a'], max_age_s=0.0)


# ------------------------------------------------------------------ properties
@st.composite
def _scenarios(draw):
    n = draw(st.integers(1, 16))
    names = [f'j{i}' for i in range(n)]
    n_sources = draw(st.integers(1, 4))
    owner = draw(st.lists(st.integers(0, n_sources - 1), min_size=n, max_size=n))
    steps = draw(st.lists(st.tuples(st.integers(0, n_sources - 1),
                                    st.floats(0.0, 0.2),
                                    st.booleans()), min_size=1, max_size=40))
    max_age = draw(st.floats(0.01, 0.3))
    seed = draw(st.integers(0, 2**31 - 1))
    return names, owner, steps, max_age, seed


@settings(max_examples=200, deadline=None)
@given(_scenarios())
def test_merge_equals_the_latest_value_per_joint(scenario):
    """Merge = the last value each joint was sent, offered iff all were heard in time.

    Holds for any interleaving of sources, message orders and unknown extra names.
    """
    names, owner, steps, max_age, seed = scenario
    rng = np.random.default_rng(seed)
    merge = JointStateMerge(names, max_age_s=max_age)
    latest = {}
    heard_at = {}
    t = 0.0
    for source, dt, shuffle in steps:
        t += dt
        mine = [n for n, o in zip(names, owner) if o == source]
        if shuffle:
            mine = list(rng.permutation(mine))
        values = rng.uniform(-3, 3, len(mine))
        merge.update(mine + ['extra'], list(values) + [9.0], t, source=f's{source}')
        for n, v in zip(mine, values):
            latest[n] = v
            heard_at[n] = t
        out = merge.merged(t)
        fresh = len(latest) == len(names) and all(t - heard_at[n] <= max_age for n in names)
        assert (out is not None) == fresh
        assert set(merge.missing()) == set(names) - set(latest)
        if out is not None:
            np.testing.assert_array_equal(out.positions, [latest[n] for n in names])
            assert out.oldest_received_s == min(heard_at.values())
        assert merge.values(names) == {n: float(v) for n, v in latest.items()}
    assert merge.unknown == {'extra': len(steps)}


# ------------------------------------------------------------------ live, over DDS
ARM = ['arm_1', 'arm_2', 'arm_3']
LIVE_PARAMS = {
    'autostart': True, 'joint_names': ARM + GRIPPER,
    'lower_limits_rad': [-2.0, -2.0, -2.0, 0.0], 'upper_limits_rad': [2.0, 2.0, 2.0, 0.04],
    'max_velocity_rad_s': [1.0, 1.0, 1.0, 0.1], 'state_timeout_s': 0.3,
    'extra_joint_state_topics': ['gripper/joint_states'], 'diagnostics_period_s': 0.2,
}


@pytest.mark.ros
@pytest.mark.slow
def test_safety_controller_merges_an_arm_and_a_gripper_driver(proc_env, tmp_path,
                                                              ros_context):
    """Arm and gripper drivers on two topics, merged by the safety controller.

    No command until both are heard; the missing joint is logged by name with the publisher
    heard; a silent gripper driver stops the arm (state_timeout) and is named.
    """
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray
    from wam_runtime.processes import NodeProcess, wait_for, write_params

    pf = write_params(str(tmp_path / 'safety.yaml'), 'safety_controller', LIVE_PARAMS)
    proc = NodeProcess('wam_runtime.ros.safety_controller', proc_env, 'safety_controller', pf,
                       log_dir=str(tmp_path))
    try:
        arm = ros_context(rclpy.create_node('arm_driver', context=ros_context.context))
        grip = ros_context(rclpy.create_node('gripper_driver', context=ros_context.context))
        arm_pub = arm.create_publisher(JointState, 'joint_states', qos_profile_sensor_data)
        grip_pub = grip.create_publisher(JointState, 'gripper/joint_states',
                                         qos_profile_sensor_data)
        state = {'gripper_on': False, 'commands': [], 'diag': {}}

        def publish(node, pub, names, values):
            msg = JointState(name=names, position=values)
            msg.header.stamp = node.get_clock().now().to_msg()
            pub.publish(msg)

        arm.create_timer(0.01, lambda: publish(arm, arm_pub, ARM + ['wheel'],
                                               [0.1, 0.2, 0.3, 5.0]))
        grip.create_timer(0.02, lambda: state['gripper_on'] and publish(
            grip, grip_pub, GRIPPER, [0.02]))
        arm.create_subscription(Float64MultiArray, 'commands',
                                lambda m: state['commands'].append(list(m.data)), 100)

        def on_diag(msg):
            for status in msg.status:
                if status.name.endswith(': safety'):
                    state['diag'] = {kv.key: kv.value for kv in status.values}
        arm.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)

        # Only the arm driver runs: the gripper joint is missing, nothing is commanded.
        assert wait_for(lambda: state['diag'].get('joint_states_missing') == 'finger_joint',
                        30.0), proc.output()[-2000:]
        assert wait_for(lambda: "no value yet for ['finger_joint']" in proc.output(), 10.0)
        line = next(x for x in proc.output().splitlines() if 'no value yet' in x)
        assert "on /joint_states: ['arm_1', 'arm_2', 'arm_3', 'wheel']" in line, line
        # The publisher is named by its node once the graph knows it (logs are throttled).
        assert wait_for(lambda: "/arm_driver on /joint_states: ['arm_1'" in proc.output(),
                        10.0), proc.output()[-2000:]
        assert state['commands'] == []
        assert state['diag']['joint_states_unknown_names'] == 'wheel'
        # The gripper driver starts: the merged state is complete, the gate holds there.
        state['gripper_on'] = True
        assert wait_for(lambda: len(state['commands']) > 20, 10.0), proc.output()[-2000:]
        np.testing.assert_allclose(state['commands'][-1], [0.1, 0.2, 0.3, 0.02])
        assert wait_for(lambda: state['diag'].get('joint_states_sources') == '2', 5.0)
        before = int(state['diag'].get('count_state_timeout', 0))
        # The gripper driver dies while the arm driver keeps publishing: state_timeout.
        state['gripper_on'] = False
        assert wait_for(lambda: int(state['diag'].get('count_state_timeout', 0)) > before,
                        5.0), state['diag']
        assert wait_for(lambda: 'stale: finger_joint' in proc.output(), 12.0)
        assert '/gripper_driver on /gripper/joint_states' in proc.output()
        assert proc.alive()
    finally:
        proc.stop()


HAND_URDF = """<?xml version="1.0"?>
<robot name="arm2_gripper">
  <link name="base_link"/>
  <link name="link_1"/>
  <link name="link_2"/>
  <link name="finger"/>
  <link name="tip"/>
  <joint name="arm_1" type="revolute">
    <parent link="base_link"/><child link="link_1"/>
    <origin xyz="0 0 0.3"/><axis xyz="0 0 1"/>
    <limit lower="-2.0" upper="2.0" effort="10" velocity="1.0"/>
  </joint>
  <joint name="arm_2" type="revolute">
    <parent link="link_1"/><child link="link_2"/>
    <origin xyz="0 0 0"/><axis xyz="0 1 0"/>
    <limit lower="-1.0" upper="1.0" effort="10" velocity="1.0"/>
  </joint>
  <joint name="finger_joint" type="prismatic">
    <parent link="link_2"/><child link="finger"/>
    <origin xyz="0.3 0 0"/><axis xyz="1 0 0"/>
    <limit lower="0.0" upper="0.2" effort="10" velocity="0.1"/>
  </joint>
  <joint name="tip_joint" type="fixed">
    <parent link="finger"/><child link="tip"/><origin xyz="0 0 0"/>
  </joint>
</robot>
"""


@pytest.mark.ros
@pytest.mark.slow
def test_the_workspace_guard_uses_the_measured_gripper_opening(proc_env, tmp_path,
                                                               ros_context):
    """A finger the gate does not command moves a watched frame: its measured value counts.

    The finger tip is inside the box (x <= 0.4 m) with the finger closed (x = 0.3 m) and
    outside it open (x = 0.5 m); a chunk is accepted or refused accordingly.
    """
    import rclpy
    from builtin_interfaces.msg import Time
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
    from wam_runtime.processes import NodeProcess, wait_for, write_params
    from wam_runtime.ros.conversions import s_to_duration

    urdf = tmp_path / 'arm2_gripper.urdf'
    urdf.write_text(HAND_URDF)
    pf = write_params(str(tmp_path / 'safety.yaml'), 'safety_controller', {
        'autostart': True, 'joint_names': ['arm_1', 'arm_2'], 'urdf_path': str(urdf),
        'max_acceleration_rad_s2': [10.0, 10.0], 'workspace_frames': ['tip'],
        'workspace_box_m': [-1.0, -1.0, -1.0, 0.4, 1.0, 1.0], 'state_timeout_s': 0.5,
        'diagnostics_period_s': 0.2})
    proc = NodeProcess('wam_runtime.ros.safety_controller', proc_env, 'safety_controller', pf,
                       log_dir=str(tmp_path))
    try:
        node = ros_context(rclpy.create_node('robot', context=ros_context.context))
        js = node.create_publisher(JointState, 'joint_states', qos_profile_sensor_data)
        chunks = node.create_publisher(JointTrajectory, 'policy/action_chunk', 10)
        state = {'finger': 0.0, 'diag': {}}

        def publish():
            stamp = node.get_clock().now().to_msg()
            for names, values in ((['arm_1', 'arm_2'], [0.0, 0.0]),
                                  (['finger_joint'], [state['finger']])):
                msg = JointState(name=names, position=values)
                msg.header.stamp = stamp
                js.publish(msg)
        node.create_timer(0.01, publish)

        def on_diag(msg):
            for status in msg.status:
                if status.name.endswith(': safety'):
                    state['diag'] = {kv.key: kv.value for kv in status.values}
        node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)

        def send_chunk():
            ns = node.get_clock().now().nanoseconds
            msg = JointTrajectory(joint_names=['arm_1', 'arm_2'])
            msg.header.stamp = Time(sec=ns // 10**9, nanosec=ns % 10**9)
            msg.points = [JointTrajectoryPoint(positions=[0.02 * (k + 1), 0.0],
                                               time_from_start=s_to_duration(0.05 * (k + 1)))
                          for k in range(10)]
            chunks.publish(msg)

        def count(reason):
            return int(state['diag'].get(f'count_{reason}', 0))

        assert wait_for(lambda: state['diag'].get('joint_states_sources') == '1', 30.0), \
            proc.output()[-2000:]
        # Closed (measured 0.0): the chunk is accepted and tracked.
        assert wait_for(lambda: send_chunk() or state['diag'].get('mode') == 'tracking',
                        10.0, period_s=0.3), state['diag']
        assert count('chunk_outside_workspace') == 0
        # Open (measured 0.2): the same kind of chunk puts the tip outside the box.
        state['finger'] = 0.2
        assert wait_for(lambda: send_chunk() or count('chunk_outside_workspace') > 0, 10.0,
                        period_s=0.3), state['diag']
        assert proc.alive()
    finally:
        proc.stop()
