"""recorder_node: episodes (inputs, chunks, commands, interventions, e-stops, outcome) to bags."""

import json
import os
import time

import numpy as np
import pytest
import yaml

from wam_runtime.bag import open_bag
from wam_runtime.demo import simdata
from wam_runtime.processes import NodeProcess, wait_for

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture(scope='session')
def sim_bags(tmp_path_factory):
    """Return the simulator episode recorded in MCAP and sqlite3 (shared with test_replay)."""
    return simdata.recorded_once(str(tmp_path_factory.getbasetemp() / 'sim_bags'))


def _episodes(folder):
    with open(os.path.join(folder, 'episodes.jsonl'), encoding='utf-8') as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_simulator_episode_is_recorded_with_its_outcome(sim_bags, storage):
    assert sim_bags['recorder_exit_codes'] == [0, 0]
    folder = os.path.dirname(sim_bags[storage][0])
    eps = _episodes(folder)
    first = eps[0]
    outcome = sim_bags['demo']['per_episode'][0]
    assert first['end_reason'] == 'outcome' and first['seed'] == outcome['seed']
    assert first['success'] == outcome['success']
    assert first['storage'] == storage
    assert eps[-1]['end_reason'] == 'shutdown'
    with open(os.path.join(sim_bags[storage][0], 'metadata.yaml'), encoding='utf-8') as f:
        meta = yaml.safe_load(f)['rosbag2_bagfile_information']
    assert meta['storage_identifier'] == storage
    assert json.loads(meta['custom_data']['wam_runtime.episode']) == first
    with open_bag(sim_bags[storage][0]) as bag:
        counts = {t: i.count for t, i in bag.topics.items()}
    for topic in ('/camera/scene/image_raw', '/joint_states', '/policy/action_chunk',
                  '/policy/inference_inputs', '/commands', '/safety/execution',
                  '/sim/episode_outcome'):
        assert counts.get(topic, 0) > 0, (topic, counts)
    assert counts['/sim/episode_outcome'] == 1
    assert counts == first['messages']
    # The demo starts only once the recorder has matched every publisher: no topic's start
    # is missing (the recorder holds at least every command the demo itself received).
    recorded = sum(e['messages'].get('/commands', 0) for e in eps)
    assert recorded >= sim_bags['demo']['commands_published'], (recorded, eps)
    # ... and every input of the loop is in the bag before the gate opened.
    with open_bag(sim_bags[storage][0]) as bag:
        start = {}
        for rec in bag.messages():
            start.setdefault(rec.topic, rec.t_ns)
    for topic in ('/camera/scene/image_raw', '/joint_states', '/policy/action_chunk',
                  '/policy/inference_inputs', '/policy/surprise'):
        assert start[topic] < start['/commands'], (topic, start)
    assert sum(first['interventions'].values()) == counts.get('/safety/events', 0)


def test_recorded_topics_are_the_interfaces_table():
    from rclpy.qos import qos_profile_sensor_data, ReliabilityPolicy
    from wam_runtime.core import interfaces as itf
    from wam_runtime.ros.interface_types import message_class, qos
    from wam_runtime.ros.recorder_node import recorded_endpoints
    endpoints = recorded_endpoints(['scene', 'wrist'], ['wrist'], itf.EPISODE_OUTCOME, True)
    topics = [e.topic for e in endpoints]
    assert topics[:2] == ['camera/scene/image_raw', 'camera/wrist/image_raw/compressed']
    assert topics[2:2 + len(itf.RECORDED)] == [e.topic for e in itf.RECORDED]
    assert itf.INFERENCE_INPUTS in topics
    assert topics[-2:] == [itf.EPISODE_OUTCOME, itf.DIAGNOSTICS]
    assert [e.topic for e in recorded_endpoints([], [], 'done', False)][-1] == 'done'
    for e in endpoints:
        assert message_class(e.msgtype).__name__ == e.msgtype.rsplit('/', 1)[1]
        profile = qos(e)
        assert profile.depth == e.depth
        if e.qos == itf.SENSOR:
            assert profile.reliability == qos_profile_sensor_data.reliability
        else:
            assert profile.reliability == ReliabilityPolicy.RELIABLE


def test_split_service_estops_and_max_duration(ros_context, proc_env, tmp_path):
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Bool
    from std_srvs.srv import Trigger
    from rclpy.qos import qos_profile_sensor_data
    import rclpy
    out = tmp_path / 'episodes'
    rec = NodeProcess('wam_runtime.ros.recorder_node', proc_env, 'recorder_node', None,
                      ['-p', f'output_dir:={out}', '-p', 'max_episode_s:=1.5',
                       '-p', 'diagnostics_period_s:=0.2'],
                      log_dir=str(tmp_path))
    try:
        from diagnostic_msgs.msg import DiagnosticArray
        node = ros_context(rclpy.create_node('recorder_test', context=ros_context.context))
        reports = []
        node.create_subscription(
            DiagnosticArray, '/diagnostics',
            lambda m: reports.extend({kv.key: kv.value for kv in st.values} for st in m.status
                                     if st.name == 'recorder_node: recorder'), 10)
        js = node.create_publisher(JointState, 'joint_states', qos_profile_sensor_data)
        cam = node.create_publisher(Image, 'camera/scene/image_raw', qos_profile_sensor_data)
        estop = node.create_publisher(Bool, 'safety/estop', 10)
        split = node.create_client(Trigger, 'recorder/split')
        assert split.wait_for_service(timeout_sec=20.0), rec.output()
        assert wait_for(lambda: js.get_subscription_count() > 0 and
                        estop.get_subscription_count() > 0, 10.0)
        # /diagnostics names what the recorder has matched a publisher for, and what not.
        assert wait_for(lambda: any(r['publishers /joint_states'] == '1' for r in reports),
                        10.0), reports[-1:]
        silent = reports[-1]['topics_without_publishers'].split()
        assert '/commands' in silent and '/joint_states' not in silent
        assert '/safety/estop' not in silent and '/camera/scene/image_raw' not in silent
        assert reports[-1]['write_errors'] == '0'

        sent = []

        def publish(seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                msg = JointState(name=['joint_1'], position=[0.0])
                msg.header.stamp = node.get_clock().now().to_msg()
                js.publish(msg)
                frame = Image(height=1, width=1, encoding='rgb8', step=3,
                              data=bytes([len(sent) % 256] * 3))
                frame.header.stamp = msg.header.stamp
                cam.publish(frame)
                sent.append(frame)
                time.sleep(0.02)

        publish(0.5)
        estop.publish(Bool(data=True))
        estop.publish(Bool(data=False))
        publish(0.3)
        future = split.call_async(Trigger.Request())
        assert wait_for(future.done, 5.0) and future.result().success
        publish(2.2)       # longer than max_episode_s: cut in two
    finally:
        assert rec.stop(timeout_s=15.0) == 0, rec.output()
    eps = _episodes(str(out))
    assert [e['end_reason'] for e in eps] == ['manual', 'max_duration', 'shutdown'], eps
    assert eps[0]['estop_presses'] == 1
    assert eps[0]['messages']['/safety/estop'] == 2
    assert all(e['messages'].get('/joint_states', 0) > 5 for e in eps)
    assert eps[1]['duration_s'] <= 1.5
    frames = []
    for e in eps:
        with open_bag(str(out / e['path'])) as bag:
            assert not bag.warnings
            assert bag.topics['/joint_states'].count == e['messages']['/joint_states']
            frames.append([(r.t_ns, r.data) for r in bag.messages(['/camera/scene/image_raw'])])
    # Each new episode starts with the latest frame of the one before, at its own log time
    # (the first inference of an episode may have used it: replay reruns it on it).
    for before, after in zip(frames, frames[1:]):
        assert after[0] == before[-1] and after[0][0] < after[1][0]


def test_recorded_episode_has_crcs_and_chunks_carry_exact_observation_stamps(sim_bags):
    import struct
    from wam_runtime.bag import typestore
    from wam_runtime.bag.mcap import McapIndex
    folder = sim_bags['mcap'][0]
    mcap = next(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith('.mcap'))
    index = McapIndex(mcap)
    assert index.summary_crc_checked                   # the summary CRC is set and holds
    with open(mcap, 'rb') as f:
        for chunk in index.chunks:
            f.seek(chunk.offset + 9 + 24)
            assert struct.unpack('<I', f.read(4))[0] != 0, chunk.offset
    stamps = {}
    with open_bag(folder) as bag:
        for rec in bag.messages():
            if rec.topic in ('/camera/scene/image_raw', '/joint_states',
                             '/policy/action_chunk'):
                st = typestore().deserialize_cdr(rec.data, rec.msgtype).header.stamp
                stamps.setdefault(rec.topic, []).append(st.sec * 10**9 + st.nanosec)
        assert not bag.data_lost, (bag.lost, bag.problems)
    # A chunk is stamped with its observation's oldest part: exactly a frame's or a joint
    # state's header stamp, to the nanosecond. The recorder subscribes best effort, like
    # any sensor subscriber, so on a loaded machine it may miss the one joint state a chunk
    # was stamped with: such a stamp then has no recorded part near it at all, whereas a
    # float round trip would leave it within a microsecond of one.
    parts = np.array(sorted(set(stamps['/camera/scene/image_raw'])
                            | set(stamps['/joint_states'])), dtype=np.int64)
    chunks = stamps['/policy/action_chunk']
    assert chunks
    exact = [s for s in chunks if s in set(parts.tolist())]
    for s in set(chunks) - set(exact):
        assert np.min(np.abs(parts - s)) > 1_000_000, s      # a missed message, not a rounding
    assert len(exact) >= 0.8 * len(chunks), (len(exact), len(chunks))
