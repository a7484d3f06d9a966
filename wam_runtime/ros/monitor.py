"""An in-process observer node: records commands, chunks and /diagnostics for demos and tests.

It is a plain subscriber (the "command sink" of the demo); it never publishes commands.
"""

import threading
import time
from typing import Dict, List, Optional, Tuple

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from wam_runtime.ros.common import stamp_to_s


class Monitor(Node):
    """Subscribe to ``commands``, ``policy/action_chunk`` and ``/diagnostics``."""

    def __init__(self, name: str = 'wam_monitor', namespace: str = '', context=None) -> None:
        super().__init__(name, namespace=namespace, context=context)
        self._lock = threading.Lock()
        self.commands: List[Tuple[float, np.ndarray]] = []
        self.chunks: List[Tuple[float, float]] = []   # (receive monotonic, stamp)
        self.diagnostics: Dict[str, Dict[str, str]] = {}
        self.diag_levels: Dict[str, int] = {}
        self.create_subscription(Float64MultiArray, 'commands', self._on_cmd,
                                 QoSProfile(depth=100))
        self.create_subscription(JointTrajectory, 'policy/action_chunk', self._on_chunk,
                                 QoSProfile(depth=100))
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag,
                                 QoSProfile(depth=100))

    def _on_cmd(self, msg: Float64MultiArray) -> None:
        with self._lock:
            self.commands.append((time.monotonic(), np.asarray(msg.data, dtype=np.float64)))

    def _on_chunk(self, msg: JointTrajectory) -> None:
        with self._lock:
            self.chunks.append((time.monotonic(), stamp_to_s(msg.header.stamp)))

    def _on_diag(self, msg: DiagnosticArray) -> None:
        with self._lock:
            for st in msg.status:
                self.diagnostics[st.name] = {kv.key: kv.value for kv in st.values}
                self.diag_levels[st.name] = st.level[0] if isinstance(st.level, bytes) \
                    else int(st.level)

    def command_array(self, since: float = 0.0) -> Tuple[np.ndarray, np.ndarray]:
        """Return (times (N,), commands (N, J)) received after monotonic time ``since``."""
        with self._lock:
            rows = [(t, c) for t, c in self.commands if t >= since]
        if not rows:
            return np.zeros(0), np.zeros((0, 0))
        return np.array([t for t, _ in rows]), np.vstack([c for _, c in rows])

    def diag(self, suffix: str) -> Optional[Dict[str, str]]:
        """Return the latest values of the diagnostic status whose name ends with ``suffix``."""
        with self._lock:
            for name, values in self.diagnostics.items():
                if name.endswith(suffix):
                    return dict(values)
        return None

    def clear(self) -> None:
        """Forget everything recorded so far."""
        with self._lock:
            self.commands.clear()
            self.chunks.clear()
