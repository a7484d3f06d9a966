"""The safety controller's chunk path: raw chunk -> intake thread -> SafetyRuntime.

The node's executor only hands each chunk's serialized bytes over (``put``). On the
``ChunkIntake`` thread ``SafetyIntake`` checks the size from the bytes alone, decodes them
(``TrajectoryReader``; rclpy's own deserializer for an encapsulation it does not know),
validates the chunk (``SafetyRuntime.prepare_chunk``) and only then takes the node's lock
to adopt it or count its rejection. A chunk dropped unread behind a full queue is counted
with its reason too. What a chunk triggers (events, incident bags) goes to ``react``.
"""

import threading
import time
from typing import Callable, Dict, Optional

from rclpy.node import Node
from rclpy.serialization import deserialize_message
from trajectory_msgs.msg import JointTrajectory

from wam_runtime.core.chunks import CHUNK_BACKLOG, CHUNK_SHAPE, ChunkError
from wam_runtime.core.safety_runtime import Reaction, SafetyRuntime
from wam_runtime.core.stats import RollingStats
from wam_runtime.ros.chunk_intake import CdrError, ChunkIntake, TrajectoryReader
from wam_runtime.ros.common import now_ns, stamp_to_ns
from wam_runtime.ros.conversions import trajectory_arrays


class SafetyIntake:
    """Decode, validate and adopt the node's chunks on an intake thread of their own."""

    def __init__(self, node: Node, runtime: SafetyRuntime, lock: threading.Lock,
                 react: Callable[[Reaction], None]) -> None:
        """Start the intake thread; ``lock`` serialises the runtime's inputs and ticks."""
        self._node = node
        self._runtime = runtime
        self._lock = lock
        self._react = react
        self.handle_ms = RollingStats(500)        # decode + validate + adopt, per chunk
        self._errors_seen = 0
        self.intake = ChunkIntake(self._handle, on_drop=self._dropped)

    def put(self, raw: bytes) -> None:
        """Queue a serialized JointTrajectory (executor thread: returns at once)."""
        self.intake.put(raw)

    def stop(self) -> None:
        """Stop the intake thread (a chunk being handled is finished first)."""
        self.intake.stop()

    def diagnostics(self) -> Dict[str, Optional[float]]:
        """Return the intake's figures for /diagnostics."""
        ms = self.handle_ms.summary(1.0)
        return {'chunk_intake_dropped': self.intake.dropped,
                'chunk_intake_errors': self.intake.errors,
                'chunk_intake_ms_p50': ms['p50'], 'chunk_intake_ms_p99': ms['p99']}

    def log_new_errors(self) -> None:
        """Log the last intake failure if there were new ones: a bug, not bad input."""
        if self.intake.errors > self._errors_seen:
            self._errors_seen = self.intake.errors
            self._node.get_logger().error(f'chunk intake failed: {self.intake.error!r}')

    def _dropped(self) -> None:
        """Count, with its reason, a chunk dropped unread behind a full intake queue."""
        error = ChunkError(CHUNK_BACKLOG, 'dropped unread: chunks arrive faster than they '
                                          'can be checked')
        with self._lock:
            reaction = self._runtime.reject(error, None, now_ns(self._node))
        self._node.get_logger().warning(f'chunk rejected: {error}', throttle_duration_sec=1.0)
        self._react(reaction)

    def _handle(self, raw: bytes) -> None:
        """Intake thread: size check, decode, validate; only the adoption takes the lock."""
        t0 = time.perf_counter()
        node, runtime = self._node, self._runtime
        stamp_ns = None
        try:
            try:
                reader = TrajectoryReader(raw)
            except CdrError:          # an encapsulation this reader does not know
                msg = deserialize_message(raw, JointTrajectory)
                names, times, positions = trajectory_arrays(msg)
                stamp_ns = stamp_to_ns(msg.header.stamp)
            else:
                stamp_ns, names = reader.stamp_ns, reader.joint_names
                runtime.check_size(reader.points)     # before decoding it
                try:
                    times, positions = reader.decode()
                except CdrError as exc:
                    raise ChunkError(CHUNK_SHAPE, str(exc)) from None
            chunk = runtime.prepare_chunk(names, stamp_ns, times, positions, now_ns(node))
        except ChunkError as exc:
            with self._lock:
                reaction = runtime.reject(exc, stamp_ns, now_ns(node))
            if reaction.events:
                node.get_logger().warning(f'chunk rejected: {exc}', throttle_duration_sec=1.0)
            self._react(reaction)
            return
        with self._lock:
            reaction = runtime.adopt(chunk, now_ns(node))
        self.handle_ms.add((time.perf_counter() - t0) * 1e3)
        if reaction.events:
            node.get_logger().warning(f'chunk rejected: {reaction.events[0].message}',
                                      throttle_duration_sec=1.0)
        self._react(reaction)
