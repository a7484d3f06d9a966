"""Incident window: the last seconds of serialized messages, and when to cut them into a bag.

:class:`IncidentWindow` keeps serialized messages (CDR bytes, exactly as on the wire) covering
``window_s`` and decides when an incident becomes a bag; it is pure logic with the time
passed in, and writes nothing (:mod:`wam_runtime.bag.incident` writes the bags).

At most one bag is cut per ``min_interval_s``: an incident that comes sooner after the
previous one is deferred, not dropped. Its bag is cut once the interval has passed (at the
next message), so it still holds the seconds before it, and carries the first deferred
reason; further incidents in the same interval go into that bag.

A flood of huge messages (a 100k-point chunk is ~9 MB) must not turn the window into
gigabytes of memory: a message above ``max_message_bytes`` is left out (and counted), and
the window never holds more than ``max_buffer_bytes`` (the oldest messages go first).
"""

from collections import deque
from dataclasses import dataclass
from typing import Deque, List, Optional, Tuple

Entry = Tuple[int, str, str, bytes]   # (time ns, topic, message type, CDR bytes)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_BUFFER_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class IncidentCut:
    """A snapshot of the window to be written as one bag."""

    t_ns: int                 # when the bag was cut: the bag is named after this time
    reason: str
    entries: List[Entry]      # in arrival order


class IncidentWindow:
    """Ring buffer of serialized messages plus the once-per-interval rule; not thread-safe."""

    def __init__(self, window_s: float = 10.0, min_interval_s: float = 2.0,
                 max_message_bytes: int = MAX_MESSAGE_BYTES,
                 max_buffer_bytes: int = MAX_BUFFER_BYTES) -> None:
        """Keep ``window_s`` of messages; cut at most one bag per ``min_interval_s``."""
        self.window_ns = int(window_s * 1e9)
        self.min_interval_ns = int(min_interval_s * 1e9)
        self.max_message_bytes = int(max_message_bytes)
        self.max_buffer_bytes = int(max_buffer_bytes)
        self.left_out = 0                  # messages too large to keep in the window
        self._buf: Deque[Entry] = deque()
        self._bytes = 0
        self._last_cut_ns: Optional[int] = None
        self._pending: Optional[Tuple[int, str]] = None    # (time ns, reason) deferred

    @property
    def pending(self) -> Optional[str]:
        """Return the reason of a deferred incident whose bag is not cut yet, or None."""
        return None if self._pending is None else self._pending[1]

    def add(self, t_ns: int, topic: str, msgtype: str, data: bytes) -> Optional[IncidentCut]:
        """Append one message, drop what is older than the window or over the byte cap.

        Return the cut of a deferred incident once ``min_interval_s`` has passed, else None.
        """
        if len(data) > self.max_message_bytes:
            self.left_out += 1
            return None
        self._buf.append((t_ns, topic, msgtype, bytes(data)))
        self._bytes += len(data)
        cutoff = t_ns - self.window_ns
        while self._buf and (self._buf[0][0] < cutoff or self._bytes > self.max_buffer_bytes):
            self._bytes -= len(self._buf.popleft()[3])
        if self._pending is not None and t_ns - self._last_cut_ns >= self.min_interval_ns:
            reason = self._pending[1]
            self._pending = None
            return self._cut(t_ns, reason)
        return None

    def trigger(self, t_ns: int, reason: str) -> Optional[IncidentCut]:
        """Return the cut for an incident now, or None when it is deferred (or joins one)."""
        if self._last_cut_ns is not None and t_ns - self._last_cut_ns < self.min_interval_ns:
            if self._pending is None:
                self._pending = (t_ns, reason)
            return None
        return self._cut(t_ns, reason)

    def close(self) -> Optional[IncidentCut]:
        """Return the cut of a deferred incident now (at the latest time seen), else None."""
        if self._pending is None:
            return None
        t_ns, reason = self._pending
        self._pending = None
        last = self._buf[-1][0] if self._buf else t_ns
        return self._cut(max(last, t_ns), reason)

    def _cut(self, t_ns: int, reason: str) -> IncidentCut:
        self._last_cut_ns = t_ns
        return IncidentCut(t_ns, reason, list(self._buf))
