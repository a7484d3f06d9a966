"""policy_node over real DDS: synchronised cameras after a pause, and exact chunk stamps.

Two cameras that are silent for longer than ``max_observation_age_s`` (a triggered or
low-rate rig) and then deliver a synchronised pair, one frame after the other: every pair
gives one chunk, nothing is counted stale, and the chunk's ``header.stamp`` is the oldest
camera stamp to the nanosecond (stamps whose float-seconds round trip is lossy).
"""

import threading
import time

import pytest

from wam_runtime.processes import NodeProcess, wait_for, write_params
from wam_runtime.testing.model_gen import write_model

pytestmark = [pytest.mark.ros, pytest.mark.slow]

JOINTS = [f'joint_{i}' for i in range(1, 7)]
NS = 1_000_000_000


def _lossy_nanosec(sec):
    """Return a nanosecond field whose float-seconds round trip is lossy at ``sec``."""
    for nanosec in (123_456_789, 987_654_321, 555_555_557, 314_159_265):
        t = sec * NS + nanosec
        if int(round((sec + nanosec * 1e-9) * 1e9)) != t:
            return nanosec
    raise AssertionError('no lossy stamp found')


class PairRig:
    """Publishes left/right frames and joint states with chosen stamps; records chunks."""

    def __init__(self, ros_context):
        import rclpy
        from rclpy.qos import qos_profile_sensor_data, QoSProfile
        from sensor_msgs.msg import Image, JointState
        from trajectory_msgs.msg import JointTrajectory
        self.node = ros_context(rclpy.create_node('pair_rig', context=ros_context.context))
        qos = qos_profile_sensor_data
        self.left = self.node.create_publisher(Image, 'camera/left/image_raw', qos)
        self.right = self.node.create_publisher(Image, 'camera/right/image_raw', qos)
        self.joints = self.node.create_publisher(JointState, 'joint_states', qos)
        self.JointState = JointState
        self.chunks = []
        self._lock = threading.Lock()
        self.node.create_subscription(JointTrajectory, 'policy/action_chunk', self._on_chunk,
                                      QoSProfile(depth=100))

    def _on_chunk(self, msg):
        with self._lock:
            self.chunks.append((msg.header.stamp.sec, msg.header.stamp.nanosec))

    def chunk_stamps(self):
        with self._lock:
            return list(self.chunks)

    def ready(self):
        return all(p.get_subscription_count() > 0
                   for p in (self.left, self.right, self.joints)) and \
            self.node.count_publishers('policy/action_chunk') > 0

    def now_ns(self):
        return self.node.get_clock().now().nanoseconds

    def _time(self, ns):
        from builtin_interfaces.msg import Time
        return Time(sec=ns // NS, nanosec=ns % NS)

    def frame(self, pub, stamp_ns, grey=128):
        import numpy as np
        from wam_runtime.ros.conversions import image_msg
        pub.publish(image_msg(np.full((48, 64, 3), grey, np.uint8), 'rgb8',
                              self._time(stamp_ns)))

    def state(self, stamp_ns):
        js = self.JointState(name=JOINTS, position=[0.0] * 6)
        js.header.stamp = self._time(stamp_ns)
        self.joints.publish(js)


def _diag_int(mon, key):
    return int((mon.diag(': policy') or {}).get(key, 0))


def test_pairs_after_a_pause_each_give_one_chunk_stamped_exactly(proc_env, ros_context,
                                                                 tmp_path):
    from wam_runtime.ros.monitor import Monitor
    model = write_model(str(tmp_path / 'pair.onnx'), cameras=('left', 'right'), height=32,
                        width=32)
    params = {'model_path': model, 'inference_rate_hz': 2.0, 'max_observation_age_s': 0.5,
              'max_observation_skew_s': 0.1, 'diagnostics_period_s': 0.2,
              'intra_op_num_threads': 1}
    pf = write_params(str(tmp_path / 'policy.yaml'), 'policy_node', params)
    policy = NodeProcess('wam_runtime.ros.policy_node', proc_env, 'policy_node', pf,
                         log_dir=str(tmp_path))
    try:
        mon = ros_context(Monitor('test_monitor', context=ros_context.context))
        rig = PairRig(ros_context)
        assert wait_for(rig.ready, 30.0), policy.output()[-3000:]

        def pair(gap_s, right_late_s=0.01):
            """Wait for a lossy stamp T; send state, left at T, right 10 ms (+) later."""
            while True:
                now = rig.now_ns()
                sec = now // NS
                nanosec = _lossy_nanosec(sec)
                t = sec * NS + nanosec
                if 0 <= now - t < 50_000_000:
                    break
                time.sleep(0.005)
            rig.state(t + 5_000_003)
            rig.frame(rig.left, t)
            time.sleep(right_late_s)
            rig.frame(rig.right, t + 10_000_007)
            time.sleep(gap_s)
            return t

        # Prime: the first pair of all (waiting for the right camera is not a rejection).
        # Best-effort samples sent while the node has not matched this publisher yet are
        # lost (publisher-side matching comes first): prime until a chunk comes back.
        for _ in range(20):
            pair(0.3)
            if wait_for(lambda: len(rig.chunk_stamps()) >= 1, 0.5):
                break
        assert wait_for(lambda: len(rig.chunk_stamps()) >= 1, 10.0), \
            str(mon.diag(': policy')) + policy.output()[-3000:]
        assert wait_for(lambda: mon.diag(': policy') is not None, 5.0)
        stale_before = _diag_int(mon, 'rejected_observation_stale')
        n0 = len(rig.chunk_stamps())
        # Four pairs, each after more than max_observation_age_s of silence.
        sent = [pair(0.8) for _ in range(4)]
        assert wait_for(lambda: len(rig.chunk_stamps()) >= n0 + 4, 5.0), \
            (rig.chunk_stamps(), mon.diag(': policy'))
        got = rig.chunk_stamps()[n0:]
        assert got == [(t // NS, t % NS) for t in sent], (got, sent)
        # The chunk stamp is the oldest camera stamp exactly, a value that float seconds
        # would have moved by up to a few hundred nanoseconds.
        t = sent[0]
        assert int(round((t // NS + (t % NS) * 1e-9) * 1e9)) != t
        time.sleep(0.5)                       # one more diagnostics period
        assert _diag_int(mon, 'rejected_observation_stale') == stale_before, \
            mon.diag(': policy')

        # The right frame later than the wait (0.1 s): the attempt on the left frame alone
        # is counted, and the right frame, once it arrives, still gives the chunk (a
        # rejection never uses up the 0.5 s rate window).
        n1 = len(rig.chunk_stamps())
        late = pair(0.8, right_late_s=0.25)
        assert wait_for(lambda: len(rig.chunk_stamps()) > n1, 5.0), mon.diag(': policy')
        assert rig.chunk_stamps()[n1] == (late // NS, late % NS)
        assert wait_for(lambda: _diag_int(mon, 'rejected_observation_stale')
                        == stale_before + 1, 3.0), mon.diag(': policy')
        assert policy.alive()
    finally:
        code = policy.stop()
    out = policy.output()
    assert 'Traceback' not in out, out[-3000:]
    assert code == 0
