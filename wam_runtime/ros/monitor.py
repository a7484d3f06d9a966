"""An in-process observer node: records commands, chunks and /diagnostics for demos and tests.

It is a plain subscriber (the "command sink" of the demo); it never publishes commands.
"""

import json
import threading
import time
from typing import Dict, List, Optional, Tuple

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, qos_profile_sensor_data, QoSProfile
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory

from wam_runtime.ros.common import now_s, stamp_to_s


class Monitor(Node):
    """Subscribe to ``commands``, ``policy/action_chunk`` and ``/diagnostics``.

    With ``with_sim`` it also records ``joint_states`` and ``sim/episode_outcome``.
    """

    def __init__(self, name: str = 'wam_monitor', namespace: str = '', context=None,
                 with_sim: bool = False) -> None:
        super().__init__(name, namespace=namespace, context=context)
        self._lock = threading.Lock()
        self.commands: List[Tuple[float, np.ndarray]] = []
        self.command_ros_times: List[float] = []
        self.chunks: List[Tuple[float, float]] = []   # (receive monotonic, stamp)
        self.chunk_records: List[Tuple[float, float, np.ndarray]] = []  # (recv ROS, stamp, pts)
        self.joint_states: List[Tuple[float, np.ndarray]] = []
        self.outcomes: List[dict] = []
        self.diagnostics: Dict[str, Dict[str, str]] = {}
        self.diag_levels: Dict[str, int] = {}
        self.create_subscription(Float64MultiArray, 'commands', self._on_cmd,
                                 QoSProfile(depth=100))
        self.create_subscription(JointTrajectory, 'policy/action_chunk', self._on_chunk,
                                 QoSProfile(depth=100))
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag,
                                 QoSProfile(depth=100))
        if with_sim:
            self.create_subscription(JointState, 'joint_states', self._on_js,
                                     qos_profile_sensor_data)
            self.create_subscription(String, 'sim/episode_outcome', self._on_outcome,
                                     QoSProfile(depth=20,
                                                durability=DurabilityPolicy.TRANSIENT_LOCAL))

    def _on_cmd(self, msg: Float64MultiArray) -> None:
        t = now_s(self)
        with self._lock:
            self.commands.append((time.monotonic(), np.asarray(msg.data, dtype=np.float64)))
            self.command_ros_times.append(t)

    def _on_chunk(self, msg: JointTrajectory) -> None:
        t = now_s(self)
        stamp = stamp_to_s(msg.header.stamp)
        first = np.asarray(msg.points[0].positions) if msg.points else np.zeros(0)
        with self._lock:
            self.chunks.append((time.monotonic(), stamp))
            self.chunk_records.append((t, stamp, first))

    def _on_js(self, msg: JointState) -> None:
        with self._lock:
            self.joint_states.append((stamp_to_s(msg.header.stamp),
                                      np.asarray(msg.position, dtype=np.float64)))

    def _on_outcome(self, msg: String) -> None:
        with self._lock:
            self.outcomes.append(json.loads(msg.data))

    def chunk_latencies(self, windows: Optional[List[Tuple[float, float]]] = None
                        ) -> np.ndarray:
        """Return, per chunk, observation stamp -> first gated command received after it (s).

        ``windows`` (ROS-time intervals) restricts this to chunks received while the gate was
        open; a chunk that arrives while it is closed waits for the gate, not for the runtime.
        """
        with self._lock:
            cmd_t = np.asarray(self.command_ros_times)
            recs = [(r, s) for r, s, _ in self.chunk_records]
        out = []
        for recv, stamp in recs:
            if windows is not None and not any(a <= recv <= b for a, b in windows):
                continue
            i = int(np.searchsorted(cmd_t, recv, side='right'))
            if i < cmd_t.size:
                out.append(cmd_t[i] - stamp)
        return np.asarray(out)

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
            self.command_ros_times.clear()
            self.chunks.clear()
            self.chunk_records.clear()
            self.joint_states.clear()
