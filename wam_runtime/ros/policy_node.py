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
from std_msgs.msg import Float32, Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from wam_runtime.core.image import FrameError, Prepared, TensorBuilder
from wam_runtime.core.inference import OnnxPolicy, ProviderConfig
from wam_runtime.core.joint_states import JointStateError, JointStateMerge
from wam_runtime.core.observation import (
    NO_NEW_FRAME, NotReady, Observation, ObservationAssembler)
from wam_runtime.core.params import POLICY_PARAMS
from wam_runtime.core.realtime import execution_fields, ExecutionTracker
from wam_runtime.core.stats import RateMeter, RollingStats
from wam_runtime.core.surprise import METRICS, SurpriseMonitor
from wam_runtime.ros.common import (
    ConfigError, declare_params, diagnostic_array, now_ns, now_s, ns_to_time, run_node,
    stamp_to_ns)
from wam_runtime.ros.conversions import (
    compressed_frame, JointStateSources, merge_joint_state, raw_frame, trajectory_msg)

PARAMS = POLICY_PARAMS

# Rejections that mean "no inference this time" rather than "a bad input".
_OBSERVATION_REASONS = ('observation_stale', 'observation_skewed', 'observation_from_future')


class PolicyNode(Node):
    """Thin wiring of OnnxPolicy + TensorBuilder + ObservationAssembler to topics."""

    def __init__(self, node_name: str = 'policy_node') -> None:
        super().__init__(node_name)
        p = declare_params(self, PARAMS)
        for key in ('inference_rate_hz', 'max_observation_age_s', 'diagnostics_period_s'):
            if not p[key] > 0:
                raise ConfigError(f'{key}: must be > 0')
        if not p['max_observation_skew_s'] >= 0:
            raise ConfigError('max_observation_skew_s: must be >= 0')
        if p['preprocess_threads'] < 0:
            raise ConfigError('preprocess_threads: must be >= 0 (0 = automatic)')
        if p['inference_trigger'] not in ('rate', 'remaining'):
            raise ConfigError(f'inference_trigger: {p["inference_trigger"]!r} is not one of '
                              "['rate', 'remaining']")
        if p['preprocess_on'] not in ('auto', 'arrival', 'inference'):
            raise ConfigError(f'preprocess_on: {p["preprocess_on"]!r} is not one of '
                              "['auto', 'arrival', 'inference']")
        if p['surprise_metric'] not in METRICS:
            raise ConfigError(f'surprise_metric: {p["surprise_metric"]!r} is not one of '
                              f'{list(METRICS)}')
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
        if p['joint_names'] is not None and set(p['joint_names']) != set(
                contract.action.joint_names):
            raise ConfigError(f'joint_names: the robot has {list(p["joint_names"])} but the '
                              f'model acts on {list(contract.action.joint_names)}')
        compressed = list(p['compressed_cameras'] or [])
        unknown = sorted(set(compressed) - set(cam_names))
        if unknown:
            raise ConfigError(f'compressed_cameras: {unknown} are not cameras of the model '
                              f'(cameras: {cam_names})')
        threads = p['preprocess_threads'] or min(len(cam_names), os.cpu_count() or 1)
        self.tensors = TensorBuilder(contract.cameras, threads, p['fast_jpeg_decode'])
        self.on_arrival = {'arrival': cam_names, 'inference': [],
                           'auto': [n for n in cam_names if n not in compressed]
                           }[p['preprocess_on']]
        self.arrival_time = RollingStats(1000)
        self.assembler = ObservationAssembler(cam_names, p['max_observation_age_s'],
                                              p['max_observation_skew_s'])
        # joint_states from any number of publishers, merged per joint; a state is used
        # while every contract joint was heard within max_observation_age_s.
        self.joints = JointStateMerge(contract.state.joint_names, p['max_observation_age_s'])
        self.joint_sources = JointStateSources(self)
        self._joints_since: Optional[float] = None
        wm = contract.world_model
        self.surprise = None if wm is None else SurpriseMonitor(
            p['surprise_metric'], max_gap_s=max(2.5 / p['inference_rate_hz'],
                                                2.5 * wm.prediction_dt_s))
        self._lock = threading.Lock()
        self.counters: Dict[str, int] = {}
        self._reported: Dict[str, int] = {}
        self.overhead = RollingStats(1000)
        self.preprocess_time = RollingStats(1000)
        self.wakeup = RollingStats(1000)
        self.obs_age = RollingStats(1000)
        self.obs_skew = RollingStats(1000)
        self.chunk_rate = RateMeter()
        self.frames_in = {name: RateMeter() for name in cam_names}

        self.chunk_pub = self.create_publisher(JointTrajectory, 'policy/action_chunk',
                                               QoSProfile(depth=10))
        self.surprise_pub = None if wm is None else self.create_publisher(
            Float32, 'policy/surprise', QoSProfile(depth=10))
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._subs: List = []
        for name in cam_names:
            if name in compressed:
                self._subs.append(self.create_subscription(
                    CompressedImage, f'camera/{name}/image_raw/compressed',
                    lambda msg, n=name: self._on_frame(n, msg, compressed_frame(msg)),
                    qos_profile_sensor_data))
            else:
                self._subs.append(self.create_subscription(
                    Image, f'camera/{name}/image_raw',
                    lambda msg, n=name: self._on_frame(n, msg, raw_frame(msg)),
                    qos_profile_sensor_data))
        for topic in p['extra_joint_state_topics'] or []:
            self._subs.append(self.create_subscription(
                JointState, topic, lambda msg, info, t=topic: self._on_joints(msg, info, t),
                qos_profile_sensor_data))
        self._subs.append(self.create_subscription(JointState, 'joint_states', self._on_joints,
                                                   qos_profile_sensor_data))
        self.tracker = ExecutionTracker(contract.action.dt_s, contract.action.horizon)
        self._trigger = p['inference_trigger']
        self._trigger_remaining_s = p['trigger_remaining_s']
        self._subs.append(self.create_subscription(Float64MultiArray, 'safety/execution',
                                                   self._on_execution, QoSProfile(depth=10)))
        self.create_timer(p['diagnostics_period_s'], self._publish_diagnostics)
        self._period_s = 1.0 / p['inference_rate_hz']
        # Waiting this long for the other cameras' next frames is cheaper than a rejection.
        self._skew_wait_s = min(p['max_observation_skew_s'], self._period_s)
        self._new_frame = threading.Event()   # wakes the worker: a frame arrived
        self._new_data = threading.Event()    # a frame or a joint state arrived
        self._running = True
        self._worker = threading.Thread(target=self._worker_loop, name='inference',
                                        daemon=True)
        self._worker.start()
        if wm is not None and abs(self._period_s - wm.prediction_dt_s) > 0.5 * self._period_s:
            self.get_logger().info(
                f'world model predicts {wm.prediction_dt_s} s ahead but inference runs every '
                f'{self._period_s:.3f} s: policy/surprise compares across that gap')
        self.get_logger().info(
            f'policy {contract.name!r}: cameras {cam_names} (compressed: {compressed}), '
            f'{contract.action.horizon} steps x {contract.action.dt_s} s, '
            f'providers {self.policy.providers}, io binding {self.policy.io_binding}')

    def _count(self, reason: str) -> None:
        with self._lock:
            self.counters[reason] = self.counters.get(reason, 0) + 1

    def _on_frame(self, camera: str, msg, item) -> None:
        t = time.monotonic()
        self.frames_in[camera].tick(t)
        self.assembler.put_frame(camera, stamp_to_ns(msg.header.stamp), item, t)
        self._new_frame.set()
        self._new_data.set()
        # Hand the GIL to the inference worker now rather than when the executor next blocks
        # (a few hundred microseconds of executor bookkeeping later).
        time.sleep(0)

    def _on_joints(self, msg: JointState, info, topic: str = 'joint_states') -> None:
        now = now_s(self)
        source = self.joint_sources.key(topic, info)
        try:
            merge_joint_state(self.joints, msg, now, source)
        except JointStateError as exc:
            self._count('joint_state_rejected')
            self.get_logger().warning(
                f'joint_states from {self.joint_sources.describe(source)} rejected: {exc}',
                throttle_duration_sec=5.0)
            return
        merged = self.joints.merged(now)
        if merged is None:
            if self._joints_since is None:
                self._joints_since = now
            elif now - self._joints_since > max(self.assembler.max_age_s, 1.0):
                self.get_logger().warning(
                    f'joint_states incomplete: '
                    f'{self.joints.report(now, self.joint_sources.describe)}',
                    throttle_duration_sec=5.0)
            return
        self._joints_since = None
        # Stamped with its oldest joint's stamp: an observation is as old as its oldest part.
        self.assembler.put_state(merged.stamp_ns, merged.positions)
        self._new_data.set()

    def _on_execution(self, msg: Float64MultiArray) -> None:
        fields = execution_fields([d.label for d in msg.layout.dim], msg.data)
        if fields is None:
            self._count('execution_feedback_rejected')
            return
        self.tracker.on_feedback(fields['chunk_stamp_ns'], fields['remaining_s'],
                                 fields['playback_speed'], now_s(self))

    def _prepare_arrived(self) -> None:
        """Turn the latest raw frame of every on-arrival camera into its model tensor."""
        for camera in self.on_arrival:
            item = self.assembler.latest_item(camera)
            if item is None or isinstance(item, Prepared):
                continue
            t0 = time.perf_counter()
            prepared = self.tensors.pipelines[camera].prepare(item)
            self.assembler.replace_item(camera, item, prepared)
            self.arrival_time.add(time.perf_counter() - t0)

    def _worker_loop(self) -> None:
        next_allowed = 0.0
        while self._running and self.context.ok():
            if not self._new_frame.wait(timeout=0.2):
                continue
            early = next_allowed > time.monotonic()
            if early and self._trigger == 'remaining' and \
                    self.tracker.should_infer(now_s(self), self._trigger_remaining_s):
                early = False       # the executing chunk is about to run out: go now
            if early:
                # Too early: use the wait to preprocess what arrived; the first frame after
                # the period triggers the inference.
                self._new_frame.clear()
                self._prepare_arrived()
                continue
            started = time.monotonic()
            try:
                ran = self._infer()
            except _rclpy_impl.RCLError:
                if self.context.ok():
                    raise
                return   # rclpy shut down while this thread was publishing
            except Exception as exc:  # noqa: B902 - keep the worker alive; fail closed
                # No chunk is published, so the safety controller times out and holds.
                ran = True
                self._count('inference_error')
                self.get_logger().error(f'inference failed: {exc}', throttle_duration_sec=5.0)
            # Only an inference that ran uses up the rate window: a rejected observation
            # never delays the next complete one.
            if ran:
                next_allowed = started + 0.9 * self._period_s

    def destroy_node(self) -> None:
        """Stop the inference worker and the preprocessing threads, then the node."""
        self._running = False
        for event in (getattr(self, '_new_frame', None), getattr(self, '_new_data', None)):
            if event is not None:
                event.set()
        worker = getattr(self, '_worker', None)       # absent when __init__ failed early
        if worker is not None and worker.is_alive():
            worker.join(timeout=2.0)
        if getattr(self, 'tensors', None) is not None:
            self.tensors.close()
        super().destroy_node()

    def _take(self) -> Optional[Observation]:
        """Return the next observation, or None after counting why there is none.

        A part lagging behind the others (skew, or a camera whose frame after a pause has
        not arrived yet) is waited for up to ``min(max_observation_skew_s, period)``.
        """
        deadline = time.monotonic() + self._skew_wait_s
        while True:
            self._new_frame.clear()
            self._new_data.clear()
            try:
                return self.assembler.take(now_ns(self))
            except NotReady as exc:
                left = deadline - time.monotonic()
                if exc.waitable and left > 0 and self._running:
                    self._new_data.wait(left)      # the lagging camera's frame or state
                    continue
                if exc.reason != NO_NEW_FRAME:
                    self._count(exc.reason)
                return None

    def _infer(self) -> bool:
        """Run one inference if an observation is ready; return whether one ran."""
        obs = self._take()
        if obs is None:
            return False
        if obs.received_s is not None:
            self.wakeup.add(time.monotonic() - obs.received_s)
        t0 = time.perf_counter()
        try:
            tensors = self.tensors(obs.frames)
        except FrameError as exc:
            self._count(f'frame_{exc.reason}')
            self.get_logger().warning(f'frame rejected: {exc}', throttle_duration_sec=5.0)
            return False
        self.preprocess_time.add(time.perf_counter() - t0)
        prefix = None
        if self.contract.prefix is not None:
            targets, delay_steps = self.tracker.prefix(obs.stamp_ns)
            prefix = self.policy.prefix_feeds(targets, delay_steps, obs.state)
        out = self.policy.run(tensors, obs.state, prefix=prefix)
        act = self.contract.action
        # The header stamp is built from the integer stamp: exactly the oldest part's.
        self.chunk_pub.publish(trajectory_msg(act.joint_names, ns_to_time(obs.stamp_ns),
                                              act.dt_s, out.actions))
        self.tracker.on_published(obs.stamp_ns, out.actions, now_s(self))
        self.tracker.on_delay(now_s(self) - obs.stamp_s)
        published = time.monotonic()
        if obs.received_s is not None:
            self.overhead.add(published - obs.received_s - out.inference_s)
        self.obs_age.add(now_s(self) - obs.stamp_s)
        self.obs_skew.add(obs.skew_s)
        self.chunk_rate.tick(published)
        if self.surprise is not None:
            value = self.surprise.update(obs.stamp_s, out.embedding, out.predicted_embedding)
            if value is not None:
                self.surprise_pub.publish(Float32(data=value))
        return True

    def _publish_diagnostics(self) -> None:
        with self._lock:
            counters = dict(self.counters)
        inf = self.policy.timing.summary(1e3)
        ovh = self.overhead.summary(1e3)
        pre = self.preprocess_time.summary(1e3)
        arr = self.arrival_time.summary(1e3)
        wake = self.wakeup.summary(1e3)
        age = self.obs_age.summary(1e3)
        skew = self.obs_skew.summary(1e3)
        values = {
            'chunks_published': inf['count'], 'chunk_rate_hz': self.chunk_rate.rate_hz(),
            'inference_ms_p50': inf['p50'], 'inference_ms_p99': inf['p99'],
            'overhead_ms_p50': ovh['p50'], 'overhead_ms_p99': ovh['p99'],
            'preprocess_ms_p50': pre['p50'], 'preprocess_ms_p99': pre['p99'],
            'preprocess_on_arrival': ','.join(self.on_arrival) or 'none',
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
        if self.surprise is not None:
            s = self.surprise.stats.summary()
            values.update({'surprise_last': self.surprise.last, 'surprise_p50': s['p50'],
                           'surprise_p99': s['p99'], 'surprise_max': s['max'],
                           'surprise_count': s['count']})
        for name, meter in self.frames_in.items():
            values[f'camera_{name}_rate_hz'] = meter.rate_hz()
        values.update(self.joints.diagnostics(now_s(self)))
        values.update({f'rejected_{k}': v for k, v in sorted(counters.items())})
        bad = sum(v for k, v in counters.items() if k.startswith(('frame_', 'joint_state')))
        recent = {k: counters.get(k, 0) - self._reported.get(k, 0)
                  for k in _OBSERVATION_REASONS if counters.get(k, 0) > self._reported.get(k, 0)}
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
