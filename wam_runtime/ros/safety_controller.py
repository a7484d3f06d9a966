"""safety_controller: action chunks + joint states -> gated command stream.

Subscribes ``policy/action_chunk`` (JointTrajectory) and ``joint_states``; ticks at
``control_rate_hz`` and publishes ``commands`` (Float64MultiArray in ``joint_names`` order:
the forward_command_controller interface; remap to
``/forward_position_controller/commands``) and ``/diagnostics``. Nothing it publishes has
left the gate in ``wam_runtime.core.gate``; without fresh input it holds.
"""

import threading
import time
from typing import List, Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data, QoSProfile
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory

from wam_runtime.core.controller import CHUNK_DISABLED, ChunkError, ControllerConfig, \
    MODE_HOLDING, SafetyController
from wam_runtime.core.gate import JointLimits
from wam_runtime.core.stats import RateMeter, RollingStats
from wam_runtime.ros.common import ConfigError, declare_params, diagnostic_array, now_s, \
    ParamSpec, run_node, stamp_to_s
from wam_runtime.ros.conversions import float_array, JointStateMapper, trajectory_arrays

PARAMS = (
    ParamSpec('joint_names', Parameter.Type.STRING_ARRAY,
              'Joints in command order (the order of the downstream controller).'),
    ParamSpec('lower_limits_rad', Parameter.Type.DOUBLE_ARRAY,
              'Lower position limit per joint (rad).'),
    ParamSpec('upper_limits_rad', Parameter.Type.DOUBLE_ARRAY,
              'Upper position limit per joint (rad).'),
    ParamSpec('max_velocity_rad_s', Parameter.Type.DOUBLE_ARRAY,
              'Maximum joint speed (rad/s); bounds the step between two commands.'),
    ParamSpec('position_margin_rad', 0.0, 'Commands stay this far inside the limits (rad).'),
    ParamSpec('control_rate_hz', 100.0, 'Command publication rate (Hz).'),
    ParamSpec('command_timeout_s', 0.5,
              'Without a valid chunk for this long the controller holds (s).'),
    ParamSpec('state_timeout_s', 0.5, 'Without joint_states for this long it holds (s).'),
    ParamSpec('max_chunk_age_s', 1.0, 'Chunks stamped longer ago than this are rejected (s).'),
    ParamSpec('start_enabled', True, 'Open the gate at startup; otherwise wait for '
                                     'safety/enable.'),
    ParamSpec('diagnostics_period_s', 1.0, 'Period of /diagnostics messages (s).'),
)


class SafetyControllerNode(Node):
    """Thin wiring of core.controller.SafetyController to topics and a control timer."""

    def __init__(self, node_name: str = 'safety_controller') -> None:
        super().__init__(node_name)
        p = declare_params(self, PARAMS)
        for key in ('control_rate_hz', 'command_timeout_s', 'state_timeout_s',
                    'max_chunk_age_s'):
            if p[key] <= 0:
                raise ConfigError(f'{key}: must be > 0, got {p[key]}')
        if p['position_margin_rad'] < 0:
            raise ConfigError('position_margin_rad: must be >= 0')
        limits = JointLimits.create(p['joint_names'], p['lower_limits_rad'],
                                    p['upper_limits_rad'], p['max_velocity_rad_s'])
        period = 1.0 / p['control_rate_hz']
        self.core = SafetyController(ControllerConfig(
            limits=limits, control_period_s=period, command_timeout_s=p['command_timeout_s'],
            state_timeout_s=p['state_timeout_s'], max_chunk_age_s=p['max_chunk_age_s'],
            position_margin_rad=p['position_margin_rad']), enabled=p['start_enabled'])
        self.mapper = JointStateMapper(limits.joint_names)
        self._lock = threading.Lock()
        self.latency = RollingStats(2000)
        self.tick_time = RollingStats(2000)
        self.command_rate = RateMeter(500)
        self.mode = 'starting'

        self.cmd_pub = self.create_publisher(Float64MultiArray, 'commands', QoSProfile(depth=10))
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_subscription(JointTrajectory, 'policy/action_chunk', self._on_chunk,
                                 QoSProfile(depth=10))
        self.create_subscription(JointState, 'joint_states', self._on_joints,
                                 qos_profile_sensor_data)
        self.create_service(SetBool, 'safety/enable', self._on_enable)
        self.create_timer(period, self._tick)
        self.create_timer(p['diagnostics_period_s'], self._publish_diagnostics)
        self.get_logger().info(f'gating {list(limits.joint_names)} at '
                               f'{p["control_rate_hz"]:.0f} Hz')

    def _on_joints(self, msg: JointState) -> None:
        try:
            q = self.mapper.positions(msg)
        except ValueError:
            with self._lock:
                self.core.count('joint_state_rejected')
            return
        with self._lock:
            self.core.on_state(q, now_s(self))

    def _on_enable(self, request, response):
        with self._lock:
            self.core.set_enabled(bool(request.data))
        response.success = True
        response.message = 'enabled' if request.data else 'disabled'
        self.get_logger().info(f'gate {response.message}')
        return response

    def _on_chunk(self, msg: JointTrajectory) -> None:
        names, times, positions = trajectory_arrays(msg)
        with self._lock:
            try:
                self.core.on_chunk(names, stamp_to_s(msg.header.stamp), times, positions,
                                   now_s(self))
            except ChunkError as exc:
                if exc.reason == CHUNK_DISABLED:
                    return
                self.get_logger().warning(f'chunk rejected: {exc}', throttle_duration_sec=1.0)

    def _tick(self) -> None:
        t0 = time.perf_counter()
        with self._lock:
            result = self.core.tick(now_s(self))
        if result.command is None:
            self.mode = result.mode
            return
        self.cmd_pub.publish(Float64MultiArray(data=float_array(result.command)))
        self.mode = result.mode
        self.command_rate.tick(time.monotonic())
        if result.chunk_latency_s is not None:
            self.latency.add(result.chunk_latency_s)
        for iv in result.interventions:
            if iv.reason in ('command_timeout', 'state_timeout'):
                self.get_logger().warning(f'{iv.reason}: holding position')
        self.tick_time.add(time.perf_counter() - t0)

    def _publish_diagnostics(self) -> None:
        with self._lock:
            counters = dict(self.core.counters)
        lat = self.latency.summary(1e3)
        tick = self.tick_time.summary(1e6)
        values = {
            'mode': self.mode, 'command_rate_hz': self.command_rate.rate_hz(),
            'latency_obs_to_command_ms_p50': lat['p50'],
            'latency_obs_to_command_ms_p99': lat['p99'], 'chunks_used': lat['count'],
            'tick_us_p50': tick['p50'], 'tick_us_p99': tick['p99'],
        }
        values.update({f'count_{k}': v for k, v in sorted(counters.items())})
        if self.mode == MODE_HOLDING:
            level, message = DiagnosticStatus.WARN, 'holding position'
        elif self.mode == 'tracking':
            level, message = DiagnosticStatus.OK, 'tracking policy chunks'
        else:
            level, message = DiagnosticStatus.WARN, self.mode
        self.diag_pub.publish(diagnostic_array(self, f'{self.get_name()}: safety', level,
                                               message, values))


def main(args: Optional[List[str]] = None) -> int:
    """Entry point (console script ``safety_controller``)."""
    return run_node(lambda a: SafetyControllerNode(), args)


if __name__ == '__main__':
    raise SystemExit(main())
