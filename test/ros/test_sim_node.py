"""sim_node over real DDS: topics, reset with seeds, outcomes, and rejection of bad input."""

import json
import time

import numpy as np
import pytest

from wam_runtime.processes import call_service, NodeProcess, wait_for

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture
def sim(proc_env, tmp_path):
    proc = NodeProcess('wam_runtime.sim.sim_node', proc_env, 'sim_node', None,
                       ['-p', 'episode_timeout_s:=1.0', '-p', 'camera_width:=96', '-p',
                        'camera_height:=72', '-p', 'use_sim_time:=true'],
                       log_dir=str(tmp_path))
    yield proc
    proc.stop()


@pytest.fixture
def client(ros_context):
    import rclpy
    from rclpy.qos import DurabilityPolicy, qos_profile_sensor_data, QoSProfile
    from rcl_interfaces.srv import SetParameters
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float64MultiArray, String
    from std_srvs.srv import Trigger

    node = ros_context(rclpy.create_node('sim_test_client', context=ros_context.context))
    rec = {'js': [], 'img': [], 'clock': [], 'outcome': []}
    node.create_subscription(JointState, 'joint_states',
                             lambda m: rec['js'].append((time.monotonic(), m)),
                             qos_profile_sensor_data)
    node.create_subscription(Image, 'camera/scene/image_raw', lambda m: rec['img'].append(m),
                             qos_profile_sensor_data)
    node.create_subscription(Clock, '/clock', lambda m: rec['clock'].append(m), 10)
    node.create_subscription(String, 'sim/episode_outcome',
                             lambda m: rec['outcome'].append(json.loads(m.data)),
                             QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    node.rec = rec
    node.cmd_pub = node.create_publisher(Float64MultiArray, 'commands', 10)
    node.reset = node.create_client(Trigger, 'sim/reset')
    node.params = node.create_client(SetParameters, 'sim_node/set_parameters')
    return node


def _call(client, request, tries=3):
    """Call a service; see wam_runtime.processes.call_service."""
    return call_service(client, request, tries=tries)


def _set_seed(node, value):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    pv = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    return _call(node.params, SetParameters.Request(
        parameters=[Parameter(name='episode_seed', value=pv)])).results[0]


def _reset_with_seed(node, seed):
    """Set the seed and reset; a lost response is retried with the seed set again."""
    from std_srvs.srv import Trigger
    for _ in range(3):
        assert _set_seed(node, seed).successful
        fut = node.reset.call_async(Trigger.Request())
        if wait_for(fut.done, 5.0):
            return fut.result()
    raise AssertionError('sim/reset did not answer')


def test_publishes_camera_joint_states_and_clock(sim, client):
    assert wait_for(lambda: len(client.rec['img']) > 3 and len(client.rec['js']) > 50, 40.0), \
        sim.output()[-2000:]
    img = client.rec['img'][-1]
    assert (img.width, img.height, img.encoding, img.step) == (96, 72, 'rgb8', 96 * 3)
    frame = np.frombuffer(img.data, np.uint8).reshape(72, 96, 3)
    red = (frame[:, :, 0] > 150) & (frame[:, :, 1] < 80) & (frame[:, :, 2] < 80)
    assert red.sum() > 3, 'the red cube is not in the picture'
    t0 = time.monotonic()
    n0 = len(client.rec['js'])
    time.sleep(2.0)
    assert len(client.rec['js']) - n0 > 200   # >= 100 Hz (configured 200 Hz)
    js = client.rec['js'][-1][1]
    assert list(js.name) == [f'joint_{i}' for i in range(1, 7)]
    assert len(client.rec['clock']) > 100
    c = client.rec['clock'][-1].clock
    assert js.header.stamp.sec == pytest.approx(c.sec, abs=1)
    assert t0 > 0


def test_commands_move_the_arm_and_bad_ones_are_rejected(sim, client):
    from std_msgs.msg import Float64MultiArray
    assert wait_for(lambda: len(client.rec['js']) > 20, 40.0)
    assert wait_for(lambda: client.cmd_pub.get_subscription_count() > 0, 10.0)
    q0 = np.array(client.rec['js'][-1][1].position)
    target = q0 + np.array([0.2, 0, 0, 0, 0, 0])
    for bad in ([0.1] * 5, [float('nan')] * 6, [0.0, float('inf'), 0, 0, 0, 0]):
        client.cmd_pub.publish(Float64MultiArray(data=bad))
    for _ in range(20):
        client.cmd_pub.publish(Float64MultiArray(data=target.tolist()))
        time.sleep(0.05)
    assert wait_for(lambda: abs(client.rec['js'][-1][1].position[0] - target[0]) < 0.02, 10.0)
    q = np.array(client.rec['js'][-1][1].position)
    assert np.isfinite(q).all()
    out = sim.output()
    assert 'command rejected (wrong_length, 1 so far)' in out
    assert 'command rejected (non_finite, 1 so far)' in out
    assert sim.alive()


def test_seeded_reset_reports_outcome_and_refuses_bad_seed(sim, client):
    from std_srvs.srv import Trigger
    assert client.reset.wait_for_service(timeout_sec=40.0)
    assert client.params.wait_for_service(timeout_sec=10.0)
    bad = _set_seed(client, -5)
    assert not bad.successful and 'non-negative' in bad.reason
    res = _reset_with_seed(client, 10042)
    assert res.success and 'seed 10042' in res.message
    assert wait_for(lambda: any(o['seed'] == 10042 for o in client.rec['outcome']), 15.0)
    outcome = next(o for o in client.rec['outcome'] if o['seed'] == 10042)
    assert outcome['success'] is False          # nobody commanded the arm
    assert outcome['time_s'] == pytest.approx(1.0, abs=0.05)
    assert outcome['min_distance_m'] > 0.02
    # The next reset uses the next seed.
    res = _call(client.reset, Trigger.Request(), tries=1)
    assert 'seed 10043' in res.message
    assert sim.alive()
