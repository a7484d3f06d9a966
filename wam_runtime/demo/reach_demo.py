"""Closed-loop demo: reference MuJoCo arm + bundled world-action model + safety gate.

``sim_node``, ``policy_node`` and ``safety_controller`` run as separate OS processes on a
random loopback-only DDS domain. This process drives the episodes (gate off, reset with a
seed, gate on, wait for the outcome) and records commands, chunks and joint states. It
prints one line per episode and a summary, and writes ``summary.json`` and ``demo.png`` to
the output folder.
"""

import argparse
import json
import os
import tempfile
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence

from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
import numpy as np
from rcl_interfaces.msg import Parameter as ParameterMsg, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
import rclpy
from rclpy.executors import SingleThreadedExecutor
from std_srvs.srv import SetBool, Trigger
import yaml

from wam_runtime.core.limits import JointLimits
from wam_runtime.core.param_files import node_parameters
from wam_runtime.core.urdf import resolve_limits
from wam_runtime.processes import (
    call_service, NodeProcess, random_domain_id, ros_env, share_dir, wait_for)
from wam_runtime.ros.common import now_s
from wam_runtime.ros.monitor import Monitor

FIRST_DEMO_SEED = 10000   # the training data used seeds below this


class EpisodeDriver:
    """Service clients that run one seeded episode at a time."""

    def __init__(self, node: Monitor) -> None:
        """Create the clients on ``node``."""
        self.node = node
        self.reset = node.create_client(Trigger, 'sim/reset')
        self.enable = node.create_client(SetBool, 'safety/enable')
        self.params = node.create_client(SetParameters, 'sim_node/set_parameters')
        self.lifecycle = node.create_client(ChangeState, 'safety_controller/change_state')
        self.get_state = node.create_client(GetState, 'safety_controller/get_state')
        self.active = False
        self.open_windows: List[List[float]] = []   # ROS-time intervals with the gate open

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait until every service is available."""
        end = time.monotonic() + timeout_s
        for client in (self.lifecycle, self.get_state, self.reset, self.params):
            if not client.wait_for_service(timeout_sec=max(0.1, end - time.monotonic())):
                return False
        self._transition(Transition.TRANSITION_CONFIGURE)
        return self.enable.wait_for_service(timeout_sec=max(0.1, end - time.monotonic()))

    def _transition(self, transition_id: int) -> None:
        """Drive the lifecycle; a lost response is detected through get_state."""
        target = {Transition.TRANSITION_CONFIGURE: 'inactive',
                  Transition.TRANSITION_ACTIVATE: 'active'}[transition_id]
        for _ in range(3):
            if self._state() == target:
                return
            future = self.lifecycle.call_async(ChangeState.Request(
                transition=Transition(id=transition_id)))
            wait_for(future.done, 10.0)
        if self._state() != target:
            raise RuntimeError(f'safety_controller did not reach lifecycle state {target}')

    def _state(self) -> str:
        return call_service(self.get_state, GetState.Request()).current_state.label

    def set_gate(self, enabled: bool) -> None:
        """Open or close the safety gate, noting when it was open.

        The first opening is the lifecycle activation; later ones use ``safety/enable``.
        """
        if not enabled and self.open_windows and self.open_windows[-1][1] == float('inf'):
            self.open_windows[-1][1] = now_s(self.node)
        if enabled and not self.active:
            self._transition(Transition.TRANSITION_ACTIVATE)
            self.active = True
        elif self.active:
            call_service(self.enable, SetBool.Request(data=enabled))
        if enabled:
            self.open_windows.append([now_s(self.node), float('inf')])

    def start_episode(self, seed: int) -> None:
        """Close the gate, reset the world with ``seed``, reopen the gate."""
        self.set_gate(False)
        # The gate closes after a controlled stop: wait until the command stream is quiet.
        wait_for(lambda: not self.node.command_ros_times or
                 now_s(self.node) - self.node.command_ros_times[-1] > 0.15, 5.0)
        value = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=seed)
        for _ in range(3):
            # Setting the seed first makes a retried reset (lost response) start the same
            # episode again instead of the next one.
            res = call_service(self.params, SetParameters.Request(
                parameters=[ParameterMsg(name='episode_seed', value=value)]))
            if not res.results[0].successful:
                raise RuntimeError(f'seed {seed} refused: {res.results[0].reason}')
            future = self.reset.call_async(Trigger.Request())
            if wait_for(future.done, 5.0):
                break
        else:
            raise RuntimeError('sim/reset did not answer')
        time.sleep(0.3)   # let the reset state reach the policy and the controller
        self.set_gate(True)


def run(seeds: Sequence[int], out_dir: str, config: str, model: str,
        verbose: bool = True, urdf: Optional[str] = None,
        domain_id: Optional[int] = None,
        ready: Optional[Callable[[Monitor], bool]] = None) -> Dict:
    """Run one episode per seed and return the summary.

    ``domain_id``: join that domain; ``ready``: before the first episode, also wait until
    ``ready(monitor)`` holds (e.g. a recorder reports every publisher it needs matched).
    """
    urdf = urdf or os.path.join(share_dir(), 'config', 'reference_arm.urdf')
    os.makedirs(out_dir, exist_ok=True)
    with open(config, encoding='utf-8') as f:
        cfg = yaml.safe_load(f)
    safety = node_parameters(cfg, 'safety_controller')
    with open(urdf, encoding='utf-8') as f:
        limits, _ = resolve_limits(f.read(), safety['joint_names'], safety)
    timeout_s = node_parameters(cfg, 'sim_node')['episode_timeout_s']
    domain = random_domain_id() if domain_id is None else domain_id
    env = ros_env(domain)
    procs = [
        NodeProcess('wam_runtime.sim.sim_node', env, 'sim_node', config, log_dir=out_dir),
        NodeProcess('wam_runtime.ros.policy_node', env, 'policy_node', config,
                    ['-p', f'model_path:={model}'], log_dir=out_dir),
        NodeProcess('wam_runtime.ros.safety_controller', env, 'safety_controller', config,
                    ['-p', f'urdf_path:={urdf}', '-p', f'incident_dir:={out_dir}/incidents',
                     '-p', 'autostart:=false'],
                    log_dir=out_dir),
    ]
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    monitor = Monitor('reach_demo', context=context, with_sim=True)
    driver = EpisodeDriver(monitor)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(monitor)
    threading.Thread(target=executor.spin, daemon=True).start()
    episodes: List[dict] = []
    t_start = time.monotonic()
    try:
        if not driver.wait_ready(60.0):
            raise RuntimeError(f'nodes did not come up; logs in {out_dir}')
        if not wait_for(lambda: len(monitor.joint_states) > 10 and monitor.diag(': policy'),
                        60.0):
            raise RuntimeError(f'no joint states or policy diagnostics; logs in {out_dir}')
        if ready is not None and not wait_for(lambda: ready(monitor), 60.0):
            raise RuntimeError(f'not ready: {ready.__doc__ or ready}; logs in {out_dir}')
        for seed in seeds:
            n_before = len(monitor.outcomes)
            driver.start_episode(seed)
            if not wait_for(lambda: any(o['seed'] == seed for o in monitor.outcomes[n_before:]),
                            timeout_s + 5.0):
                raise RuntimeError(f'episode {seed} reported no outcome; logs in {out_dir}')
            ep = next(o for o in monitor.outcomes[n_before:] if o['seed'] == seed)
            episodes.append(ep)
            if verbose:
                print(f'  episode seed {seed}: {"success" if ep["success"] else "FAILED "} '
                      f'in {ep["time_s"]:.2f} s, min distance {ep["min_distance_m"] * 100:.1f} '
                      f'cm', flush=True)
        driver.set_gate(False)
        time.sleep(1.2)   # one more diagnostics period
        safety_diag = monitor.diag(': safety') or {}
        policy_diag = monitor.diag(': policy') or {}
        alive = {p.name: p.alive() for p in procs}
    finally:
        executor.shutdown()
        codes = {p.name: p.stop() for p in procs}
        rclpy.try_shutdown(context=context)
    wall_s = time.monotonic() - t_start
    _, cmds = monitor.command_array()
    lat = monitor.chunk_latencies([tuple(w) for w in driver.open_windows])
    outside = int(np.sum((cmds < limits.lower) | (cmds > limits.upper))) if cmds.size else 0
    succ = [e for e in episodes if e['success']]
    summary = {
        'episodes': len(episodes), 'successes': len(succ),
        'success_rate': len(succ) / max(1, len(episodes)),
        'mean_time_to_success_s': float(np.mean([e['time_s'] for e in succ])) if succ else None,
        'latency_camera_stamp_to_gated_command_ms': {
            'n': int(lat.size),
            'p50': float(np.percentile(lat, 50) * 1e3) if lat.size else None,
            'p99': float(np.percentile(lat, 99) * 1e3) if lat.size else None},
        'safety_interventions': {k[len('count_'):]: int(v) for k, v in safety_diag.items()
                                 if k.startswith('count_')},
        'commands_published': int(cmds.shape[0]),
        'commands_outside_limits': outside,
        'inference_ms_p50': _float(policy_diag.get('inference_ms_p50')),
        'chunks_published': _float(policy_diag.get('chunks_published')),
        'world_model_surprise': {k: _float(policy_diag.get(f'surprise_{k}'))
                                 for k in ('p50', 'p99', 'max')},
        'scheduler': {k: _float(safety_diag.get(k)) for k in (
            'chunk_delay_ms_mean', 'chunk_delay_ms_worst', 'chunk_dropped_steps',
            'splice_position_jump_max_rad', 'splice_position_jump_rad_p50',
            'splice_position_jump_rad_p99', 'splice_velocity_jump_rad_s_p99',
            'playback_speed_min', 'coverage_gap_s_total')},
        'command_arrivals_s': monitor.command_ros_times,
        'per_episode': episodes,
        'seeds': list(seeds),
        'model': model, 'config': config, 'ros_domain_id': domain,
        'wall_time_s': wall_s, 'processes_alive_at_end': alive, 'exit_codes': codes,
    }
    with open(os.path.join(out_dir, 'summary.json'), 'w', encoding='utf-8') as f:
        json.dump(summary, f, indent=2)
    try:
        plot(monitor, lat, limits, os.path.join(out_dir, 'demo.png'))
        summary['figure'] = os.path.join(out_dir, 'demo.png')
    except ImportError as exc:   # matplotlib is optional for the runtime
        summary['figure'] = f'not written ({exc})'
    return summary


def _float(v: Optional[str]) -> Optional[float]:
    return None if v in (None, 'n/a') else float(v)


def plot(monitor: Monitor, latencies: np.ndarray, limits: JointLimits, path: str) -> None:
    """Per-joint policy target vs gated command vs measured position; latency histogram."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    cmd_t = np.asarray(monitor.command_ros_times)
    _, cmds = monitor.command_array()
    js = monitor.joint_states
    chunks = monitor.chunk_records
    starts = cmd_t[:1].tolist() + ([js[0][0]] if js else [])
    t0 = min(starts) if starts else 0.0
    names = limits.joint_names
    fig, axes = plt.subplots(len(names) // 2 + 1, 2, figsize=(13, 3 * (len(names) // 2 + 1)))
    axes = axes.ravel()
    js_t = np.array([t for t, _ in js]) - t0
    js_q = np.vstack([q for _, q in js]) if js else np.zeros((0, len(names)))
    ch_t = np.array([s for _, s, _ in chunks]) - t0
    ch_q = np.vstack([p for _, _, p in chunks]) if chunks else np.zeros((0, len(names)))
    cmd_rel = cmd_t - t0
    if cmds.size:
        # Break the command line where the gate was closed (no commands), instead of
        # drawing a straight line across the reset.
        gaps = np.flatnonzero(np.diff(cmd_rel) > 0.1) + 1
        cmd_rel = np.insert(cmd_rel, gaps, np.nan)
        cmds = np.insert(cmds, gaps, np.nan, axis=0)
    for j, name in enumerate(names):
        ax = axes[j]
        if js_q.size:
            ax.plot(js_t, js_q[:, j], color='0.6', lw=2.5, label='measured')
        if cmds.size:
            ax.plot(cmd_rel, cmds[:, j], color='tab:blue', lw=1, label='gated command')
        if ch_q.size:
            ax.plot(ch_t, ch_q[:, j], '.', color='tab:red', ms=2, label='policy target (step 1)')
        ax.axhline(limits.lower[j], color='k', ls=':', lw=0.8)
        ax.axhline(limits.upper[j], color='k', ls=':', lw=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel('time (s)', fontsize=8)
        ax.set_ylabel('rad', fontsize=8)
    axes[0].legend(fontsize=7, loc='upper right')
    ax = axes[len(names)]
    if latencies.size:
        ax.hist(latencies * 1e3, bins=40, color='tab:purple')
        ax.axvline(np.percentile(latencies, 50) * 1e3, color='k', label='p50')
        ax.axvline(np.percentile(latencies, 99) * 1e3, color='k', ls='--', label='p99')
        ax.legend(fontsize=7)
    ax.set_title('camera stamp -> gated command latency', fontsize=9)
    ax.set_xlabel('ms', fontsize=8)
    for ax in axes[len(names) + 1:]:
        ax.axis('off')
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def print_summary(s: Dict, out_dir: str) -> None:
    """Human-readable summary."""
    lat = s['latency_camera_stamp_to_gated_command_ms']
    mts = s['mean_time_to_success_s']
    print(f'success rate: {s["successes"]}/{s["episodes"]} ({s["success_rate"] * 100:.0f}%), '
          f'mean time to success {"n/a" if mts is None else f"{mts:.2f} s"}')
    if lat['p50'] is not None:
        print(f'latency camera stamp -> gated command: p50 {lat["p50"]:.1f} ms, '
              f'p99 {lat["p99"]:.1f} ms ({lat["n"]} chunks)')
    iv = ', '.join(f'{k}={v}' for k, v in s['safety_interventions'].items()) or 'none'
    print(f'safety interventions: {iv}; commands outside limits: '
          f'{s["commands_outside_limits"]} of {s["commands_published"]}')
    print(f'wrote {os.path.join(out_dir, "summary.json")} and {s.get("figure")}')


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line entry point."""
    share = share_dir()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--episodes', type=int, default=10)
    ap.add_argument('--first-seed', type=int, default=FIRST_DEMO_SEED)
    ap.add_argument('--out', default=None, help='output folder (default: a new temp dir)')
    ap.add_argument('--config', default=os.path.join(share, 'config', 'reference_arm.yaml'))
    ap.add_argument('--model', default=os.path.join(share, 'models', 'reference_reach.onnx'))
    args = ap.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix='wam_demo_')
    seeds = list(range(args.first_seed, args.first_seed + args.episodes))
    print(f'closed-loop demo: {len(seeds)} episodes (seeds {seeds[0]}..{seeds[-1]}), '
          f'output in {out}', flush=True)
    summary = run(seeds, out, args.config, args.model)
    print_summary(summary, out)
    return 0 if summary['commands_outside_limits'] == 0 else 1


if __name__ == '__main__':
    raise SystemExit(main())
