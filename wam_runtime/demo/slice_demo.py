"""The foundation slice: synthetic camera -> policy_node -> safety_controller -> command sink.

Each node is its own OS process on a random loopback-only DDS domain; this process is the
command sink. Prints command rate, observation-to-command latency and safety events, and
writes ``summary.json`` to the output folder.
"""

import argparse
import json
import os
import tempfile
import threading
import time
from typing import Dict, Optional, Sequence

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
import yaml

from wam_runtime.core.param_files import node_parameters
from wam_runtime.processes import NodeProcess, random_domain_id, ros_env, share_dir, wait_for
from wam_runtime.ros.monitor import Monitor
from wam_runtime.testing.model_gen import write_model


def _num(values: Optional[Dict[str, str]], key: str) -> Optional[float]:
    if not values or values.get(key) in (None, 'n/a'):
        return None
    return float(values[key])


def limit_violations(commands: np.ndarray, limits: Dict, tol: float = 1e-9) -> int:
    """Commands outside [lower, upper] of the safety_controller config."""
    if commands.size == 0:
        return 0
    lo = np.asarray(limits['lower_limits_rad'])
    hi = np.asarray(limits['upper_limits_rad'])
    return int(np.sum((commands < lo - tol) | (commands > hi + tol)))


def run(duration_s: float, out_dir: str, config: str, width: int, height: int) -> Dict:
    """Run the slice for ``duration_s`` and return the summary."""
    os.makedirs(out_dir, exist_ok=True)
    model = write_model(os.path.join(out_dir, 'generated_policy.onnx'))
    with open(config, encoding='utf-8') as f:
        safety_cfg = node_parameters(yaml.safe_load(f), 'safety_controller')
    domain = random_domain_id()
    env = ros_env(domain)
    cam_args = ['-p', f'width:={width}', '-p', f'height:={height}']
    procs = [
        NodeProcess('wam_runtime.ros.synthetic_camera', env, 'synthetic_camera', config,
                    cam_args, log_dir=out_dir),
        NodeProcess('wam_runtime.ros.policy_node', env, 'policy_node', config,
                    ['-p', f'model_path:={model}'], log_dir=out_dir),
        NodeProcess('wam_runtime.ros.safety_controller', env, 'safety_controller', config,
                    log_dir=out_dir),
    ]
    os.environ.update({k: env[k] for k in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE',
                                           'RMW_IMPLEMENTATION',
                                           'FASTDDS_DEFAULT_PROFILES_FILE')})
    rclpy.init()
    monitor = Monitor('slice_demo_sink')
    executor = SingleThreadedExecutor()
    executor.add_node(monitor)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        def running() -> bool:
            """Commands flow and the safety controller reports chunks it used."""
            safety = monitor.diag(': safety') or {}
            return len(monitor.commands) > 10 and float(safety.get('chunks_used', 0)) > 0

        # The window starts once the whole slice runs (on a loaded machine discovery and
        # the first chunk take a while; the figures are about the running slice).
        if not wait_for(running, 30.0):
            raise RuntimeError('no commands from policy chunks within 30 s; logs in '
                               + out_dir)
        t0 = time.monotonic()
        time.sleep(duration_s)
        times, cmds = monitor.command_array(since=t0)
        safety = monitor.diag(': safety')
        policy = monitor.diag(': policy')
        alive = {p.name: p.alive() for p in procs}
    finally:
        executor.shutdown()
        monitor.destroy_node()
        rclpy.try_shutdown()
        codes = {p.name: p.stop() for p in procs}
    gaps = np.diff(times) if times.size > 1 else np.zeros(1)
    events = {k[len('count_'):]: int(v) for k, v in (safety or {}).items()
              if k.startswith('count_')}
    summary = {
        'duration_s': duration_s,
        'ros_domain_id': domain,
        'image': f'{width}x{height} rgb8',
        'commands_received': int(times.size),
        'command_rate_hz': float((times.size - 1) / (times[-1] - times[0]))
        if times.size > 1 else 0.0,
        'command_gap_ms_max': float(gaps.max() * 1e3),
        'latency_obs_to_command_ms_p50': _num(safety, 'latency_obs_to_command_ms_p50'),
        'latency_obs_to_command_ms_p99': _num(safety, 'latency_obs_to_command_ms_p99'),
        'inference_ms_p50': _num(policy, 'inference_ms_p50'),
        'policy_overhead_ms_p50': _num(policy, 'overhead_ms_p50'),
        'observation_age_at_chunk_publish_ms_p50': _num(policy,
                                                        'observation_age_at_publish_ms_p50'),
        'chunk_rate_hz': _num(policy, 'chunk_rate_hz'),
        'safety_events': events,
        'commands_outside_limits': limit_violations(cmds, safety_cfg),
        'processes_alive_at_end': alive,
        'exit_codes': codes,
        'logs': out_dir,
    }
    with open(os.path.join(out_dir, 'summary.json'), 'w', encoding='utf-8') as f:
        json.dump(summary, f, indent=2)
    return summary


def print_summary(s: Dict) -> None:
    """Human-readable figures."""
    def fmt(v):
        return 'n/a' if v is None else f'{v:.2f}'
    print(f'slice demo: {s["duration_s"]:.0f} s, {s["image"]} camera, ROS_DOMAIN_ID '
          f'{s["ros_domain_id"]} (loopback only)')
    print(f'  commands:  {s["commands_received"]} at {s["command_rate_hz"]:.1f} Hz, '
          f'largest gap {s["command_gap_ms_max"]:.1f} ms')
    print(f'  latency observation stamp -> gated command: p50 '
          f'{fmt(s["latency_obs_to_command_ms_p50"])} ms, p99 '
          f'{fmt(s["latency_obs_to_command_ms_p99"])} ms')
    print(f'  policy:    {fmt(s["chunk_rate_hz"])} chunks/s, inference p50 '
          f'{fmt(s["inference_ms_p50"])} ms, node overhead p50 '
          f'{fmt(s["policy_overhead_ms_p50"])} ms')
    ev = ', '.join(f'{k}={v}' for k, v in s['safety_events'].items()) or 'none'
    print(f'  safety events: {ev}; commands outside limits: {s["commands_outside_limits"]}')
    print(f'  summary: {os.path.join(s["logs"], "summary.json")}')


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--duration-s', type=float, default=20.0)
    ap.add_argument('--out', default=None, help='output folder (default: a new temp dir)')
    ap.add_argument('--config', default=os.path.join(share_dir(), 'config', 'slice.yaml'))
    ap.add_argument('--width', type=int, default=640)
    ap.add_argument('--height', type=int, default=480)
    args = ap.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix='wam_slice_')
    summary = run(args.duration_s, out, args.config, args.width, args.height)
    print_summary(summary)
    ok = summary['commands_outside_limits'] == 0 and summary['command_rate_hz'] > 0
    return 0 if ok else 1


if __name__ == '__main__':
    raise SystemExit(main())
