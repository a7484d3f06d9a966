"""Read rosbag2 bags, accounting for every message (the ``rosbags`` library).

:func:`open_bag` opens a rosbag2 folder in sqlite3 or MCAP storage, a folder whose
``metadata.yaml`` is missing or unreadable (a recording killed before it closed: the
storage files are read directly), or a bare ``.mcap`` / ``.db3`` file. An indexed MCAP is
read chunk by chunk against its index (:mod:`wam_runtime.bag.mcap`): CRCs are checked where
the writer set them, and a damaged chunk, or damaged messages in it, are skipped and counted
as lost by topic instead of ending the read. An MCAP file without a valid summary section
(truncated, or never closed) is salvaged (:mod:`wam_runtime.bag.salvage`). After a full pass
the messages read are compared with the bag's own per-topic counts (``metadata.yaml``, or
the MCAP statistics): :attr:`BagSource.lost` and :attr:`BagSource.problems` say what is
missing, so no loss goes unnoticed. Whatever goes wrong is one :class:`BagError` line that
says what is wrong with the bag, never a traceback or a Python exception's text.
"""

from dataclasses import dataclass, field
import glob
import heapq
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from rosbags.rosbag2 import Reader
import yaml

from wam_runtime.bag.mcap import McapError, McapIndex
from wam_runtime.bag.salvage import salvage_records
from wam_runtime.bag.types import BagError, describe_error, Record, storage_files, TopicInfo


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
            for kind, *item in salvage_records(path, counts):
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
                               f'({describe_error(exc)})') from None

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


def open_bag(path: str) -> BagSource:
    """Open a rosbag2 folder or storage file for reading; raise BagError."""
    if not os.path.exists(path):
        raise BagError(f'{path!r}: no such file or folder')
    warnings: List[str] = []
    if os.path.isdir(path):
        files = storage_files(path)
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
                       f'({describe_error(exc)})') from None
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
        files = [f for p in paths for f in (storage_files(p) if os.path.isdir(p) else [p])]
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
        for kind, *item in salvage_records(path, counts):
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


def read_all(path: str) -> List[Record]:
    """Return every message of a bag (tests and small tools)."""
    with open_bag(path) as bag:
        return list(bag.messages())
