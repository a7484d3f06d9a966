"""Closed-loop evaluation of an exported policy in the reference world, without ROS.

The ONNX model is run with ONNX Runtime at ``policy_hz`` (default 10 Hz) on the scene camera
and the joint positions, preprocessed exactly as the model contract says. Each action chunk
is executed by linear interpolation at 100 Hz: from the command in force at the observation
to ``actions[0]`` at ``dt_s``, ``actions[1]`` at ``2 * dt_s`` and so on (holding the last
target if the chunk runs out). ``--latency-ms`` starts each chunk later than its
observation, as inference and transport would, keeping the chunk's timing. An episode
succeeds when the tool tip comes within ``ReachWorld.success_radius_m`` of the goal before
the timeout.

Usage::

    python -m wam_runtime.sim.evaluate --model models/reference_reach.onnx --episodes 100
"""

import argparse
import json
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import cv2
import numpy as np
import onnxruntime as ort

from wam_runtime.sim.world import ReachWorld

CONTRACT_KEY = 'wam_runtime.contract'
DEFAULT_SEED_START = 100000
CONTROL_DT_S = 0.01


class OnnxReachPolicy:
    """A single-camera ONNX policy driven by its embedded contract."""

    def __init__(self, path: str, threads: int = 1) -> None:
        """Open the model and read its contract from the ONNX metadata."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, sess_options=options,
                                            providers=['CPUExecutionProvider'])
        meta = self.session.get_modelmeta().custom_metadata_map
        if CONTRACT_KEY not in meta:
            raise ValueError(f'{path} has no {CONTRACT_KEY!r} metadata')
        self.contract = json.loads(meta[CONTRACT_KEY])
        if len(self.contract['cameras']) != 1:
            raise ValueError('the in-process evaluator drives single-camera models only')
        self.camera = self.contract['cameras'][0]
        if self.camera['layout'] != 'NCHW' or self.camera['encoding'] != 'rgb8':
            raise ValueError('expected an rgb8 NCHW camera input')
        self.state = self.contract['state']
        self.action = self.contract['action']
        if self.action['mode'] != 'absolute':
            raise ValueError('the in-process evaluator expects absolute actions')
        self.horizon = int(self.action['horizon'])
        self.dt_s = float(self.action['dt_s'])
        self._scale = np.float32(self.camera['scale'])
        self._mean = np.asarray(self.camera['mean'], np.float32)
        self._std = np.asarray(self.camera['std'], np.float32)
        self._q_mean = np.asarray(self.state['mean'], np.float32)
        self._q_std = np.asarray(self.state['std'], np.float32)
        self._a_mean = np.asarray(self.action['mean'], np.float32)
        self._a_std = np.asarray(self.action['std'], np.float32)

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB frame -> [1, 3, h, w] float32 input tensor."""
        width, height = int(self.camera['width']), int(self.camera['height'])
        if frame.shape[0] != height or frame.shape[1] != width:
            shrink = width < frame.shape[1] or height < frame.shape[0]
            frame = cv2.resize(frame, (width, height),
                               interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        x = frame.astype(np.float32) * self._scale
        x = (x - self._mean) / self._std
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def __call__(self, frame: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Return the chunk of absolute joint targets, shape (horizon, n_joints)."""
        q_in = ((np.asarray(q, np.float32) - self._q_mean) / self._q_std)[None]
        feeds = {self.camera['input']: self.preprocess(frame),
                 self.state['input']: q_in.astype(np.float32)}
        (actions,) = self.session.run([self.action['output']], feeds)
        return actions[0].astype(np.float64) * self._a_std + self._a_mean


def chunk_command(start: np.ndarray, start_s: float, chunk: np.ndarray, chunk_t0_s: float,
                  dt_s: float, t_s: float) -> np.ndarray:
    """Command at ``t_s`` on the line through (start_s, start) and the chunk's timed targets.

    Target ``k`` of the chunk is due at ``chunk_t0_s + (k + 1) * dt_s`` (``chunk_t0_s`` is the
    observation time); targets due at or before ``start_s`` are skipped. After the last
    target the command holds it.
    """
    due = chunk_t0_s + dt_s * np.arange(1, len(chunk) + 1)
    keep = due > start_s + 1e-9
    times = np.concatenate([[start_s], due[keep]])
    points = np.vstack([start[None], chunk[keep]])
    if t_s >= times[-1]:
        return points[-1].copy()
    return np.array([np.interp(t_s, times, points[:, j]) for j in range(points.shape[1])])


def run_episode(world: ReachWorld, policy: OnnxReachPolicy, seed: int,
                timeout_s: float = 8.0, policy_hz: float = 10.0, latency_s: float = 0.0,
                stop_on_success: bool = True) -> Dict[str, Any]:
    """Run one closed-loop episode; return success, time to success and distances.

    ``latency_s`` delays each chunk's start after its observation, as inference and
    transport would; the chunk stays stamped with its observation time.
    """
    world.reset(seed)
    ticks_per_call = max(1, int(round(1.0 / (policy_hz * CONTROL_DT_S))))
    latency_ticks = int(round(latency_s / CONTROL_DT_S))
    n_ticks = int(round(timeout_s / CONTROL_DT_S))
    command = world.command()
    pending = []  # (ready tick, observation tick, chunk)
    active = None  # (start command, start tick, observation tick, chunk)
    success_time: Optional[float] = None
    min_distance = world.distance_to_target()
    for tick in range(n_ticks):
        if tick % ticks_per_call == 0:
            chunk = policy(world.render(), world.joint_positions())
            pending.append((tick + latency_ticks, tick, chunk))
        while pending and tick >= pending[0][0]:
            _, obs_tick, chunk = pending.pop(0)
            active = (command, tick, obs_tick, chunk)
        if active is not None:
            start, start_tick, obs_tick, chunk = active
            command = chunk_command(start, start_tick * CONTROL_DT_S, chunk,
                                    obs_tick * CONTROL_DT_S, policy.dt_s,
                                    (tick + 1) * CONTROL_DT_S)
        world.set_command(command)
        world.step(CONTROL_DT_S)
        distance = world.distance_to_target()
        min_distance = min(min_distance, distance)
        if success_time is None and distance < world.success_radius_m:
            success_time = world.time_s
            if stop_on_success:
                break
    return {'seed': seed, 'success': success_time is not None, 'time_to_success_s': success_time,
            'min_distance_m': min_distance, 'final_distance_m': world.distance_to_target()}


def evaluate(model_path: str, seeds: Sequence[int], timeout_s: float = 8.0,
             policy_hz: float = 10.0, latency_s: float = 0.0, stop_on_success: bool = True,
             verbose: bool = False) -> Dict[str, Any]:
    """Evaluate ``model_path`` on ``seeds``; return the summary and per-episode results."""
    policy = OnnxReachPolicy(model_path)
    episodes: List[Dict[str, Any]] = []
    start = time.perf_counter()
    with ReachWorld(camera_width=128, camera_height=128) as world:
        for seed in seeds:
            result = run_episode(world, policy, seed, timeout_s=timeout_s,
                                 policy_hz=policy_hz, latency_s=latency_s,
                                 stop_on_success=stop_on_success)
            episodes.append(result)
            if verbose:
                print(json.dumps(result), flush=True)
    times = [e['time_to_success_s'] for e in episodes if e['success']]
    return {
        'model': model_path, 'episodes': len(episodes), 'policy_hz': policy_hz,
        'latency_s': latency_s, 'timeout_s': timeout_s,
        'seeds': [int(seeds[0]), int(seeds[-1])] if len(seeds) else [],
        'success_rate': len(times) / max(1, len(episodes)),
        'mean_time_to_success_s': float(np.mean(times)) if times else None,
        'median_time_to_success_s': float(np.median(times)) if times else None,
        'mean_min_distance_m': float(np.mean([e['min_distance_m'] for e in episodes])),
        'failed_seeds': [e['seed'] for e in episodes if not e['success']],
        'wall_s': round(time.perf_counter() - start, 1),
        'per_episode': episodes,
    }


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', required=True)
    parser.add_argument('--episodes', type=int, default=100)
    parser.add_argument('--seed-start', type=int, default=DEFAULT_SEED_START)
    parser.add_argument('--timeout', type=float, default=8.0, help='episode timeout (s)')
    parser.add_argument('--policy-hz', type=float, default=10.0)
    parser.add_argument('--latency-ms', type=float, default=0.0,
                        help='delay between an observation and the start of its chunk')
    parser.add_argument('--full', action='store_true',
                        help='run every episode to the timeout (reports final distances)')
    parser.add_argument('--json', help='write the full results here')
    parser.add_argument('--verbose', action='store_true')
    args = parser.parse_args(argv)
    seeds = list(range(args.seed_start, args.seed_start + args.episodes))
    result = evaluate(args.model, seeds, timeout_s=args.timeout, policy_hz=args.policy_hz,
                      latency_s=args.latency_ms / 1000.0, stop_on_success=not args.full,
                      verbose=args.verbose)
    summary = {k: v for k, v in result.items() if k != 'per_episode'}
    if args.full:
        summary['mean_final_distance_m'] = float(
            np.mean([e['final_distance_m'] for e in result['per_episode']]))
    print(json.dumps(summary, indent=2))
    print(f'success {100.0 * result["success_rate"]:.1f}% over {result["episodes"]} episodes, '
          f'mean time to success {summary["mean_time_to_success_s"]}')
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
