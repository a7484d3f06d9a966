"""Replay never loses bag data silently: CRCs, index counts, exit code 4, clear errors.

Every bag here is a real rosbag2 folder written by the test (MCAP through ``BagWriter`` or
straight through the ``rosbags`` writer, sqlite3), then damaged on disk the way a failing
disk or a bad copy does: 64 KiB of garbage inside a chunk, a zeroed database page.
"""

import json
import os
import re
import struct
import zlib

import numpy as np
import pytest
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from wam_runtime.bag import BagError, BagWriter, open_bag, typestore
from wam_runtime.bag.mcap import McapIndex
from wam_runtime.bag.types import describe_error as _describe
from wam_runtime.processes import REPO_ROOT
from wam_runtime.replay import cli, report
from wam_runtime.replay.config import EXIT_DATA_LOST

SLICE = os.path.join(REPO_ROOT, 'config', 'slice.yaml')
JOINTS = [f'joint_{i}' for i in range(1, 7)]
T0 = 1_700_000_000_000_000_000
# A Python exception's name in a message meant for the user ("OverflowError: ...").
PYTHON_ERROR = re.compile(r'\b[A-Z][A-Za-z]*(Error|Exception)\b')


def _messages(seconds=6.0):
    """(log time, topic, type, CDR) of 64x64 rgb8 frames at 30 Hz and joint states at 100 Hz."""
    ts = typestore()
    t = ts.types

    def header(ns):
        return t['std_msgs/msg/Header'](stamp=t['builtin_interfaces/msg/Time'](
            sec=ns // 10**9, nanosec=ns % 10**9), frame_id='')

    out = []
    for k in range(int(seconds * 100)):
        ns = T0 + k * 10_000_000
        js = t['sensor_msgs/msg/JointState'](header=header(ns), name=JOINTS,
                                             position=np.full(6, 0.1 * np.sin(k / 50)),
                                             velocity=np.zeros(6), effort=np.zeros(0))
        out.append((ns + 1_000_000, '/joint_states', 'sensor_msgs/msg/JointState',
                    bytes(ts.serialize_cdr(js, 'sensor_msgs/msg/JointState'))))
    for k in range(int(seconds * 30)):
        ns = T0 + k * 33_333_333
        img = t['sensor_msgs/msg/Image'](header=header(ns), height=64, width=64,
                                         encoding='rgb8', is_bigendian=0, step=192,
                                         data=np.full(64 * 64 * 3, (k * 7) % 256, np.uint8))
        out.append((ns + 2_000_000, '/camera/scene/image_raw', 'sensor_msgs/msg/Image',
                    bytes(ts.serialize_cdr(img, 'sensor_msgs/msg/Image'))))
    return sorted(out, key=lambda m: m[0])


def _write(path, writer='ours', storage='mcap'):
    """Write the messages; 'ours' is BagWriter (with CRCs), 'rosbags' the plain writer."""
    msgs = _messages()
    if writer == 'ours':
        w = BagWriter(str(path), storage)
        for m in msgs:
            w.write(*m)
        w.close()
    else:
        w = Writer(str(path), version=9, storage_plugin=StoragePlugin.MCAP)
        w.open()
        conns = {}
        for t, topic, msgtype, data in msgs:
            if topic not in conns:
                conns[topic] = w.add_connection(topic, msgtype, typestore=typestore())
            w.write(conns[topic], t, data)
        w.close()
    counts = {}
    for _, topic, _, _ in msgs:
        counts[topic] = counts.get(topic, 0) + 1
    return counts


def _mcap(folder):
    return next(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith('.mcap'))


def _chunks(data):
    """Return [(record offset, crc, records offset, records length)] of an MCAP file."""
    pos, out = 8, []
    while pos + 9 <= len(data):
        op, length = struct.unpack_from('<BQ', data, pos)
        if op in (0x02, 0x0F):
            break
        if op == 0x06:
            crc = struct.unpack_from('<I', data, pos + 9 + 24)[0]
            (clen,) = struct.unpack_from('<I', data, pos + 9 + 28)
            p = pos + 9 + 32 + clen
            (rlen,) = struct.unpack_from('<Q', data, p)
            out.append((pos, crc, p + 8, rlen))
        pos += 9 + length
    return out


def _data_end(data):
    pos = 8
    while data[pos] != 0x0F:
        pos += 9 + struct.unpack_from('<Q', data, pos + 1)[0]
    return pos


def _garbage_in_chunk(path, seed=0, size=65536):
    """Overwrite ``size`` bytes in the middle of the first chunk's records."""
    data = bytearray(open(path, 'rb').read())
    _, _, start, length = _chunks(data)[0]
    assert length > 2 * size, 'expected a chunk larger than the garbage'
    at = start + length // 2 - size // 2
    data[at:at + size] = np.random.default_rng(seed).integers(0, 256, size, np.uint8).tobytes()
    with open(path, 'wb') as f:
        f.write(bytes(data))


def _replay(bag, out, *extra, model):
    code = cli.main([str(bag), '--config', SLICE, '--model', model, '--out', str(out),
                     '--quiet', '--no-plots', *extra])
    with open(os.path.join(str(out), 'summary.json'), encoding='utf-8') as f:
        return code, json.load(f)


@pytest.fixture(scope='module')
def slice_model(tmp_path_factory):
    from wam_runtime.testing.model_gen import write_model
    return write_model(str(tmp_path_factory.mktemp('model') / 'generated.onnx'))


def test_bags_we_write_carry_crcs_that_rosbags_verifies(tmp_path):
    counts = _write(tmp_path / 'a')
    data = open(_mcap(tmp_path / 'a'), 'rb').read()
    chunks = _chunks(data)
    assert len(chunks) >= 2 and all(crc != 0 for _, crc, _, _ in chunks)
    for _, crc, start, length in chunks:          # uncompressed: the CRC of the records
        assert crc == zlib.crc32(data[start:start + length])
    # The data-end record holds the CRC of everything before it.
    end = _data_end(data)
    assert struct.unpack_from('<I', data, end + 9)[0] == zlib.crc32(data[:end])
    assert McapIndex(_mcap(tmp_path / 'a')).summary_crc_checked
    # rosbags checks chunk CRCs when they are set: every message reads back.
    with Reader(str(tmp_path / 'a')) as reader:
        assert sum(1 for _ in reader.messages()) == sum(counts.values())
    # Still deterministic: the same messages give the same bytes (the name is inside).
    (tmp_path / 'again').mkdir()
    _write(tmp_path / 'again' / 'a')
    assert open(_mcap(tmp_path / 'again' / 'a'), 'rb').read() == data


@pytest.mark.parametrize('writer', ['ours', 'rosbags'])
def test_garbage_inside_a_chunk_is_counted_warned_and_exits_4(tmp_path, slice_model, writer,
                                                              capsys):
    counts = _write(tmp_path / 'bag', writer)
    code, clean = _replay(tmp_path / 'bag', tmp_path / 'clean', model=slice_model)
    assert code == 0 and clean['status'] == 'ok' and clean['messages']['lost'] == {}
    _garbage_in_chunk(_mcap(tmp_path / 'bag'))
    code, s = _replay(tmp_path / 'bag', tmp_path / 'out', model=slice_model)
    err = capsys.readouterr().err
    assert code == EXIT_DATA_LOST == 4, s
    assert s['status'] == 'data_lost' and s['error'] is None
    lost = s['messages']['lost']
    assert lost and sum(lost.values()) >= 1
    # Nothing unaccounted for: what was read plus what is counted lost is what the bag lists.
    with open_bag(str(tmp_path / 'bag')) as bag:
        read = {}
        for rec in bag.messages():
            read[rec.topic] = read.get(rec.topic, 0) + 1
        assert bag.lost == lost
    for topic, n in counts.items():
        assert read.get(topic, 0) + lost.get(topic, 0) == n, topic
    if writer == 'ours':      # the CRC condemns the whole chunk: nothing damaged is used
        assert any('fails its CRC check' in w for w in s['warnings']), s['warnings']
    else:                     # no CRC: the message index finds the damaged messages
        assert any('index lists are damaged or missing' in w for w in s['warnings'])
    assert 'messages of the bag were lost' in err and 'exit code 4' in err
    # The rest was replayed.
    assert 5 < s['policy']['inferences'] < clean['policy']['inferences']
    assert s['safety']['commands'] > 50


@pytest.mark.parametrize('seed', range(12))
def test_damage_anywhere_is_accounted_for_or_explained_in_words(tmp_path, seed):
    counts = _write(tmp_path / 'bag', 'rosbags')
    path = _mcap(tmp_path / 'bag')
    data = bytearray(open(path, 'rb').read())
    rng = np.random.default_rng(seed)
    at = int(rng.integers(8, len(data) - 1024))
    n = min(65536, len(data) - at)
    data[at:at + n] = rng.integers(0, 256, n, np.uint8).tobytes()
    with open(path, 'wb') as f:
        f.write(bytes(data))
    try:
        with open_bag(str(tmp_path / 'bag')) as bag:
            read = sum(1 for _ in bag.messages())
            # Either everything is there, or the loss is counted or described.
            assert read == sum(counts.values()) or bag.data_lost
            assert read + sum(bag.lost.values()) <= sum(counts.values())
            assert not any(PYTHON_ERROR.search(p) for p in bag.problems + bag.warnings)
    except BagError as exc:
        assert not PYTHON_ERROR.search(str(exc)), str(exc)


def test_a_damaged_sqlite3_bag_is_exit_3_with_what_is_wrong(tmp_path, slice_model, capsys):
    _write(tmp_path / 'bag', storage='sqlite3')
    db = next(os.path.join(tmp_path / 'bag', f) for f in os.listdir(tmp_path / 'bag')
              if f.endswith('.db3'))
    data = bytearray(open(db, 'rb').read())
    page = 4096
    for p in range(2 * page, len(data) - page, 8 * page):      # garbage in every 8th page
        data[p:p + page] = np.random.default_rng(p).integers(0, 256, page, np.uint8).tobytes()
    with open(db, 'wb') as f:
        f.write(bytes(data))
    code, s = _replay(tmp_path / 'bag', tmp_path / 'out', model=slice_model)
    err = capsys.readouterr().err
    assert code in (3, 4), s
    line = next(x for x in err.splitlines() if x.startswith('[wam_runtime] replay:'))
    assert not PYTHON_ERROR.search(line), line
    if code == 3:
        assert 'database disk image is malformed' in s['error'], s['error']


def test_python_internals_become_words():
    for exc in (OverflowError("cannot fit 'int' into an index-sized integer"),
                MemoryError(), struct.error('unpack requires a buffer of 8 bytes'),
                IndexError('index out of range')):
        text = _describe(exc)
        assert text == 'a length or offset field is corrupt'
    assert _describe(UnicodeDecodeError('utf-8', b'\xff', 0, 1, 'invalid start byte')) == \
        'a name or type field is corrupt'


# ---------------------------------------------------------------------- --expect counts
def test_a_reason_that_vanishes_or_appears_is_a_count_within_count_tol():
    old = {'safety': {'interventions': {'acceleration_limit': 53, 'jerk_limit': 2}}}
    new = {'safety': {'interventions': {'acceleration_limit': 54, 'velocity_limit': 3}}}
    lines = report.compare(old, new, count_tol=1)
    assert lines == ['safety.interventions.jerk_limit: expected 2, missing now (0; -2; '
                     'tolerance 1)',
                     'safety.interventions.velocity_limit: not in the expected summary (0), '
                     'now 3 (+3; tolerance 1)']
    assert report.compare(old, new, count_tol=3) == []
    # Not counts: a vanished section or string is still a difference.
    assert report.compare({'x': {'a': 1}}, {}, count_tol=5) == [
        'x: expected {"a": 1}, missing now']
    assert report.compare({'status': 'ok'}, {}, count_tol=5) == [
        'status: expected "ok", missing now']
    # The explanatory notes are never compared.
    assert report.compare({'notes': {'a': 'old words'}}, {'notes': {'a': 'new'}}) == []


def test_expect_with_count_tol_on_a_real_replay(tmp_path, slice_model, capsys):
    _write(tmp_path / 'bag')
    code, s = _replay(tmp_path / 'bag', tmp_path / 'first', model=slice_model)
    assert code == 0
    assert set(s['notes']) >= {'safety.interventions', 'safety.counters', 'messages.lost'}
    old = json.loads(json.dumps(s))
    old['safety']['interventions']['made_up_limit'] = 2      # a reason that vanished
    old['policy']['not_inferred'].pop('observation_skewed', None)
    path = tmp_path / 'old.json'
    path.write_text(json.dumps(old))
    code, _ = _replay(tmp_path / 'bag', tmp_path / 'second', '--expect', str(path),
                      '--count-tol', '2', model=slice_model)
    assert code == 0, capsys.readouterr().out
    code, _ = _replay(tmp_path / 'bag', tmp_path / 'third', '--expect', str(path),
                      '--count-tol', '1', model=slice_model)
    out = capsys.readouterr().out
    assert code == 1
    assert 'safety.interventions.made_up_limit: expected 2, missing now (0; -2; tolerance 1)' \
        in out, out


def test_exit_code_4_is_documented():
    doc = open(os.path.join(REPO_ROOT, 'doc', 'replay.md'), encoding='utf-8').read()
    assert '4 messages of the bag lost' in doc
    assert '4 done, but messages of the bag were lost' in cli.__doc__
