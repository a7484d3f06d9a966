"""Closed-loop evaluation of an exported policy in the reference world, in process, without ROS.

The evaluator runs what ``policy_node`` and ``safety_controller`` run,
``core.policy_runtime.PolicyRuntime`` and ``core.safety_runtime.SafetyRuntime``, configured
from the nodes' parameter file (``--config``, default ``config/reference_arm.yaml``: the
``policy_node`` and ``safety_controller`` sections, validated by the nodes' own builders;
camera size and rate from ``sim_node``), and drives them on the simulator's clock, as the
offline replay (``replay.pipeline``) drives them on a bag's. Sim time is integer
nanoseconds from the episode's reset. Every control period (``control_rate_hz``) the
measured joint positions go to both runtimes; at the camera rate a frame is rendered,
handed to the policy runtime and the runtime is polled (it infers at most at
``inference_rate_hz``, ``--policy-hz`` overrides it); a chunk reaches the safety runtime
``--latency-ms`` after its inference started, as inference and transport would delay it,
keeping its observation stamp; the safety runtime ticks and its gated command (limits,
workspace, following error, surprise governor) drives the arm's position actuators; the
physics steps one control period. Before the first command the arm holds. Both runtimes
are built afresh for every episode, so that an episode depends on its seed alone. An
episode succeeds when the tool tip comes within ``ReachWorld.success_radius_m`` of the goal
before the timeout.

Usage::

    python -m wam_runtime.sim.evaluate --model models/reference_reach.onnx --episodes 100
"""

import argparse
from collections import Counter
import heapq
import json
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from wam_runtime.core.image import RawFrame
from wam_runtime.core.interfaces import EXECUTION_LABELS
from wam_runtime.core.param_files import file_parameters
from wam_runtime.core.params import ConfigError
from wam_runtime.core.policy_config import build_policy_config
from wam_runtime.core.policy_runtime import CHUNK, PolicyChunk, PolicyRuntime, WAIT
from wam_runtime.core.safety_config import build_safety, SafetySetup
from wam_runtime.core.safety_runtime import Reaction, SafetyRuntime
from wam_runtime.core.stamps import s_to_ns
from wam_runtime.processes import share_dir
from wam_runtime.replay.config import CONFIG_ERRORS, EXIT_CONFIG, load_policy, resolve_urdf
from wam_runtime.sim.world import ReachWorld

DEFAULT_SEED_START = 100000
CONTROL_DT_S = 0.01      # the reference arm's control period (its control_rate_hz: 100 Hz)


def default_config() -> str:
    """Return the reference arm's parameter file (source tree or installed share folder)."""
    return os.path.join(share_dir(), 'config', 'reference_arm.yaml')


def _read_parameter_file(path: str) -> Dict[str, Dict[str, Any]]:
    """Return the policy_node, safety_controller and sim_node sections of a parameter file."""
    try:
        return file_parameters(path, ('policy_node', 'safety_controller', 'sim_node'))
    except ConfigError as exc:
        raise ConfigError(f'--config: {exc}') from None


class SimEvaluator:
    """A loaded model and the nodes' validated configuration, ready to run episodes."""

    def __init__(self, model_path: str, config_path: Optional[str] = None,
                 policy_hz: Optional[float] = None, latency_s: float = 0.0,
                 camera_hz: Optional[float] = None) -> None:
        """Read and validate the configuration and load the model (CPU, one thread).

        ``policy_hz`` overrides ``policy_node.inference_rate_hz``; ``camera_hz`` the
        ``sim_node`` camera rate. Raises ConfigError (and the other ``CONFIG_ERRORS``).
        """
        self.config_path = config_path or default_config()
        sections = _read_parameter_file(self.config_path)
        policy_values = sections['policy_node']
        self.safety_values = sections['safety_controller']
        sim = sections['sim_node']
        resolve_urdf(self.safety_values, self.config_path, None)
        policy_values['model_path'] = model_path
        if policy_hz is not None:
            policy_values['inference_rate_hz'] = float(policy_hz)
        self.policy_config = build_policy_config(policy_values)
        self.safety_setup = build_safety(self.safety_values)     # validated once, here
        self.policy = load_policy(model_path, self.policy_config)
        self.model_path = model_path
        self.policy_hz = self.policy_config.inference_rate_hz
        self.camera_hz = float(camera_hz or sim.get('camera_rate_hz') or self.policy_hz)
        self.camera_size = (int(sim.get('camera_width', 128)), int(sim.get('camera_height', 128)))
        if not latency_s >= 0.0:
            raise ConfigError(f'latency: must be >= 0, got {latency_s * 1000.0} ms')
        if not self.camera_hz > 0.0:
            raise ConfigError(f'camera rate: must be > 0, got {self.camera_hz} Hz')
        self.latency_s = float(latency_s)
        self.cameras = [c.name for c in self.policy.contract.cameras]
        self.state_joints = list(self.policy.contract.state.joint_names)

    @property
    def control_period_s(self) -> float:
        """Return the safety controller's control period (s)."""
        return self.safety_setup.config.control_period_s

    def runtimes(self) -> Tuple[PolicyRuntime, SafetyRuntime]:
        """Build one episode's policy and safety runtimes, the safety gate open."""
        setup: SafetySetup = build_safety(self.safety_values)  # stateful parts are per episode
        return PolicyRuntime(self.policy_config, self.policy, 1), SafetyRuntime(setup, True)

    def world(self) -> ReachWorld:
        """Return a world rendering at the configured camera size."""
        return ReachWorld(camera_width=self.camera_size[0], camera_height=self.camera_size[1])


class _Episode:
    """One episode's runtimes, deliveries and tallies on the simulator's clock."""

    def __init__(self, ev: SimEvaluator, world: ReachWorld,
                 on_command: Optional[Callable[[int, np.ndarray], None]]) -> None:
        missing = [c for c in ev.cameras if c not in world.camera_names]
        if missing:
            raise ConfigError(f'the model reads cameras {missing}, the world has '
                              f'{list(world.camera_names)}')
        if set(ev.state_joints) - set(world.joint_names):
            raise ConfigError(f'the model reads joints {ev.state_joints}, the world has '
                              f'{list(world.joint_names)}')
        order = list(ev.safety_setup.config.limits.joint_names)
        if set(order) != set(world.joint_names):
            raise ConfigError(f'safety_controller.joint_names {order} are not the joints '
                              f'of the world {list(world.joint_names)}')
        self.world = world
        self.policy_rt, self.safety_rt = ev.runtimes()
        order = list(self.safety_rt.joint_names)
        self.to_world = [order.index(n) for n in world.joint_names]
        self.latency_ns = s_to_ns(ev.latency_s)
        self.on_command = on_command
        self.heap: List[Tuple[int, int, PolicyChunk]] = []
        self.seq = 0
        self.wait_until: Optional[int] = None
        self.inferences = 0
        self.delivered = 0
        self.commands = 0
        self.events: Counter = Counter()

    def observe(self, now_ns: int) -> None:
        """Hand the measured joint positions, stamped now, to both runtimes."""
        names, q = list(self.world.joint_names), self.world.joint_positions()
        self.policy_rt.on_joint_state(names, q, now_ns, now_ns, 'sim')
        self.safety_rt.on_joint_state(names, q, now_ns, now_ns, 'sim')

    def frame(self, cameras: Sequence[str], now_ns: int) -> None:
        """Render every model camera, stamped now, and poll the policy runtime."""
        for cam in cameras:
            img = self.world.render(cam)
            h, w = img.shape[:2]
            self.policy_rt.on_frame(cam, now_ns, RawFrame(img.tobytes(), h, w, 'rgb8', w * 3,
                                                          False), now_ns)
        self.poll(now_ns)

    def poll(self, now_ns: int) -> None:
        """Poll the policy runtime; a chunk is delivered ``latency`` after now."""
        step = self.policy_rt.poll(now_ns)
        self.wait_until = step.wait_until_ns if step.outcome == WAIT else None
        if step.outcome == CHUNK:
            self.inferences += 1
            self.seq += 1
            heapq.heappush(self.heap, (now_ns + self.latency_ns, self.seq, step.chunk))

    def deliver_due(self, now_ns: int) -> None:
        """Deliver every chunk due at or before ``now_ns``, each at its due time."""
        while self.heap and self.heap[0][0] <= now_ns:
            due, _, chunk = heapq.heappop(self.heap)
            self.policy_rt.on_published(chunk, due)
            if chunk.surprise is not None:
                self.safety_rt.on_surprise(float(np.float32(chunk.surprise)), due)
            self._count(self.safety_rt.on_chunk(
                list(chunk.joint_names), chunk.stamp_ns, [t * 1e-9 for t in chunk.times_ns],
                chunk.actions, due))
            self.delivered += 1

    def control(self, now_ns: int) -> None:
        """Tick the safety runtime and apply its command (none: the arm holds)."""
        tick = self.safety_rt.tick(now_ns)
        self._count(tick)
        if tick.execution is not None:
            self.policy_rt.on_execution(EXECUTION_LABELS, tick.execution, now_ns)
        if tick.command is None:
            return
        command = np.asarray(tick.command, np.float64)[self.to_world]
        if self.on_command is not None:
            self.on_command(now_ns, command)
        self.world.set_command(command)
        self.commands += 1

    def _count(self, reaction: Reaction) -> None:
        for event in reaction.events:
            self.events[event.name] += 1

    def close(self) -> Dict[str, Any]:
        """Stop the policy runtime; return its and the controller's counters."""
        self.policy_rt.close()
        return {'policy_counters': self.policy_rt.snapshot_counters(),
                'safety_counters': dict(self.safety_rt.controller.counters)}


def run_episode(world: ReachWorld, evaluator: SimEvaluator, seed: int,
                timeout_s: float = 8.0, stop_on_success: bool = True,
                on_command: Optional[Callable[[int, np.ndarray], None]] = None
                ) -> Dict[str, Any]:
    """Run one closed-loop episode; return success, time to success and distances.

    ``on_command(now_ns, command)`` sees every command the safety runtime lets through
    (world joint order) before the world applies it.
    """
    world.reset(seed)
    ep = _Episode(evaluator, world, on_command)
    period_ns = s_to_ns(evaluator.control_period_s)
    frame_ns = s_to_ns(1.0 / evaluator.camera_hz)
    n_ticks = int(round(timeout_s / evaluator.control_period_s))
    start_ns = s_to_ns(world.time_s)
    next_frame = start_ns
    success_time: Optional[float] = None
    min_distance = world.distance_to_target()
    try:
        for k in range(n_ticks):
            now = start_ns + k * period_ns
            ep.observe(now)
            if now >= next_frame:
                next_frame = max(next_frame + frame_ns, now)
                ep.frame(evaluator.cameras, now)
            elif ep.wait_until is not None:
                ep.poll(now)                  # a lagging part came, or the wait ended
            ep.deliver_due(now)
            ep.control(now)
            world.step(evaluator.control_period_s)
            distance = world.distance_to_target()
            min_distance = min(min_distance, distance)
            if success_time is None and distance < world.success_radius_m:
                success_time = world.time_s
                if stop_on_success:
                    break
    finally:
        counters = ep.close()
    return {'seed': seed, 'success': success_time is not None, 'time_to_success_s': success_time,
            'min_distance_m': min_distance, 'final_distance_m': world.distance_to_target(),
            'inferences': ep.inferences, 'chunks_delivered': ep.delivered,
            'commands': ep.commands, 'events': dict(sorted(ep.events.items())), **counters}


def evaluate(model_path: str, seeds: Sequence[int], timeout_s: float = 8.0,
             policy_hz: Optional[float] = None, latency_s: float = 0.0,
             stop_on_success: bool = True, verbose: bool = False,
             config_path: Optional[str] = None,
             camera_hz: Optional[float] = None) -> Dict[str, Any]:
    """Evaluate ``model_path`` on ``seeds``; return the summary and per-episode results."""
    evaluator = SimEvaluator(model_path, config_path, policy_hz, latency_s, camera_hz)
    episodes: List[Dict[str, Any]] = []
    start = time.perf_counter()
    with evaluator.world() as world:
        for seed in seeds:
            result = run_episode(world, evaluator, seed, timeout_s=timeout_s,
                                 stop_on_success=stop_on_success)
            episodes.append(result)
            if verbose:
                print(json.dumps(result), flush=True)
    times = [e['time_to_success_s'] for e in episodes if e['success']]
    events: Counter = Counter()
    for e in episodes:
        events.update(e['events'])
    return {
        'model': model_path, 'config': evaluator.config_path, 'episodes': len(episodes),
        'policy_hz': evaluator.policy_hz, 'camera_hz': evaluator.camera_hz,
        'control_hz': 1.0 / evaluator.control_period_s,
        'latency_s': latency_s, 'timeout_s': timeout_s,
        'seeds': [int(seeds[0]), int(seeds[-1])] if len(seeds) else [],
        'success_rate': len(times) / max(1, len(episodes)),
        'mean_time_to_success_s': float(np.mean(times)) if times else None,
        'median_time_to_success_s': float(np.median(times)) if times else None,
        'mean_min_distance_m': float(np.mean([e['min_distance_m'] for e in episodes]))
        if episodes else None,
        'failed_seeds': [e['seed'] for e in episodes if not e['success']],
        'inferences': sum(e['inferences'] for e in episodes),
        'safety_events': dict(sorted(events.items())),
        'wall_s': round(time.perf_counter() - start, 1),
        'per_episode': episodes,
    }


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', required=True)
    parser.add_argument('--config', default=None,
                        help='ROS parameter file of the nodes (default: the reference arm, '
                             'config/reference_arm.yaml)')
    parser.add_argument('--episodes', type=int, default=100)
    parser.add_argument('--seed-start', type=int, default=DEFAULT_SEED_START)
    parser.add_argument('--timeout', type=float, default=8.0, help='episode timeout (s)')
    parser.add_argument('--policy-hz', type=float, default=None,
                        help="inference rate (default: the config's "
                             'policy_node.inference_rate_hz, 10 Hz for the reference arm)')
    parser.add_argument('--latency-ms', type=float, default=0.0,
                        help='delay between the start of an inference and its chunk '
                             'reaching the safety controller')
    parser.add_argument('--full', action='store_true',
                        help='run every episode to the timeout (reports final distances)')
    parser.add_argument('--json', help='write the full results here')
    parser.add_argument('--verbose', action='store_true')
    args = parser.parse_args(argv)
    seeds = list(range(args.seed_start, args.seed_start + args.episodes))
    try:
        result = evaluate(args.model, seeds, timeout_s=args.timeout, policy_hz=args.policy_hz,
                          latency_s=args.latency_ms / 1000.0, stop_on_success=not args.full,
                          verbose=args.verbose, config_path=args.config)
    except CONFIG_ERRORS as exc:
        print(f'evaluate: {exc}', file=sys.stderr)
        return EXIT_CONFIG
    summary = {k: v for k, v in result.items() if k != 'per_episode'}
    if args.full and result['per_episode']:
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
