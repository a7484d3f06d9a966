"""Chunk intake for the safety controller: size check before decoding, decoding off the tick.

A JointTrajectory arrives as serialized CDR bytes. ``TrajectoryReader`` reads the number of
joint names and points from the bytes alone (microseconds, whatever the size), so an
oversized chunk is rejected before anything is decoded, and then decodes the stamp, the
names, the positions and the times straight from the bytes into numpy arrays. rclpy's own
``deserialize_message`` builds a Python object per point inside one C call that holds the
GIL (1000 points: ~5 ms; 100k points: ~0.7 s), which would stall the control tick and the
e-stop; this decoder is Python between points, so other threads get the GIL within the
switch interval. ``ChunkIntake`` runs it on its own thread, so neither the executor
(e-stop, enable, reset, joint_states) nor the control tick waits for it; only the final
adoption takes the controller's lock.
"""

from collections import deque
import struct
import threading
from typing import Callable, Deque, List, Optional, Tuple

import numpy as np

from wam_runtime.core.stamps import to_ns

# Encapsulation kinds (byte 1 of the header): XCDR1 plain big/little endian (8-byte values
# aligned to 8), XCDR2 plain big/little endian (aligned to at most 4).
_KINDS = {0: ('>', 8), 1: ('<', 8), 6: ('>', 4), 7: ('<', 4)}


class CdrError(ValueError):
    """The bytes are not a serialized JointTrajectory this reader understands."""


class TrajectoryReader:
    """Decode a serialized trajectory_msgs/JointTrajectory without building messages."""

    def __init__(self, raw: bytes) -> None:
        """Read the header, the stamp, the joint names and the number of points."""
        if len(raw) < 4 or raw[1] not in _KINDS or raw[0] != 0:
            raise CdrError('not a plain CDR encapsulation')
        endian, self._align8 = _KINDS[raw[1]]
        self._u32 = struct.Struct(endian + 'I')
        self._i32 = struct.Struct(endian + 'i')
        self._f64 = np.dtype(endian + 'f8')
        self._body = memoryview(raw)[4:]
        self._end = len(self._body)
        self.stamp_sec = self._i32.unpack_from(self._body, 0)[0] if self._end >= 8 else 0
        self.stamp_nanosec, pos = self._read_u32(4)
        length, pos = self._read_u32(pos)                 # frame_id
        pos = self._skip(pos, length)
        count, pos = self._read_u32(pos)
        if count > self._end:
            raise CdrError(f'{count} joint names announced in {self._end} bytes')
        self.joint_names: List[str] = []
        for _ in range(count):
            length, pos = self._read_u32(pos)
            start = pos
            pos = self._skip(pos, length)
            self.joint_names.append(bytes(self._body[start:pos - 1]).decode('utf-8',
                                                                            'replace'))
        self.points, self._pos = self._read_u32(pos)
        # A point holds at least four sequence lengths and a Duration: 24 bytes.
        if self.points * 24 > self._end - self._pos:
            raise CdrError(f'{self.points} points announced in {self._end - self._pos} bytes')

    @property
    def stamp_ns(self) -> int:
        """The header stamp in integer nanoseconds."""
        return to_ns(self.stamp_sec, self.stamp_nanosec)

    def _read_u32(self, pos: int) -> Tuple[int, int]:
        pos = (pos + 3) & ~3
        if pos + 4 > self._end:
            raise CdrError('truncated')
        return self._u32.unpack_from(self._body, pos)[0], pos + 4

    def _skip(self, pos: int, length: int) -> int:
        if pos + length > self._end:
            raise CdrError('truncated')
        return pos + length

    def _doubles(self, pos: int) -> Tuple[int, int]:
        """Return (offset of the first value, count) of a sequence<float64> at ``pos``."""
        count, pos = self._read_u32(pos)
        if count and self._align8 == 8:
            pos = (pos + 7) & ~7
        return pos, count

    def decode(self) -> Tuple[np.ndarray, np.ndarray]:
        """Return (time_from_start (N,) in s, positions (N, J)); raise CdrError.

        Points whose positions have another length than the joint names are an error.
        """
        n, j = self.points, len(self.joint_names)
        times = np.empty(n)
        positions = np.empty((n, j))
        body, pos, end = self._body, self._pos, self._end
        for k in range(n):
            start, count = self._doubles(pos)
            if count != j:
                raise CdrError(f'point {k} has {count} positions for {j} joint names')
            stop = start + 8 * count
            if stop > end:
                raise CdrError('truncated')
            positions[k] = np.frombuffer(body, self._f64, count, start)
            pos = stop
            for _ in range(3):                        # velocities, accelerations, effort
                start, count = self._doubles(pos)
                pos = start + 8 * count
            sec, pos = self._read_u32(pos)
            nanosec, pos = self._read_u32(pos)
            if pos > end:
                raise CdrError('truncated')
            sec = sec - (1 << 32) if sec >= 1 << 31 else sec     # int32
            times[k] = sec + nanosec * 1e-9
        return times, positions


class ChunkIntake:
    """A worker thread that handles raw chunks in arrival order, at most ``depth`` waiting.

    ``handle(raw)`` runs on the worker. Handling is fast (an oversized chunk is refused
    from its size alone), so the queue only fills under a flood; then the oldest waiting
    chunk is dropped and ``on_drop()`` is called for it (a newer chunk supersedes it
    anyway), so that it is still counted with a reason. An exception in ``handle`` is
    counted in ``errors`` (the last one kept in ``error``) and never stops the worker.
    """

    def __init__(self, handle: Callable[[bytes], None], depth: int = 64,
                 name: str = 'chunk_intake',
                 on_drop: Optional[Callable[[], None]] = None) -> None:
        """Start the worker."""
        self._handle = handle
        self._on_drop = on_drop
        self._queue: Deque[bytes] = deque()
        self._depth = depth
        self._cv = threading.Condition()
        self._running = True
        self.dropped = 0
        self.errors = 0
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, raw: bytes) -> None:
        """Queue a raw chunk (drops the oldest waiting one when full)."""
        dropped = False
        with self._cv:
            if len(self._queue) >= self._depth:
                self._queue.popleft()
                self.dropped += 1
                dropped = True
            self._queue.append(raw)
            self._cv.notify()
        if dropped and self._on_drop is not None:
            self._on_drop()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the worker (a chunk being handled is finished first)."""
        with self._cv:
            self._running = False
            self._cv.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._running and not self._queue:
                    self._cv.wait()
                if not self._running:
                    return
                raw = self._queue.popleft()
            try:
                self._handle(raw)
            except Exception as exc:  # noqa: B902 - counted for /diagnostics, never fatal
                self.errors += 1
                self.error = exc
