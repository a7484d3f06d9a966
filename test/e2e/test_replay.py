"""Offline and real-time replay of recorded runs (``wam-runtime replay``).

The bags come from the simulator: one closed-loop demo episode recorded by two
``recorder_node`` processes, one per storage format, once per test session. Small synthetic
bags (written here with rosbags) cover bad input without a simulator.
"""

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from wam_runtime.bag import BagWriter, open_bag, read_all, typestore
from wam_runtime.bag.mcap import McapIndex
from wam_runtime.demo import simdata
from wam_runtime.processes import REPO_ROOT
from wam_runtime.replay import cli

CONFIG = os.path.join(REPO_ROOT, 'config', 'reference_arm.yaml')
MODEL = os.path.join(REPO_ROOT, 'models', 'reference_reach.onnx')
SLICE = os.path.join(REPO_ROOT, 'config', 'slice.yaml')
JOINTS = [f'joint_{i}' for i in range(1, 7)]


@pytest.fixture(scope='session')
def sim_bags(tmp_path_factory):
    """Record one simulator episode in MCAP and sqlite3 (shared with test_recorder)."""
    res = simdata.recorded_once(str(tmp_path_factory.getbasetemp() / 'sim_bags'))
    assert res['demo']['episodes'] == 1, res['demo']
    for storage in ('mcap', 'sqlite3'):
        assert res[storage], f'no {storage} episode recorded'
    return res


def replay(bag, out, *extra, config=CONFIG, model=MODEL):
    """Run ``wam-runtime replay`` in-process; return (exit code, summary or None)."""
    args = [str(bag), '--config', config, '--out', str(out), '--quiet', *extra]
    if model:
        args += ['--model', model]
    code = cli.main(args)
    path = os.path.join(str(out), 'summary.json')
    summary = None
    if os.path.exists(path):
        with open(path, encoding='utf-8') as f:
            summary = json.load(f)
    return code, summary


def _check_reproduced(summary):
    """Check that every chunk the robot executed was rerun and reproduced bit for bit.

    Every rerun matches its recorded chunk exactly; the recorded inferences that were not
    rerun are accounted for by reason (a frame from before the recorder had matched the
    camera, or a best-effort frame the recorder lost) and none of them reached the robot.
    """
    chunks = summary['divergence']['chunks_vs_recorded']
    counts = summary['policy']['not_inferred']
    missed = counts.get('recorded_inference_before_recording', 0) + \
        counts.get('recorded_inference_not_rerun', 0)
    assert chunks['matched'] == summary['policy']['chunks'] == chunks['recorded'] - missed, \
        (chunks, counts)
    assert chunks['max_abs_rad'] == 0.0, chunks
    assert chunks['executed'] >= 10 and chunks['executed_matched'] == chunks['executed'], chunks


def tree_hashes(folder):
    """Return {relative path: sha256} of every output file but the wall-clock timing."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in sorted(files):
            if name == 'timing.json':
                continue
            path = os.path.join(root, name)
            with open(path, 'rb') as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope='module')
def reference_replay(sim_bags, tmp_path_factory):
    """Replay the MCAP episode once with the reference config."""
    out = tmp_path_factory.mktemp('replay_a')
    code, summary = replay(sim_bags['mcap'][0], out)
    assert code == 0, summary
    return out, summary


# ---------------------------------------------------------------------- simulator bags
@pytest.mark.ros
@pytest.mark.slow
def test_mcap_replay_reproduces_the_recorded_run(reference_replay):
    out, s = reference_replay
    assert s['status'] == 'ok' and s['error'] is None
    assert s['inputs']['storage'] == 'mcap'
    assert s['inputs']['schedule'] == 'recorded' and s['inputs']['gate'] == 'recorded'
    assert s['policy']['inferences'] >= 10       # an episode lasts about 2 s at 10 Hz
    assert s['safety']['commands'] >= 100
    assert s['safety']['commands_outside_limits'] == 0
    read = s['messages']['read']
    assert read['/camera/scene/image_raw'] > 50 and read['/joint_states'] >= 250
    # Every recorded inference rerun on exactly its recorded inputs: every chunk the robot
    # got, bit for bit.
    assert s['inputs']['schedule_inputs'] == 'inference_inputs', s['inputs']
    assert s['inputs']['ticks'] == 'recorded', s['inputs']
    _check_reproduced(s)
    chunks = s['divergence']['chunks_vs_recorded']
    # The bag holds every chunk the robot executed (none published before the recorder had
    # matched the policy's publisher): replay can follow the whole recorded run.
    assert chunks['executed_not_recorded'] == 0 and s['warnings'] == [], s['warnings']
    gated = s['divergence']['gated_commands']
    # Commands are close, often exact: the replay ticks and adopts chunks when the robot did
    # (safety/execution) but reads joint states at the recorder's receive times. Measured
    # rms 0 to 0.0016 rad, max 0.011 rad (6 recordings, three busy loops on two cores).
    assert gated['n'] >= 100 and gated['rms_all_rad'] < 0.02, gated
    for name in ('joints.png', 'interventions.png'):
        assert os.path.getsize(out / name) > 5_000
    # The output bag holds the recorded inputs and the replay outputs on their topics.
    bag = open_bag(str(out / 'replay'))
    with bag:
        assert bag.storage == 'mcap' and not bag.warnings
        topics = bag.topics
    for topic in ('/camera/scene/image_raw', '/joint_states', '/replay/policy/action_chunk',
                  '/replay/commands', '/replay/safety/events'):
        assert topics[topic].count > 0, topic
    assert topics['/replay/commands'].count == s['safety']['commands']


@pytest.mark.ros
@pytest.mark.slow
def test_sqlite3_replay(sim_bags, tmp_path):
    # Ticking every control period instead of at the robot's ticks: the same chunks (the
    # commands follow them on the bag's grid, not on the robot's jittered ticks).
    code, s = replay(sim_bags['sqlite3'][0], tmp_path / 'out', '--ticks', 'grid')
    assert code == 0, s
    assert s['inputs']['storage'] == 'sqlite3' and s['inputs']['ticks'] == 'grid'
    assert s['divergence']['gated_commands']['n'] >= 100
    assert s['safety']['commands_outside_limits'] == 0
    assert s['policy']['inferences'] >= 10 and s['safety']['commands'] >= 100
    _check_reproduced(s)
    # The robot's ticks cannot be followed without following its gate.
    code, s = replay(sim_bags['sqlite3'][0], tmp_path / 'out2', '--gate', 'open', '--ticks',
                     'recorded')
    assert code == 2 and '--ticks recorded needs --gate recorded' in s['error'], s


@pytest.mark.ros
@pytest.mark.slow
def test_replay_is_byte_identical_run_after_run(sim_bags, reference_replay, tmp_path):
    first, s1 = reference_replay
    code, s2 = replay(sim_bags['mcap'][0], tmp_path / 'b', '--expect',
                      str(first / 'summary.json'))
    assert code == 0
    a, b = tree_hashes(str(first)), tree_hashes(str(tmp_path / 'b'))
    assert set(a) == {'summary.json', 'joints.png', 'interventions.png',
                      'replay/metadata.yaml', 'replay/replay.mcap'}
    assert a == b
    assert s1['outputs']['bag_sha256'] == s2['outputs']['bag_sha256']


@pytest.mark.ros
@pytest.mark.slow
def test_regression_check_fails_when_a_safety_limit_is_loosened(sim_bags, reference_replay,
                                                                tmp_path, capsys):
    first, s1 = reference_replay
    assert s1['safety']['interventions'].get('acceleration_limit', 0) > 0
    capsys.readouterr()
    loose = '[30.0, 30.0, 30.0, 40.0, 40.0, 40.0]'    # the reference config: 15 and 20
    code, s2 = replay(sim_bags['mcap'][0], tmp_path / 'loose', '--param',
                      f'safety_controller.max_acceleration_rad_s2={loose}', '--expect',
                      str(first / 'summary.json'))
    text = capsys.readouterr().out
    assert code == 1, text
    assert 'regression check against' in text
    assert 'safety.interventions.acceleration_limit: expected' in text, text
    assert s2['safety']['commands_outside_limits'] == 0


@pytest.mark.ros
@pytest.mark.slow
def test_truncated_and_corrupt_bags(sim_bags, tmp_path):
    src = sim_bags['mcap'][0]
    total = {}
    for r in read_all(src):
        total[r.topic] = total.get(r.topic, 0) + 1
    # A recording killed mid-file (no summary, no footer, no metadata.yaml): the readable
    # part is salvaged; how much was never written is unknowable, so it is a warning only.
    cut = tmp_path / 'cut'
    shutil.copytree(src, cut)
    mcap = next(p for p in os.listdir(cut) if p.endswith('.mcap'))
    size = os.path.getsize(cut / mcap)
    with open(cut / mcap, 'r+b') as f:
        f.truncate(size * 6 // 10)
    os.remove(cut / 'metadata.yaml')
    code, s = replay(cut, tmp_path / 'out_cut')
    assert code == 0, s
    assert s['inputs']['salvaged'] is True and s['messages']['lost'] == {}
    assert any('salvag' in w for w in s['warnings']), s['warnings']
    assert 0 < s['messages']['read']['/joint_states'] < 0.8 * total['/joint_states']
    assert (tmp_path / 'out_cut' / 'replay' / 'metadata.yaml').exists()
    # The same file next to the metadata.yaml that lists every message: a counted loss.
    shutil.copy(os.path.join(src, 'metadata.yaml'), cut / 'metadata.yaml')
    code, s = replay(cut, tmp_path / 'out_cut_meta')
    assert code == 4 and s['status'] == 'data_lost', s
    assert s['messages']['lost']['/joint_states'] == \
        total['/joint_states'] - s['messages']['read']['/joint_states']

    # A broken record in the middle of an indexed file: the recorder wrote chunk CRCs, so
    # the damaged chunk is skipped whole and its messages counted lost by topic, everything
    # else is replayed, and the exit code says data was lost.
    bad = tmp_path / 'bad'
    shutil.copytree(src, bad)
    topic = _break_a_middle_record(bad / mcap)
    code, s = replay(bad, tmp_path / 'out_bad')
    assert code == 4, s
    assert s['status'] == 'data_lost' and s['error'] is None
    lost = s['messages']['lost']
    assert lost.get(topic, 0) >= 1, lost
    assert any('fails its CRC check' in w for w in s['warnings']), s['warnings']
    got = {}
    for r in read_all(str(bad)):
        got[r.topic] = got.get(r.topic, 0) + 1
    for name, n in total.items():
        assert got.get(name, 0) + lost.get(name, 0) == n, name
    assert s['messages']['read']['/joint_states'] == got['/joint_states']

    # Not a bag at all.
    (tmp_path / 'empty').mkdir()
    code, s = replay(tmp_path / 'empty', tmp_path / 'out_empty')
    assert code == 3 and s['status'] == 'error' and 'not a rosbag2 folder' in s['error']
    junk = tmp_path / 'junk.mcap'
    junk.write_bytes(os.urandom(4096))
    code, s = replay(junk, tmp_path / 'out_junk')
    assert code == 3 and s['status'] == 'error'


@pytest.mark.ros
@pytest.mark.slow
def test_a_recording_without_the_first_chunks_the_robot_ran_says_so(sim_bags, tmp_path):
    # What a recorder that discovered the policy late writes: the robot's first chunks
    # (and their inference inputs) are missing while its commands and execution feedback
    # are there. Replay cannot follow those commands; the summary must say so.
    src = sim_bags['mcap'][0]
    records = list(read_all(src))
    first_cmd = min(r.t_ns for r in records if r.topic == '/commands')
    late = {'/policy/action_chunk', '/policy/inference_inputs', '/policy/surprise'}
    cut_ns = first_cmd + 300_000_000
    bag = tmp_path / 'late_recorder'
    writer = BagWriter(str(bag), 'mcap')
    dropped = 0
    for r in records:
        if r.topic in late and r.t_ns < cut_ns:
            dropped += r.topic == '/policy/action_chunk'
            continue
        writer.write(r.t_ns, r.topic, r.msgtype, r.data)
    writer.close()
    assert dropped >= 3
    code, s = replay(bag, tmp_path / 'out')
    assert code == 0, s
    missing = s['divergence']['chunks_vs_recorded']['executed_not_recorded']
    assert 1 <= missing <= dropped, s['divergence']
    assert any(f'executed {missing} chunks the bag does not hold' in w
               for w in s['warnings']), s['warnings']


def _break_a_middle_record(path):
    """Give the tenth message of the middle chunk an impossible length; return its topic."""
    data = bytearray(path.read_bytes())
    pos, chunks = 8, []
    while pos + 9 <= len(data):
        op = data[pos]
        (length,) = struct.unpack_from('<Q', data, pos + 1)
        if op in (0x02, 0x0F):
            break
        if op == 0x06:
            chunks.append(pos + 9)
        pos += 9 + length
    assert len(chunks) >= 3, 'expected a multi-chunk bag'
    p = chunks[len(chunks) // 2] + 28
    (clen,) = struct.unpack_from('<I', data, p)
    p += 4 + clen + 8
    seen = 0
    while True:
        op = data[p]
        (length,) = struct.unpack_from('<Q', data, p + 1)
        if op == 0x05:
            seen += 1
            if seen == 10:
                struct.pack_into('<Q', data, p + 1, 1 << 40)
                (cid,) = struct.unpack_from('<H', data, p + 9)
                break
        p += 9 + length
    path.write_bytes(bytes(data))
    return McapIndex(str(path)).channels[cid].topic     # the summary names every channel


@pytest.mark.ros
@pytest.mark.slow
def test_realtime_playback_against_live_nodes(sim_bags, tmp_path):
    out = tmp_path / 'rt'
    code = cli.main([sim_bags['mcap'][0], '--config', CONFIG, '--model', MODEL, '--out',
                     str(out), '--realtime', '--launch', '--settle-s', '0.5', '--quiet',
                     '--no-plots'])
    with open(out / 'summary.json', encoding='utf-8') as f:
        s = json.load(f)
    assert code == 0, s
    assert s['outputs']['node_exit_codes'] == {'policy_node': 0, 'safety_controller': 0}
    assert set(s['inputs']['played_topics']) == {'/camera/scene/image_raw', '/joint_states'}
    assert s['policy']['chunks'] >= 15, s['policy']
    assert s['safety']['commands'] >= 150, s['safety']
    assert s['safety']['commands_outside_limits'] == 0
    with open_bag(str(out / 'realtime')) as bag:
        assert bag.topics['/replay/commands'].count == s['safety']['commands']
        assert bag.topics['/joint_states'].count == s['messages']['read']['/joint_states']


# ---------------------------------------------------------------------- synthetic bags
def _synthetic_bag(path, seconds=2.0, camera=True, joint_type='sensor_msgs/msg/JointState',
                   defects=False, storage='mcap', jpeg=False, split_joints=False):
    """Write camera frames (30 Hz, 64x64; raw or JPEG) and joint states (100 Hz).

    ``split_joints``: two drivers on one topic, the first four joints and the last two in
    separate messages (an arm driver and a gripper driver), the gripper's stamped 3 ms
    before the arm's but received after it: their stamps interleave out of order.
    """
    ts = typestore()
    types = ts.types
    t0 = 1_700_000_000_000_000_000

    def header(t):
        return types['std_msgs/msg/Header'](stamp=types['builtin_interfaces/msg/Time'](
            sec=t // 10**9, nanosec=t % 10**9), frame_id='')

    entries = []
    for k in range(int(seconds * 100)):
        t = t0 + k * 10_000_000
        if joint_type == 'sensor_msgs/msg/JointState' and split_joints:
            for part, dt, log_dt in ((slice(0, 4), 0, 1_000_000),
                                     (slice(4, 6), -3_000_000, 2_000_000)):
                names = JOINTS[part]
                msg = types[joint_type](header=header(t + dt), name=names,
                                        position=np.full(len(names), 0.1 * np.sin(k / 50)),
                                        velocity=np.zeros(0), effort=np.zeros(0))
                entries.append((t + log_dt, '/joint_states', joint_type,
                                bytes(ts.serialize_cdr(msg, joint_type)), '', ''))
            continue
        if joint_type == 'sensor_msgs/msg/JointState':
            msg = types[joint_type](header=header(t), name=JOINTS,
                                    position=np.full(6, 0.1 * np.sin(k / 50)),
                                    velocity=np.zeros(6), effort=np.zeros(0))
        else:
            msg = types[joint_type](data='not a joint state')
        data = bytes(ts.serialize_cdr(msg, joint_type))
        entries.append((t + 1_000_000, '/joint_states', joint_type, data, '', ''))
    if camera:
        for k in range(int(seconds * 30)):
            t = t0 + k * 33_333_333
            pixels = np.full((64, 64, 3), (k * 7) % 256, np.uint8)
            if jpeg:
                import cv2
                img = types['sensor_msgs/msg/CompressedImage'](
                    header=header(t), format='rgb8; jpeg compressed bgr8',
                    data=cv2.imencode('.jpg', pixels)[1].ravel())
                topic, msgtype = '/camera/scene/image_raw/compressed', \
                    'sensor_msgs/msg/CompressedImage'
            else:
                img = types['sensor_msgs/msg/Image'](
                    header=header(t), height=64, width=64, encoding='rgb8', is_bigendian=0,
                    step=192, data=pixels.ravel())
                topic, msgtype = '/camera/scene/image_raw', 'sensor_msgs/msg/Image'
            entries.append((t + 2_000_000, topic, msgtype,
                            bytes(ts.serialize_cdr(img, msgtype)), '', ''))
    if defects:
        from rosbags.typesys import get_types_from_msg, get_typestore, Stores
        other = get_typestore(Stores.ROS2_JAZZY)
        other.register(get_types_from_msg('float64 x', 'my_msgs/msg/Thing'))
        msgdef, _ = other.generate_msgdef('my_msgs/msg/Thing', ros_version=2)
        thing = bytes(other.serialize_cdr(other.types['my_msgs/msg/Thing'](x=1.0),
                                          'my_msgs/msg/Thing'))
        digest = other.hash_rihs01('my_msgs/msg/Thing')
        entries.append((t0 + 500_000_000, '/custom', 'my_msgs/msg/Thing', thing, msgdef,
                        digest))
        # A joint state cut short on the wire and one stamped before its predecessor.
        entries.append((t0 + 700_500_000, '/joint_states', 'sensor_msgs/msg/JointState',
                        entries[0][3][:12], '', ''))
        late = types['sensor_msgs/msg/JointState'](
            header=header(t0 + 600_000_000), name=JOINTS, position=np.zeros(6),
            velocity=np.zeros(6), effort=np.zeros(0))
        entries.append((t0 + 900_500_000, '/joint_states', 'sensor_msgs/msg/JointState',
                        bytes(ts.serialize_cdr(late, 'sensor_msgs/msg/JointState')), '', ''))
    writer = BagWriter(str(path), storage)
    for t, topic, msgtype, data, msgdef, digest in sorted(entries, key=lambda e: e[0]):
        writer.write(t, topic, msgtype, data, msgdef, digest)
    writer.close()
    return path


@pytest.fixture(scope='module')
def slice_model(tmp_path_factory):
    from wam_runtime.testing.model_gen import write_model
    return write_model(str(tmp_path_factory.mktemp('model') / 'generated.onnx'))


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_bad_messages_are_counted_and_skipped(tmp_path, slice_model, storage):
    bag = _synthetic_bag(tmp_path / 'bag', defects=True, storage=storage)
    code, s = replay(bag, tmp_path / 'out', config=SLICE, model=slice_model)
    assert code == 0, s
    assert s['inputs']['schedule'] == 'rate' and s['inputs']['gate'] == 'open'
    skipped = s['messages']['skipped']
    assert skipped['deserialize_error:/joint_states'] == 1
    assert skipped['stamp_backwards:/joint_states'] == 1
    custom = s['messages']['written'].get('/custom', 0) + \
        skipped.get('unknown_type:my_msgs/msg/Thing', 0)
    assert custom == 1                  # copied with its definition, or counted
    assert 15 <= s['policy']['inferences'] <= 21
    assert s['safety']['commands'] > 150
    assert s['safety']['commands_outside_limits'] == 0
    assert s['divergence'] is None      # nothing recorded to compare with


def test_joint_states_from_two_drivers_on_one_topic_are_merged(tmp_path, slice_model):
    """An arm driver and a gripper driver each publish part of the joints: as live."""
    bag = _synthetic_bag(tmp_path / 'bag', split_joints=True)
    code, s = replay(bag, tmp_path / 'out', config=SLICE, model=slice_model)
    assert code == 0, s
    assert 'joint_state_rejected' not in s['safety'].get('counters', {}), s['safety']
    # Each driver's stamps go forward: none of their messages is skipped as going back.
    assert s['messages']['skipped'] == {}, s['messages']
    assert s['messages']['read']['/joint_states'] == 400
    assert 15 <= s['policy']['inferences'] <= 21
    assert s['safety']['commands'] > 150
    assert s['safety']['commands_outside_limits'] == 0


def test_compressed_camera_topic(tmp_path, slice_model):
    bag = _synthetic_bag(tmp_path / 'bag', jpeg=True)
    code, s = replay(bag, tmp_path / 'out', '--no-plots', config=SLICE, model=slice_model)
    assert code == 0, s
    assert s['inputs']['topics']['cameras'] == {'scene': '/camera/scene/image_raw/compressed'}
    assert s['policy']['inferences'] >= 15 and not s['policy']['not_inferred']


def test_missing_topics_and_wrong_types_are_clear_errors(tmp_path, slice_model, capsys):
    code, s = replay(_synthetic_bag(tmp_path / 'nocam', camera=False), tmp_path / 'o1',
                     config=SLICE, model=slice_model)
    err = capsys.readouterr().err
    assert code == 3 and s['status'] == 'error'
    assert "camera 'scene'" in err and 'camera/scene/image_raw' in s['error']
    code, s = replay(_synthetic_bag(tmp_path / 'str', joint_type='std_msgs/msg/String'),
                     tmp_path / 'o2', config=SLICE, model=slice_model)
    assert code == 3
    assert 'expected sensor_msgs/msg/JointState' in s['error'], s['error']
    # Bad configuration: exit 2 with one line.
    code, s = replay(tmp_path / 'str', tmp_path / 'o3', '--param',
                     'safety_controller.control_rate_hz=-1', config=SLICE, model=slice_model)
    assert code == 2 and 'control_rate_hz' in capsys.readouterr().err


def test_python_m_entry_point(tmp_path, slice_model):
    bag = _synthetic_bag(tmp_path / 'bag', seconds=1.0)
    res = subprocess.run([sys.executable, '-m', 'wam_runtime.replay', str(bag), '--config',
                          SLICE, '--model', slice_model, '--out', str(tmp_path / 'out'),
                          '--no-plots'], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert 'x real time' in res.stdout
    assert (tmp_path / 'out' / 'summary.json').exists()
    # Outputs are never overwritten silently.
    res = subprocess.run([sys.executable, '-m', 'wam_runtime.replay', str(bag), '--config',
                          SLICE, '--model', slice_model, '--out', str(tmp_path / 'out')],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and '--force' in res.stderr
