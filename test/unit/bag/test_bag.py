"""The bag layer on its own: the one writer, CRCs, storage files, copying, salvage."""

import shutil

import numpy as np
import pytest

from wam_runtime.bag import (
    BagError, BagWriter, copy_bag, open_bag, read_all, storage_file, typestore)
from wam_runtime.bag.mcap import add_crcs, McapError, McapIndex
from wam_runtime.bag.salvage import salvage_records
from wam_runtime.bag.types import describe_error, storage_files

MSG = 'std_msgs/msg/Float64'


def _cdr(value):
    ts = typestore()
    return bytes(ts.serialize_cdr(ts.types[MSG](data=float(value)), MSG))


def _write(path, n=20, storage='mcap', big=0):
    with BagWriter(str(path), storage) as writer:
        for k in range(n):
            assert writer.write(k * 1000, 'a', MSG, _cdr(k))
            if big:
                writer.write(k * 1000 + 1, 'b', 'std_msgs/msg/UInt8MultiArray',
                             _uint8s(big))
    return writer


def _uint8s(n):
    ts = typestore()
    name = 'std_msgs/msg/UInt8MultiArray'
    cls = ts.types[name]
    layout = ts.types['std_msgs/msg/MultiArrayLayout'](dim=[], data_offset=0)
    return bytes(ts.serialize_cdr(cls(layout=layout, data=np.zeros(n, np.uint8)), name))


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_writer_round_trip_and_storage_file(tmp_path, storage):
    writer = _write(tmp_path / 'bag', storage=storage)
    assert writer.closed and writer.counts == {'a': 20}
    assert storage_file(str(tmp_path / 'bag')).endswith('.mcap' if storage == 'mcap' else '.db3')
    assert storage_files(str(tmp_path / 'bag')) == [storage_file(str(tmp_path / 'bag'))]
    recs = read_all(str(tmp_path / 'bag'))
    assert [r.t_ns for r in recs] == [k * 1000 for k in range(20)]
    assert recs[3].data == _cdr(3) and recs[3].msgtype == MSG


def test_writer_refuses_a_type_without_definition(tmp_path):
    with BagWriter(str(tmp_path / 'bag')) as writer:
        assert not writer.has_type('my_msgs/msg/X')
        assert not writer.write(0, 'x', 'my_msgs/msg/X', b'\x00\x01\x00\x00')
        assert writer.write(1, 'a', MSG, _cdr(1))
    assert writer.counts == {'a': 1}
    with pytest.raises(ValueError, match='storage'):
        BagWriter(str(tmp_path / 'other'), 'rosbag1')


def test_written_mcap_has_every_crc_and_add_crcs_is_idempotent(tmp_path):
    _write(tmp_path / 'bag', n=200, big=20000)             # > 1 MB: several chunks
    mcap = storage_file(str(tmp_path / 'bag'))
    index = McapIndex(mcap)
    assert index.summary_crc_checked and len(index.chunks) > 1
    with open(mcap, 'rb') as f:
        for chunk in index.chunks:
            assert f.seek(chunk.offset + 9 + 24) and f.read(4) != b'\0\0\0\0'
    before = open(mcap, 'rb').read()
    add_crcs(mcap)
    assert open(mcap, 'rb').read() == before


def test_add_crcs_leaves_a_file_it_cannot_read_untouched(tmp_path):
    _write(tmp_path / 'bag', n=50)
    mcap = storage_file(str(tmp_path / 'bag'))
    data = open(mcap, 'rb').read()
    cut = tmp_path / 'cut.mcap'
    cut.write_bytes(data[:len(data) // 2] + data[-8:])       # magic at both ends, no data end
    with pytest.raises(McapError):
        add_crcs(str(cut))
    assert cut.read_bytes() == data[:len(data) // 2] + data[-8:]
    with pytest.raises(McapError, match='not a closed MCAP file'):
        add_crcs(str(tmp_path / 'bag' / 'metadata.yaml'))


def test_copy_bag_between_storages(tmp_path):
    _write(tmp_path / 'src', storage='sqlite3')
    assert copy_bag(str(tmp_path / 'src'), str(tmp_path / 'dst'), 'mcap') == 20
    assert read_all(str(tmp_path / 'dst')) == read_all(str(tmp_path / 'src'))
    assert McapIndex(storage_file(str(tmp_path / 'dst'))).summary_crc_checked


def test_salvage_reads_a_truncated_file_up_to_the_damage(tmp_path):
    _write(tmp_path / 'bag', n=200, big=20000)
    mcap = storage_file(str(tmp_path / 'bag'))
    data = open(mcap, 'rb').read()
    index = McapIndex(mcap)
    last = index.chunks[-1]
    cut = tmp_path / 'cut.mcap'
    cut.write_bytes(data[:last.offset + last.length // 2])   # the last chunk cut in half
    counts = {}
    records = list(salvage_records(str(cut), counts))
    channels = [r for r in records if r[0] == 'channel']
    messages = [r for r in records if r[0] == 'message']
    assert {c[1].topic for c in channels} == {'a', 'b'}
    assert counts == {'truncated': 1}
    assert 0 < len(messages) < 400
    assert [m[1] for m in messages] == sorted(m[1] for m in messages)
    shutil.rmtree(tmp_path / 'bag')
    with open_bag(str(cut)) as bag:
        assert bag.salvaged and bag.topics['a'].count == sum(m[2] == 'a' for m in messages)


def test_salvage_refuses_what_is_not_mcap(tmp_path):
    other = tmp_path / 'x.mcap'
    other.write_bytes(b'not an mcap file')
    with pytest.raises(BagError, match='bad magic'):
        list(salvage_records(str(other), {}))


def test_describe_error_words():
    assert describe_error(OverflowError('x')) == 'a length or offset field is corrupt'
    assert describe_error(McapError('the chunk is bad')) == 'the chunk is bad'
    assert describe_error(FileNotFoundError(2, 'No such file')) == 'cannot read (No such file)'
    assert describe_error(ValueError('x')) == 'the storage data is corrupt'
