"""sim_node with world:=aloha_transfer_cube over real DDS: 14 joints, cameras, reset, outcome."""

import json
import time

import numpy as np
import pytest

from wam_runtime.processes import call_service, NodeProcess, wait_for

pytestmark = [pytest.mark.ros, pytest.mark.slow]

ARM = ['waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle', 'wrist_rotate', 'gripper']
JOINTS = [f'left_{j}' for j in ARM] + [f'right_{j}' for j in ARM]


@pytest.fixture
def sim(proc_env, tmp_path):
    proc = NodeProcess('wam_runtime.sim.sim_node', proc_env, 'sim_node', None,
                       ['-p', 'world:=aloha_transfer_cube', '-p', 'episode_timeout_s:=1.0',
                        '-p', 'camera_width:=160', '-p', 'camera_height:=120',
                        '-p', 'camera_names:=[top, left_wrist]', '-p', 'camera_rate_hz:=10.0',
                        '-p', 'use_sim_time:=true'],
                       log_dir=str(tmp_path))
    yield proc
    proc.stop()


@pytest.fixture
def client(ros_context):
    import rclpy
    from rclpy.qos import DurabilityPolicy, qos_profile_sensor_data, QoSProfile
    from rcl_interfaces.srv import SetParameters
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float64MultiArray, String
    from std_srvs.srv import Trigger

    node = ros_context(rclpy.create_node('aloha_test_client', context=ros_context.context))
    rec = {'js': [], 'top': [], 'left_wrist': [], 'outcome': []}
    node.create_subscription(JointState, 'joint_states', lambda m: rec['js'].append(m),
                             qos_profile_sensor_data)
    for cam in ('top', 'left_wrist'):
        node.create_subscription(Image, f'camera/{cam}/image_raw',
                                 lambda m, cam=cam: rec[cam].append(m),
                                 qos_profile_sensor_data)
    node.create_subscription(String, 'sim/episode_outcome',
                             lambda m: rec['outcome'].append(json.loads(m.data)),
                             QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    node.rec = rec
    node.cmd_pub = node.create_publisher(Float64MultiArray, 'commands', 10)
    node.reset = node.create_client(Trigger, 'sim/reset')
    node.params = node.create_client(SetParameters, 'sim_node/set_parameters')
    return node


def _stamp_ns(msg):
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def test_joint_states_and_cameras(sim, client):
    assert wait_for(lambda: len(client.rec['top']) > 2 and len(client.rec['left_wrist']) > 2
                    and len(client.rec['js']) > 20, 60.0), sim.output()[-3000:]
    js = client.rec['js'][-1]
    assert list(js.name) == JOINTS
    assert len(js.position) == len(js.velocity) == 14
    # At rest in the package's start pose (grippers normalised).
    np.testing.assert_allclose(np.array(js.position)[[1, 2, 8, 9]], [-0.96, 1.16, -0.96, 1.16],
                               atol=0.02)
    assert 0.05 < js.position[6] < 0.15 and 0.05 < js.position[13] < 0.15
    for cam in ('top', 'left_wrist'):
        img = client.rec[cam][-1]
        assert (img.width, img.height, img.encoding, img.step) == (160, 120, 'rgb8', 160 * 3)
        assert img.header.frame_id == cam
        frame = np.frombuffer(img.data, np.uint8).reshape(120, 160, 3)
        assert frame.max() > 50 and frame.std() > 5, f'{cam} is blank'
    # One joint_states per 0.02 s control step: stamps strictly increase, 20 ms apart.
    n0 = len(client.rec['js'])
    time.sleep(2.0)
    batch = client.rec['js'][n0:]
    assert 40 <= len(batch) <= 130, len(batch)          # 50 Hz of sim time, loosely
    steps = np.diff([_stamp_ns(m) for m in batch])
    assert np.all(steps > 0) and np.all(steps % 20_000_000 == 0), steps[:20]
    assert sim.alive()


def test_commands_move_the_arms_and_bad_ones_are_rejected(sim, client):
    from std_msgs.msg import Float64MultiArray
    assert wait_for(lambda: len(client.rec['js']) > 20, 60.0), sim.output()[-3000:]
    assert wait_for(lambda: client.cmd_pub.get_subscription_count() > 0, 10.0)
    q0 = np.array(client.rec['js'][-1].position)
    target = q0.copy()
    target[7] += 0.3                                    # right waist
    for bad in ([0.1] * 6, [float('nan')] * 14):
        client.cmd_pub.publish(Float64MultiArray(data=bad))
    for _ in range(10):
        client.cmd_pub.publish(Float64MultiArray(data=target.tolist()))
        time.sleep(0.05)
    assert wait_for(lambda: abs(client.rec['js'][-1].position[7] - target[7]) < 0.03, 15.0), \
        client.rec['js'][-1].position
    assert abs(client.rec['js'][-1].position[0] - q0[0]) < 0.02   # the left waist stayed
    out = sim.output()
    assert 'command rejected (wrong_length, 1 so far)' in out
    assert 'command rejected (non_finite, 1 so far)' in out
    assert sim.alive()


def test_seeded_reset_reports_a_timeout_outcome(sim, client):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from std_srvs.srv import Trigger
    assert client.reset.wait_for_service(timeout_sec=60.0), sim.output()[-3000:]
    assert client.params.wait_for_service(timeout_sec=10.0)
    pv = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=4242)
    assert call_service(client.params, SetParameters.Request(
        parameters=[Parameter(name='episode_seed', value=pv)])).results[0].successful
    res = call_service(client.reset, Trigger.Request(), tries=1)
    assert res.success and 'seed 4242' in res.message
    assert wait_for(lambda: any(o['seed'] == 4242 for o in client.rec['outcome']), 20.0), \
        sim.output()[-3000:]
    outcome = next(o for o in client.rec['outcome'] if o['seed'] == 4242)
    assert outcome == {'seed': 4242, 'success': False, 'time_s': pytest.approx(1.0, abs=0.021),
                       'reward': 0, 'best_reward': 0, 'max_reward': 4}
    res = call_service(client.reset, Trigger.Request(), tries=1)
    assert 'seed 4243' in res.message
    assert sim.alive()


@pytest.mark.parametrize('args,field', [
    (['-p', 'world:=gazebo'], 'world'),
    (['-p', 'world:=aloha_transfer_cube', '-p', 'camera_names:=[top, scene]'],
     'camera_names'),
])
def test_a_bad_world_or_camera_exits_with_a_message_naming_it(proc_env, tmp_path, args, field):
    proc = NodeProcess('wam_runtime.sim.sim_node', proc_env, 'sim_node', None, args,
                       log_dir=str(tmp_path))
    try:
        assert wait_for(lambda: not proc.alive(), 60.0), proc.output()[-2000:]
    finally:
        code = proc.stop()
    out = proc.output()
    assert code != 0, out
    assert field in out and 'Traceback' not in out, out
