"""policy_node over real DDS: several cameras, sync, surprise, fallback, model pinning.

The cameras are a JPEG (CompressedImage), a raw bgr8 Image with crop and letterbox, and a
16UC1 depth Image; the observation checks (skew, age) are counted on /diagnostics.
"""

import threading
import time

import numpy as np
import pytest

from wam_runtime.core.inference import file_sha256
from wam_runtime.processes import NodeProcess, wait_for, write_params
from wam_runtime.testing.model_gen import expected_actions, write_model

pytestmark = [pytest.mark.ros, pytest.mark.slow]

JOINTS = [f'joint_{i}' for i in range(1, 7)]
H, W = 120, 160
GPU_FIRST = ['TensorrtExecutionProvider', 'CUDAExecutionProvider', 'CPUExecutionProvider']


@pytest.fixture
def multi_camera_model(tmp_path):
    return write_model(
        str(tmp_path / 'multi.onnx'), cameras=('front', 'wrist', 'depth'), height=32,
        width=32, world_model=True, world_model_range=(0.3, 0.9), brightness_camera='front',
        camera_overrides={'wrist': {'crop': [20, 10, 120, 100], 'resize': 'pad'},
                          'depth': {'encoding': '32FC1', 'mean': [0.0], 'std': [1.0]}})


class CameraRig:
    """Publishes the three cameras (front as JPEG) and joint states from the test process."""

    def __init__(self, ros_context):
        import rclpy
        from rclpy.qos import qos_profile_sensor_data, QoSProfile
        from sensor_msgs.msg import CompressedImage, Image, JointState
        from std_msgs.msg import Float32
        self.node = ros_context(rclpy.create_node('camera_rig', context=ros_context.context))
        qos = qos_profile_sensor_data
        self.front = self.node.create_publisher(CompressedImage,
                                                'camera/front/image_raw/compressed', qos)
        self.wrist = self.node.create_publisher(Image, 'camera/wrist/image_raw', qos)
        self.depth = self.node.create_publisher(Image, 'camera/depth/image_raw', qos)
        self.joints = self.node.create_publisher(JointState, 'joint_states', qos)
        self.surprise = []
        self._lock = threading.Lock()
        self.node.create_subscription(Float32, 'policy/surprise', self._on_surprise,
                                      QoSProfile(depth=100))
        self.JointState = JointState

    def _on_surprise(self, msg):
        with self._lock:
            self.surprise.append((time.monotonic(), msg.data))

    def surprise_since(self, t):
        with self._lock:
            return [v for s, v in self.surprise if s >= t]

    def ready(self):
        return all(p.get_subscription_count() > 0
                   for p in (self.front, self.wrist, self.depth, self.joints))

    def send(self, grey=200, offsets=(0.0, -0.005, -0.01, 0.0)):
        """Publish one frame per camera and a joint state, stamped now + offsets (s)."""
        from wam_runtime.ros.conversions import compressed_image_msg, image_msg, s_to_time
        now = self.node.get_clock().now().nanoseconds * 1e-9
        t_front, t_wrist, t_depth, t_state = (now + o for o in offsets)
        js = self.JointState(name=JOINTS, position=[0.0] * 6)
        js.header.stamp = s_to_time(t_state)
        self.joints.publish(js)
        front = np.full((H, W, 3), grey, np.uint8)
        self.front.publish(compressed_image_msg(front, 'rgb8', s_to_time(t_front)))
        wrist = np.full((H, W, 3), 150, np.uint8)
        self.wrist.publish(image_msg(wrist, 'bgr8', s_to_time(t_wrist)))
        depth = np.full((H, W), 600, np.uint16)          # 0.6 m in millimetres
        depth[:10, :10] = 0                              # a hole
        self.depth.publish(image_msg(depth, '16UC1', s_to_time(t_depth)))
        stamp = s_to_time(t_depth)
        return stamp.sec + stamp.nanosec * 1e-9

    def stream(self, seconds, period_s=0.04, **kwargs):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.send(**kwargs)
            time.sleep(period_s)


def _policy(proc_env, tmp_path, model, **params):
    base = {'model_path': model, 'compressed_cameras': ['front'], 'providers': GPU_FIRST,
            'inference_rate_hz': 20.0, 'max_observation_age_s': 0.5,
            'max_observation_skew_s': 0.1, 'diagnostics_period_s': 0.2,
            'preprocess_threads': 2, 'intra_op_num_threads': 1, 'joint_names': JOINTS}
    base.update(params)
    pf = write_params(str(tmp_path / 'policy.yaml'), 'policy_node', base)
    return NodeProcess('wam_runtime.ros.policy_node', proc_env, 'policy_node', pf,
                       log_dir=str(tmp_path))


def _diag_int(mon, key):
    return int((mon.diag(': policy') or {}).get(key, 0))


@pytest.mark.parametrize('preprocess_on,on_arrival', [
    ('auto', 'wrist,depth'), ('inference', 'none'), ('arrival', 'front,wrist,depth')])
def test_multi_camera_sync_surprise_and_fallback(proc_env, multi_camera_model, ros_context,
                                                 tmp_path, preprocess_on, on_arrival):
    from wam_runtime.ros.monitor import Monitor
    policy = _policy(proc_env, tmp_path, multi_camera_model, preprocess_on=preprocess_on)
    try:
        mon = ros_context(Monitor('test_monitor', context=ros_context.context))
        rig = CameraRig(ros_context)
        assert wait_for(rig.ready, 30.0), policy.output()[-3000:]

        # 1. Nominal: chunks flow, computed from the decoded JPEG, stamped with the oldest part.
        t_nominal = time.monotonic()
        assert wait_for(lambda: rig.stream(0.2) or len(mon.chunk_records) >= 8, 20.0), \
            str(mon.diag(': policy')) + policy.output()[-3000:]
        rig.stream(0.5)
        _, _, first = mon.chunk_records[-1]
        want = expected_actions(200 / 255, np.zeros(6), np.zeros(6), np.full(6, 0.3), 16,
                                0.1)[0]
        np.testing.assert_allclose(first, want, atol=2e-3)
        # One set of parts after a pause: the node waits for all of them (skew) and stamps
        # the chunk with the oldest, the depth frame here.
        time.sleep(0.2)
        n_chunks = len(mon.chunk_records)
        depth_stamp = rig.send(offsets=(0.0, -0.005, -0.02, 0.0))
        assert wait_for(lambda: len(mon.chunk_records) > n_chunks, 5.0)
        assert abs(mon.chunk_records[n_chunks][1] - depth_stamp) < 1e-6
        rig.stream(0.3)
        nominal = rig.surprise_since(t_nominal)
        assert len(nominal) >= 5 and max(nominal) < 1e-4, nominal
        diag = mon.diag(': policy')
        assert diag['provider'] == 'CPUExecutionProvider'
        assert 'TensorrtExecutionProvider' in diag['provider_fallback']
        assert float(diag['overhead_ms_p50']) < 50.0
        assert diag['preprocess_on_arrival'] == on_arrival
        # Frames turned into tensors between inferences (not with preprocess_on=inference).
        assert (diag['arrival_preprocess_ms_p50'] == 'n/a') == (on_arrival == 'none'), diag

        # 2. The front camera goes black: something the model never saw.
        t_blank = time.monotonic()
        rig.stream(1.0, grey=0)
        blank = rig.surprise_since(t_blank)
        assert len(blank) >= 5 and max(blank) > 0.01 and blank[-1] > 0.005, blank
        assert wait_for(lambda: float(mon.diag(': policy').get('surprise_max', 0)) > 0.01,
                        3.0)

        # 3. One camera 300 ms behind the others: skew, no chunk.
        skewed_before = _diag_int(mon, 'rejected_observation_skewed')
        rig.stream(0.6, offsets=(0.0, -0.3, 0.0, 0.0))
        n_chunks = len(mon.chunk_records)
        rig.stream(0.8, offsets=(0.0, -0.3, 0.0, 0.0))
        assert len(mon.chunk_records) <= n_chunks + 1      # at most one already in flight
        assert wait_for(lambda: _diag_int(mon, 'rejected_observation_skewed')
                        > skewed_before + 3, 3.0), mon.diag(': policy')

        # 4. Everything 1 s old: stale, no chunk, a warning on /diagnostics.
        stale = (-1.0, -1.0, -1.0, -1.0)
        stale_before = _diag_int(mon, 'rejected_observation_stale')
        rig.stream(0.6, offsets=stale)
        n_chunks = len(mon.chunk_records)
        rig.stream(0.8, offsets=stale)
        assert len(mon.chunk_records) <= n_chunks + 1
        name = next(n for n in mon.diagnostics if n.endswith(': policy'))
        assert wait_for(lambda: rig.stream(0.1, offsets=stale) or (
            _diag_int(mon, 'rejected_observation_stale') > stale_before + 3
            and mon.diag_levels[name] == 1), 5.0), mon.diag(': policy')

        # 5. Back in sync: chunks resume.
        n_chunks = len(mon.chunk_records)
        assert wait_for(lambda: rig.stream(0.2) or len(mon.chunk_records) > n_chunks + 3,
                        10.0), str(mon.diag(': policy')) + policy.output()[-3000:]
        assert policy.alive()
    finally:
        code = policy.stop()
    out = policy.output()
    fallback = [line for line in out.splitlines() if 'execution provider fallback' in line]
    assert len(fallback) == 1, out[-3000:]
    assert 'CUDAExecutionProvider: not in this onnxruntime build' in fallback[0]
    assert fallback[0].startswith('[WARN]')
    assert 'Traceback' not in out
    assert code == 0


def _startup_failure(proc_env, tmp_path, model, **params):
    policy = _policy(proc_env, tmp_path, model, **params)
    assert wait_for(lambda: not policy.alive(), 30.0), 'node did not exit on bad config'
    code, out = policy.stop(), policy.output()
    lines = [x for x in out.splitlines() if 'startup failed' in x]
    assert code == 2 and len(lines) == 1, out
    assert 'Traceback' not in out
    return lines[0]


def test_model_hash_mismatch_refuses_to_start(proc_env, multi_camera_model, tmp_path):
    good = file_sha256(multi_camera_model)
    bad = ('f' if good[0] != 'f' else 'e') + good[1:]
    line = _startup_failure(proc_env, tmp_path, multi_camera_model, model_sha256=bad)
    assert f'model_sha256: {multi_camera_model!r} has sha256 {good}' in line
    assert bad in line


def test_unknown_preprocess_on_refuses_to_start(proc_env, multi_camera_model, tmp_path):
    line = _startup_failure(proc_env, tmp_path, multi_camera_model, preprocess_on='never')
    assert "preprocess_on: 'never' is not one of ['auto', 'arrival', 'inference']" in line


def test_unknown_compressed_camera_refuses_to_start(proc_env, multi_camera_model, tmp_path):
    line = _startup_failure(proc_env, tmp_path, multi_camera_model,
                            compressed_cameras=['front', 'rear'])
    assert "compressed_cameras: ['rear'] are not cameras of the model" in line
