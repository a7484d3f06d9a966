"""Chunk execution over real DDS with a deliberately slow model that uses prefix inputs.

Inference takes longer than a control period by two orders of magnitude and runs only
when the executing chunk is about to run out (execution feedback). The command stream must
never stall while chunks keep coming, every step must stay within the limits, and every
new chunk must continue the executing one (the prefix the node feeds).
"""

import os
import threading
import time

import numpy as np
import onnx
import pytest
import yaml

from wam_runtime.core.param_files import node_parameters
from wam_runtime.processes import NodeProcess, REPO_ROOT, wait_for
from wam_runtime.testing.model_gen import build_model

pytestmark = [pytest.mark.ros, pytest.mark.slow]

CONFIG = os.path.join(REPO_ROOT, 'config', 'slice.yaml')
with open(CONFIG, encoding='utf-8') as _f:
    SAFETY = node_parameters(yaml.safe_load(_f), 'safety_controller')
VMAX = np.array(SAFETY['max_velocity_rad_s'])


def test_slow_prefix_model_never_stalls_and_continues_chunks(proc_env, tmp_path, ros_context):
    import rclpy
    from trajectory_msgs.msg import JointTrajectory
    from wam_runtime.ros.monitor import Monitor
    model = str(tmp_path / 'slow_prefix.onnx')
    onnx.save(build_model(prefix=True, ramp_per_step=0.01, delay_matmuls=50,
                          delay_size=512), model)
    log = str(tmp_path)
    procs = [
        NodeProcess('wam_runtime.ros.synthetic_camera', proc_env, 'synthetic_camera', CONFIG,
                    ['-p', 'width:=160', '-p', 'height:=120', '-p',
                     'brightness_period_s:=3.0'], log_dir=log),
        NodeProcess('wam_runtime.ros.policy_node', proc_env, 'policy_node', CONFIG,
                    ['-p', f'model_path:={model}', '-p', 'inference_rate_hz:=2.0', '-p',
                     'inference_trigger:=remaining', '-p', 'diagnostics_period_s:=0.5'],
                    log_dir=log),
        NodeProcess('wam_runtime.ros.safety_controller', proc_env, 'safety_controller',
                    CONFIG, ['-p', 'diagnostics_period_s:=0.5', '-p', 'blend:=latest',
                             '-p', 'command_timeout_s:=1.0'], log_dir=log),
    ]
    try:
        mon = ros_context(Monitor('chunk_test_monitor', context=ros_context.context))
        node = ros_context(rclpy.create_node('chunk_recorder', context=ros_context.context))
        chunks, lock = [], threading.Lock()

        def on_chunk(msg):
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            with lock:
                chunks.append((stamp, np.array([p.positions for p in msg.points])))

        node.create_subscription(JointTrajectory, 'policy/action_chunk', on_chunk, 50)

        def tracking():
            d = mon.diag(': safety')
            return d is not None and d.get('mode') == 'tracking' and \
                int(d.get('chunks_used', 0)) >= 3

        assert wait_for(tracking, 60.0), procs[1].output()[-3000:]
        before = {k: int(v) for k, v in mon.diag(': safety').items() if k.startswith('count_')}
        t0 = time.monotonic()
        time.sleep(6.0)
        times, cmds = mon.command_array(since=t0)
        safety = mon.diag(': safety')
        policy = mon.diag(': policy')
        after = {k: int(v) for k, v in safety.items() if k.startswith('count_')}
        # The model is really slow: ~100x the 10 ms control period.
        assert float(policy['inference_ms_p50']) > 60.0, policy
        # Chunks kept coming and the stream never stalled: no stop of any kind.
        for reason in ('count_command_timeout', 'count_chunk_exhausted'):
            assert after.get(reason, 0) == before.get(reason, 0), (reason, safety)
        assert safety['mode'] == 'tracking'
        assert float(safety['playback_speed_min']) > 0.0
        # Commands flowed at the control rate and moved within the limits.
        assert cmds.shape[0] > 400
        assert np.all(np.abs(np.diff(cmds, axis=0)) <= VMAX * 0.01 + 1e-9)
        assert np.ptp(cmds[:, 0]) > 0.01
        # Each new chunk continues the executing one for its first (delay) steps: the one
        # published just before, or (when the controller had not yet taken that one up as
        # the inference started, seen under a busy loop) an earlier one.
        with lock:
            got = list(chunks)
        assert len(got) >= 6
        checked = previous = 0

        def continues(old, s_new, p_new):
            s_old, p_old = old
            t_old = s_old + 0.05 * np.arange(1, len(p_old) + 1)
            expect = [np.interp(s_new + 0.05, t_old, p_old[:, j]) for j in range(p_old.shape[1])]
            return np.allclose(p_new[0], expect, rtol=0.0, atol=1e-5)

        for k in range(1, len(got)):
            s_new, p_new = got[k]
            which = [i for i in range(k - 1, -1, -1) if continues(got[i], s_new, p_new)]
            assert which, (k, p_new[0], [p[0] for _, p in got[:k]])
            checked += 1
            previous += which[0] == k - 1
        assert checked >= 5 and previous >= checked // 2, (checked, previous)
    finally:
        for p in procs:
            p.stop()
