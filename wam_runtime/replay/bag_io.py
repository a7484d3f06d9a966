"""rosbag2 input and output for replay and episode recording (the ``rosbags`` library).

Reading (:func:`open_bag`): a rosbag2 folder in sqlite3 or MCAP storage, a folder whose
``metadata.yaml`` is missing or unreadable (a recording killed before it closed: the
storage files are read directly), or a bare ``.mcap`` / ``.db3`` file. An indexed MCAP is
read chunk by chunk against its index (:mod:`wam_runtime.replay.mcap_reader`): CRCs are
checked where the writer set them, and a damaged chunk, or damaged messages in it, are
skipped and counted as lost by topic instead of ending the read. An MCAP file without a
valid summary section (truncated, or never closed) is salvaged: its records are scanned from
the start up to the first incomplete one, and a chunk that cannot be decoded is counted and
skipped. After a full pass the messages read are compared with the bag's own per-topic
counts (``metadata.yaml``, or the MCAP statistics): :attr:`BagSource.lost` and
:attr:`BagSource.problems` say what is missing, so no loss goes unnoticed. Whatever goes
wrong is one :class:`BagError` line that says what is wrong with the bag, never a traceback
or a Python exception's text.

Writing (:class:`BagWriter`): serialized messages (CDR bytes as on the wire) streamed into a
new rosbag2 folder, connections added on first use. rosbags' MCAP writer stamps no wall-clock
time into the file, so the same messages in the same order give the same bytes; on close the
chunk, data and summary CRCs it leaves at 0 are filled in (:func:`mcap_reader.add_crcs`).
"""

from dataclasses import dataclass, field
import glob
import heapq
import os
import sqlite3
import struct
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple
import zlib

from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores
import yaml

from wam_runtime.replay.mcap_reader import add_crcs, McapError, McapIndex

MCAP_MAGIC = b'\x89MCAP0\r\n'
STORAGE_PLUGINS = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
_OP_HEADER, _OP_FOOTER, _OP_SCHEMA, _OP_CHANNEL = 0x01, 0x02, 0x03, 0x04
_OP_MESSAGE, _OP_CHUNK, _OP_DATA_END = 0x05, 0x06, 0x0F
_U16, _U32, _U64 = struct.Struct('<H'), struct.Struct('<I'), struct.Struct('<Q')
_MESSAGE_HEAD = struct.Struct('<HIQQ')
_CHUNK_HEAD = struct.Struct('<QQQI')

_TYPESTORE = None


def typestore():
    """Return the shared rosbags type store of ROS 2 Jazzy message definitions."""
    global _TYPESTORE
    if _TYPESTORE is None:
        _TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
    return _TYPESTORE


class BagError(RuntimeError):
    """A bag cannot be read (any further); the message is one line naming the problem."""


class Record(NamedTuple):
    """One serialized message: log time (ns), topic, type and CDR bytes."""

    t_ns: int
    topic: str
    msgtype: str
    data: bytes


@dataclass
class TopicInfo:
    """A topic of a bag: its type, message count and, where stored, its definition."""

    name: str
    msgtype: str
    count: int = 0
    msgdef: str = ''
    digest: str = ''


@dataclass
class _Channel:
    topic: str
    msgtype: str
    msgdef: str = ''


@dataclass
class BagSource:
    """An open bag: topics, time range, and a message iterator in log-time order."""

    path: str
    storage: str                       # 'mcap' or 'sqlite3'
    topics: Dict[str, TopicInfo]
    start_ns: Optional[int]
    end_ns: Optional[int]
    warnings: List[str] = field(default_factory=list)
    salvaged: bool = False
    _readers: List[Reader] = field(default_factory=list, repr=False)
    _mcap_files: List[str] = field(default_factory=list, repr=False)
    _indexes: List[McapIndex] = field(default_factory=list, repr=False)
    #: After a full pass of :meth:`messages`: messages the bag lists but did not give, by
    #: topic, and one line per problem (a damaged chunk, a count that falls short).
    lost: Dict[str, int] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)
    #: Messages per topic the bag says it holds, where that differs from ``topics`` (a
    #: salvaged MCAP next to a metadata.yaml); None: the topics' counts.
    expected: Optional[Dict[str, int]] = None

    @property
    def data_lost(self) -> bool:
        """Whether the last full pass lost messages (or damaged data of unknown extent)."""
        return bool(self.lost) or bool(self.problems)

    def messages(self, topics: Optional[Sequence[str]] = None) -> Iterator[Record]:
        """Yield the messages, of ``topics`` only if given; raise BagError on corrupt data.

        Messages of a salvaged MCAP come in file order (sorted within each chunk), so the
        caller must expect an occasional earlier log time. A pass over every topic that runs
        to the end fills in :attr:`lost` and :attr:`problems`.
        """
        wanted = None if topics is None else set(topics)
        full = wanted is None
        read: Dict[str, int] = {}
        lost: Dict[str, int] = {}
        problems: List[str] = []
        if full:
            self.lost, self.problems = {}, []
        if self._indexes:
            source = self._indexed_messages(wanted, lost, problems)
        elif self._mcap_files:
            source = self._salvaged_messages(wanted, problems)
        else:
            source = self._rosbags_messages(wanted)
        for rec in source:
            read[rec.topic] = read.get(rec.topic, 0) + 1
            yield rec
        if full:
            self._account(read, lost, problems)

    def _account(self, read: Dict[str, int], lost: Dict[str, int],
                 problems: List[str]) -> None:
        """Compare what a full pass read with what the bag says it holds."""
        expected = self.expected if self.expected is not None else {
            name: info.count for name, info in self.topics.items()}
        for name, count in expected.items():
            short = count - read.get(name, 0)
            if short > lost.get(name, 0):
                problems.append(f'{name}: {read.get(name, 0)} messages read, the bag lists '
                                f'{count}')
                lost[name] = short
        self.lost = {k: v for k, v in sorted(lost.items()) if v > 0}
        self.problems = problems

    def _indexed_messages(self, wanted, lost: Dict[str, int],
                          problems: List[str]) -> Iterator[Record]:
        """Merge the chunks of every indexed MCAP file by log time, reading them lazily."""
        files = []
        chunks = []
        for k, index in enumerate(self._indexes):
            ids = None if wanted is None else {
                cid for cid, ch in index.channels.items() if ch.topic in wanted}
            for chunk in index.chunks:
                if ids is not None and chunk.message_index and \
                        not ids & set(chunk.message_index):
                    continue
                chunks.append((chunk.start_ns, k, chunk.offset, chunk, ids))
        chunks.sort(key=lambda c: c[:3])
        try:
            files = [open(index.path, 'rb') for index in self._indexes]
            heap: List[Tuple] = []
            i = 0
            while i < len(chunks) or heap:
                while i < len(chunks) and (not heap or chunks[i][0] <= heap[0][0]):
                    _, k, _, chunk, ids = chunks[i]
                    i += 1
                    index = self._indexes[k]
                    got = index.chunk_messages(files[k], chunk)
                    if got.problem:
                        problems.append(f'{os.path.basename(index.path)}: {got.problem}')
                    for cid, n in got.lost.items():
                        ch = index.channels.get(cid)
                        name = ch.topic if ch else f'channel {cid}'
                        lost[name] = lost.get(name, 0) + n
                    for t, off, cid, data in got.messages:
                        ch = index.channels.get(cid)
                        if ch is None or (ids is not None and cid not in ids):
                            continue
                        heapq.heappush(heap, (t, k, chunk.offset, off, ch.topic, ch.msgtype,
                                              data))
                if heap:
                    t, _, _, _, topic, msgtype, data = heapq.heappop(heap)
                    yield Record(int(t), topic, msgtype, bytes(data))
        except OSError as exc:
            raise BagError(f'{self.path}: cannot read ({exc.strerror})') from None
        finally:
            for f in files:
                f.close()

    def _salvaged_messages(self, wanted, problems: List[str]) -> Iterator[Record]:
        counts: Dict[str, int] = {}
        for path in self._mcap_files:
            for kind, *item in _salvage_records(path, counts):
                if kind == 'message' and (wanted is None or item[1] in wanted):
                    yield Record(*item)
        for reason in ('corrupt_chunk', 'corrupt_record', 'message_without_channel'):
            if counts.get(reason):
                problems.append(f'salvage: {counts[reason]} x {reason} skipped (messages '
                                'in them are lost, their number unknown)')

    def _rosbags_messages(self, wanted) -> Iterator[Record]:
        n = 0
        for reader in self._readers:
            where = os.path.basename(os.path.normpath(str(reader.path)))
            conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
            if not conns:
                continue
            try:
                it = reader.messages(conns)
                while True:
                    try:
                        conn, t_ns, data = next(it)
                    except StopIteration:
                        break
                    n += 1
                    yield Record(int(t_ns), conn.topic, conn.msgtype, bytes(data))
            except Exception as exc:  # noqa: B902 - corrupt storage raises many types
                raise BagError(f'{where}: unreadable after {n} messages '
                               f'({_describe(exc)})') from None

    def close(self) -> None:
        """Close the storage files."""
        for reader in self._readers:
            try:
                reader.close()
            except Exception:  # noqa: B902 - closing a broken reader must not mask the cause
                pass
        self._readers = []

    def __enter__(self) -> 'BagSource':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _describe(exc: BaseException) -> str:
    """Say what an exception from a storage library means for the bag, in its words.

    Python's own errors (an overflowing length, a short read, bad UTF-8) are turned into
    what they mean for the file; a storage library's own message is kept, without the
    exception's class name.
    """
    if isinstance(exc, (OverflowError, MemoryError, struct.error, IndexError)):
        return 'a length or offset field is corrupt'
    if isinstance(exc, (UnicodeDecodeError, LookupError)):
        return 'a name or type field is corrupt'
    if isinstance(exc, McapError):
        return str(exc)
    if isinstance(exc, sqlite3.DatabaseError):
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else 'unreadable'
        return f'the sqlite3 database is damaged ({text})'
    if isinstance(exc, OSError):
        return f'cannot read ({exc.strerror or exc})'
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ''
    if type(exc).__module__.startswith('rosbags') and text:
        return text.rstrip('.')
    foreign = text and type(exc).__module__ != 'builtins'
    return 'the storage data is corrupt' + (f' ({text})' if foreign else '')


def _storage_files(folder: str) -> List[str]:
    files = sorted(glob.glob(os.path.join(folder, '*.mcap')) +
                   glob.glob(os.path.join(folder, '*.db3')))
    return [f for f in files if os.path.isfile(f)]


def open_bag(path: str) -> BagSource:
    """Open a rosbag2 folder or storage file for reading; raise BagError."""
    if not os.path.exists(path):
        raise BagError(f'{path!r}: no such file or folder')
    warnings: List[str] = []
    if os.path.isdir(path):
        files = _storage_files(path)
        if os.path.isfile(os.path.join(path, 'metadata.yaml')):
            try:
                return _open_with_rosbags([path], path, warnings)
            except BagError as exc:
                if not files:
                    raise
                if all(f.endswith('.mcap') for f in files):
                    warnings.append(f'{exc}; salvaging the MCAP records from the start')
                    bag = _open_salvaged(files, path, warnings)
                    # metadata.yaml still says how many messages the bag should hold.
                    bag.expected = _metadata_counts(path)
                    return bag
                warnings.append(f'{exc}; reading the storage files directly')
        elif files:
            warnings.append('no metadata.yaml (the recording was not closed); reading '
                            f'{", ".join(os.path.basename(f) for f in files)} directly')
        if not files:
            raise BagError(f'{path!r} is not a rosbag2 folder: no metadata.yaml and no '
                           '.mcap or .db3 file')
    else:
        files = [path]
    kinds = {os.path.splitext(f)[1] for f in files}
    if len(kinds) != 1 or kinds - {'.mcap', '.db3'}:
        raise BagError(f'{path!r}: expected .mcap or .db3 storage files, found '
                       f'{sorted(os.path.basename(f) for f in files)}')
    if kinds == {'.db3'}:
        return _open_with_rosbags(files, path, warnings)
    try:
        return _open_with_rosbags(files, path, warnings)
    except BagError as exc:
        warnings.append(f'{exc}; salvaging the MCAP records from the start')
    return _open_salvaged(files, path, warnings)


def _metadata_counts(folder: str) -> Optional[Dict[str, int]]:
    """Return {topic: message count} from a folder's metadata.yaml (None if unreadable)."""
    try:
        with open(os.path.join(folder, 'metadata.yaml'), encoding='utf-8') as f:
            info = yaml.safe_load(f)['rosbag2_bagfile_information']
        return {str(t['topic_metadata']['name']): int(t['message_count'])
                for t in info['topics_with_message_count']}
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None


def _open_with_rosbags(paths: Sequence[str], label: str, warnings: List[str]) -> BagSource:
    readers: List[Reader] = []
    try:
        for p in paths:
            reader = Reader(p)
            readers.append(reader)
            reader.open()
    except Exception as exc:  # noqa: B902 - rosbags and sqlite raise many types here
        for r in readers:
            if getattr(r, 'is_open', False):
                r.close()
        raise BagError(f'{os.path.basename(os.path.normpath(label))}: cannot open '
                       f'({_describe(exc)})') from None
    topics: Dict[str, TopicInfo] = {}
    start = end = None
    storage = 'mcap'
    for reader in readers:
        for conn in reader.connections:
            info = topics.setdefault(conn.topic, TopicInfo(
                conn.topic, conn.msgtype, 0, conn.msgdef.data or '', conn.digest or ''))
            info.count += conn.msgcount
        if reader.message_count:
            start = reader.start_time if start is None else min(start, reader.start_time)
            end = reader.end_time - 1 if end is None else max(end, reader.end_time - 1)
        name = str(getattr(reader.storage, 'path', '')) + str(reader.path)
        if '.db3' in name or _is_sqlite_folder(str(reader.path)):
            storage = 'sqlite3'
    indexes: List[McapIndex] = []
    if storage == 'mcap':
        files = [f for p in paths for f in (_storage_files(p) if os.path.isdir(p) else [p])]
        try:
            indexes = [McapIndex(f) for f in files]
        except (McapError, OSError) as exc:
            for r in readers:
                r.close()
            what = str(exc) if isinstance(exc, McapError) else exc.strerror
            raise BagError(f'{os.path.basename(os.path.normpath(label))}: cannot use its '
                           f'index ({what})') from None
    return BagSource(label, storage, topics, start, end, warnings, False, readers,
                     _indexes=indexes)


def _is_sqlite_folder(path: str) -> bool:
    return os.path.isdir(path) and bool(glob.glob(os.path.join(path, '*.db3')))


def _open_salvaged(files: Sequence[str], label: str, warnings: List[str]) -> BagSource:
    topics: Dict[str, TopicInfo] = {}
    counts: Dict[str, int] = {}
    start = end = None
    for path in files:
        for kind, *item in _salvage_records(path, counts):
            if kind == 'channel':
                ch = item[0]
                topics.setdefault(ch.topic, TopicInfo(ch.topic, ch.msgtype, 0, ch.msgdef))
            elif kind == 'message':
                t_ns, topic = item[0], item[1]
                topics[topic].count += 1
                start = t_ns if start is None else min(start, t_ns)
                end = t_ns if end is None else max(end, t_ns)
    for reason, n in sorted(counts.items()):
        warnings.append(f'salvage: {n} x {reason}')
    return BagSource(label, 'mcap', topics, start, end, warnings, True, [], list(files))


def _salvage_records(path: str, counts: Dict[str, int]) -> Iterator[Tuple]:
    """Yield ('channel', _Channel) and ('message', t_ns, topic, type, bytes) from an MCAP.

    Stops quietly at the first incomplete record (counted as ``truncated``); a chunk that
    does not decode is counted as ``corrupt_chunk`` and skipped.
    """
    def count(reason: str) -> None:
        counts[reason] = counts.get(reason, 0) + 1

    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as exc:
        raise BagError(f'{os.path.basename(path)}: cannot read ({exc.strerror})') from None
    if not data.startswith(MCAP_MAGIC):
        raise BagError(f'{os.path.basename(path)}: not an MCAP file (bad magic)')
    schemas: Dict[int, Tuple[str, str]] = {}
    channels: Dict[int, _Channel] = {}
    for op, body in _records(data, len(MCAP_MAGIC), count):
        if op == _OP_CHUNK:
            try:
                inner = _chunk_records(body)
            except (ValueError, struct.error, RuntimeError, MemoryError):
                count('corrupt_chunk')
                continue
            msgs = []
            for iop, ibody in _records(inner, 0, lambda r: count('corrupt_chunk')):
                msg = _handle(iop, ibody, schemas, channels, count)
                if msg is not None:
                    if msg[0] == 'channel':
                        yield msg
                    else:
                        msgs.append(msg)
            msgs.sort(key=lambda m: m[1])
            yield from msgs
        else:
            msg = _handle(op, body, schemas, channels, count)
            if msg is not None:
                yield msg


def _records(data: bytes, pos: int, count) -> Iterator[Tuple[int, memoryview]]:
    view = memoryview(data)
    n = len(data)
    while pos < n:
        if pos + 9 > n:
            count('truncated')
            return
        op = data[pos]
        (length,) = _U64.unpack_from(data, pos + 1)
        if op in (_OP_FOOTER, _OP_DATA_END):
            return
        if op == 0 or length > n - pos - 9:
            count('truncated')
            return
        yield op, view[pos + 9:pos + 9 + length]
        pos += 9 + length


def _chunk_records(body: memoryview) -> bytes:
    _, _, size, crc = _CHUNK_HEAD.unpack_from(body, 0)
    pos = _CHUNK_HEAD.size
    (clen,) = _U32.unpack_from(body, pos)
    compression = bytes(body[pos + 4:pos + 4 + clen]).decode()
    pos += 4 + clen
    (rlen,) = _U64.unpack_from(body, pos)
    raw = bytes(body[pos + 8:pos + 8 + rlen])
    if len(raw) != rlen:
        raise ValueError('chunk records cut off')
    if compression == 'zstd':
        from backports import zstd
        raw = zstd.decompress(raw)
    elif compression == 'lz4':
        from lz4.frame import decompress
        raw = decompress(raw)
    elif compression:
        raise ValueError(f'unknown compression {compression!r}')
    if len(raw) != size:
        raise ValueError('chunk size mismatch')
    if crc and zlib.crc32(raw) != crc:
        raise ValueError('chunk CRC mismatch')
    return raw


def _string(body: memoryview, pos: int) -> Tuple[str, int]:
    (n,) = _U32.unpack_from(body, pos)
    if pos + 4 + n > len(body):
        raise ValueError('string past the record end')
    return bytes(body[pos + 4:pos + 4 + n]).decode(), pos + 4 + n


def _handle(op: int, body: memoryview, schemas, channels, count) -> Optional[Tuple]:
    try:
        if op == _OP_SCHEMA:
            (sid,) = _U16.unpack_from(body, 0)
            name, pos = _string(body, 2)
            _, pos = _string(body, pos)            # encoding
            text, _ = _string(body, pos)
            schemas[sid] = (name, text)
        elif op == _OP_CHANNEL:
            cid, sid = struct.unpack_from('<HH', body, 0)
            topic, _ = _string(body, 4)
            name, text = schemas.get(sid, ('', ''))
            if cid not in channels:
                channels[cid] = _Channel(topic, name, text)
                return ('channel', channels[cid])
        elif op == _OP_MESSAGE:
            cid, _, log_time, _ = _MESSAGE_HEAD.unpack_from(body, 0)
            ch = channels.get(cid)
            if ch is None:
                count('message_without_channel')
                return None
            return ('message', int(log_time), ch.topic, ch.msgtype,
                    bytes(body[_MESSAGE_HEAD.size:]))
    except (ValueError, struct.error, UnicodeDecodeError):
        count('corrupt_record')
    return None


class BagWriter:
    """Stream serialized messages into a new rosbag2 folder (MCAP by default).

    Connections are added on first use, with the definition from the ROS 2 Jazzy type store
    or, for other types, the definition and hash the caller passes (from the source bag).
    """

    def __init__(self, path: str, storage: str = 'mcap') -> None:
        """Create the folder ``path`` (it must not exist)."""
        if storage not in STORAGE_PLUGINS:
            raise ValueError(f'storage: {storage!r} is not one of {sorted(STORAGE_PLUGINS)}')
        self.path = path
        self._writer = Writer(path, version=9, storage_plugin=STORAGE_PLUGINS[storage])
        self._writer.open()
        self._conns: Dict[Tuple[str, str], object] = {}
        self._refused: Dict[Tuple[str, str], str] = {}
        self.counts: Dict[str, int] = {}
        self.closed = False

    def has_type(self, msgtype: str, msgdef: str = '', digest: str = '') -> bool:
        """Return whether messages of ``msgtype`` can be written."""
        return msgtype in typestore().types or bool(msgdef and digest)

    def write(self, t_ns: int, topic: str, msgtype: str, data: bytes, msgdef: str = '',
              digest: str = '') -> bool:
        """Append one message; return False (nothing written) for a type without definition."""
        key = (topic, msgtype)
        conn = self._conns.get(key)
        if conn is None:
            if key in self._refused:
                return False
            try:
                if msgtype in typestore().types:
                    conn = self._writer.add_connection(topic, msgtype, typestore=typestore())
                elif msgdef and digest:
                    conn = self._writer.add_connection(topic, msgtype, msgdef=msgdef,
                                                       rihs01=digest)
                else:
                    self._refused[key] = 'unknown type'
                    return False
            except Exception as exc:  # noqa: B902 - a bad definition from a foreign bag
                self._refused[key] = _describe(exc)
                return False
            self._conns[key] = conn
        self._writer.write(conn, int(t_ns), bytes(data))
        self.counts[topic] = self.counts.get(topic, 0) + 1
        return True

    def set_custom_data(self, key: str, value: str) -> None:
        """Store a string in the bag's metadata (``custom_data``)."""
        self._writer.set_custom_data(key, value)

    def close(self) -> None:
        """Write the index and metadata.yaml and the MCAP CRCs; the bag is complete then."""
        if not self.closed:
            self.closed = True
            self._writer.close()
            for path in _storage_files(self.path):
                if path.endswith('.mcap'):
                    add_crcs(path)


def storage_file(bag_dir: str) -> Optional[str]:
    """Return the (first) storage file of a bag folder written by :class:`BagWriter`."""
    files = _storage_files(bag_dir)
    return files[0] if files else None


def copy_bag(src: str, dst: str, storage: str = 'mcap') -> int:
    """Copy every message of ``src`` into a new bag ``dst`` in ``storage``; return the count."""
    n = 0
    with open_bag(src) as bag:
        writer = BagWriter(dst, storage)
        try:
            for rec in bag.messages():
                info = bag.topics.get(rec.topic)
                n += writer.write(rec.t_ns, rec.topic, rec.msgtype, rec.data,
                                  info.msgdef if info else '', info.digest if info else '')
        finally:
            writer.close()
    return n


def read_all(path: str) -> List[Record]:
    """Return every message of a bag (tests and small tools)."""
    with open_bag(path) as bag:
        return list(bag.messages())
