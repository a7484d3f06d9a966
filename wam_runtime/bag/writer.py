"""The one rosbag2 writer: episodes, replay outputs and incident bags (``rosbags``).

Serialized messages (CDR bytes as on the wire) are streamed into a new rosbag2 folder,
connections added on first use. rosbags' MCAP writer stamps no wall-clock time into the
file, so the same messages in the same order give the same bytes; on close the chunk, data
and summary CRCs it leaves at 0 are filled in (:func:`wam_runtime.bag.mcap.add_crcs`).
"""

from typing import Dict, Optional, Tuple

from rosbags.rosbag2 import Writer

from wam_runtime.bag.mcap import add_crcs
from wam_runtime.bag.reader import open_bag
from wam_runtime.bag.types import describe_error, storage_files, STORAGE_PLUGINS, typestore


class BagWriter:
    """Stream serialized messages into a new rosbag2 folder (MCAP by default).

    Connections are added on first use, with the definition from the ROS 2 Jazzy type store
    or, for other types, the definition and hash the caller passes (from the source bag).
    """

    def __init__(self, path: str, storage: str = 'mcap') -> None:
        """Create the folder ``path`` (it must not exist; missing parents are created)."""
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
                self._refused[key] = describe_error(exc)
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
            for path in storage_files(self.path):
                if path.endswith('.mcap'):
                    add_crcs(path)

    def __enter__(self) -> 'BagWriter':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def storage_file(bag_dir: str) -> Optional[str]:
    """Return the (first) storage file of a bag folder written by :class:`BagWriter`."""
    files = storage_files(bag_dir)
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
