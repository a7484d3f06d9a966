"""Safety benchmarks: gate tick time (7-DoF, three monitored frames) and command jitter."""

import os
import tempfile
import threading
import time
from typing import Dict, List

import numpy as np

from wam_runtime.core import controller as ctl
from wam_runtime.core.gate import gate_step, GateState
from wam_runtime.core.urdf import resolve_limits
from wam_runtime.core.workspace import WorkspaceConfig, WorkspaceGuard
from wam_runtime.processes import NodeProcess, random_domain_id, REPO_ROOT, ros_env, wait_for

URDF7 = os.path.join(REPO_ROOT, 'config', 'generic_7dof.urdf')
J7 = [f'joint_{i}' for i in range(1, 8)]


def _us(samples: List[float]) -> Dict[str, float]:
    v = np.asarray(samples) * 1e6
    return {'n': int(v.size), 'p50_us': float(np.percentile(v, 50)),
            'p99_us': float(np.percentile(v, 99)), 'max_us': float(v.max())}


def bench_gate_tick(args) -> Dict:
    """SafetyController.tick for a 7-DoF arm with three monitored frames (Pinocchio FK)."""
    with open(URDF7, encoding='utf-8') as f:
        urdf = f.read()
    dyn = {'max_acceleration_rad_s2': [15.0] * 7, 'max_jerk_rad_s3': [7500.0] * 7}
    limits, _ = resolve_limits(urdf, J7, dyn)
    guard = WorkspaceGuard(urdf, J7, WorkspaceConfig.from_params(
        ['tool_tip', 'link_6', 'link_4'], [-1, -1, 0.05, 1, 1, 1.5],
        [0.4, -0.2, 0.0, 0.7, 0.2, 0.3], [0.0, 0.5, 0.5, 0.15], 'tool_tip', 1.5))
    config = ctl.ControllerConfig(limits=limits, control_period_s=0.004,
                                  command_timeout_s=1e9, max_chunk_age_s=1e9,
                                  workspace_ok=guard, point_in_workspace=guard.point_ok)
    q0 = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.8])

    def run(cfg: ctl.ControllerConfig, n: int) -> List[float]:
        c = ctl.SafetyController(cfg)
        c.on_state(q0, 0.0)
        times = []
        for k in range(n):
            t = k * 0.004
            if k % 25 == 0:    # a new 16-step chunk every 100 ms, as the policy sends
                steps = np.arange(1, 17)[:, None] * 0.05
                pts = q0 + 0.3 * np.sin(t + steps) * np.array([1, 0.5, 1, 0.3, 1, 0.3, 1])
                c.on_chunk(J7, t, (steps[:, 0]).tolist(), pts.tolist(), t)
            c.on_state(c.last_command if c.last_command is not None else q0, t)
            t0 = time.perf_counter()
            c.tick(t)
            times.append(time.perf_counter() - t0)
        return times[100:]

    n = 5000
    full = run(config, n)
    no_ws = run(ctl.ControllerConfig(limits=limits, control_period_s=0.004,
                                     command_timeout_s=1e9, max_chunk_age_s=1e9), n)
    state = GateState.at_rest(q0)
    bare = []
    for _ in range(n):
        t0 = time.perf_counter()
        gate_step(q0 + 1e-4, state, limits, 0.004, 0.004)
        bare.append(time.perf_counter() - t0)
    fk = []
    for _ in range(n):
        t0 = time.perf_counter()
        guard.kin.positions(q0)
        fk.append(time.perf_counter() - t0)
    f, w, b = _us(full), _us(no_ws), _us(bare)
    return {
        'what': 'SafetyController.tick, 7-DoF, limits on position/velocity/acceleration/jerk, '
                'workspace box + keep-out box + sphere on 3 frames, end-effector speed limit',
        'tick_with_workspace': f, 'tick_without_workspace': w,
        'baseline_bare_gate_step': b, 'baseline_one_fk_call': _us(fk),
        'ratio_p50_tick_vs_bare_gate': f['p50_us'] / b['p50_us'],
        'target_p99_us': 200.0, 'meets_target': f['p99_us'] <= 200.0,
    }


def _jitter(duration_s: float, with_policy: bool) -> Dict:
    """Command inter-arrival jitter at 250 Hz, measured by a subscriber process."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from diagnostic_msgs.msg import DiagnosticArray
    from std_msgs.msg import Float64MultiArray
    from wam_runtime.testing.model_gen import write_model
    out = tempfile.mkdtemp(prefix='wam_bench_jitter_')
    config = os.path.join(REPO_ROOT, 'config', 'slice.yaml')
    domain = random_domain_id()
    env = ros_env(domain)
    procs = [NodeProcess('wam_runtime.ros.synthetic_camera', env, 'synthetic_camera', config,
                         log_dir=out)]
    if with_policy:
        model = write_model(os.path.join(out, 'm.onnx'))
        procs.append(NodeProcess('wam_runtime.ros.policy_node', env, 'policy_node', config,
                                 ['-p', f'model_path:={model}'], log_dir=out))
    procs.append(NodeProcess('wam_runtime.ros.safety_controller', env, 'safety_controller',
                             config, ['-p', 'control_rate_hz:=250.0'], log_dir=out))
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node('bench_jitter', context=context)
    arrivals: List[float] = []
    diag: Dict[str, str] = {}
    node.create_subscription(Float64MultiArray, 'commands',
                             lambda m: arrivals.append(time.perf_counter()), 100)

    def on_diag(msg):
        for st in msg.status:
            if st.name.endswith(': safety'):
                diag.update({kv.key: kv.value for kv in st.values})

    node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(node)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    try:
        wait_for(lambda: len(arrivals) > 250, 60.0)
        start = len(arrivals)
        time.sleep(duration_s)
        a = np.asarray(arrivals[start:])
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        for p in procs:
            p.stop()
    dev = np.abs(np.diff(a) - 0.004) * 1e3
    return {'n': int(dev.size), 'rate_hz': float((a.size - 1) / (a[-1] - a[0])),
            'jitter_p50_ms': float(np.percentile(dev, 50)),
            'jitter_p99_ms': float(np.percentile(dev, 99)), 'max_gap_ms':
                float(np.diff(a).max() * 1e3),
            'publisher_tick_jitter_ms_p50': float(diag.get('tick_jitter_ms_p50', 'nan')),
            'publisher_tick_jitter_ms_p99': float(diag.get('tick_jitter_ms_p99', 'nan'))}


def bench_command_jitter(args) -> Dict:
    """Command stream jitter at 250 Hz with the policy running, against no policy."""
    base = _jitter(args.duration_s, with_policy=False)
    loaded = _jitter(args.duration_s, with_policy=True)
    return {
        'what': 'deviation of command inter-arrival time from 4 ms (250 Hz) at a subscriber '
                'process; slice pipeline with a 640x480 camera at 30 Hz',
        'with_policy_node': loaded, 'baseline_without_policy_node': base,
        'ratio_p99_vs_baseline': loaded['jitter_p99_ms'] / max(base['jitter_p99_ms'], 1e-9),
        'target_p99_ms': 2.0, 'meets_target': loaded['jitter_p99_ms'] <= 2.0,
    }
