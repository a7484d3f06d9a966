"""Replay is the robot: a live episode over DDS, recorded, replayed offline, compared.

The robot is the worked example of config/examples (a 7-DoF arm with a parallel gripper):
the arm's joint states come from one publisher (``synthetic_camera``, an ideal position
controlled arm that also publishes the camera), the gripper's from a second one (this
test), so the joint-state merge takes two publishers on one topic and the workspace guard
holds the measured gripper. The generated policy has a world model and real-time chunking
inputs (``prefix``), so what each inference ran on includes the executing chunk.

``policy_node``, ``safety_controller`` (lifecycle) and ``recorder_node`` run as their own
processes on a loopback-only domain; the controller is activated once the recorder reports
every publisher of the loop matched (``/diagnostics``), so the bag holds the whole run.
The offline replay of the recorded bag (``--schedule recorded``) must reproduce every chunk
the robot ran bit for bit, feed the held gripper to its workspace guard as the live
controller did, and command what the robot was commanded (within the timing the bag cannot
carry: see ``test_commands``).
"""

import json
import os

import numpy as np
import pytest
import yaml

from wam_runtime.bag import open_bag
from wam_runtime.processes import NodeProcess, REPO_ROOT, wait_for
from wam_runtime.replay import cli
from wam_runtime.replay.config import load_config
from wam_runtime.testing.model_gen import write_model

EXAMPLE = os.path.join(REPO_ROOT, 'config', 'examples', 'arm7_gripper.yaml')
URDF = os.path.join(REPO_ROOT, 'config', 'examples', 'arm7_gripper.urdf')
ARM = [f'arm_joint_{i}' for i in range(1, 8)]
GRIPPER = 'gripper_finger_left_joint'
HOME = [0.0, 0.0, 0.0, -1.5, 0.0, 1.5, 0.8]


def _gripper_value(t_s: float) -> float:
    """Return the gripper opening at ``t_s`` (m): it keeps changing, slowly."""
    return 0.02 + 0.015 * np.sin(2.0 * np.pi * t_s / 3.0)


@pytest.fixture(scope='module')
def live_episode(tmp_path_factory):
    """Record one live episode of the arm + gripper robot; return (bag, config, model)."""
    from diagnostic_msgs.msg import DiagnosticArray
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState

    from wam_runtime.processes import random_domain_id, ros_env
    tmp = tmp_path_factory.mktemp('live')
    model = write_model(str(tmp / 'policy.onnx'), joint_names=ARM, centre=HOME,
                        amplitude=[0.2] * 7, world_model=True, prefix=True)
    with open(EXAMPLE, encoding='utf-8') as f:
        doc = yaml.safe_load(f)
    safety = doc['/**/safety_controller']['ros__parameters']
    safety.update({'urdf_path': URDF, 'autostart': False, 'control_rate_hz': 100.0,
                   'state_timeout_s': 0.3, 'max_chunk_age_s': 1.0})
    doc['/**/policy_node']['ros__parameters'].update(
        {'model_path': model, 'inference_rate_hz': 10.0, 'inference_trigger': 'remaining',
         'trigger_remaining_s': 0.3})
    doc['/**/synthetic_camera'] = {'ros__parameters': {
        'joint_names': ARM, 'initial_positions_rad': HOME, 'width': 64, 'height': 64,
        'frame_rate_hz': 30.0, 'brightness_period_s': 2.0}}
    config = str(tmp / 'robot.yaml')
    with open(config, 'w', encoding='utf-8') as f:
        yaml.safe_dump(doc, f)
    env = ros_env(random_domain_id())
    bags = str(tmp / 'bags')
    procs = [NodeProcess('wam_runtime.ros.recorder_node', env, 'recorder_node', None,
                         ['-p', f'output_dir:={bags}', '-p', 'storage_id:=mcap'],
                         log_dir=str(tmp))]
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(env['ROS_DOMAIN_ID']))
    executor = SingleThreadedExecutor(context=context)
    node = rclpy.create_node('gripper_driver', context=context)
    pub = node.create_publisher(JointState, 'joint_states', qos_profile_sensor_data)

    def publish_gripper():
        now = node.get_clock().now()
        msg = JointState(name=[GRIPPER], position=[_gripper_value(now.nanoseconds * 1e-9)])
        msg.header.stamp = now.to_msg()
        pub.publish(msg)

    node.create_timer(0.02, publish_gripper)
    silent = {'topics': None}

    def on_diagnostics(msg):
        for st in msg.status:
            if st.name == 'recorder_node: recorder':
                values = {kv.key: kv.value for kv in st.values}
                silent['topics'] = set(values['topics_without_publishers'].split())

    node.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, 10)
    lifecycle = node.create_client(ChangeState, 'safety_controller/change_state')
    executor.add_node(node)

    def transition(transition_id):
        future = lifecycle.call_async(ChangeState.Request(transition=Transition(
            id=transition_id)))
        assert wait_for(lambda: executor.spin_once(timeout_sec=0.05) or future.done(), 30.0)
        assert future.result().success, transition_id

    try:
        for name in ('synthetic_camera', 'policy_node', 'safety_controller'):
            procs.append(NodeProcess(f'wam_runtime.ros.{name}', env, name, config,
                                     log_dir=str(tmp)))
        # Configured (publishers up, gate closed), then opened once the recorder has
        # matched every publisher of the loop (this robot publishes no outcome, no e-stop
        # and no joint_trajectory).
        assert wait_for(lambda: executor.spin_once(timeout_sec=0.05) or
                        lifecycle.service_is_ready(), 60.0), procs[-1].output()[-2000:]
        transition(Transition.TRANSITION_CONFIGURE)
        unused = {'/joint_trajectory', '/safety/estop', '/sim/episode_outcome'}
        assert wait_for(lambda: executor.spin_once(timeout_sec=0.05) or (
            silent['topics'] is not None and silent['topics'] <= unused), 60.0), silent
        transition(Transition.TRANSITION_ACTIVATE)
        # Run until the robot has moved on policy chunks for about four seconds.
        seen = {'commands': 0}
        from std_msgs.msg import Float64MultiArray
        node.create_subscription(Float64MultiArray, 'commands',
                                 lambda m: seen.__setitem__('commands', seen['commands'] + 1),
                                 10)
        assert wait_for(lambda: executor.spin_once(timeout_sec=0.05) or
                        seen['commands'] >= 400, 90.0), \
            '\n'.join(p.output()[-2000:] for p in procs)
        for p in procs[1:]:
            assert p.alive(), p.output()[-3000:]
    finally:
        for p in reversed(procs[1:]):
            p.stop()
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        procs[0].stop(timeout_s=15.0)
    episodes = sorted(os.path.join(bags, d) for d in os.listdir(bags)
                      if os.path.isdir(os.path.join(bags, d)))
    assert episodes, procs[0].output()[-3000:]
    return episodes[-1], config, model


def _replay(bag, config, model, out):
    code = cli.main([bag, '--config', config, '--model', model, '--urdf', URDF,
                     '--out', str(out), '--quiet', '--no-plots', '--schedule', 'recorded'])
    with open(os.path.join(str(out), 'summary.json'), encoding='utf-8') as f:
        return code, json.load(f)


@pytest.mark.ros
@pytest.mark.slow
def test_every_recorded_chunk_is_reproduced_bit_for_bit(live_episode, tmp_path):
    bag, config, model = live_episode
    with open_bag(bag) as b:
        topics = {t: i.count for t, i in b.topics.items()}
    assert topics.get('/policy/inference_inputs', 0) >= 20, topics
    assert topics['/policy/inference_inputs'] == topics['/policy/action_chunk'], topics
    code, s = _replay(bag, config, model, tmp_path / 'a')
    assert code == 0, s
    assert s['inputs']['schedule'] == 'recorded', s['inputs']
    assert s['inputs']['schedule_inputs'] == 'inference_inputs', s['inputs']
    chunks = s['divergence']['chunks_vs_recorded']
    # Every recorded chunk, exactly: the same model on exactly the same inputs.
    counts = s['policy']['not_inferred']
    # Not rerun: inferences on frames from before the recorder had matched the camera, or
    # on a best-effort frame it lost; none of them reached the robot (below).
    missed = counts.get('recorded_inference_before_recording', 0) + \
        counts.get('recorded_inference_not_rerun', 0)
    assert chunks['recorded'] == topics['/policy/action_chunk'], chunks
    assert chunks['matched'] == chunks['recorded'] - missed, (chunks, counts)
    assert chunks['max_abs_rad'] == 0.0, chunks
    # Every chunk the robot ran, reproduced; the replay ticked at the robot's ticks.
    assert chunks['executed'] >= 20 and chunks['executed_matched'] == chunks['executed'], chunks
    assert s['inputs']['ticks'] == 'recorded', s['inputs']
    # A second replay is the same, file for file (a replay is a function of the bag).
    code, s2 = _replay(bag, config, model, tmp_path / 'b')
    assert code == 0 and s2['divergence'] == s['divergence']


@pytest.mark.ros
@pytest.mark.slow
def test_commands(live_episode, tmp_path):
    """The replay commands what the robot was commanded, inside the same limits.

    The bag carries the recorder's receive times, not the controller's tick times and
    arrival times, so the commands match to within the motion of a few control periods
    rather than exactly; the chunks they follow are the recorded ones exactly.
    """
    bag, config, model = live_episode
    code, s = _replay(bag, config, model, tmp_path / 'a')
    assert code == 0, s
    assert s['safety']['commands_outside_limits'] == 0
    gated = s['divergence']['gated_commands']
    assert gated['n'] >= 200, gated
    # Measured: rms 0.0001-0.0043 rad, max 0.052 rad over 20 recordings (a 0.2 rad sine every
    # 2 s; the replay ticks and adopts when the robot did, but sees joint states at the
    # recorder's receive times). Before it ticked on the bag's grid: rms 0.021, max 0.15.
    assert gated['rms_all_rad'] < 0.05 and gated['max_all_rad'] < 0.3, gated


@pytest.mark.ros
@pytest.mark.slow
def test_the_replayed_gate_holds_the_measured_gripper(live_episode):
    """The replay feeds the measured held joint to the workspace guard, as the node does."""
    from wam_runtime.core.safety_config import build_safety
    from wam_runtime.replay.pipeline import ReplayPipeline
    from wam_runtime.replay.config import load_policy
    from wam_runtime.core.policy_config import build_policy_config
    from wam_runtime.replay.topics import recorded_inferences, resolve_inputs
    bag, config, model = live_episode
    policy_values, safety_values = load_config(config, [])
    policy_values['model_path'] = model
    safety_values['urdf_path'] = URDF
    pconf = build_policy_config(policy_values)
    setup = build_safety(safety_values)
    policy = load_policy(model, pconf)
    with open_bag(bag) as b:
        topics = resolve_inputs(b.topics, ['scene'], [], 'forward_command', 'replay')
        pipe = ReplayPipeline(policy, pconf, setup, topics, None, 0.01, 'replay', b.topics,
                              recorded_inferences(b, topics), True)
        last_gripper = None
        for rec in b.messages():
            pipe.feed(rec)
            if rec.topic == '/joint_states':
                msg = pipe.msgs.store.deserialize_cdr(rec.data, rec.msgtype)
                if list(msg.name) == [GRIPPER]:
                    last_gripper = float(msg.position[0])
        pipe.finish()
    assert last_gripper is not None
    held = pipe.safety_rt.guard.kin.held_positions()
    assert held[GRIPPER] == last_gripper           # measured, not the configured 0.04
    assert abs(held[GRIPPER] - 0.04) > 1e-3
    counts = pipe.run.policy_counters
    missed = counts.get('recorded_inference_before_recording', 0) + \
        counts.get('recorded_inference_not_rerun', 0)
    assert pipe.run.reran == len(pipe.run.recorded_chunks) - missed
    assert set(pipe.safety_rt.joints.sources) >= {'/joint_states'}
