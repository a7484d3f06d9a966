"""What every bag module shares: records, topics, the type store, storage files, errors."""

from dataclasses import dataclass
import glob
import os
import sqlite3
import struct
from typing import List, NamedTuple

from rosbags.rosbag2 import StoragePlugin
from rosbags.typesys import get_typestore, Stores

from wam_runtime.bag.mcap import McapError

STORAGE_PLUGINS = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}

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


def storage_files(folder: str) -> List[str]:
    """Return the ``.mcap`` and ``.db3`` storage files of a bag folder, sorted."""
    files = sorted(glob.glob(os.path.join(folder, '*.mcap')) +
                   glob.glob(os.path.join(folder, '*.db3')))
    return [f for f in files if os.path.isfile(f)]


def describe_error(exc: BaseException) -> str:
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
