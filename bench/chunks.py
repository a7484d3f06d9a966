"""Chunk execution benchmark: the reference model at steady state through the full stack."""

import os
import tempfile
from typing import Dict

import numpy as np
import yaml

from wam_runtime.demo import reach_demo
from wam_runtime.processes import REPO_ROOT

SEEDS = [30000, 30001, 30002, 30003]


def _run(blend: str) -> Dict:
    out = tempfile.mkdtemp(prefix=f'wam_bench_chunks_{blend}_')
    with open(os.path.join(REPO_ROOT, 'config', 'reference_arm.yaml'), encoding='utf-8') as f:
        cfg = yaml.safe_load(f)
    cfg['/**/safety_controller']['ros__parameters']['blend'] = blend
    config = os.path.join(out, 'config.yaml')
    with open(config, 'w', encoding='utf-8') as f:
        yaml.safe_dump(cfg, f)
    s = reach_demo.run(SEEDS, out, config,
                       os.path.join(REPO_ROOT, 'models', 'reference_reach.onnx'),
                       verbose=False)
    times = np.asarray(s['command_arrivals_s'])
    gaps = np.diff(times)
    gaps = gaps[gaps < 0.1]               # between episodes the gate is closed on purpose
    jitter = np.abs(gaps - 0.01) * 1e3
    sched = s['scheduler']
    return {
        'successes': s['successes'], 'episodes': s['episodes'],
        'coverage_gap_s_total': sched['coverage_gap_s_total'],
        'chunk_delay_ms_mean': sched['chunk_delay_ms_mean'],
        'splice_position_jump_rad_p50': sched['splice_position_jump_rad_p50'],
        'splice_position_jump_rad_p99': sched['splice_position_jump_rad_p99'],
        'splice_velocity_jump_rad_s_p99': sched['splice_velocity_jump_rad_s_p99'],
        'command_jitter_ms_p50': float(np.percentile(jitter, 50)),
        'command_jitter_ms_p99': float(np.percentile(jitter, 99)),
        'gate_interventions': sum(s['safety_interventions'].values()),
        'commands': s['commands_published'],
    }


def bench_chunk_execution(args) -> Dict:
    """Gap between chunks, command jitter and splice jumps: temporal ensemble vs latest."""
    latest = _run('latest')
    ensemble = _run('temporal_ensemble')
    return {
        'what': 'reference model, 4 unseen episodes through sim_node + policy_node + '
                'safety_controller at 100 Hz; splice jumps are between the executing and '
                'the new chunk at the moment it arrives',
        'temporal_ensemble': ensemble, 'baseline_latest': latest,
        'ratio_splice_position_jump_p99': ensemble['splice_position_jump_rad_p99']
        / max(latest['splice_position_jump_rad_p99'], 1e-12),
        'ratio_gate_interventions_per_command':
            (ensemble['gate_interventions'] / max(ensemble['commands'], 1))
            / max(latest['gate_interventions'] / max(latest['commands'], 1), 1e-12),
        'target_gap_s': 0.0,
    }
