"""Bare rclpy image publisher for the transport floor (no wam_runtime code in the path)."""

import argparse
import time

import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from wam_runtime.ros.conversions import image_msg


def main() -> None:
    """Publish ``--count`` frames at ``--rate-hz`` on ``camera/scene/image_raw``."""
    ap = argparse.ArgumentParser()
    ap.add_argument('--width', type=int, default=640)
    ap.add_argument('--height', type=int, default=480)
    ap.add_argument('--rate-hz', type=float, default=30.0)
    ap.add_argument('--duration-s', type=float, default=10.0)
    args = ap.parse_args()
    rclpy.init()
    node = rclpy.create_node('bench_image_pub')
    pub = node.create_publisher(Image, 'camera/scene/image_raw', qos_profile_sensor_data)
    frame = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3), np.uint8)
    end = time.monotonic() + args.duration_s
    period = 1.0 / args.rate_hz
    next_t = time.monotonic()
    while time.monotonic() < end:
        pub.publish(image_msg(frame, 'rgb8', node.get_clock().now().to_msg()))
        next_t += period
        time.sleep(max(0.0, next_t - time.monotonic()))
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == '__main__':
    main()
