"""Run the benchmarks and write bench/results/<name>.json and bench/results/summary.md.

Every figure is reported next to a baseline measured in the same run, as a ratio: these
machines are shared and noisy, so absolute numbers from different runs do not compare.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List

from bench import chunks as chunks_bench
from bench import estop as estop_bench
from bench import playback as playback_bench
from bench import preprocess as preprocess_bench
from bench import replay as replay_bench
from bench import safety as safety_bench
import numpy as np

from wam_runtime.processes import random_domain_id, REPO_ROOT, ros_env

RESULTS = os.path.join(REPO_ROOT, 'bench', 'results')


def _pct(values: List[float]) -> Dict[str, float]:
    v = np.asarray(values, dtype=np.float64) * 1e3
    return {'n': int(v.size), 'p50_ms': float(np.percentile(v, 50)),
            'p99_ms': float(np.percentile(v, 99)), 'mean_ms': float(v.mean())}


def transport_floor(duration_s: float, width: int, height: int) -> Dict:
    """Raw rclpy image transport latency (stamp -> subscriber callback), same DDS profile."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    env = ros_env(random_domain_id())
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(env['ROS_DOMAIN_ID']))
    node = rclpy.create_node('bench_image_sub', context=context)
    lat: List[float] = []

    def on_image(msg):
        t = node.get_clock().now().nanoseconds * 1e-9
        lat.append(t - (msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9))

    node.create_subscription(Image, 'camera/scene/image_raw', on_image,
                             qos_profile_sensor_data)
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(node)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    pub = subprocess.Popen([sys.executable, '-m', 'bench.image_pub', '--width', str(width),
                            '--height', str(height), '--duration-s', str(duration_s + 3)],
                           env=env, cwd=REPO_ROOT)
    pub.wait()
    ex.shutdown()
    node.destroy_node()
    rclpy.try_shutdown(context=context)
    return _pct(lat[15:])   # drop discovery warm-up


def session_run_floor(n: int = 300) -> Dict:
    """Bare ``session.run`` of the slice's generated model."""
    import onnxruntime as ort
    from wam_runtime.testing.model_gen import write_model
    path = write_model(os.path.join(tempfile.mkdtemp(), 'bench.onnx'))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=['CPUExecutionProvider'])
    feeds = {'image_scene': np.random.rand(1, 3, 64, 64).astype(np.float32),
             'joint_positions': np.zeros((1, 6), np.float32)}
    for _ in range(20):
        sess.run(None, feeds)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return _pct(times)


def bench_end_to_end_latency(args) -> Dict:
    """Observation stamp -> gated command, 640x480 rgb8 at 30 Hz, against the floor."""
    from wam_runtime.demo import slice_demo
    floor_t = transport_floor(args.duration_s, 640, 480)
    floor_s = session_run_floor()
    out = tempfile.mkdtemp(prefix='wam_bench_e2e_')
    s = slice_demo.run(args.duration_s, out, os.path.join(REPO_ROOT, 'config', 'slice.yaml'),
                       640, 480)
    floor_p50 = floor_t['p50_ms'] + floor_s['p50_ms']
    floor_p99 = floor_t['p99_ms'] + floor_s['p99_ms']
    e2e_p50, e2e_p99 = s['latency_obs_to_command_ms_p50'], s['latency_obs_to_command_ms_p99']
    return {
        'what': 'observation stamp -> first gated command using it; 640x480 rgb8 at 30 Hz, '
                '10 Hz inference, 100 Hz control',
        'end_to_end': {'p50_ms': e2e_p50, 'p99_ms': e2e_p99,
                       'command_rate_hz': s['command_rate_hz'],
                       'command_gap_ms_max': s['command_gap_ms_max']},
        'floor_image_transport': floor_t,
        'floor_session_run': floor_s,
        'ratio_p50_vs_floor': e2e_p50 / floor_p50 if e2e_p50 else None,
        'ratio_p99_vs_floor': e2e_p99 / floor_p99 if e2e_p99 else None,
        'note': 'the end-to-end figure also contains up to one control period (10 ms) of '
                'waiting for the next tick, which the floor does not',
    }


BENCHES: Dict[str, Callable] = {
    'end_to_end_latency': bench_end_to_end_latency,
    'preprocess': preprocess_bench.bench_preprocess,
    'policy_overhead': preprocess_bench.bench_policy_overhead,
    'gate_tick': safety_bench.bench_gate_tick,
    'command_jitter': safety_bench.bench_command_jitter,
    'chunk_execution': chunks_bench.bench_chunk_execution,
    'replay_speed': replay_bench.bench_replay,
    'estop_latency': estop_bench.bench_estop_latency,
    'playback_slack': playback_bench.bench_playback_slack,
}


def _markdown(results: Dict[str, Dict], meta: Dict) -> str:
    lines = [f'# Benchmarks ({meta["date"]}, {meta["machine"]})', '']
    e = results.get('end_to_end_latency')
    if e:
        lines += ['## End-to-end latency (observation stamp -> gated command)', '',
                  '| | p50 ms | p99 ms |', '|---|---|---|',
                  f'| end to end | {e["end_to_end"]["p50_ms"]:.2f} | '
                  f'{e["end_to_end"]["p99_ms"]:.2f} |',
                  f'| floor: rclpy image transport | {e["floor_image_transport"]["p50_ms"]:.2f} '
                  f'| {e["floor_image_transport"]["p99_ms"]:.2f} |',
                  f'| floor: bare session.run | {e["floor_session_run"]["p50_ms"]:.3f} | '
                  f'{e["floor_session_run"]["p99_ms"]:.3f} |',
                  f'| ratio end to end / floor | {e["ratio_p50_vs_floor"]:.2f}x | '
                  f'{e["ratio_p99_vs_floor"]:.2f}x |', '', e['note'], '']
    for name, r in results.items():
        if name != 'end_to_end_latency':
            lines += [f'## {name}', '', '```json', json.dumps(r, indent=2), '```', '']
    return '\n'.join(lines)


def main() -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--only', nargs='*', choices=sorted(BENCHES), default=None)
    ap.add_argument('--duration-s', type=float, default=15.0)
    args = ap.parse_args()
    os.makedirs(RESULTS, exist_ok=True)
    meta = {'date': datetime.datetime.now().isoformat(timespec='seconds'),
            'machine': f'{platform.machine()}, {os.cpu_count()} cpus',
            'python': platform.python_version()}
    results = {}
    for name in args.only or list(BENCHES):
        print(f'bench {name} ...', flush=True)
        results[name] = BENCHES[name](args)
        with open(os.path.join(RESULTS, f'{name}.json'), 'w', encoding='utf-8') as f:
            json.dump({'meta': meta, **results[name]}, f, indent=2)
    md = _markdown(results, meta)
    with open(os.path.join(RESULTS, 'summary.md'), 'w', encoding='utf-8') as f:
        f.write(md)
    print(md)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
