"""Indexed MCAP reading that accounts for every message, and CRCs for the MCAP files we write.

An MCAP file lists in its summary section every chunk (offset, size, time range), and for
every chunk a message index per channel: the log time and offset of each message in it.
:class:`McapIndex` reads that summary (checking its CRC when the writer set one) and
:meth:`McapIndex.chunk_messages` reads one chunk against it: the chunk CRC is checked when
present, and each message is read at the offset its index gives, so a damaged region of a
chunk costs the messages inside it, not the rest of the chunk, and every message the index
lists but the chunk no longer holds is counted as lost, by channel. Nothing here raises
anything but :class:`McapError`, whose text says what is wrong with the file.

``rosbags`` writes MCAP with every CRC field 0 ("not computed"); :func:`add_crcs` fills in
the chunk, data-section and summary CRCs of a closed file in place (fixed-size fields, so no
offset moves), which lets a later reader tell a damaged chunk from a good one.
"""

from dataclasses import dataclass, field
import struct
from typing import BinaryIO, Dict, List, Optional, Tuple
import zlib

MAGIC = b'\x89MCAP0\r\n'
OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 0x02, 0x03, 0x04, 0x05, 0x06
OP_MESSAGE_INDEX, OP_CHUNK_INDEX, OP_STATISTICS, OP_DATA_END = 0x07, 0x08, 0x0B, 0x0F
_U16, _U32, _U64 = struct.Struct('<H'), struct.Struct('<I'), struct.Struct('<Q')
_RECORD_HEAD = struct.Struct('<BQ')
_FOOTER = struct.Struct('<BQQQI')             # op, length (20), summary start, offset, crc
_FOOTER_SIZE = _FOOTER.size + len(MAGIC)
MESSAGE_HEAD = struct.Struct('<HIQQ')         # channel, sequence, log time, publish time
CHUNK_HEAD = struct.Struct('<QQQI')           # start, end, uncompressed size, crc
_INDEX_ENTRY = struct.Struct('<QQ')


class McapError(ValueError):
    """An MCAP file (or one chunk of it) cannot be read; the text says what is wrong."""


@dataclass
class Channel:
    """A channel of the file: topic, message type and its definition."""

    topic: str
    msgtype: str
    msgdef: str = ''


@dataclass
class ChunkIndex:
    """One chunk as the summary lists it."""

    start_ns: int
    end_ns: int
    offset: int
    length: int
    message_index: Dict[int, int]               # channel id -> offset of its MessageIndex
    message_index_length: int
    compression: str
    compressed_size: int
    uncompressed_size: int


@dataclass
class ChunkRead:
    """What one chunk gave: messages, and what its index listed that it did not give."""

    messages: List[Tuple[int, int, int, bytes]] = field(default_factory=list)
    lost: Dict[int, int] = field(default_factory=dict)     # channel id -> messages
    problem: Optional[str] = None


def _u(fmt: struct.Struct, buf, pos: int, what: str) -> Tuple:
    if pos < 0 or pos + fmt.size > len(buf):
        raise McapError(f'{what} runs past the end of its record')
    return fmt.unpack_from(buf, pos)


def _string(buf, pos: int, what: str) -> Tuple[str, int]:
    (n,) = _u(_U32, buf, pos, what)
    if pos + 4 + n > len(buf):
        raise McapError(f'{what}: a string of {n} bytes runs past the end of its record')
    try:
        return bytes(buf[pos + 4:pos + 4 + n]).decode(), pos + 4 + n
    except UnicodeDecodeError:
        raise McapError(f'{what} is not valid UTF-8') from None


def _records(buf, pos: int, end: int, where: str):
    """Yield (op, body offset, body length, record offset) of the records in buf[pos:end]."""
    while pos < end:
        if pos + 9 > end:
            raise McapError(f'{where}: a record header at byte {pos} is cut off')
        op, length = _RECORD_HEAD.unpack_from(buf, pos)
        if length > end - pos - 9:
            raise McapError(f'{where}: the record at byte {pos} claims {length} bytes, more '
                            f'than the {end - pos - 9} left')
        yield op, pos + 9, length, pos
        pos += 9 + length


def decompress(data: bytes, compression: str, size: int) -> bytes:
    """Return the chunk's records; raise McapError naming the problem."""
    try:
        if compression == 'zstd':
            try:
                from backports import zstd
            except ImportError:         # Python 3.14 has it in the standard library
                from compression import zstd
            raw = zstd.decompress(data)
        elif compression == 'lz4':
            from lz4.frame import decompress as lz4_decompress
            raw = lz4_decompress(data)
        elif compression == '':
            raw = data
        else:
            raise McapError(f'unknown compression {compression!r}')
    except McapError:
        raise
    except Exception:  # noqa: B902 - decompressors raise their own error types
        raise McapError(f'the {compression} data does not decompress') from None
    if len(raw) != size:
        raise McapError(f'the records are {len(raw)} bytes, the chunk says {size}')
    return raw


class McapIndex:
    """The summary of one indexed MCAP file: channels, chunks, per-channel counts."""

    def __init__(self, path: str) -> None:
        """Read the summary of ``path``; raise McapError when it is missing or damaged."""
        self.path = path
        self.schemas: Dict[int, Tuple[str, str]] = {}
        self.channels: Dict[int, Channel] = {}
        self.chunks: List[ChunkIndex] = []
        self.statistics: Optional[Dict[int, int]] = None    # channel id -> message count
        self.summary_crc_checked = False
        with open(path, 'rb') as f:
            f.seek(0, 2)
            self.size = f.tell()
            if self.size < len(MAGIC) * 2 + _FOOTER.size:
                raise McapError('too short for an MCAP file with a summary')
            f.seek(self.size - _FOOTER_SIZE)
            tail = f.read(_FOOTER_SIZE)
            if tail[-len(MAGIC):] != MAGIC:
                raise McapError('no footer (the file was not closed)')
            op, length, summary_start, _, crc = _FOOTER.unpack_from(tail, 0)
            footer_at = self.size - _FOOTER_SIZE
            if op != OP_FOOTER or length != 20:
                raise McapError('the footer record is damaged')
            if summary_start == 0:
                raise McapError('the file has no summary section (no chunk index)')
            if not len(MAGIC) < summary_start <= footer_at:
                raise McapError(f'the footer points the summary to byte {summary_start}, '
                                f'outside the file')
            f.seek(summary_start)
            summary = f.read(footer_at - summary_start)
        if crc:
            got = zlib.crc32(tail[:_FOOTER.size - 4], zlib.crc32(summary))
            if got != crc:
                raise McapError('the summary section fails its CRC check')
            self.summary_crc_checked = True
        self._parse_summary(summary)

    def _parse_summary(self, buf: bytes) -> None:
        where = 'summary'
        for op, pos, length, _ in _records(buf, 0, len(buf), where):
            body = memoryview(buf)[pos:pos + length]
            if op == OP_SCHEMA:
                (sid,) = _u(_U16, body, 0, 'schema record')
                name, p = _string(body, 2, 'schema name')
                _, p = _string(body, p, 'schema encoding')
                text, _ = _string(body, p, 'schema data')
                self.schemas[sid] = (name, text)
            elif op == OP_CHANNEL:
                cid, sid = _u(struct.Struct('<HH'), body, 0, 'channel record')
                topic, _ = _string(body, 4, 'channel topic')
                name, text = self.schemas.get(sid, ('', ''))
                self.channels[cid] = Channel(topic, name, text)
            elif op == OP_CHUNK_INDEX:
                self.chunks.append(self._chunk_index(body))
            elif op == OP_STATISTICS:
                (n,) = _u(_U32, body, 42, 'statistics record')
                counts = {}
                for k in range(0, n - n % 10, 10):
                    cid, count = _u(struct.Struct('<HQ'), body, 46 + k, 'statistics counts')
                    counts[cid] = count
                self.statistics = counts
        for c in self.chunks:
            if c.offset < len(MAGIC) or c.offset + c.length > self.size:
                raise McapError(f'the chunk index points outside the file (byte {c.offset})')

    @staticmethod
    def _chunk_index(body) -> ChunkIndex:
        start, end, offset, length = _u(struct.Struct('<QQQQ'), body, 0, 'chunk index')
        (n,) = _u(_U32, body, 32, 'chunk index')
        offsets = {}
        for k in range(0, n - n % 10, 10):
            cid, off = _u(struct.Struct('<HQ'), body, 36 + k, 'chunk index')
            offsets[cid] = off
        p = 36 + n
        (index_length,) = _u(_U64, body, p, 'chunk index')
        compression, p = _string(body, p + 8, 'chunk compression')
        compressed, uncompressed = _u(struct.Struct('<QQ'), body, p, 'chunk index')
        return ChunkIndex(start, end, offset, length, offsets, index_length, compression,
                          compressed, uncompressed)

    def _message_index(self, f: BinaryIO, chunk: ChunkIndex) -> Dict[int, List[Tuple[int, int]]]:
        """Return {channel: [(log time, offset in the chunk records)]}; raise McapError."""
        out: Dict[int, List[Tuple[int, int]]] = {}
        for cid, off in chunk.message_index.items():
            if off + 9 > self.size:
                raise McapError(f'the message index of channel {cid} lies outside the file')
            f.seek(off)
            head = f.read(9)
            op, length = _RECORD_HEAD.unpack_from(head, 0)
            if op != OP_MESSAGE_INDEX or length > self.size - off - 9 or length < 6:
                raise McapError(f'the message index of channel {cid} is damaged')
            body = f.read(length)
            got_cid, n = struct.unpack_from('<HI', body, 0)
            if got_cid != cid or 6 + n > len(body) or n % 16:
                raise McapError(f'the message index of channel {cid} is damaged')
            out[cid] = [_INDEX_ENTRY.unpack_from(body, 6 + k) for k in range(0, n, 16)]
        return out

    def chunk_messages(self, f: BinaryIO, chunk: ChunkIndex) -> ChunkRead:
        """Read one chunk; messages are (log time, offset, channel, CDR bytes) in time order.

        Never raises: a chunk that cannot be read at all, or fails its CRC, gives no
        messages and reports every message its index lists as lost.
        """
        result = ChunkRead()
        where = f'chunk at byte {chunk.offset}'
        try:
            index = self._message_index(f, chunk)
        except McapError as exc:
            index = None
            result.problem = f'{where}: {exc}'
        try:
            records = self._chunk_records(f, chunk, where)
        except McapError as exc:
            if index is not None:
                result.lost = {cid: len(v) for cid, v in index.items() if v}
            result.problem = str(exc) if str(exc).startswith(where) else f'{where}: {exc}'
            return result
        if index is None:
            result.messages = self._scan(records, where, result)
        else:
            self._indexed(records, index, result)
            if any(result.lost.values()):
                n = sum(result.lost.values())
                result.problem = (f'{where}: {n} message{"s" if n > 1 else ""} its index lists '
                                  'are damaged or missing')
        result.messages.sort(key=lambda m: (m[0], m[1]))
        return result

    def _chunk_records(self, f: BinaryIO, chunk: ChunkIndex, where: str) -> bytes:
        f.seek(chunk.offset)
        data = f.read(chunk.length)
        if len(data) < 9 + CHUNK_HEAD.size:
            raise McapError(f'{where}: cut off')
        op, length = _RECORD_HEAD.unpack_from(data, 0)
        if op != OP_CHUNK or 9 + length != chunk.length:
            raise McapError(f'{where}: the chunk record header is damaged (the index says '
                            f'{chunk.length} bytes)')
        _, _, size, crc = CHUNK_HEAD.unpack_from(data, 9)
        compression, p = _string(data, 9 + CHUNK_HEAD.size, f'{where}: compression')
        (clen,) = _u(_U64, data, p, f'{where}: records length')
        if p + 8 + clen != len(data):
            raise McapError(f'{where}: the records length field is damaged')
        raw = decompress(data[p + 8:], compression, size)
        if crc and zlib.crc32(raw) != crc:
            raise McapError(f'{where}: the chunk fails its CRC check (damaged data)')
        return raw

    def _indexed(self, raw: bytes, index: Dict[int, List[Tuple[int, int]]],
                 result: ChunkRead) -> None:
        for cid, entries in index.items():
            bad = 0
            for log_time, off in entries:
                msg = self._message_at(raw, off, cid, log_time)
                if msg is None:
                    bad += 1
                else:
                    result.messages.append(msg)
            if bad:
                result.lost[cid] = bad

    @staticmethod
    def _message_at(raw: bytes, off: int, cid: int,
                    log_time: int) -> Optional[Tuple[int, int, int, bytes]]:
        """Return the message record at ``off`` if it is the one the index describes."""
        if off < 0 or off + 9 + MESSAGE_HEAD.size > len(raw):
            return None
        op, length = _RECORD_HEAD.unpack_from(raw, off)
        if op != OP_MESSAGE or length < MESSAGE_HEAD.size or off + 9 + length > len(raw):
            return None
        got_cid, _, t, _ = MESSAGE_HEAD.unpack_from(raw, off + 9)
        if got_cid != cid or t != log_time:
            return None
        return t, off, cid, raw[off + 9 + MESSAGE_HEAD.size:off + 9 + length]

    def _scan(self, raw: bytes, where: str, result: ChunkRead) -> List:
        """Read a chunk without its message index, record by record, up to any damage."""
        out = []
        try:
            for op, pos, length, start in _records(raw, 0, len(raw), where):
                if op == OP_MESSAGE:
                    if length < MESSAGE_HEAD.size:
                        raise McapError(f'{where}: a message record is too short')
                    cid, _, t, _ = MESSAGE_HEAD.unpack_from(raw, pos)
                    out.append((t, start, cid, raw[pos + MESSAGE_HEAD.size:pos + length]))
        except McapError as exc:
            result.problem = f'{result.problem}; {exc}' if result.problem else str(exc)
        return out


def add_crcs(path: str) -> None:
    """Fill in the chunk, data-section and summary CRCs of a closed MCAP file, in place.

    Only CRC fields that are 0 (not computed) are written; the file keeps its size and every
    offset, so its indexes stay valid. The file is read one record at a time (a chunk is
    about 1 MB), so a large bag never has to fit in memory; nothing is written unless the
    whole file could be read.
    """
    patches: List[Tuple[int, bytes]] = []          # (file offset, CRC field bytes)
    with open(path, 'r+b') as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(0)
        head = f.read(len(MAGIC))
        f.seek(max(size - len(MAGIC), 0))
        if head != MAGIC or f.read(len(MAGIC)) != MAGIC or size < 2 * len(MAGIC):
            raise McapError('not a closed MCAP file')
        data_crc = zlib.crc32(MAGIC)
        data_end = None
        for op, pos, length, start in _file_records(f, len(MAGIC), size - len(MAGIC)):
            if data_end is None:
                f.seek(start)
                record = bytearray(f.read(9 + length))
                if op == OP_CHUNK:
                    _chunk_crc(record, patches, start)
                elif op == OP_DATA_END:
                    data_end = start
                    if length >= 4 and _U32.unpack_from(record, 9)[0] == 0:
                        patches.append((pos, _U32.pack(data_crc)))
                    continue
                data_crc = zlib.crc32(record, data_crc)
            elif op == OP_FOOTER:
                f.seek(pos)
                summary_start, _, crc = _u(struct.Struct('<QQI'), f.read(length), 0, 'footer')
                if summary_start and crc == 0:
                    crc_at = pos + 16
                    patches.append((crc_at, _U32.pack(_file_crc(f, summary_start, crc_at))))
                break
        if data_end is None:
            raise McapError('no data end record')
        for offset, value in patches:
            f.seek(offset)
            f.write(value)


def _file_records(f: BinaryIO, pos: int, end: int):
    """Yield (op, body offset, body length, record offset) of the records in f[pos:end]."""
    while pos < end:
        if pos + 9 > end:
            raise McapError(f'file: a record header at byte {pos} is cut off')
        f.seek(pos)
        op, length = _RECORD_HEAD.unpack(f.read(9))
        if length > end - pos - 9:
            raise McapError(f'file: the record at byte {pos} claims {length} bytes, more '
                            f'than the {end - pos - 9} left')
        yield op, pos + 9, length, pos
        pos += 9 + length


def _chunk_crc(record: bytearray, patches: List[Tuple[int, bytes]], start: int) -> None:
    """Set the CRC of a chunk record (header included) whose CRC field is 0."""
    _, _, size, crc = _u(CHUNK_HEAD, record, 9, 'chunk')
    if crc == 0:
        compression, p = _string(record, 9 + CHUNK_HEAD.size, 'compression')
        (clen,) = _u(_U64, record, p, 'chunk records length')
        crc = _U32.pack(zlib.crc32(decompress(bytes(record[p + 8:p + 8 + clen]),
                                              compression, size)))
        record[9 + 24:9 + 28] = crc
        patches.append((start + 9 + 24, crc))


def _file_crc(f: BinaryIO, start: int, end: int, block: int = 1 << 20) -> int:
    """Return the CRC-32 of the bytes f[start:end], read in blocks."""
    crc = 0
    f.seek(start)
    while start < end:
        data = f.read(min(block, end - start))
        if not data:
            raise McapError('the file is shorter than its footer says')
        crc = zlib.crc32(data, crc)
        start += len(data)
    return crc
