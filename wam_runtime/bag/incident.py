"""Incident recorder: the last seconds of inputs and outputs, written as a rosbag2 (MCAP).

The controller hands every serialized message (CDR bytes, exactly as on the wire) to an
:class:`~wam_runtime.core.incident.IncidentWindow`, which decides when an incident becomes a
bag (the window, the once-per-``min_interval_s`` rule that defers instead of dropping). A
worker thread writes each cut with :class:`~wam_runtime.bag.writer.BagWriter` (CRCs
included) to ``<incident_dir>/<time>_<reason>/``, so the control loop never waits for the
disk and each bag is complete as soon as it is closed.

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
from typing import Deque, List, Optional

from rosbags.rosbag2 import WriterError

from wam_runtime.bag.writer import BagWriter
from wam_runtime.core.incident import IncidentCut, IncidentWindow

BAG_NAME = re.compile(r'^\d{8}T\d{6}_\d{6}_[A-Za-z0-9_]+$')


def bag_name(t_ns: int, reason: str) -> str:
    """Return the folder name of an incident bag cut at ``t_ns`` (UTC, microseconds)."""
    stamp = datetime.datetime.fromtimestamp(t_ns / 1e9, datetime.timezone.utc)
    return f'{stamp.strftime("%Y%m%dT%H%M%S_%f")}_{reason}'


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


class IncidentRecorder:
    """An incident window plus an asynchronous MCAP writer and a folder size cap."""

    def __init__(self, incident_dir: str, window_s: float = 10.0,
                 min_interval_s: float = 2.0, max_total_bytes: int = 0) -> None:
        """Record into ``incident_dir`` (created on the first incident; 0 bytes = no cap)."""
        self.incident_dir = incident_dir
        self.max_total_bytes = int(max_total_bytes)
        self.written: List[str] = []
        self.deleted: List[str] = []
        self.errors: List[str] = []
        self._window = IncidentWindow(window_s, min_interval_s)
        self._unknown_type = 0
        self._lock = threading.Lock()
        self._queue: Deque[IncidentCut] = deque()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._running = True
        self._thread = threading.Thread(target=self._writer, name='incident_writer',
                                        daemon=True)
        self._thread.start()

    @property
    def left_out(self) -> int:
        """Return the messages left out of bags: too large, or of a type without definition."""
        with self._lock:
            return self._window.left_out + self._unknown_type

    @property
    def pending(self) -> Optional[str]:
        """Return the reason of a deferred incident whose bag is not cut yet, or None."""
        with self._lock:
            return self._window.pending

    def path(self, cut: IncidentCut) -> str:
        """Return the folder a cut is written to."""
        return os.path.join(self.incident_dir, bag_name(cut.t_ns, cut.reason))

    def add(self, t_ns: int, topic: str, msgtype: str, data: bytes) -> None:
        """Append one serialized message; queue a deferred incident's bag once it is due."""
        with self._lock:
            cut = self._window.add(t_ns, topic, msgtype, data)
        if cut is not None:
            self._enqueue(cut)

    def trigger(self, t_ns: int, reason: str) -> Optional[str]:
        """Snapshot the window and queue it for writing; return the bag path.

        Within ``min_interval_s`` of the previous bag the incident is deferred (see
        :mod:`wam_runtime.core.incident`) and None is returned.
        """
        with self._lock:
            cut = self._window.trigger(t_ns, reason)
        if cut is None:
            return None
        self._enqueue(cut)
        return self.path(cut)

    def _enqueue(self, cut: IncidentCut) -> None:
        self._idle.clear()
        self._queue.append(cut)
        self._wake.set()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued incident is on disk."""
        return self._idle.wait(timeout_s)

    def close(self) -> None:
        """Cut a deferred incident's bag now, write what is queued, stop the writer thread."""
        with self._lock:
            cut = self._window.close()
        if cut is not None:
            self._enqueue(cut)
        self.flush()
        self._running = False
        self._wake.set()
        self._thread.join(timeout=5.0)

    def _writer(self) -> None:
        while self._running or self._queue:
            self._wake.wait(timeout=0.5)
            self._wake.clear()
            while self._queue:
                cut = self._queue.popleft()
                path = self.path(cut)
                try:
                    self._write(path, cut)
                    self.written.append(path)
                    if self.max_total_bytes > 0:
                        self._enforce_cap(path)
                except (OSError, ValueError, KeyError, WriterError) as exc:
                    self.errors.append(f'{path}: {exc}')
            if not self._queue:
                self._idle.set()

    def _write(self, path: str, cut: IncidentCut) -> None:
        """Write a cut's messages in time order to a new MCAP bag folder at ``path``."""
        os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
        refused = 0
        with BagWriter(path, 'mcap') as writer:
            for t_ns, topic, msgtype, data in sorted(cut.entries, key=lambda e: e[0]):
                refused += not writer.write(t_ns, topic, msgtype, data)
        if refused:
            with self._lock:
                self._unknown_type += refused

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
