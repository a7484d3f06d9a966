"""``wam-runtime replay``: run a recorded bag through the policy and the safety gate.

Offline (default): camera frames and joint states from a rosbag2 (sqlite3 or MCAP) go, in
recorded order, through observation assembly, inference, the chunk scheduler and the safety
gate on the bag's clock. DIR receives ``replay/`` (an MCAP bag: the recorded messages plus
the policy chunks, gated commands and safety events under ``/replay``), ``summary.json``,
``joints.png``, ``interventions.png`` and ``timing.json`` (wall-clock speed, the only file
that differs between two runs). With ``--expect OLD/summary.json`` the run fails (exit 1)
when its results drift from the old ones beyond the tolerances.

Real time (``--realtime``): the bag's input topics are published over DDS at the recorded
rate with ``/clock``, and what the running nodes publish is recorded to DIR (see
``wam_runtime.replay.realtime``).

Exit codes: 0 done (skipped messages are counted in the summary), 1 regression drift,
2 bad configuration, model or usage, 3 the bag is unreadable or lacks needed topics (what
was computed before the problem is in DIR), 4 done, but messages of the bag were lost
(a damaged chunk, or fewer messages than the bag lists; ``messages.lost`` counts them by
topic and the warnings say where), 130 interrupted.
"""

import argparse
import os
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np

from wam_runtime.bag import BagError, BagWriter, open_bag, storage_file
from wam_runtime.core.inference import file_sha256
from wam_runtime.core.policy_config import check_against_contract
from wam_runtime.core.stamps import s_to_ns
from wam_runtime.replay import realtime, report
from wam_runtime.replay.config import CONFIG_ERRORS, EXIT_CONFIG, EXIT_INPUT, EXIT_INTERRUPTED, \
    EXIT_OK, load_policy, setup, UsageError
from wam_runtime.replay.outputs import BAG_NAME, check_expect, data_loss, error_summary, \
    prepare_out, print_summary, Progress
from wam_runtime.replay.pipeline import ReplayPipeline
from wam_runtime.replay.topics import InputError, recorded_inferences, recorded_ticks, \
    resolve_inputs


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``wam-runtime replay``."""
    ap = argparse.ArgumentParser(
        prog='wam-runtime replay',
        description='Replay a rosbag2 through the policy and the safety gate (offline, '
                    'deterministic), or play it over DDS to live nodes (--realtime).')
    ap.add_argument('bag', help='rosbag2 folder (sqlite3 or MCAP) or .mcap/.db3 file')
    ap.add_argument('--config', required=True,
                    help='ROS parameter file with policy_node and safety_controller sections')
    ap.add_argument('--model', help='ONNX model (default: policy_node.model_path, else the '
                                    'bundled models/reference_reach.onnx)')
    ap.add_argument('--out', required=True, help='output folder')
    ap.add_argument('--urdf', help='robot URDF (default: safety_controller.urdf_path, else '
                                   'the .urdf named like the config next to it)')
    ap.add_argument('--param', action='append', default=[], metavar='NODE.NAME=VALUE',
                    help='override a parameter, e.g. safety_controller.position_margin_rad=0.05')
    ap.add_argument('--inference-delay-s', type=float, default=0.01,
                    help='simulated observation-to-chunk compute time on the bag clock (s)')
    ap.add_argument('--schedule', choices=('auto', 'rate', 'recorded'), default='auto',
                    help="when to infer: 'rate' as policy_node does, 'recorded' on the frames "
                         "the recorded run inferred on (auto: 'recorded' when the bag has "
                         'policy chunks)')
    ap.add_argument('--gate', choices=('auto', 'open', 'recorded'), default='auto',
                    help="'open' from the start, or 'recorded': open while the recorded run "
                         "published gated commands (auto: 'recorded' when it has them)")
    ap.add_argument('--ticks', choices=('auto', 'grid', 'recorded'), default='auto',
                    help="when the gate ticks: 'grid' every control period, 'recorded' at "
                         "the recorded run's tick times (safety/execution), one each (auto: "
                         "'recorded' with --gate recorded when the recorded ticks come "
                         'at the configured control rate, within 20 %%)')
    ap.add_argument('--namespace', default='replay',
                    help='namespace of the replay outputs in the output bag')
    ap.add_argument('--expect', metavar='OLD/summary.json',
                    help='fail (exit 1) with a diff when results drift from this summary')
    ap.add_argument('--rel-tol', type=float, default=0.05,
                    help='--expect: relative tolerance of real numbers')
    ap.add_argument('--abs-tol', type=float, default=1e-4,
                    help='--expect: absolute tolerance of real numbers')
    ap.add_argument('--count-tol', type=int, default=0,
                    help='--expect: tolerance of counts (messages, interventions)')
    ap.add_argument('--exact', action='store_true',
                    help='--expect: also compare inputs and output hashes')
    ap.add_argument('--no-plots', action='store_true', help='skip the PNG figures')
    ap.add_argument('--force', action='store_true',
                    help='replace earlier replay outputs in --out')
    ap.add_argument('--quiet', action='store_true', help='no progress bar, no summary lines')
    rt = ap.add_argument_group('real-time playback')
    rt.add_argument('--realtime', action='store_true',
                    help='publish the bag over DDS at the recorded rate with /clock and '
                         'record what the nodes publish')
    rt.add_argument('--rate', type=float, default=1.0, help='playback rate (1 = recorded)')
    rt.add_argument('--launch', action='store_true',
                    help='start policy_node and safety_controller (use_sim_time) for the run')
    rt.add_argument('--play-topics', nargs='*', default=None,
                    help='topics to publish (default: every topic that is not a pipeline '
                         'output)')
    rt.add_argument('--settle-s', type=float, default=1.0,
                    help='seconds to keep recording after the last message')
    return ap


def run_offline(args) -> int:
    """Run the offline replay; return the exit code."""
    out = args.out
    inputs: Dict[str, Any] = {'bag': os.path.basename(os.path.normpath(args.bag))}
    try:
        prepare_out(out, args.force)
        config, safety, model, inputs = setup(args)
        policy = load_policy(model, config)
        check_against_contract(config, policy.contract)      # as the node does
    except (UsageError, OSError) + CONFIG_ERRORS as exc:
        msg = str(exc) if not isinstance(exc, OSError) else f'{exc.filename}: {exc.strerror}'
        print(f'[wam_runtime] replay: {msg}', file=sys.stderr)
        if not isinstance(exc, UsageError) or not str(exc).startswith('--out'):
            error_summary(out, 'error', msg, inputs)
        return EXIT_CONFIG
    t_wall0 = time.monotonic()
    try:
        bag = open_bag(args.bag)
    except BagError as exc:
        print(f'[wam_runtime] replay: {exc}', file=sys.stderr)
        error_summary(out, 'error', str(exc), inputs)
        return EXIT_INPUT
    with bag:
        inputs['storage'] = bag.storage
        inputs['salvaged'] = bag.salvaged
        ns = args.namespace.strip('/')
        try:
            extra = list(config.params['extra_joint_state_topics'] or [])
            extra += [t for t in safety.params['extra_joint_state_topics'] or []
                      if t not in extra]
            topics = resolve_inputs(bag.topics, [c.name for c in policy.contract.cameras],
                                    config.compressed_cameras, safety.params['output_mode'],
                                    ns, extra)
        except InputError as exc:
            print(f'[wam_runtime] replay: {exc}', file=sys.stderr)
            error_summary(out, 'error', str(exc), inputs)
            return EXIT_INPUT
        inputs['topics'] = {'cameras': {k: v[0] for k, v in topics.cameras.items()},
                            'joint_states': topics.joint_states, 'estop': topics.estop,
                            'recorded_commands': topics.recorded_commands,
                            'recorded_chunks': topics.recorded_chunks}
        recorded = None
        schedule = args.schedule
        if schedule == 'auto':
            schedule = 'recorded' if topics.recorded_chunks else 'rate'
        if schedule == 'recorded':
            if not topics.recorded_chunks:
                print('[wam_runtime] replay: --schedule recorded: the bag has no '
                      'policy/action_chunk topic', file=sys.stderr)
                error_summary(out, 'error', 'no recorded chunks to schedule by', inputs)
                return EXIT_INPUT
            recorded = recorded_inferences(bag, topics)
        gate = args.gate
        if gate == 'auto':
            gate = 'recorded' if topics.recorded_commands else 'open'
        if gate == 'recorded' and not topics.recorded_commands:
            print('[wam_runtime] replay: --gate recorded: the bag has no recorded commands',
                  file=sys.stderr)
            error_summary(out, 'error', 'no recorded commands to follow', inputs)
            return EXIT_INPUT
        inputs['schedule'] = schedule
        inputs['gate'] = gate
        period_s = safety.config.control_period_s
        ticks = args.ticks
        schedule_ns = recorded_ticks(bag, topics, s_to_ns(period_s)) \
            if gate == 'recorded' and ticks != 'grid' else None
        if ticks == 'auto':
            ticks = 'recorded' if schedule_ns is not None and abs(
                np.median(np.diff(schedule_ns)) * 1e-9 - period_s) <= 0.2 * period_s \
                else 'grid'
        if ticks == 'recorded' and schedule_ns is None:
            msg = ('--ticks recorded needs --gate recorded and recorded gated commands'
                   if gate != 'recorded' else '--ticks recorded: the bag has too few recorded '
                   'gated commands')
            print(f'[wam_runtime] replay: {msg}', file=sys.stderr)
            error_summary(out, 'error', msg, inputs)
            return EXIT_CONFIG
        inputs['ticks'] = ticks
        bag_path = os.path.join(out, BAG_NAME)
        writer = BagWriter(bag_path, 'mcap')
        pipe = ReplayPipeline(policy, config, safety, topics, writer, args.inference_delay_s,
                              ns, bag.topics, recorded, gate == 'recorded',
                              tick_schedule_ns=schedule_ns if ticks == 'recorded' else None)
        if recorded is not None:
            inputs['schedule_inputs'] = 'inference_inputs' if pipe.reruns else 'frame_stamps'
        status, error, code = 'ok', None, EXIT_OK
        start = bag.start_ns or 0
        progress = Progress((bag.end_ns or start) - start, not args.quiet)
        t_loop0 = time.monotonic()
        try:
            for rec in bag.messages():
                pipe.feed(rec)
                progress.update(rec.t_ns - start)
        except BagError as exc:
            status, error, code = 'error', str(exc), EXIT_INPUT
        except KeyboardInterrupt:
            status, error, code = 'interrupted', 'interrupted', EXIT_INTERRUPTED
        finally:
            run = pipe.finish()
            writer.close()
            progress.close()
        loop_wall = time.monotonic() - t_loop0
        warnings = list(bag.warnings) + report.recording_warnings(run)
        status, code = data_loss(bag, status, code, warnings)
        lost = dict(bag.lost)
    if error:
        print(f'[wam_runtime] replay: {error}; the outputs hold what came before',
              file=sys.stderr)
    if run.first_ns is None and status == 'ok':
        status, error, code = 'error', 'the bag holds no messages', EXIT_INPUT
        print(f'[wam_runtime] replay: {error}', file=sys.stderr)
    summary = report.build_summary(run, safety.config.control_period_s, inputs, status, error,
                                   warnings, writer.counts, lost=lost)
    mcap = storage_file(bag_path)
    summary['outputs'] = {'bag': BAG_NAME, 'bag_sha256': file_sha256(mcap) if mcap else None}
    report.write_json(os.path.join(out, 'summary.json'), summary)
    if not args.no_plots and run.first_ns is not None:
        try:
            report.plot(run, os.path.join(out, 'joints.png'),
                        os.path.join(out, 'interventions.png'))
        except ImportError as exc:
            warnings.append(f'figures not written ({exc})')
    inf = policy.timing.summary(1e3)
    timing = {'replay_wall_s': round(loop_wall, 4),
              'total_wall_s': round(time.monotonic() - t_wall0, 4),
              'bag_s': summary['replayed_s'],
              'speed_x_real_time': round(summary['replayed_s'] / loop_wall, 2)
              if loop_wall > 0 else None,
              'inference_ms_p50': inf['p50'], 'inference_ms_p99': inf['p99'],
              'note': 'wall clock: differs from run to run (summary.json does not)'}
    report.write_json(os.path.join(out, 'timing.json'), timing)
    if not args.quiet:
        print_summary(summary, timing, out)
    if code == EXIT_OK and args.expect:
        code = check_expect(args.expect, summary, args)
    return code


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``wam-runtime replay`` (argv without the ``replay`` word)."""
    args = build_parser().parse_args(argv)
    if args.realtime:
        return realtime.main(args)
    return run_offline(args)


if __name__ == '__main__':
    raise SystemExit(main(sys.argv[1:]))
