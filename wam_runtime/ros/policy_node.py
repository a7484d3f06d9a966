"""policy_node: camera frames + joint states -> ONNX policy -> action chunks.

Subscribes, for every camera in the model contract, ``camera/<name>/image_raw``
(sensor_msgs/Image) or, for the cameras listed in ``compressed_cameras``,
``camera/<name>/image_raw/compressed`` (sensor_msgs/CompressedImage), all with sensor-data
QoS, and ``joint_states``; publishes ``policy/action_chunk`` (JointTrajectory stamped with
the observation's oldest stamp), ``policy/surprise`` (std_msgs/Float32, when the contract
declares a world model) and ``/diagnostics``. Callbacks only store references to the
messages. Inference runs on its own worker thread, woken by the first new frame once
``1 / inference_rate_hz`` has passed; the frames of an observation that are not model tensors
yet are turned into them then, cameras in parallel. Between inferences the same thread turns
each newly arrived raw frame into its tensor, so that at the next inference only the newest
frames are left to preprocess; compressed frames, whose decoding costs far more, are decoded
only when an inference uses them (``preprocess_on`` chooses).
"""

import os
import threading
import time
from typing import Dict, List, Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy_impl
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data, QoSProfile
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float32, Float64MultiArray, MultiArrayDimension, MultiArrayLayout
from trajectory_msgs.msg import JointTrajectory

from wam_runtime.core.inference import OnnxPolicy, ProviderConfig
from wam_runtime.core.interfaces import ACTION_CHUNK, camera_topic, EXECUTION, \
    INFERENCE_INPUTS, inference_inputs_segments, InferenceInputs, JOINT_STATES, \
    prefix_joint_count, SURPRISE
from wam_runtime.core.joint_states import JointStateError
from wam_runtime.core.params import POLICY_PARAMS
from wam_runtime.core.policy_config import build_policy_config
from wam_runtime.core.policy_runtime import CHUNK, OBSERVATION_REASONS, PolicyChunk, \
    PolicyRuntime, REJECTED, WAIT
from wam_runtime.core.stats import RateMeter, RollingStats
from wam_runtime.ros.common import declare_params, diagnostic_array, now_ns, now_s, \
    ns_to_time, run_node, stamp_to_ns
from wam_runtime.ros.conversions import compressed_frame, JointStateSources, raw_frame, \
    trajectory_msg

PARAMS = POLICY_PARAMS


def inputs_msg(inputs: InferenceInputs) -> Float64MultiArray:
    """Build ``policy/inference_inputs`` (segments named by ``layout.dim``)."""
    segs = inference_inputs_segments(inputs)
    joints = prefix_joint_count(inputs)
    dims = [MultiArrayDimension(label=label, size=len(values),
                                stride=joints if label == 'prefix_targets' else 1)
            for label, values in segs]
    return Float64MultiArray(layout=MultiArrayLayout(dim=dims),
                             data=[v for _, values in segs for v in values])


class PolicyNode(Node):
    """Thin wiring of core.policy_runtime.PolicyRuntime to topics and a worker thread."""

    def __init__(self, node_name: str = 'policy_node') -> None:
        super().__init__(node_name)
        config = build_policy_config(declare_params(self, PARAMS))
        p = config.params
        self.policy = OnnxPolicy(
            p['model_path'], providers=list(p['providers']),
            intra_op_num_threads=p['intra_op_num_threads'],
            inter_op_num_threads=p['inter_op_num_threads'],
            provider_config=ProviderConfig(p['cuda_device_id'], p['tensorrt_fp16'],
                                           p['tensorrt_engine_cache_path']),
            model_sha256=p['model_sha256'], io_binding=p['io_binding'],
            log=self.get_logger().info, warn=self.get_logger().warning)
        contract = self.policy.contract
        self.contract = contract
        cam_names = [c.name for c in contract.cameras]
        compressed = list(config.compressed_cameras)
        threads = p['preprocess_threads'] or min(len(cam_names), os.cpu_count() or 1)
        self.runtime = PolicyRuntime(config, self.policy, threads)
        self.joint_sources = JointStateSources(self)
        self._max_age_s = config.max_observation_age_s
        self.overhead = RollingStats(1000)
        self.wakeup = RollingStats(1000)
        self.frames_in = {name: RateMeter() for name in cam_names}
        self._reported: Dict[str, int] = {}

        self.chunk_pub = self.create_publisher(JointTrajectory, ACTION_CHUNK,
                                               QoSProfile(depth=10))
        self.inputs_pub = self.create_publisher(Float64MultiArray, INFERENCE_INPUTS,
                                                QoSProfile(depth=10))
        wm = contract.world_model
        self.surprise_pub = None if wm is None else self.create_publisher(
            Float32, SURPRISE, QoSProfile(depth=10))
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._subs: List = []
        for name in cam_names:
            if name in compressed:
                self._subs.append(self.create_subscription(
                    CompressedImage, camera_topic(name, True),
                    lambda msg, n=name: self._on_frame(n, msg, compressed_frame(msg)),
                    qos_profile_sensor_data))
            else:
                self._subs.append(self.create_subscription(
                    Image, camera_topic(name),
                    lambda msg, n=name: self._on_frame(n, msg, raw_frame(msg)),
                    qos_profile_sensor_data))
        for topic in p['extra_joint_state_topics'] or []:
            self._subs.append(self.create_subscription(
                JointState, topic, lambda msg, info, t=topic: self._on_joints(msg, info, t),
                qos_profile_sensor_data))
        self._subs.append(self.create_subscription(JointState, JOINT_STATES, self._on_joints,
                                                   qos_profile_sensor_data))
        self._subs.append(self.create_subscription(Float64MultiArray, EXECUTION,
                                                   self._on_execution, QoSProfile(depth=10)))
        self.create_timer(p['diagnostics_period_s'], self._publish_diagnostics)
        period_s = config.period_s
        self._new_frame = threading.Event()   # wakes the worker: a frame arrived
        self._new_data = threading.Event()    # a frame or a joint state arrived
        self._running = True
        self._worker = threading.Thread(target=self._worker_loop, name='inference',
                                        daemon=True)
        self._worker.start()
        if wm is not None and abs(period_s - wm.prediction_dt_s) > 0.5 * period_s:
            self.get_logger().info(
                f'world model predicts {wm.prediction_dt_s} s ahead but inference runs every '
                f'{period_s:.3f} s: policy/surprise compares across that gap')
        self.get_logger().info(
            f'policy {contract.name!r}: cameras {cam_names} (compressed: {compressed}), '
            f'{contract.action.horizon} steps x {contract.action.dt_s} s, '
            f'providers {self.policy.providers}, io binding {self.policy.io_binding}')

    @property
    def counters(self) -> Dict[str, int]:
        """Rejections and errors by reason (a copy)."""
        return self.runtime.snapshot_counters()

    def _on_frame(self, camera: str, msg, item) -> None:
        self.frames_in[camera].tick(time.monotonic())
        self.runtime.on_frame(camera, stamp_to_ns(msg.header.stamp), item, now_ns(self))
        self._new_frame.set()
        self._new_data.set()
        # Hand the GIL to the inference worker now rather than when the executor next blocks
        # (a few hundred microseconds of executor bookkeeping later).
        time.sleep(0)

    def _on_joints(self, msg: JointState, info, topic: str = JOINT_STATES) -> None:
        now = now_ns(self)
        source = self.joint_sources.key(topic, info)
        try:
            stored = self.runtime.on_joint_state(msg.name, msg.position,
                                                 stamp_to_ns(msg.header.stamp), now, source)
        except JointStateError as exc:
            self.get_logger().warning(
                f'joint_states from {self.joint_sources.describe(source)} rejected: {exc}',
                throttle_duration_sec=5.0)
            return
        if stored:
            self._new_data.set()
        elif self.runtime.incomplete_for_s(now) > max(self._max_age_s, 1.0):
            self.get_logger().warning(
                f'joint_states incomplete: '
                f'{self.runtime.joints.report(now * 1e-9, self.joint_sources.describe)}',
                throttle_duration_sec=5.0)

    def _on_execution(self, msg: Float64MultiArray) -> None:
        self.runtime.on_execution([d.label for d in msg.layout.dim], msg.data, now_ns(self))

    def _worker_loop(self) -> None:
        runtime = self.runtime
        while self._running and self.context.ok():
            if not self._new_frame.wait(timeout=0.2):
                continue
            self._new_frame.clear()
            self._new_data.clear()
            try:
                step = runtime.poll(now_ns(self))
                while step.outcome == WAIT and self._running:
                    # A part lags behind: wait for the lagging camera's frame or the state.
                    left = (step.wait_until_ns - now_ns(self)) * 1e-9
                    if left > 0:
                        self._new_data.wait(left)
                    self._new_frame.clear()
                    self._new_data.clear()
                    step = runtime.poll(now_ns(self))
                if step.outcome == CHUNK:
                    self._publish(step.chunk)
                elif step.outcome == REJECTED and step.reason.startswith('frame_'):
                    self.get_logger().warning(f'frame rejected: {step.reason}',
                                              throttle_duration_sec=5.0)
                else:
                    # Too early: use the wait to preprocess what arrived; the first frame
                    # after the period triggers the inference.
                    runtime.prepare_arrived()
            except _rclpy_impl.RCLError:
                if self.context.ok():
                    raise
                return   # rclpy shut down while this thread was publishing
            except Exception as exc:  # noqa: B902 - keep the worker alive; fail closed
                # No chunk is published, so the safety controller times out and holds.
                runtime.count('inference_error')
                self.get_logger().error(f'inference failed: {exc}', throttle_duration_sec=5.0)

    def _publish(self, chunk: PolicyChunk) -> None:
        # What it was inferred from goes first: a recording that holds the chunk holds it.
        self.inputs_pub.publish(inputs_msg(chunk.inputs))
        # The header stamp is built from the integer stamp: exactly the oldest part's.
        self.chunk_pub.publish(trajectory_msg(chunk.joint_names, ns_to_time(chunk.stamp_ns),
                                              chunk.dt_s, chunk.actions))
        published = now_ns(self)
        self.runtime.on_published(chunk, published)
        if chunk.received_s is not None:
            self.wakeup.add(chunk.taken_s - chunk.received_s)
            self.overhead.add(published * 1e-9 - chunk.received_s - chunk.inference_s)
        if chunk.surprise is not None and self.surprise_pub is not None:
            self.surprise_pub.publish(Float32(data=chunk.surprise))

    def destroy_node(self) -> None:
        """Stop the inference worker and the preprocessing threads, then the node."""
        self._running = False
        for event in (getattr(self, '_new_frame', None), getattr(self, '_new_data', None)):
            if event is not None:
                event.set()
        worker = getattr(self, '_worker', None)       # absent when __init__ failed early
        if worker is not None and worker.is_alive():
            worker.join(timeout=2.0)
        if getattr(self, 'runtime', None) is not None:
            self.runtime.close()
        super().destroy_node()

    def _publish_diagnostics(self) -> None:
        counters = self.runtime.snapshot_counters()
        st = self.runtime.stats
        inf = self.policy.timing.summary(1e3)
        ovh = self.overhead.summary(1e3)
        pre = st.preprocess.summary(1e3)
        arr = st.arrival_preprocess.summary(1e3)
        wake = self.wakeup.summary(1e3)
        age = st.age_at_publish.summary(1e3)
        skew = st.skew.summary(1e3)
        values = {
            'chunks_published': inf['count'], 'chunk_rate_hz': st.chunk_rate.rate_hz(),
            'inference_ms_p50': inf['p50'], 'inference_ms_p99': inf['p99'],
            'overhead_ms_p50': ovh['p50'], 'overhead_ms_p99': ovh['p99'],
            'preprocess_ms_p50': pre['p50'], 'preprocess_ms_p99': pre['p99'],
            'preprocess_on_arrival': ','.join(self.runtime.on_arrival) or 'none',
            'arrival_preprocess_ms_p50': arr['p50'], 'arrival_preprocess_ms_p99': arr['p99'],
            'wakeup_ms_p50': wake['p50'], 'wakeup_ms_p99': wake['p99'],
            'observation_age_at_publish_ms_p50': age['p50'],
            'observation_age_at_publish_ms_p99': age['p99'],
            'observation_skew_ms_p50': skew['p50'], 'observation_skew_ms_p99': skew['p99'],
            'provider': self.policy.providers[0],
            'provider_fallback': self.policy.fallback or 'none',
            'io_binding': self.policy.io_binding,
            'model_sha256': self.policy.sha256,
        }
        surprise = self.runtime.surprise
        if surprise is not None:
            s = surprise.stats.summary()
            values.update({'surprise_last': surprise.last, 'surprise_p50': s['p50'],
                           'surprise_p99': s['p99'], 'surprise_max': s['max'],
                           'surprise_count': s['count']})
        for name, meter in self.frames_in.items():
            values[f'camera_{name}_rate_hz'] = meter.rate_hz()
        values.update(self.runtime.joints.diagnostics(now_s(self)))
        values.update({f'rejected_{k}': v for k, v in sorted(counters.items())})
        bad = sum(v for k, v in counters.items() if k.startswith(('frame_', 'joint_state')))
        recent = {k: counters.get(k, 0) - self._reported.get(k, 0)
                  for k in OBSERVATION_REASONS if counters.get(k, 0) > self._reported.get(k, 0)}
        self._reported = counters
        level = DiagnosticStatus.WARN if bad or recent else DiagnosticStatus.OK
        parts = [f'{bad} inputs rejected'] if bad else []
        parts += [f'{n} x {k}' for k, n in sorted(recent.items())]
        message = '; '.join(parts) if parts else 'running'
        self.diag_pub.publish(diagnostic_array(self, f'{self.get_name()}: policy', level,
                                               message, values))


def main(args: Optional[List[str]] = None) -> int:
    """Entry point (console script ``policy_node``)."""
    return run_node(lambda a: PolicyNode(), args)


if __name__ == '__main__':
    raise SystemExit(main())
