"""Train the reference world-action model and export it to ONNX with its contract.

The model, its deployed graph and contract are in ``wam_runtime.sim.reach_model``. Training
runs for a wall-clock budget with a cosine learning-rate decay; the world-model head learns
against the detached embedding of the next image. The export compares ONNX Runtime with
torch on held-out observations.

torch is imported only by this module and ``reach_model``; the runtime never needs it.

Usage::

    python -m wam_runtime.sim.train --data /tmp/reach.npz --minutes 6 --out m.onnx
    python -m wam_runtime.sim.train --episodes 1200 --minutes 6 --out models/reference_reach.onnx
"""

import argparse
import json
import math
import os
import sys
import time
from typing import Any, Dict, List, Optional, Tuple
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F  # noqa: N812

from wam_runtime.core.contract import write_contract
from wam_runtime.sim import dataset
from wam_runtime.sim.reach_model import (
    build_contract, DEFAULT_CHANNELS, ExportWrapper, IMAGE_SIZE, MODEL_NAME, N_JOINTS,
    PIXEL_SCALE, ReachPolicy)


# --------------------------------------------------------------------------- training

def normalisation(data: Dict[str, np.ndarray], rows: np.ndarray) -> Dict[str, np.ndarray]:
    """State and action statistics of the training rows (std floored for stability)."""
    q = data['joint_positions'][rows].astype(np.float64)
    a = data['actions_delta'][rows].astype(np.float64)
    return {
        'q_mean': q.mean(axis=0).astype(np.float32),
        'q_std': np.maximum(q.std(axis=0), 0.05).astype(np.float32),
        'a_mean': a.mean(axis=0).astype(np.float32),
        'a_std': np.maximum(a.std(axis=0), 1e-3).astype(np.float32),
    }


def split_episodes(data: Dict[str, np.ndarray],
                   val_fraction: float = 0.05) -> Tuple[np.ndarray, np.ndarray]:
    """Row indices of training and validation samples, split by whole episodes."""
    episodes = data['episode']
    n_episodes = int(episodes.max()) + 1
    n_val = int(round(n_episodes * val_fraction))
    if n_episodes > 1:
        n_val = max(1, n_val)
    first_val = n_episodes - n_val
    rows = np.arange(len(episodes))
    return rows[episodes < first_val], rows[episodes >= first_val]


class _Tensors:
    """The dataset as torch tensors, with normalised labels."""

    def __init__(self, data: Dict[str, np.ndarray], norm: Dict[str, np.ndarray]) -> None:
        # uint8 NCHW images; converted to float per batch.
        self.images = torch.from_numpy(np.ascontiguousarray(data['images'].transpose(0, 3, 1, 2)))
        self.image_index = torch.from_numpy(data['image_index'].astype(np.int64))
        self.next_index = torch.from_numpy(data['next_image_index'].astype(np.int64))
        q = (data['joint_positions'] - norm['q_mean']) / norm['q_std']
        a = (data['actions_delta'] - norm['a_mean']) / norm['a_std']
        e = (data['executed_delta'] - norm['a_mean'][0]) / norm['a_std'][0]
        self.q_norm = torch.from_numpy(q.astype(np.float32))
        self.a_norm = torch.from_numpy(a.astype(np.float32))
        self.executed_norm = torch.from_numpy(e.astype(np.float32))

    def image_batch(self, index: torch.Tensor) -> torch.Tensor:
        return self.images[index].float().mul_(PIXEL_SCALE)


def _losses(policy: ReachPolicy, tensors: _Tensors, rows: torch.Tensor,
            wm_rows: int) -> Tuple[torch.Tensor, torch.Tensor]:
    images = tensors.image_batch(tensors.image_index[rows])
    q_norm = tensors.q_norm[rows]
    embedding = policy.encode(images)
    action_loss = F.mse_loss(policy.act(embedding, q_norm), tensors.a_norm[rows])
    wm = rows[:wm_rows]
    with torch.no_grad():
        target = policy.encode(tensors.image_batch(tensors.next_index[wm]))
    predicted = policy.predict_next(embedding[:wm_rows], q_norm[:wm_rows],
                                    tensors.executed_norm[wm])
    wm_loss = F.mse_loss(predicted, target.detach())
    return action_loss, wm_loss


def evaluate_losses(policy: ReachPolicy, tensors: _Tensors, rows: np.ndarray,
                    norm: Dict[str, np.ndarray], batch: int = 512) -> Dict[str, float]:
    """Compute validation metrics: normalised action MSE, joint RMSE (rad), world-model MSE."""
    policy.eval()
    sums = {'action_mse': 0.0, 'wm_mse': 0.0, 'sq_rad': 0.0, 'first_sq_rad': 0.0}
    a_std = torch.from_numpy(norm['a_std'])
    with torch.no_grad():
        for start in range(0, len(rows), batch):
            idx = torch.from_numpy(rows[start:start + batch])
            images = tensors.image_batch(tensors.image_index[idx])
            q_norm = tensors.q_norm[idx]
            emb = policy.encode(images)
            pred = policy.act(emb, q_norm)
            err = (pred - tensors.a_norm[idx])
            target = policy.encode(tensors.image_batch(tensors.next_index[idx]))
            wm = policy.predict_next(emb, q_norm, tensors.executed_norm[idx])
            n = len(idx)
            sums['action_mse'] += float((err ** 2).mean()) * n
            sums['wm_mse'] += float(((wm - target) ** 2).mean()) * n
            rad = err * a_std
            sums['sq_rad'] += float((rad ** 2).mean()) * n
            sums['first_sq_rad'] += float((rad[:, 0] ** 2).mean()) * n
    policy.train()
    n = max(1, len(rows))
    return {
        'action_mse_norm': sums['action_mse'] / n,
        'wm_mse': sums['wm_mse'] / n,
        'action_rmse_rad': math.sqrt(sums['sq_rad'] / n),
        'first_step_rmse_rad': math.sqrt(sums['first_sq_rad'] / n),
    }


def train(data: Dict[str, np.ndarray], seconds: float, batch_size: int = 128,
          lr: float = 1e-3, wm_weight: float = 0.5, seed: int = 0, threads: int = 2,
          channels: int = DEFAULT_CHANNELS, log_every_s: float = 30.0, verbose: bool = True
          ) -> Tuple[ReachPolicy, Dict[str, np.ndarray], Dict[str, Any]]:
    """Train for ``seconds`` of wall time; return the model, its normalisation and stats."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_rows, val_rows = split_episodes(data)
    norm = normalisation(data, train_rows)
    tensors = _Tensors(data, norm)
    policy = ReachPolicy(channels=channels)
    optimiser = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=1e-4)
    wm_rows = max(1, batch_size // 4)
    start = time.perf_counter()
    next_log = log_every_s
    steps = 0
    running = [0.0, 0.0]
    log: List[Dict[str, float]] = []
    order = rng.permutation(train_rows)
    cursor = 0
    while True:
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
        # Cosine decay over the wall-clock budget, with a short warm-up.
        progress = elapsed / seconds
        scale = min(1.0, (steps + 1) / 100) * 0.5 * (1.0 + math.cos(math.pi * progress))
        for group in optimiser.param_groups:
            group['lr'] = lr * max(scale, 0.01)
        if cursor + batch_size > len(order):
            order = rng.permutation(train_rows)
            cursor = 0
        rows = torch.from_numpy(order[cursor:cursor + batch_size])
        cursor += batch_size
        action_loss, wm_loss = _losses(policy, tensors, rows, wm_rows)
        loss = action_loss + wm_weight * wm_loss
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        steps += 1
        values = (float(action_loss.detach()), float(wm_loss.detach()))
        for i, value in enumerate(values):
            running[i] = value if steps == 1 else 0.98 * running[i] + 0.02 * value
        if verbose and elapsed >= next_log:
            next_log += log_every_s
            entry = {'t_s': round(elapsed, 1), 'steps': steps,
                     'train_action': running[0], 'train_wm': running[1]}
            log.append(entry)
            print(json.dumps(entry), flush=True)
    train_s = time.perf_counter() - start
    policy.eval()
    stats: Dict[str, Any] = {
        'train_s': round(train_s, 1), 'steps': steps, 'batch_size': batch_size,
        'epochs': round(steps * batch_size / max(1, len(train_rows)), 2),
        'train_samples': int(len(train_rows)), 'val_samples': int(len(val_rows)),
        'train_action_mse_norm': running[0], 'train_wm_mse': running[1],
        'parameters': int(sum(p.numel() for p in policy.parameters())),
        'channels': channels, 'wm_weight': wm_weight, 'lr': lr, 'log': log}
    if len(val_rows):
        stats['val'] = evaluate_losses(policy, tensors, val_rows, norm)
    return policy, norm, stats


# --------------------------------------------------------------------------- export

def export_onnx(policy: ReachPolicy, norm: Dict[str, np.ndarray], path: str,
                check_images: Optional[np.ndarray] = None,
                check_joints: Optional[np.ndarray] = None,
                name: str = MODEL_NAME) -> Dict[str, Any]:
    """Export to ONNX (opset 17) with the contract; return the ORT-vs-torch comparison.

    ``check_images`` (N, 64, 64, 3) uint8 and ``check_joints`` (N, 6), real observations,
    are run through both torch and ONNX Runtime; ``max_abs_diff`` is the largest difference
    on them (on random inputs when none are given). Differences on random-noise images, far
    outside the training distribution, are reported separately.
    """
    wrapper = ExportWrapper(policy, norm).eval()
    image = torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    joints = torch.zeros(1, N_JOINTS)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp_path = path + '.tmp'
    with torch.no_grad(), warnings.catch_warnings():
        # torch 2.13 warns that the TorchScript exporter is legacy; it needs no onnxscript.
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.onnx.export(
            wrapper, (image, joints), tmp_path, dynamo=False, opset_version=17,
            input_names=['image_scene', 'joint_positions'],
            output_names=['actions', 'embedding', 'predicted_next_embedding'],
            do_constant_folding=True)
    model = onnx.load(tmp_path)
    write_contract(model, build_contract(name))
    model.producer_name = 'wam_runtime.sim.train'
    model.doc_string = ('Reference reaching policy with a world-model head; see '
                        'models/MODEL_CARD.md.')
    onnx.checker.check_model(model)
    onnx.save(model, path)
    os.remove(tmp_path)

    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    rng = np.random.default_rng(0)
    cases = []
    if check_images is not None and check_joints is not None:
        cases += [('data', img, q) for img, q in zip(check_images, check_joints)]
    cases += [('random', rng.integers(0, 256, size=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8),
               rng.uniform(-1.5, 1.5, size=N_JOINTS)) for _ in range(4)]
    outputs = ('actions', 'embedding', 'predicted_next_embedding')
    diffs = {kind: dict.fromkeys(outputs, 0.0) for kind in ('data', 'random')}
    latencies = []
    with torch.no_grad():
        for kind, img, q in cases:
            x = (img.astype(np.float32) * np.float32(PIXEL_SCALE)).transpose(2, 0, 1)[None]
            x = np.ascontiguousarray(x)
            qq = np.asarray(q, dtype=np.float32)[None]
            t0 = time.perf_counter()
            ort_out = session.run(list(outputs), {'image_scene': x, 'joint_positions': qq})
            latencies.append(time.perf_counter() - t0)
            torch_out = wrapper(torch.from_numpy(x), torch.from_numpy(qq))
            for name, a, b in zip(outputs, ort_out, torch_out):
                diffs[kind][name] = max(diffs[kind][name], float(np.abs(a - b.numpy()).max()))
    checked = 'data' if check_images is not None else 'random'
    return {'max_abs_diff': max(diffs[checked].values()), 'checked_on': checked,
            'max_abs_diff_by_input': diffs, 'compared': len(cases),
            'ort_median_ms': float(np.median(latencies) * 1e3),
            'size_bytes': os.path.getsize(path)}


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--data', help='.npz from python -m wam_runtime.sim.dataset')
    source.add_argument('--episodes', type=int, help='generate this many episodes first')
    parser.add_argument('--save-data', help='with --episodes: also write the .npz here')
    parser.add_argument('--minutes', type=float, required=True, help='training wall time')
    parser.add_argument('--out', default='models/reference_reach.onnx')
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--channels', type=int, default=DEFAULT_CHANNELS,
                        help='conv channels (= keypoints; embedding size is twice this)')
    parser.add_argument('--report', help='write the training statistics as JSON here')
    parser.add_argument('--checkpoint', help='also save the torch weights and normalisation')
    args = parser.parse_args(argv)

    if args.data:
        data = dataset.load(args.data)
    else:
        t0 = time.perf_counter()
        data = dataset.generate(args.episodes)
        print(f'generated {len(data["joint_positions"])} samples in '
              f'{time.perf_counter() - t0:.1f} s', flush=True)
        if args.save_data:
            dataset.save(args.save_data, data)
    meta = json.loads(str(data['meta'])) if 'meta' in data else {}
    print(f'{len(data["joint_positions"])} samples, {len(data["images"])} images, '
          f'{meta.get("episodes", "?")} episodes', flush=True)
    policy, norm, stats = train(data, seconds=args.minutes * 60.0, batch_size=args.batch_size,
                                lr=args.lr, seed=args.seed, threads=args.threads,
                                channels=args.channels)
    if args.checkpoint:
        torch.save({'state_dict': policy.state_dict(), 'norm': norm,
                    'channels': args.channels}, args.checkpoint)
    _, val_rows = split_episodes(data)
    # Real observations from held-out episodes, spread over each episode.
    pick = val_rows[::max(1, len(val_rows) // 64)] if len(val_rows) \
        else np.arange(min(64, len(data['episode'])))
    check = export_onnx(policy, norm, args.out,
                        check_images=data['images'][data['image_index'][pick]],
                        check_joints=data['joint_positions'][pick])
    stats['onnx'] = check
    stats['data'] = meta
    summary = {k: v for k, v in stats.items() if k != 'log'}
    print(json.dumps(summary, indent=2))
    if args.report:
        with open(args.report, 'w', encoding='utf-8') as f:
            json.dump(stats, f, indent=2)
    if check['max_abs_diff'] > 1e-5:
        print(f'ONNX Runtime and torch differ by {check["max_abs_diff"]:.2e} > 1e-5',
              file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
