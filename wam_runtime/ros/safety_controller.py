"""safety_controller: action chunks + joint states -> gated command stream (lifecycle node).

Subscribes ``policy/action_chunk`` (JointTrajectory), ``joint_states``, ``safety/estop``
(std_msgs/Bool); ticks at ``control_rate_hz`` and publishes either ``commands``
(Float64MultiArray in ``joint_names`` order, for forward_command_controller: remap to
``/forward_position_controller/commands``) or ``joint_trajectory`` (a single-point
JointTrajectory, for joint_trajectory_controller), plus ``safety/events`` (one
DiagnosticStatus per intervention) and ``/diagnostics``. Services: ``safety/enable``
(SetBool), ``safety/reset`` (Trigger).

Lifecycle: configure loads the URDF and limits, activate opens the gate, deactivate makes a
controlled stop and closes it. With ``autostart`` the node configures and activates itself.
Everything it publishes has left ``wam_runtime.core.gate``. The control tick runs on its own
thread (``ros.tick_thread``), chunks are decoded and checked on another
(``ros.safety_intake``).
"""

import sys
import threading
import time
from typing import List, Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.publisher import Publisher
from rclpy.qos import qos_profile_sensor_data, QoSProfile
from rclpy.serialization import deserialize_message, serialize_message
from rclpy.service import Service
from rclpy.subscription import Subscription
from rclpy.timer import Timer
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float32, Float64MultiArray, MultiArrayDimension, \
    MultiArrayLayout
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from wam_runtime.bag.incident import IncidentRecorder
from wam_runtime.core import controller as ctl
from wam_runtime.core.interfaces import ACTION_CHUNK, EVENTS, EXECUTION, EXECUTION_LABELS, \
    JOINT_STATE, SAFETY_OUTPUTS, TRAJECTORY
from wam_runtime.core.joint_states import JointStateError
from wam_runtime.core.params import SAFETY_PARAMS
from wam_runtime.core.safety_config import build_safety
from wam_runtime.core.safety_runtime import Reaction, SafetyRuntime
from wam_runtime.core.stats import RateMeter, RollingStats
from wam_runtime.ros.common import declare_params, diagnostic_array, event_msg, now_ns, \
    read_params, run_node, stamp_to_ns
from wam_runtime.ros.conversions import float_array, JointStateSources, s_to_duration
from wam_runtime.ros.safety_intake import SafetyIntake
from wam_runtime.ros.tick_thread import TickThread


PARAMS = SAFETY_PARAMS


class SafetyControllerNode(LifecycleNode):
    """Thin wiring of core.safety_runtime.SafetyRuntime to topics, services and a thread."""

    def __init__(self) -> None:
        super().__init__('safety_controller')
        self.recorder: Optional[IncidentRecorder] = None
        self._incident_errors_seen = 0
        self.runtime: Optional[SafetyRuntime] = None
        self.core: Optional[ctl.SafetyController] = None     # runtime.controller
        self._startup_error: Optional[Exception] = None
        self._lock = threading.Lock()
        self._entities: List = []
        self.params = declare_params(self, PARAMS)
        self.active = False
        self.mode = 'unconfigured'
        if self.params['autostart']:
            self.trigger_configure()
            if self._startup_error is not None:
                raise self._startup_error
            self.trigger_activate()

    # ------------------------------------------------------------------ lifecycle
    def _build_runtime(self) -> SafetyRuntime:
        setup = build_safety(self.params)
        if setup.limits_table:
            self.get_logger().info('effective limits:\n' + setup.limits_table)
        return SafetyRuntime(setup, enabled=False)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Re-read and validate every parameter, load limits and URDF, create the I/O.

        Parameters may be set only while unconfigured (ros.common.declare_params): each
        configure validates them all exactly as at startup.
        """
        try:
            self.params = read_params(self, PARAMS, previous=self.params)
            self.runtime = self._build_runtime()
            self.core = self.runtime.controller
        except Exception as exc:  # noqa: B902 - reported as a failed transition, then raised
            self._startup_error = exc
            self.get_logger().error(f'configure failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        p = self.params
        limits = self.core.config.limits
        self.joints = self.runtime.joints         # merged per joint, held joints included
        self.joint_sources = JointStateSources(self)
        self.latency = RollingStats(2000)
        self.tick_time = RollingStats(2000)
        self.command_rate = RateMeter(500)
        self.period = self.core.config.control_period_s
        self.output_mode = p['output_mode']
        if p['incident_dir']:
            self.recorder = IncidentRecorder(
                p['incident_dir'], p['incident_window_s'], p['incident_min_interval_s'],
                int(p['incident_max_total_mb'] * 1e6))
        qos = QoSProfile(depth=10)
        self.cmd_topic, self.cmd_type = SAFETY_OUTPUTS[self.output_mode]
        self.cmd_pub = self.create_publisher(
            Float64MultiArray if self.output_mode == 'forward_command' else JointTrajectory,
            self.cmd_topic, qos)
        self.event_pub = self.create_publisher(DiagnosticStatus, EVENTS, QoSProfile(depth=100))
        self.exec_pub = self.create_publisher(Float64MultiArray, EXECUTION, QoSProfile(depth=10))
        self._exec_layout = MultiArrayLayout(dim=[        # built once, sent every tick
            MultiArrayDimension(label=label, size=1, stride=1) for label in EXECUTION_LABELS])
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._entities = [
            self.cmd_pub, self.event_pub, self.exec_pub, self.diag_pub,
            self.create_subscription(JointTrajectory, ACTION_CHUNK, self._on_chunk,
                                     QoSProfile(depth=10), raw=True),
            self.create_subscription(JointState, 'joint_states', self._on_joints,
                                     qos_profile_sensor_data, raw=True),
            *[self.create_subscription(
                JointState, topic, lambda raw, info, t=topic: self._on_joints(raw, info, t),
                qos_profile_sensor_data, raw=True)
              for topic in p['extra_joint_state_topics'] or []],
            self.create_subscription(Bool, 'safety/estop', self._on_estop, qos),
            self.create_subscription(Float32, 'policy/surprise', self._on_surprise, qos),
            self.create_service(SetBool, 'safety/enable', self._on_enable),
            self.create_service(Trigger, 'safety/reset', self._on_reset),
            self.create_timer(p['diagnostics_period_s'], self._publish_diagnostics),
        ]
        # The control tick runs on its own thread with absolute deadlines: an executor
        # timer at 100-500 Hz waits behind subscription callbacks and jitters more.
        self.ticker = TickThread(self._tick, self.period, self.context)
        self.intake = SafetyIntake(self, self.runtime, self._lock, self._react)
        self.mode = ctl.MODE_DISABLED
        self.get_logger().info(f'configured: gating {list(limits.joint_names)} at '
                               f'{p["control_rate_hz"]:.0f} Hz -> {self.cmd_topic}')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Open the gate: motion starts from the measured position."""
        with self._lock:
            self.core.set_enabled(True)
            self.active = True
        self.get_logger().info('activated: gate open')
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop under control, then close the gate."""
        with self._lock:
            self.core.set_enabled(False)
            self.active = False
        self.get_logger().info('deactivated: stopping, then gate closed')
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Destroy what configure created."""
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything."""
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _stop_ticks(self) -> None:
        for worker in (getattr(self, 'intake', None), getattr(self, 'ticker', None)):
            if worker is not None:
                worker.stop()

    def _teardown(self) -> None:
        self._stop_ticks()
        destroyers = ((Timer, self.destroy_timer), (Subscription, self.destroy_subscription),
                      (Service, self.destroy_service), (Publisher, self.destroy_publisher))
        for entity in self._entities:
            for kind, destroy in destroyers:
                if isinstance(entity, kind):
                    destroy(entity)
        self._entities = []
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None
        self.runtime = None
        self.core = None
        self.mode = 'unconfigured'

    def destroy_node(self) -> None:
        """Stop the control tick, flush pending incident bags, then destroy the node."""
        self._stop_ticks()
        if self.recorder is not None:
            self.recorder.close()
        super().destroy_node()

    # ------------------------------------------------------------------ inputs
    def _record(self, topic: str, msgtype: str, data: bytes) -> None:
        if self.recorder is not None:
            self.recorder.add(self.get_clock().now().nanoseconds, topic, msgtype, data)

    def _on_joints(self, raw: bytes, info, topic: str = 'joint_states') -> None:
        self._record(topic, JOINT_STATE, raw)
        now = now_ns(self)
        source = self.joint_sources.key(topic, info)
        msg = deserialize_message(raw, JointState)
        with self._lock:
            try:
                self.runtime.on_joint_state(msg.name, msg.position,
                                            stamp_to_ns(msg.header.stamp), now, source)
            except JointStateError as exc:
                self.get_logger().warning(
                    f'joint_states from {self.joint_sources.describe(source)} rejected: {exc}',
                    throttle_duration_sec=5.0)
                return
            incomplete = self.runtime.incomplete_for_s(now)
        if incomplete > max(self.params['state_timeout_s'], 1.0):
            self.get_logger().warning(
                f'joint_states incomplete: '
                f'{self.joints.report(now * 1e-9, self.joint_sources.describe)}',
                throttle_duration_sec=5.0)

    def _on_chunk(self, raw: bytes) -> None:
        # Executor thread: record and hand over; decoding happens on the intake thread.
        self._record(ACTION_CHUNK, TRAJECTORY, raw)
        self.intake.put(raw)

    def _on_estop(self, msg: Bool) -> None:
        self._record('safety/estop', 'std_msgs/msg/Bool', serialize_message(msg))
        with self._lock:
            reaction = self.runtime.on_estop(msg.data, now_ns(self))
        if reaction.events:
            self.get_logger().error('E-STOP pressed: stopping, latched until released and '
                                    'safety/reset')
        self._react(reaction)

    def _on_surprise(self, msg: Float32) -> None:
        with self._lock:
            self.runtime.on_surprise(float(msg.data), now_ns(self))

    def _on_enable(self, request, response):
        with self._lock:
            if request.data and not self.active:
                response.success = False
                response.message = 'the node is not active (lifecycle); activate it first'
                return response
            self.core.set_enabled(bool(request.data))
        response.success = True
        response.message = 'enabled' if request.data else 'stopping, then disabled'
        self.get_logger().info(f'gate {response.message}')
        return response

    def _on_reset(self, request, response):
        with self._lock:
            ok, message = self.core.reset()
        response.success, response.message = ok, message
        self.get_logger().info(f'reset: {message}')
        return response

    # ------------------------------------------------------------------ control tick
    def _tick(self) -> None:
        t0 = time.perf_counter()
        now = now_ns(self)
        with self._lock:
            tick = self.runtime.tick(now)
        self.mode = tick.mode
        if tick.command is None:
            return
        if self.output_mode == 'forward_command':
            msg = Float64MultiArray(data=float_array(tick.command))
        else:
            msg = JointTrajectory(joint_names=list(self.core.joint_names), points=[
                JointTrajectoryPoint(positions=tick.command.tolist(),
                                     time_from_start=s_to_duration(self.period))])
        self.cmd_pub.publish(msg)
        self.command_rate.tick(time.monotonic())
        if self.recorder is not None and self.output_mode == 'forward_command':
            self._record(self.cmd_topic, self.cmd_type, serialize_message(msg))
        if tick.chunk_latency_s is not None:
            self.latency.add(tick.chunk_latency_s)
        if tick.execution is not None:
            self.exec_pub.publish(Float64MultiArray(layout=self._exec_layout,
                                                    data=tick.execution))
        for reason in tick.stops:
            self.get_logger().warning(f'{reason}: controlled stop')
        self._react(tick)
        self.tick_time.add(time.perf_counter() - t0)

    def _react(self, reaction: Reaction) -> None:
        """Publish (and keep for incident bags) the events; trigger the incident bags."""
        for event in reaction.events:
            msg = event_msg(event, self.get_name())
            self.event_pub.publish(msg)
            self._record(EVENTS, 'diagnostic_msgs/msg/DiagnosticStatus', serialize_message(msg))
        if self.recorder is not None:
            for reason in reaction.incidents:
                self.recorder.trigger(self.get_clock().now().nanoseconds, reason)

    def _publish_diagnostics(self) -> None:
        with self._lock:
            values = self.runtime.diagnostics(now_ns(self))
            fault = self.core.fault
        lat = self.latency.summary(1e3)
        tick = self.tick_time.summary(1e6)
        jitter = self.ticker.jitter.summary(1e3)
        values.update({
            'mode': self.mode, 'fault': fault or '',
            'command_rate_hz': self.command_rate.rate_hz(),
            'latency_obs_to_command_ms_p50': lat['p50'],
            'latency_obs_to_command_ms_p99': lat['p99'], 'chunks_used': lat['count'],
            'tick_us_p50': tick['p50'], 'tick_us_p99': tick['p99'],
            'tick_jitter_ms_p50': jitter['p50'], 'tick_jitter_ms_p99': jitter['p99'],
            **self.intake.diagnostics(),
        })
        if self.recorder is not None:
            values['incidents_written'] = len(self.recorder.written)
            values['incidents_deleted_for_space'] = len(self.recorder.deleted)
            values['incident_write_errors'] = len(self.recorder.errors)
            values['incident_messages_left_out'] = self.recorder.left_out
            if len(self.recorder.errors) > self._incident_errors_seen:
                self._incident_errors_seen = len(self.recorder.errors)
                self.get_logger().error(f'incident bag not written: {self.recorder.errors[-1]}')
        self.intake.log_new_errors()
        if fault:
            level, message = DiagnosticStatus.ERROR, f'fault latched: {fault}'
        elif self.mode == ctl.MODE_TRACKING:
            level, message = DiagnosticStatus.OK, 'tracking policy chunks'
        else:
            level, message = DiagnosticStatus.WARN, self.mode
        self.diag_pub.publish(diagnostic_array(self, f'{self.get_name()}: safety', level,
                                               message, values))


def main(args: Optional[List[str]] = None) -> int:
    """Entry point (console script ``safety_controller``)."""
    # The control tick, the executor (e-stop) and chunk intake are threads of one process:
    # hand the GIL over every 1 ms (default 5 ms) so none waits long for another.
    sys.setswitchinterval(0.001)
    # One executor thread (rclpy's MultiThreadedExecutor costs a whole core here and halves
    # the tick rate on two cores): its callbacks are all short, since chunks only hand
    # their bytes to the intake thread; the control tick has its own thread.
    return run_node(lambda a: SafetyControllerNode(), args)


if __name__ == '__main__':
    raise SystemExit(main())
