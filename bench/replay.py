"""Offline replay speed: recorded simulator episodes through the pipeline, vs real time."""

import json
import os
import tempfile
import time
from typing import Dict, List

from wam_runtime.bag import open_bag
from wam_runtime.demo import simdata
from wam_runtime.processes import REPO_ROOT
from wam_runtime.replay import cli

SEEDS = [30100, 30101, 30102]
CONFIG = os.path.join(REPO_ROOT, 'config', 'reference_arm.yaml')
MODEL = os.path.join(REPO_ROOT, 'models', 'reference_reach.onnx')


def _read_floor(bags: List[str]) -> float:
    """Seconds to read every message of the bags (rosbags iteration, no processing)."""
    t0 = time.perf_counter()
    for path in bags:
        with open_bag(path) as bag:
            for _ in bag.messages():
                pass
    return time.perf_counter() - t0


def _replay_all(bags: List[str], out: str, gate: str) -> Dict:
    bag_s = loop_s = total_s = 0.0
    inferences = commands = 0
    for i, path in enumerate(bags):
        dst = os.path.join(out, f'{gate}_{i}')
        t0 = time.perf_counter()
        code = cli.main([path, '--config', CONFIG, '--model', MODEL, '--out', dst, '--quiet',
                         '--gate', gate])
        total_s += time.perf_counter() - t0
        if code != 0:
            raise RuntimeError(f'replay of {path} failed with exit code {code}')
        with open(os.path.join(dst, 'timing.json'), encoding='utf-8') as f:
            timing = json.load(f)
        with open(os.path.join(dst, 'summary.json'), encoding='utf-8') as f:
            summary = json.load(f)
        bag_s += timing['bag_s']
        loop_s += timing['replay_wall_s']
        inferences += summary['policy']['inferences']
        commands += summary['safety']['commands']
    return {'bag_s': round(bag_s, 3), 'replay_wall_s': round(loop_s, 3),
            'wall_with_model_load_and_figures_s': round(total_s, 3),
            'speed_x_real_time': round(bag_s / loop_s, 2),
            'speed_x_real_time_incl_startup': round(bag_s / total_s, 2),
            'inferences': inferences, 'gated_commands': commands}


def bench_replay(args) -> Dict:
    """Replay speed as a multiple of real time, against the bare bag-read floor."""
    out = tempfile.mkdtemp(prefix='wam_bench_replay_')
    rec = simdata.record_episodes(os.path.join(out, 'bags'), SEEDS, ('mcap',))
    bags = [p for p in rec['mcap'] if os.path.getsize(os.path.join(p, 'metadata.yaml'))]
    floor = _read_floor(bags)
    recorded_gate = _replay_all(bags, out, 'recorded')
    open_gate = _replay_all(bags, out, 'open')
    return {
        'what': f'offline replay of {len(bags)} recorded simulator episodes '
                f'({recorded_gate["bag_s"]:.1f} s of bag: 128x128 camera at 30 Hz, joint '
                'states at 200 Hz) through observation assembly, the reference model '
                '(ONNX Runtime CPU, 1 thread), the chunk scheduler and the gate at 100 Hz; '
                'output bag, summary and figures written',
        'gate_recorded': recorded_gate,
        'gate_open_every_tick': open_gate,
        'baseline_bag_read_s': round(floor, 3),
        'ratio_replay_vs_bag_read': round(open_gate['replay_wall_s'] / max(floor, 1e-9), 2),
        'target_speed_x_real_time': 10.0,
        'meets_target': min(recorded_gate['speed_x_real_time'],
                            open_gate['speed_x_real_time']) >= 10.0,
        'recorded_episodes': len(bags), 'demo_successes': rec['demo']['successes'],
    }
