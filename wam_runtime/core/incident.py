"""Incident recorder: the last seconds of inputs and outputs, written as a rosbag2 (MCAP).

The controller keeps serialized messages (CDR bytes, exactly as on the wire) in a ring
buffer covering ``window_s``. On an incident the buffer is snapshotted and written by a
worker thread to ``<incident_dir>/<time>_<reason>/`` with the ``rosbags`` library, so the
control loop never waits for the disk and each bag is complete as soon as it is closed.

At most one bag is written per ``min_interval_s``: an incident that comes sooner after the
previous one is deferred, not dropped. Its bag is cut once the interval has passed (at the
next message), so it still holds the seconds before it, and is named after the first
deferred reason; further incidents in the same interval go into that bag.

With ``max_total_bytes`` the folder is kept under that size: after each bag, the oldest
incident bags (folders this recorder's naming and a ``metadata.yaml`` identify, nothing
else) are deleted, never the newest.
"""

from collections import deque
import datetime
import os
import re
import shutil
import threading
from typing import Deque, Dict, List, Optional, Tuple

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores

Entry = Tuple[int, str, str, bytes]   # (time ns, topic, message type, CDR bytes)
BAG_NAME = re.compile(r'^\d{8}T\d{6}_\d{6}_[A-Za-z0-9_]+$')


def incident_bags(folder: str) -> List[str]:
    """Return the incident bag folders in ``folder``, oldest first."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [os.path.join(folder, n) for n in names if BAG_NAME.match(n)
            and os.path.isfile(os.path.join(folder, n, 'metadata.yaml'))]


def folder_bytes(path: str) -> int:
    """Return the total size of the files under ``path``."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


# A flood of huge messages (a 100k-point chunk is ~9 MB) must not turn the window into
# gigabytes of memory: a message above MAX_MESSAGE_BYTES is left out (and counted), and
# the window never holds more than MAX_BUFFER_BYTES (the oldest messages go first).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_BUFFER_BYTES = 256 * 1024 * 1024


class IncidentRecorder:
    """Ring buffer of serialized messages plus an asynchronous MCAP writer."""

    def __init__(self, incident_dir: str, window_s: float = 10.0,
                 min_interval_s: float = 2.0, max_total_bytes: int = 0) -> None:
        """Record into ``incident_dir`` (created on the first incident; 0 bytes = no cap)."""
        self.incident_dir = incident_dir
        self.left_out = 0              # messages too large to keep in the window
        self._bytes = 0
        self.window_ns = int(window_s * 1e9)
        self.min_interval_ns = int(min_interval_s * 1e9)
        self.max_total_bytes = int(max_total_bytes)
        self.deleted: List[str] = []
        self._buf: Deque[Entry] = deque()
        self._lock = threading.Lock()
        self._last_incident_ns: Optional[int] = None
        self._pending: Optional[Tuple[int, str]] = None    # (time ns, reason) deferred
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

    @property
    def pending(self) -> Optional[str]:
        """Return the reason of a deferred incident whose bag is not cut yet, or None."""
        with self._lock:
            return None if self._pending is None else self._pending[1]

    def add(self, t_ns: int, topic: str, msgtype: str, data: bytes) -> None:
        """Append one serialized message, drop what is older than the window.

        Cuts the bag of a deferred incident once ``min_interval_s`` has passed.
        """
        if len(data) > MAX_MESSAGE_BYTES:
            self.left_out += 1
            return
        with self._lock:
            self._buf.append((t_ns, topic, msgtype, bytes(data)))
            self._bytes += len(data)
            cutoff = t_ns - self.window_ns
            while self._buf and (self._buf[0][0] < cutoff or self._bytes > MAX_BUFFER_BYTES):
                self._bytes -= len(self._buf.popleft()[3])
            due = self._pending is not None and \
                t_ns - self._last_incident_ns >= self.min_interval_ns
            if due:
                job = self._cut(t_ns, self._pending[1])
                self._pending = None
        if due:
            self._enqueue(job)

    def trigger(self, t_ns: int, reason: str) -> Optional[str]:
        """Snapshot the window and queue it for writing; return the bag path.

        Within ``min_interval_s`` of the previous bag the incident is deferred (see the
        module docstring) and None is returned.
        """
        with self._lock:
            if self._last_incident_ns is not None and \
                    t_ns - self._last_incident_ns < self.min_interval_ns:
                if self._pending is None:
                    self._pending = (t_ns, reason)
                return None
            job = self._cut(t_ns, reason)
        self._enqueue(job)
        return job[0]

    def _cut(self, t_ns: int, reason: str) -> Tuple[str, List[Entry]]:
        """Return (bag path, snapshot of the window); the caller holds the lock."""
        self._last_incident_ns = t_ns
        stamp = datetime.datetime.fromtimestamp(t_ns / 1e9, datetime.timezone.utc)
        name = f'{stamp.strftime("%Y%m%dT%H%M%S_%f")}_{reason}'
        return os.path.join(self.incident_dir, name), list(self._buf)

    def _enqueue(self, job: Tuple[str, List[Entry]]) -> None:
        self._idle.clear()
        self._queue.append(job)
        self._wake.set()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued incident is on disk."""
        return self._idle.wait(timeout_s)

    def close(self) -> None:
        """Cut a deferred incident's bag now, write what is queued, stop the writer thread."""
        with self._lock:
            job = None
            if self._pending is not None:
                last = self._buf[-1][0] if self._buf else self._pending[0]
                job = self._cut(max(last, self._pending[0]), self._pending[1])
                self._pending = None
        if job is not None:
            self._enqueue(job)
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
                    if self.max_total_bytes > 0:
                        self._enforce_cap(path)
                except (OSError, ValueError, KeyError) as exc:
                    self.errors.append(f'{path}: {exc}')
            if not self._queue:
                self._idle.set()

    def _enforce_cap(self, newest: str) -> None:
        bags = incident_bags(self.incident_dir)
        sizes = {b: folder_bytes(b) for b in bags}
        total = sum(sizes.values())
        for bag in bags:
            if total <= self.max_total_bytes:
                break
            if os.path.abspath(bag) == os.path.abspath(newest):
                continue
            shutil.rmtree(bag, ignore_errors=True)
            total -= sizes[bag]
            self.deleted.append(bag)


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
