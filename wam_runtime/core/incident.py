"""Incident recorder: the last seconds of inputs and outputs, written as a rosbag2 (MCAP).

The controller keeps serialized messages (CDR bytes, exactly as on the wire) in a ring
buffer covering ``window_s``. On an incident the buffer is snapshotted and written by a
worker thread to ``<incident_dir>/<time>_<reason>/`` with the ``rosbags`` library, so the
control loop never waits for the disk and each bag is complete as soon as it is closed.
"""

from collections import deque
import datetime
import os
import threading
from typing import Deque, Dict, List, Optional, Tuple

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores

Entry = Tuple[int, str, str, bytes]   # (time ns, topic, message type, CDR bytes)


class IncidentRecorder:
    """Ring buffer of serialized messages plus an asynchronous MCAP writer."""

    def __init__(self, incident_dir: str, window_s: float = 10.0,
                 min_interval_s: float = 2.0) -> None:
        """Record into ``incident_dir`` (created on the first incident)."""
        self.incident_dir = incident_dir
        self.window_ns = int(window_s * 1e9)
        self.min_interval_ns = int(min_interval_s * 1e9)
        self._buf: Deque[Entry] = deque()
        self._lock = threading.Lock()
        self._last_incident_ns: Optional[int] = None
        self._typestore = get_typestore(Stores.ROS2_JAZZY)
        self._queue: Deque[Tuple[str, List[Entry]]] = deque()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self.written: List[str] = []
        self.errors: List[str] = []
        self._running = True
        self._thread = threading.Thread(target=self._writer, name='incident_writer',
                                        daemon=True)
        self._thread.start()

    def add(self, t_ns: int, topic: str, msgtype: str, data: bytes) -> None:
        """Append one serialized message and drop what is older than the window."""
        with self._lock:
            self._buf.append((t_ns, topic, msgtype, bytes(data)))
            cutoff = t_ns - self.window_ns
            while self._buf and self._buf[0][0] < cutoff:
                self._buf.popleft()

    def trigger(self, t_ns: int, reason: str) -> Optional[str]:
        """Snapshot the window and queue it for writing; return the bag path (or None).

        Incidents closer than ``min_interval_s`` to the previous one are merged into it.
        """
        with self._lock:
            if self._last_incident_ns is not None and \
                    t_ns - self._last_incident_ns < self.min_interval_ns:
                return None
            self._last_incident_ns = t_ns
            snapshot = list(self._buf)
        stamp = datetime.datetime.fromtimestamp(t_ns / 1e9, datetime.timezone.utc)
        name = f'{stamp.strftime("%Y%m%dT%H%M%S_%f")}_{reason}'
        path = os.path.join(self.incident_dir, name)
        self._idle.clear()
        self._queue.append((path, snapshot))
        self._wake.set()
        return path

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued incident is on disk."""
        return self._idle.wait(timeout_s)

    def close(self) -> None:
        """Write what is queued, then stop the writer thread."""
        self.flush()
        self._running = False
        self._wake.set()
        self._thread.join(timeout=5.0)

    def _writer(self) -> None:
        while self._running or self._queue:
            self._wake.wait(timeout=0.5)
            self._wake.clear()
            while self._queue:
                path, entries = self._queue.popleft()
                try:
                    write_bag(path, entries, self._typestore)
                    self.written.append(path)
                except (OSError, ValueError, KeyError) as exc:
                    self.errors.append(f'{path}: {exc}')
            if not self._queue:
                self._idle.set()


def write_bag(path: str, entries: List[Entry], typestore=None) -> None:
    """Write entries (already CDR-serialized) to a rosbag2 MCAP folder at ``path``."""
    typestore = typestore or get_typestore(Stores.ROS2_JAZZY)
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns: Dict[Tuple[str, str], object] = {}
        for t_ns, topic, msgtype, data in sorted(entries, key=lambda e: e[0]):
            key = (topic, msgtype)
            if key not in conns:
                conns[key] = writer.add_connection(topic, msgtype, typestore=typestore)
            writer.write(conns[key], t_ns, data)
