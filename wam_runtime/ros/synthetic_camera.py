"""synthetic_camera: a stand-in camera and ideal position-controlled robot for the slice demo.

Publishes ``camera/<camera_name>/image_raw`` (rgb8, brightness a slow sine so a generated
policy moves the arm) and ``joint_states`` that follow the last received ``commands``
exactly (an ideal position-controlled robot).
"""

import math
from typing import List, Optional

import numpy as np
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data, QoSProfile
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray

from wam_runtime.ros.common import ConfigError, declare_params, now_s, ParamSpec, run_node
from wam_runtime.ros.conversions import image_msg, s_to_time
from wam_runtime.testing import DEFAULT_JOINTS

PARAMS = (
    ParamSpec('camera_name', 'scene', 'Camera name; topic camera/<name>/image_raw.'),
    ParamSpec('width', 640, 'Image width (px).'),
    ParamSpec('height', 480, 'Image height (px).'),
    ParamSpec('frame_rate_hz', 30.0, 'Image rate (Hz).'),
    ParamSpec('brightness_period_s', 4.0, 'Period of the brightness sine (s).'),
    ParamSpec('joint_names', list(DEFAULT_JOINTS), 'Joints published on joint_states.'),
    ParamSpec('initial_positions_rad', [0.0] * len(DEFAULT_JOINTS),
              'Joint positions before the first command (rad).'),
    ParamSpec('joint_state_rate_hz', 100.0, 'joint_states rate (Hz).'),
)


class SyntheticCamera(Node):
    """Publishes synthetic frames and echoes commands as joint states."""

    def __init__(self) -> None:
        super().__init__('synthetic_camera')
        p = declare_params(self, PARAMS)
        self.p = p
        names = list(p['joint_names'])
        if len(p['initial_positions_rad']) != len(names):
            raise ConfigError('initial_positions_rad: one value per joint in joint_names')
        self.q = np.asarray(p['initial_positions_rad'], dtype=np.float64)
        self.names = names
        self.img_pub = self.create_publisher(Image, f'camera/{p["camera_name"]}/image_raw',
                                             qos_profile_sensor_data)
        self.js_pub = self.create_publisher(JointState, 'joint_states', qos_profile_sensor_data)
        self.create_subscription(Float64MultiArray, 'commands', self._on_command,
                                 QoSProfile(depth=10))
        self.create_timer(1.0 / p['frame_rate_hz'], self._publish_frame)
        self.create_timer(1.0 / p['joint_state_rate_hz'], self._publish_joints)
        self.rejected = 0

    def _on_command(self, msg: Float64MultiArray) -> None:
        cmd = np.asarray(msg.data, dtype=np.float64)
        if cmd.shape != self.q.shape or not np.isfinite(cmd).all():
            self.rejected += 1
            self.get_logger().warning('command rejected (wrong length or non-finite)',
                                      throttle_duration_sec=1.0)
            return
        self.q = cmd

    def _publish_frame(self) -> None:
        t = now_s(self)
        phase = 2 * math.pi * t / self.p['brightness_period_s']
        frame = np.full((self.p['height'], self.p['width'], 3),
                        int(round(127.5 + 100.0 * math.sin(phase))), np.uint8)
        self.img_pub.publish(image_msg(frame, 'rgb8', s_to_time(t), 'camera'))

    def _publish_joints(self) -> None:
        msg = JointState(name=self.names, position=self.q.tolist())
        msg.header.stamp = self.get_clock().now().to_msg()
        self.js_pub.publish(msg)


def main(args: Optional[List[str]] = None) -> int:
    """Entry point (console script ``synthetic_camera``)."""
    return run_node(lambda a: SyntheticCamera(), args)


if __name__ == '__main__':
    raise SystemExit(main())
