"""Publish one serialized huge JointTrajectory on policy/action_chunk over and over.

Run as its own process by the ``estop_latency`` benchmark, so the flood loads the safety
controller and DDS, not the process that measures.
"""

import argparse
import sys
import time

from bench.estop import _huge_chunk
import rclpy
from rclpy.qos import QoSProfile
from trajectory_msgs.msg import JointTrajectory


def main() -> int:
    """Flood until killed (or ``--duration-s``)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--points', type=int, default=100_000)
    ap.add_argument('--period-s', type=float, default=0.01)
    ap.add_argument('--duration-s', type=float, default=600.0)
    args = ap.parse_args()
    rclpy.init()
    node = rclpy.create_node('bench_chunk_flood')
    pub = node.create_publisher(JointTrajectory, 'policy/action_chunk', QoSProfile(depth=1))
    raw = _huge_chunk(args.points)
    end = time.monotonic() + args.duration_s
    sent = 0
    try:
        while time.monotonic() < end:
            pub.publish(raw)
            sent += 1
            time.sleep(args.period_s)
    except KeyboardInterrupt:
        pass
    finally:
        print(f'sent {sent} chunks of {len(raw) / 1e6:.1f} MB', flush=True)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
