"""Salvage the records of an MCAP file without a usable summary (truncated, never closed).

The file is scanned from the start, record by record, up to the first incomplete one
(counted as ``truncated``); a chunk that does not decode or fails its CRC is counted as
``corrupt_chunk`` and skipped, an unreadable record as ``corrupt_record``, a message of an
unknown channel as ``message_without_channel``. Messages of one chunk come sorted by log
time, chunks in file order.
"""

from dataclasses import dataclass
import os
import struct
from typing import Callable, Dict, Iterator, Optional, Tuple
import zlib

from wam_runtime.bag.mcap import (
    CHUNK_HEAD, decompress, MAGIC, MESSAGE_HEAD, OP_CHANNEL, OP_CHUNK, OP_DATA_END, OP_FOOTER,
    OP_MESSAGE, OP_SCHEMA)
from wam_runtime.bag.types import BagError

_U16, _U32, _U64 = struct.Struct('<H'), struct.Struct('<I'), struct.Struct('<Q')


@dataclass
class SalvagedChannel:
    """A channel met while scanning: topic, message type and its definition."""

    topic: str
    msgtype: str
    msgdef: str = ''


def salvage_records(path: str, counts: Dict[str, int]) -> Iterator[Tuple]:
    """Yield ('channel', SalvagedChannel) and ('message', t_ns, topic, type, bytes).

    ``counts`` collects what was skipped, by reason (see the module docstring); raise
    BagError when the file cannot be read or is not an MCAP file.
    """
    def count(reason: str) -> None:
        counts[reason] = counts.get(reason, 0) + 1

    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as exc:
        raise BagError(f'{os.path.basename(path)}: cannot read ({exc.strerror})') from None
    if not data.startswith(MAGIC):
        raise BagError(f'{os.path.basename(path)}: not an MCAP file (bad magic)')
    schemas: Dict[int, Tuple[str, str]] = {}
    channels: Dict[int, SalvagedChannel] = {}
    for op, body in _records(data, len(MAGIC), count):
        if op == OP_CHUNK:
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


def _records(data: bytes, pos: int,
             count: Callable[[str], None]) -> Iterator[Tuple[int, memoryview]]:
    """Yield (op, body) up to the end of the data section or the first incomplete record."""
    view = memoryview(data)
    n = len(data)
    while pos < n:
        if pos + 9 > n:
            count('truncated')
            return
        op = data[pos]
        (length,) = _U64.unpack_from(data, pos + 1)
        if op in (OP_FOOTER, OP_DATA_END):
            return
        if op == 0 or length > n - pos - 9:
            count('truncated')
            return
        yield op, view[pos + 9:pos + 9 + length]
        pos += 9 + length


def _chunk_records(body: memoryview) -> bytes:
    """Return the records of a chunk; raise ValueError when they do not decode or check."""
    _, _, size, crc = CHUNK_HEAD.unpack_from(body, 0)
    pos = CHUNK_HEAD.size
    (clen,) = _U32.unpack_from(body, pos)
    compression = bytes(body[pos + 4:pos + 4 + clen]).decode()
    pos += 4 + clen
    (rlen,) = _U64.unpack_from(body, pos)
    raw = bytes(body[pos + 8:pos + 8 + rlen])
    if len(raw) != rlen:
        raise ValueError('chunk records cut off')
    raw = decompress(raw, compression, size)
    if crc and zlib.crc32(raw) != crc:
        raise ValueError('chunk CRC mismatch')
    return raw


def _string(body: memoryview, pos: int) -> Tuple[str, int]:
    (n,) = _U32.unpack_from(body, pos)
    if pos + 4 + n > len(body):
        raise ValueError('string past the record end')
    return bytes(body[pos + 4:pos + 4 + n]).decode(), pos + 4 + n


def _handle(op: int, body: memoryview, schemas: Dict[int, Tuple[str, str]],
            channels: Dict[int, SalvagedChannel],
            count: Callable[[str], None]) -> Optional[Tuple]:
    """Decode one schema, channel or message record; return what it yields, if anything."""
    try:
        if op == OP_SCHEMA:
            (sid,) = _U16.unpack_from(body, 0)
            name, pos = _string(body, 2)
            _, pos = _string(body, pos)            # encoding
            text, _ = _string(body, pos)
            schemas[sid] = (name, text)
        elif op == OP_CHANNEL:
            cid, sid = struct.unpack_from('<HH', body, 0)
            topic, _ = _string(body, 4)
            name, text = schemas.get(sid, ('', ''))
            if cid not in channels:
                channels[cid] = SalvagedChannel(topic, name, text)
                return ('channel', channels[cid])
        elif op == OP_MESSAGE:
            cid, _, log_time, _ = MESSAGE_HEAD.unpack_from(body, 0)
            ch = channels.get(cid)
            if ch is None:
                count('message_without_channel')
                return None
            return ('message', int(log_time), ch.topic, ch.msgtype,
                    bytes(body[MESSAGE_HEAD.size:]))
    except (ValueError, struct.error, UnicodeDecodeError):
        count('corrupt_record')
    return None
