"""Incident recorder: ring buffer window, rate limit that defers instead of dropping, bags."""

import os
from pathlib import Path

from rosbags.highlevel import AnyReader
from rosbags.typesys import get_typestore, Stores

from wam_runtime.bag.incident import folder_bytes, incident_bags, IncidentRecorder
from wam_runtime.bag.mcap import McapIndex
from wam_runtime.core.incident import IncidentWindow

STORE = get_typestore(Stores.ROS2_JAZZY)
MSG = 'std_msgs/msg/Float64'
S = 10 ** 9


def _cdr(value):
    cls = STORE.types[MSG]
    return bytes(STORE.serialize_cdr(cls(data=float(value)), MSG))


def _feed(rec, t0_s, t1_s, topic='commands', rate_hz=100):
    n = int(round((t1_s - t0_s) * rate_hz))
    for k in range(n):
        t = t0_s + k / rate_hz
        rec.add(int(t * S), topic, MSG, _cdr(t))


def _read(bag):
    with AnyReader([Path(bag)]) as reader:
        out = [(conn.topic, t, reader.deserialize(raw, conn.msgtype).data)
               for conn, t, raw in reader.messages()]
    return out


def test_bag_holds_the_window_before_the_incident(tmp_path):
    rec = IncidentRecorder(str(tmp_path), window_s=1.0, min_interval_s=2.0)
    _feed(rec, 100.0, 103.0)
    rec.add(int(102.5 * S), 'joint_states', MSG, _cdr(-1.0))
    path = rec.trigger(int(103.0 * S), 'command_timeout')
    rec.close()
    assert path is not None and path.endswith('_command_timeout')
    assert rec.written == [path] and rec.errors == []
    msgs = _read(tmp_path / os.path.basename(path))
    times = [t for _, t, _ in msgs]
    assert min(times) >= int(101.99 * S) and max(times) <= int(103.0 * S)
    assert {topic for topic, _, _ in msgs} == {'commands', 'joint_states'}
    assert times == sorted(times)
    # Values survive the CDR round trip unchanged.
    assert all(abs(v - t / S) < 1e-9 for topic, t, v in msgs if topic == 'commands')


def test_incident_inside_the_interval_is_deferred_not_dropped(tmp_path):
    rec = IncidentRecorder(str(tmp_path), window_s=5.0, min_interval_s=2.0)
    _feed(rec, 0.0, 1.0)
    first = rec.trigger(1 * S, 'state_timeout')
    _feed(rec, 1.0, 1.5)
    rec.add(int(1.49 * S), 'policy/action_chunk', MSG, _cdr(42.0))
    assert rec.trigger(int(1.5 * S), 'command_timeout') is None
    assert rec.trigger(int(1.6 * S), 'chunk_exhausted') is None    # joins the deferred one
    assert rec.pending == 'command_timeout'
    _feed(rec, 1.5, 2.9)
    assert rec.pending == 'command_timeout'       # the interval has not passed yet
    _feed(rec, 2.9, 3.2)
    assert rec.pending is None
    assert rec.flush(10.0)
    rec.close()
    assert len(rec.written) == 2 and rec.written[0] == first
    second = rec.written[1]
    assert second.endswith('_command_timeout')
    msgs = _read(tmp_path / os.path.basename(second))
    assert ('policy/action_chunk', int(1.49 * S), 42.0) in msgs
    # Cut once the interval had passed: it holds the time after the deferred incident too.
    assert max(t for _, t, _ in msgs) >= 3 * S
    assert ('policy/action_chunk', int(1.49 * S), 42.0) not in _read(
        tmp_path / os.path.basename(first))


def test_close_writes_a_deferred_incident(tmp_path):
    rec = IncidentRecorder(str(tmp_path), window_s=5.0, min_interval_s=2.0)
    _feed(rec, 0.0, 0.5)
    rec.trigger(int(0.5 * S), 'estop')
    _feed(rec, 0.5, 1.0)
    assert rec.trigger(1 * S, 'state_timeout') is None
    rec.close()
    assert [os.path.basename(p).split('_', 2)[-1] for p in rec.written] == [
        'estop', 'state_timeout']
    assert all(_read(p) for p in rec.written)


def test_unwritable_folder_is_reported_not_raised(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('not a folder')
    rec = IncidentRecorder(str(blocker / 'incidents'), window_s=1.0)
    _feed(rec, 0.0, 0.2)
    rec.trigger(int(0.2 * S), 'command_timeout')
    rec.close()
    assert rec.written == [] and len(rec.errors) == 1


def test_folder_is_kept_under_its_size_cap_oldest_first(tmp_path):
    other = tmp_path / 'notes'          # not an incident bag: never touched
    other.mkdir()
    (other / 'metadata.yaml').write_text('mine')
    rec = IncidentRecorder(str(tmp_path), window_s=1.0, min_interval_s=0.5)
    _feed(rec, 0.0, 1.0)
    first = rec.trigger(1 * S, 'estop')
    rec.flush()
    one_bag = folder_bytes(first)
    rec.max_total_bytes = int(2.5 * one_bag)          # room for two bags of this size
    for k in range(2, 6):
        _feed(rec, k - 1.0, float(k))
        rec.trigger(k * S, f'stop{k}')
        rec.flush()
    rec.close()
    assert len(rec.written) == 5 and rec.errors == []
    kept = incident_bags(str(tmp_path))
    assert kept == rec.written[-2:]                   # the newest two, oldest deleted first
    assert rec.deleted == rec.written[:3]
    assert sum(folder_bytes(b) for b in kept) <= rec.max_total_bytes
    assert (other / 'metadata.yaml').read_text() == 'mine'


def test_a_single_bag_larger_than_the_cap_is_kept(tmp_path):
    rec = IncidentRecorder(str(tmp_path), window_s=1.0, max_total_bytes=1)
    _feed(rec, 0.0, 1.0)
    path = rec.trigger(1 * S, 'estop')
    rec.close()
    assert incident_bags(str(tmp_path)) == [path] and rec.deleted == []


def test_incident_bags_carry_crcs(tmp_path):
    rec = IncidentRecorder(str(tmp_path), window_s=1.0)
    _feed(rec, 0.0, 0.5)
    path = rec.trigger(int(0.5 * S), 'estop')
    rec.close()
    (mcap,) = [os.path.join(path, f) for f in os.listdir(path) if f.endswith('.mcap')]
    index = McapIndex(mcap)
    assert index.summary_crc_checked
    with open(mcap, 'rb') as f:
        read = [index.chunk_messages(f, c) for c in index.chunks]
    assert all(r.problem is None for r in read) and sum(len(r.messages) for r in read) == 50


def test_a_type_without_definition_is_left_out_not_fatal(tmp_path):
    rec = IncidentRecorder(str(tmp_path), window_s=1.0)
    _feed(rec, 0.0, 0.1)
    rec.add(int(0.05 * S), 'custom', 'my_msgs/msg/Unknown', b'\x00\x01\x00\x00')
    path = rec.trigger(int(0.1 * S), 'estop')
    rec.close()
    assert rec.written == [path] and rec.errors == [] and rec.left_out == 1
    assert {topic for topic, _, _ in _read(path)} == {'commands'}


# The window itself (core): pure logic, time passed in.

def test_window_drops_what_is_older_than_the_window():
    win = IncidentWindow(window_s=1.0, min_interval_s=0.0)
    for k in range(30):
        assert win.add(k * S // 10, 'a', MSG, b'x') is None
    cut = win.trigger(29 * S // 10, 'estop')
    assert cut.reason == 'estop' and cut.t_ns == 29 * S // 10
    assert [e[0] for e in cut.entries] == [k * S // 10 for k in range(19, 30)]


def test_window_caps_message_and_buffer_bytes():
    win = IncidentWindow(window_s=100.0, max_message_bytes=10, max_buffer_bytes=25)
    win.add(1, 'a', MSG, b'x' * 11)
    assert win.left_out == 1
    for k in range(5):
        win.add(2 + k, 'a', MSG, b'y' * 10)
    cut = win.trigger(10, 'estop')
    assert [e[0] for e in cut.entries] == [5, 6]       # the oldest go first, 20 <= 25 bytes


def test_window_defers_within_the_interval_and_cuts_at_the_next_message():
    win = IncidentWindow(window_s=10.0, min_interval_s=2.0)
    win.add(0, 'a', MSG, b'0')
    assert win.trigger(1 * S, 'first') is not None
    assert win.trigger(2 * S, 'second') is None
    assert win.trigger(int(2.5 * S), 'third') is None and win.pending == 'second'
    assert win.add(int(2.9 * S), 'a', MSG, b'1') is None
    cut = win.add(3 * S, 'a', MSG, b'2')
    assert (cut.t_ns, cut.reason, win.pending) == (3 * S, 'second', None)
    assert [e[0] for e in cut.entries] == [0, int(2.9 * S), 3 * S]
    assert win.trigger(4 * S, 'fourth') is None             # 1 s after the deferred cut
    cut = win.close()
    assert (cut.t_ns, cut.reason) == (4 * S, 'fourth')      # the later of stamp and data
    assert win.close() is None
