"""Demonstration generator for the reference reaching task.

Each episode is an expert rollout at 20 Hz from a seeded reset. The expert plans from the
measured state; the command that is executed is the expert's first target plus temporally
correlated noise (so the data covers recovery from off-path states), while the label stays
the expert's plan. Commands are ramped linearly at 100 Hz between control steps; at run time
(and in ``evaluate``, which drives the nodes' runtimes) the chunk scheduler samples a chunk
(cubic in the reference configuration) and the safety gate limits every command.

Per sample the archive holds the 64x64 observation (rendered at 128x128 and shrunk with
``cv2.INTER_AREA``, as the runtime preprocesses), the joint positions, the 16-step label as
deltas from the current joint positions, the delta actually executed next, and the index of
the observation 0.05 s later (the world-model target).

Usage: ``python -m wam_runtime.sim.dataset --episodes 1000 --out /tmp/reach.npz``
"""

import argparse
import json
import sys
import time
from typing import Callable, Dict, List, Optional

import cv2
import numpy as np

from wam_runtime.sim.expert import DT_S, HORIZON, ReachExpert
from wam_runtime.sim.world import ReachWorld, validate_seed

IMAGE_SIZE = 64
RENDER_SIZE = 128
CONTROL_SUBSTEPS = 5  # 100 Hz command ramp inside each 20 Hz control step
DEFAULT_NOISE_RAD = 0.03
NOISE_CORRELATION = 0.0
HOLD_AFTER_REACH_S = 0.6
EPISODE_TIMEOUT_S = 6.0


def observe(world: ReachWorld, size: int = IMAGE_SIZE) -> np.ndarray:
    """Render the scene camera and shrink it to ``size`` x ``size`` with INTER_AREA."""
    image = world.render()
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def run_episode(world: ReachWorld, expert: ReachExpert, seed: int,
                noise_rad: float = DEFAULT_NOISE_RAD) -> Dict[str, np.ndarray]:
    """Roll out the noisy expert for one seed; return that episode's arrays.

    ``images`` has one more entry than there are samples: the observation after the last
    executed step, which is the world-model target of the last sample.
    """
    seed = validate_seed(seed)
    world.reset(seed)
    target = world.target_position()
    rng = np.random.default_rng((seed, 1))
    # Per-episode noise scale in [0, noise_rad]: some clean episodes, some very noisy ones.
    sigma = noise_rad * rng.uniform(0.0, 1.0)
    innovation = sigma * np.sqrt(1.0 - NOISE_CORRELATION ** 2)
    noise = rng.normal(0.0, sigma, size=6)
    command = world.command()
    images: List[np.ndarray] = []
    joints: List[np.ndarray] = []
    labels: List[np.ndarray] = []
    executed: List[np.ndarray] = []
    reached_at: Optional[float] = None
    n_steps = int(round(EPISODE_TIMEOUT_S / DT_S))
    for _ in range(n_steps):
        q = world.joint_positions()
        plan = expert.plan(q, target)
        images.append(observe(world))
        joints.append(q)
        labels.append(plan - q)
        step_target = np.clip(plan[0] + noise, world.lower_limits, world.upper_limits)
        executed.append(step_target - q)
        for i in range(CONTROL_SUBSTEPS):
            world.set_command(command + (step_target - command) * (i + 1) / CONTROL_SUBSTEPS)
            world.step(DT_S / CONTROL_SUBSTEPS)
        command = step_target
        noise = NOISE_CORRELATION * noise + rng.normal(0.0, innovation, size=6)
        if reached_at is None and world.is_success():
            reached_at = world.time_s
        if reached_at is not None and world.time_s - reached_at >= HOLD_AFTER_REACH_S - 1e-9:
            break
    images.append(observe(world))
    return {
        'images': np.stack(images).astype(np.uint8),
        'joint_positions': np.stack(joints).astype(np.float32),
        'actions_delta': np.stack(labels).astype(np.float32),
        'executed_delta': np.stack(executed).astype(np.float32),
        'target': target.astype(np.float32),
        'reached': np.array(reached_at is not None),
    }


def generate(episodes: int, seed_start: int = 0, noise_rad: float = DEFAULT_NOISE_RAD,
             progress: Optional[Callable[[int, int, float], None]] = None
             ) -> Dict[str, np.ndarray]:
    """Generate ``episodes`` demonstrations from seeds ``seed_start`` upwards."""
    if episodes < 1:
        raise ValueError('episodes must be >= 1')
    validate_seed(seed_start)
    world = ReachWorld(camera_width=RENDER_SIZE, camera_height=RENDER_SIZE, seed=seed_start)
    expert = ReachExpert(world.model, horizon=HORIZON, dt_s=DT_S)
    parts: Dict[str, List[np.ndarray]] = {
        'images': [], 'joint_positions': [], 'actions_delta': [], 'executed_delta': [],
        'image_index': [], 'next_image_index': [], 'episode': []}
    seeds, targets, reached = [], [], []
    n_images = 0
    start = time.perf_counter()
    try:
        for ep in range(episodes):
            seed = seed_start + ep
            result = run_episode(world, expert, seed, noise_rad=noise_rad)
            n = len(result['joint_positions'])
            parts['images'].append(result['images'])
            parts['joint_positions'].append(result['joint_positions'])
            parts['actions_delta'].append(result['actions_delta'])
            parts['executed_delta'].append(result['executed_delta'])
            parts['image_index'].append(np.arange(n, dtype=np.int32) + n_images)
            parts['next_image_index'].append(np.arange(1, n + 1, dtype=np.int32) + n_images)
            parts['episode'].append(np.full(n, ep, dtype=np.int32))
            n_images += n + 1
            seeds.append(seed)
            targets.append(result['target'])
            reached.append(bool(result['reached']))
            if progress is not None:
                progress(ep + 1, episodes, time.perf_counter() - start)
    finally:
        world.close()
    data = {key: np.concatenate(value) for key, value in parts.items()}
    data['episode_seeds'] = np.array(seeds, dtype=np.int64)
    data['episode_targets'] = np.stack(targets)
    data['episode_reached'] = np.array(reached)
    data['meta'] = np.array(json.dumps({
        'episodes': episodes, 'seed_start': seed_start, 'noise_rad': noise_rad,
        'noise_correlation': NOISE_CORRELATION, 'horizon': HORIZON, 'dt_s': DT_S,
        'image_size': IMAGE_SIZE, 'render_size': RENDER_SIZE,
        'generation_s': round(time.perf_counter() - start, 2)}))
    return data


def save(path: str, data: Dict[str, np.ndarray]) -> None:
    """Write a generated dataset to an uncompressed .npz archive."""
    np.savez(path, **data)


def load(path: str) -> Dict[str, np.ndarray]:
    """Read a dataset written by :func:`save` into memory."""
    with np.load(path) as archive:
        return {key: archive[key] for key in archive.files}


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--episodes', type=int, required=True)
    parser.add_argument('--out', required=True, help='output .npz path')
    parser.add_argument('--seed-start', type=int, default=0,
                        help='first training seed (the demo uses seeds >= 10000)')
    parser.add_argument('--noise', type=float, default=DEFAULT_NOISE_RAD,
                        help='maximum std of the executed-command noise (rad)')
    args = parser.parse_args(argv)

    def report(done: int, total: int, elapsed: float) -> None:
        if done == total or done % max(1, total // 20) == 0:
            print(f'{done}/{total} episodes, {elapsed:.1f} s', flush=True)

    start = time.perf_counter()
    data = generate(args.episodes, seed_start=args.seed_start, noise_rad=args.noise,
                    progress=report)
    save(args.out, data)
    elapsed = time.perf_counter() - start
    print(f'wrote {args.out}: {len(data["joint_positions"])} samples, '
          f'{len(data["images"])} images, {args.episodes} episodes '
          f'({int(data["episode_reached"].sum())} reached), {elapsed:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
