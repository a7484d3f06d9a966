"""policy_node: camera frames + joint states -> ONNX policy -> action chunks.

Subscribes ``camera/<name>/image_raw`` for every camera in the model contract (sensor-data
QoS) and ``joint_states``; publishes ``policy/action_chunk`` (JointTrajectory stamped with
the observation time) and ``/diagnostics``. Inference runs on its own worker thread, woken by
the first new frame once ``1 / inference_rate_hz`` has passed, so subscription callbacks never
wait behind the model and a chunk is computed from a frame that has just arrived.
"""

import threading
import time
from typing import Dict, List, Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy_impl
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data, QoSProfile
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory

from wam_runtime.core.image import FrameError, Preprocessor
from wam_runtime.core.inference import OnnxPolicy
from wam_runtime.core.observation import NO_NEW_FRAME, NotReady, ObservationAssembler
from wam_runtime.core.stats import RateMeter, RollingStats
from wam_runtime.ros.common import (
    ConfigError, declare_params, diagnostic_array, now_s, ParamSpec, run_node, stamp_to_s)
from wam_runtime.ros.conversions import (
    image_view, JointStateMapper, s_to_time, trajectory_msg)

PARAMS = (
    ParamSpec('model_path', Parameter.Type.STRING,
              'Path of the ONNX model carrying a wam_runtime.contract metadata entry.'),
    ParamSpec('providers', ['CPUExecutionProvider'],
              'ONNX Runtime execution providers in priority order; unavailable ones are '
              'skipped with a log line.'),
    ParamSpec('intra_op_num_threads', 0, 'ONNX Runtime intra-op threads (0 = library '
                                         'default).'),
    ParamSpec('inference_rate_hz', 10.0, 'Maximum inferences per second (Hz).'),
    ParamSpec('max_observation_age_s', 0.5,
              'An observation whose oldest part is older than this (s) is not used.'),
    ParamSpec('joint_names', Parameter.Type.STRING_ARRAY,
              "The robot's joints; when set, a model whose action joints differ is refused at "
              'startup.', optional=True),
    ParamSpec('diagnostics_period_s', 1.0, 'Period of /diagnostics messages (s).'),
)


class PolicyNode(Node):
    """Thin wiring of OnnxPolicy + Preprocessor + ObservationAssembler to topics."""

    def __init__(self, node_name: str = 'policy_node') -> None:
        super().__init__(node_name)
        p = declare_params(self, PARAMS)
        if p['inference_rate_hz'] <= 0:
            raise ConfigError('inference_rate_hz: must be > 0')
        if p['max_observation_age_s'] <= 0:
            raise ConfigError('max_observation_age_s: must be > 0')
        self.policy = OnnxPolicy(p['model_path'], providers=list(p['providers']),
                                 intra_op_num_threads=p['intra_op_num_threads'],
                                 log=self.get_logger().info)
        contract = self.policy.contract
        self.contract = contract
        if p['joint_names'] is not None and set(p['joint_names']) != set(
                contract.action.joint_names):
            raise ConfigError(f'joint_names: the robot has {list(p["joint_names"])} but the '
                              f'model acts on {list(contract.action.joint_names)}')
        self.preprocessors = {c.name: Preprocessor(c) for c in contract.cameras}
        self.assembler = ObservationAssembler([c.name for c in contract.cameras],
                                              p['max_observation_age_s'])
        self.state_mapper = JointStateMapper(contract.state.joint_names)
        self._lock = threading.Lock()
        self.counters: Dict[str, int] = {}
        self.overhead = RollingStats(1000)
        self.obs_age = RollingStats(1000)
        self.chunk_rate = RateMeter()
        self.frames_in = {c.name: RateMeter() for c in contract.cameras}

        self.chunk_pub = self.create_publisher(JointTrajectory, 'policy/action_chunk',
                                               QoSProfile(depth=10))
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._subs: List = []
        for cam in contract.cameras:
            self._subs.append(self.create_subscription(
                Image, f'camera/{cam.name}/image_raw',
                lambda msg, name=cam.name: self._on_image(name, msg), qos_profile_sensor_data))
        self._subs.append(self.create_subscription(JointState, 'joint_states', self._on_joints,
                                                   qos_profile_sensor_data))
        self.create_timer(p['diagnostics_period_s'], self._publish_diagnostics)
        self._period_s = 1.0 / p['inference_rate_hz']
        self._new_frame = threading.Event()
        self._running = True
        self._worker = threading.Thread(target=self._worker_loop, name='inference',
                                        daemon=True)
        self._worker.start()
        self.get_logger().info(
            f'policy {contract.name!r}: cameras {[c.name for c in contract.cameras]}, '
            f'{contract.action.horizon} steps x {contract.action.dt_s} s, '
            f'providers {self.policy.providers}')

    def _count(self, reason: str) -> None:
        with self._lock:
            self.counters[reason] = self.counters.get(reason, 0) + 1

    def _on_image(self, camera: str, msg: Image) -> None:
        self.frames_in[camera].tick(time.monotonic())
        self.assembler.put_frame(camera, stamp_to_s(msg.header.stamp), msg)
        self._new_frame.set()

    def _on_joints(self, msg: JointState) -> None:
        try:
            q = self.state_mapper.positions(msg)
        except ValueError:
            self._count('joint_state_rejected')
            return
        self.assembler.put_state(stamp_to_s(msg.header.stamp), q)

    def _worker_loop(self) -> None:
        next_allowed = 0.0
        while self._running and self.context.ok():
            if not self._new_frame.wait(timeout=0.2):
                continue
            wait = next_allowed - time.monotonic()
            if wait > 0:
                # Too early: drop the wake-up and take the first frame after the period.
                time.sleep(wait)
                self._new_frame.clear()
                continue
            self._new_frame.clear()
            next_allowed = time.monotonic() + 0.9 * self._period_s
            try:
                self._infer()
            except _rclpy_impl.RCLError:
                if self.context.ok():
                    raise
                return   # rclpy shut down while this thread was publishing
            except Exception as exc:  # noqa: B902 - keep the worker alive; fail closed
                # No chunk is published, so the safety controller times out and holds.
                self._count('inference_error')
                self.get_logger().error(f'inference failed: {exc}', throttle_duration_sec=5.0)

    def destroy_node(self) -> None:
        """Stop the inference worker, then the node."""
        self._running = False
        self._new_frame.set()
        if self._worker.is_alive():
            self._worker.join(timeout=2.0)
        super().destroy_node()

    def _infer(self) -> None:
        t_start = time.perf_counter()
        try:
            obs = self.assembler.take(now_s(self))
        except NotReady as exc:
            if exc.reason != NO_NEW_FRAME:
                self._count(exc.reason)
            return
        tensors = {}
        for cam in self.contract.cameras:
            msg = obs.frames[cam.name]
            try:
                tensors[cam.name] = self.preprocessors[cam.name](image_view(msg), msg.encoding)
            except FrameError as exc:
                self._count(f'frame_{exc.reason}')
                return
        out = self.policy.run(tensors, obs.state)
        act = self.contract.action
        self.chunk_pub.publish(trajectory_msg(act.joint_names, s_to_time(obs.stamp_s),
                                              act.dt_s, out.actions))
        self.obs_age.add(now_s(self) - obs.stamp_s)
        self.overhead.add(time.perf_counter() - t_start - out.inference_s)
        self.chunk_rate.tick(time.monotonic())

    def _publish_diagnostics(self) -> None:
        with self._lock:
            counters = dict(self.counters)
        inf = self.policy.timing.summary(1e3)
        ovh = self.overhead.summary(1e3)
        age = self.obs_age.summary(1e3)
        values = {
            'chunks_published': inf['count'], 'chunk_rate_hz': self.chunk_rate.rate_hz(),
            'inference_ms_p50': inf['p50'], 'inference_ms_p99': inf['p99'],
            'overhead_ms_p50': ovh['p50'], 'overhead_ms_p99': ovh['p99'],
            'observation_age_at_publish_ms_p50': age['p50'],
            'observation_age_at_publish_ms_p99': age['p99'],
            'provider': self.policy.providers[0],
        }
        for name, meter in self.frames_in.items():
            values[f'camera_{name}_rate_hz'] = meter.rate_hz()
        values.update({f'rejected_{k}': v for k, v in sorted(counters.items())})
        bad = sum(v for k, v in counters.items() if k.startswith(('frame_', 'joint_state')))
        level = DiagnosticStatus.WARN if bad else DiagnosticStatus.OK
        message = 'running' if not bad else f'{bad} inputs rejected'
        self.diag_pub.publish(diagnostic_array(self, f'{self.get_name()}: policy', level,
                                               message, values))


def main(args: Optional[List[str]] = None) -> int:
    """Entry point (console script ``policy_node``)."""
    return run_node(lambda a: PolicyNode(), args)


if __name__ == '__main__':
    raise SystemExit(main())
