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
import shutil
import sys
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from wam_runtime.core.contract import ContractError
from wam_runtime.core.gate import LimitsError
from wam_runtime.core.inference import CPU, file_sha256, ModelLoadError, OnnxPolicy
from wam_runtime.core.params import ConfigError, node_parameters, POLICY_PARAMS, resolve
from wam_runtime.core.safety_config import build_safety, SafetySetup
from wam_runtime.replay import report
from wam_runtime.replay.bag_io import BagError, BagWriter, open_bag, storage_file
from wam_runtime.replay.pipeline import InputError, ReplayPipeline, resolve_inputs

EXIT_OK, EXIT_DRIFT, EXIT_CONFIG, EXIT_INPUT, EXIT_DATA_LOST, EXIT_INTERRUPTED = \
    0, 1, 2, 3, 4, 130
BAG_NAME = 'replay'
OUTPUT_FILES = (BAG_NAME, 'summary.json', 'timing.json', 'joints.png', 'interventions.png',
                'realtime')
CONFIG_ERRORS = (ConfigError, ContractError, LimitsError, ModelLoadError)


class UsageError(ValueError):
    """Bad command line or configuration file; exit code 2."""


def load_config(path: str, overrides: Sequence[str]) -> Tuple[Dict, Dict]:
    """Return (policy_node, safety_controller) parameters from a ROS parameter file.

    ``overrides`` are ``node.name=value`` strings, the value parsed as YAML.
    """
    try:
        with open(path, encoding='utf-8') as f:
            doc = yaml.safe_load(f)
    except OSError as exc:
        raise UsageError(f'--config: cannot read {path!r} ({exc.strerror})') from None
    except yaml.YAMLError as exc:
        raise UsageError(f'--config: {path!r} is not valid YAML ({exc})') from None
    if not isinstance(doc, dict):
        raise UsageError(f'--config: {path!r} is not a ROS parameter file '
                         '({node: {ros__parameters: ...}})')
    params = {'policy_node': node_parameters(doc, 'policy_node'),
              'safety_controller': node_parameters(doc, 'safety_controller')}
    for item in overrides:
        key, sep, value = item.partition('=')
        node, dot, name = key.partition('.')
        if not sep or not dot or node not in params:
            raise UsageError(f'--param {item!r}: expected policy_node.NAME=VALUE or '
                             'safety_controller.NAME=VALUE')
        params[node][name] = yaml.safe_load(value)
    params['policy_node'].pop('use_sim_time', None)
    params['safety_controller'].pop('use_sim_time', None)
    return params['policy_node'], params['safety_controller']


def default_model() -> Optional[str]:
    """Return the bundled reference model (the fallback without --model), if installed."""
    from wam_runtime.processes import share_dir
    path = os.path.join(share_dir(), 'models', 'reference_reach.onnx')
    return path if os.path.isfile(path) else None


def resolve_urdf(safety: Dict[str, Any], config: str, urdf: Optional[str]) -> Optional[str]:
    """Set and return ``urdf_path`` of the safety parameters.

    Taken from --urdf, else the config's own (relative to the config), else the URDF named
    like the config next to it when the config gives no position limits.
    """
    here = os.path.dirname(os.path.abspath(config))
    if urdf:
        safety['urdf_path'] = urdf
    elif safety.get('urdf_path'):
        p = safety['urdf_path']
        if not os.path.isabs(p) and not os.path.exists(p) and \
                os.path.exists(os.path.join(here, p)):
            safety['urdf_path'] = os.path.join(here, p)
    elif not safety.get('lower_limits_rad'):
        guess = os.path.splitext(os.path.abspath(config))[0] + '.urdf'
        if os.path.isfile(guess):
            safety['urdf_path'] = guess
    return safety.get('urdf_path') or None


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


class Progress:
    """A one-line progress bar on stderr (only on a terminal)."""

    def __init__(self, total_ns: int, enabled: bool) -> None:
        """Show progress through ``total_ns`` of bag time."""
        self.total = max(1, total_ns)
        self.enabled = enabled and sys.stderr.isatty()
        self._last = 0.0

    def update(self, done_ns: int, force: bool = False) -> None:
        """Redraw at most five times a second."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        frac = min(1.0, max(0.0, done_ns / self.total))
        bar = '#' * int(frac * 30)
        sys.stderr.write(f'\r  replay [{bar:<30}] {frac * 100:5.1f}%  '
                         f'{done_ns * 1e-9:7.1f} / {self.total * 1e-9:.1f} s of bag')
        sys.stderr.flush()

    def close(self) -> None:
        """End the line."""
        if self.enabled:
            self.update(self.total, force=True)
            sys.stderr.write('\n')


def _prepare_out(out: str, force: bool) -> None:
    os.makedirs(out, exist_ok=True)
    present = [n for n in OUTPUT_FILES if os.path.exists(os.path.join(out, n))]
    if present and not force:
        raise UsageError(f'--out: {out!r} already holds {present}; choose a new folder or '
                         'pass --force')
    for name in present:
        path = os.path.join(out, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def _error_summary(out: str, status: str, error: str, inputs: Mapping[str, Any]) -> None:
    try:
        os.makedirs(out, exist_ok=True)
        report.write_json(os.path.join(out, 'summary.json'), {
            'format_version': report.FORMAT_VERSION, 'status': status, 'error': error,
            'inputs': dict(inputs)})
    except OSError:
        pass


def _print_summary(s: Mapping[str, Any], timing: Mapping[str, Any], out: str) -> None:
    lat = s['latency_ms']['observation_to_command']
    iv = ', '.join(f'{k}={v}' for k, v in s['safety']['interventions'].items()) or 'none'
    print(f'replayed {s["replayed_s"]:.2f} s of bag in {timing["replay_wall_s"]:.2f} s '
          f'({timing["speed_x_real_time"]:.1f}x real time): {s["policy"]["inferences"]} '
          f'inferences, {s["safety"]["commands"]} gated commands')
    if lat['n']:
        print(f'observation stamp -> gated command (bag clock): p50 {lat["p50"]:.1f} ms, '
              f'p99 {lat["p99"]:.1f} ms ({lat["n"]} chunks)')
    print(f'safety interventions: {iv}; commands outside limits: '
          f'{s["safety"]["commands_outside_limits"]}')
    div = s.get('divergence') or {}
    if 'gated_commands' in div and div['gated_commands'].get('n'):
        g = div['gated_commands']
        print(f'gated vs recorded commands: rms {g["rms_all_rad"]:.4g} rad, max '
              f'{g["max_all_rad"]:.4g} rad over {g["n"]} commands')
    if 'chunks_vs_recorded' in div and div['chunks_vs_recorded']['matched']:
        c = div['chunks_vs_recorded']
        print(f'chunks vs recorded chunks: {c["matched"]} matched, max |diff| '
              f'{c["max_abs_rad"]:.3g} rad')
    skipped = s['messages']['skipped']
    if skipped:
        print('skipped messages: ' + ', '.join(f'{k}={v}' for k, v in skipped.items()))
    for w in s.get('warnings', []):
        print(f'warning: {w}')
    print(f'wrote {out}/summary.json, {out}/{BAG_NAME}/ and figures')


def data_loss(bag, status: str, code: int, warnings: List[str],
              label: str = 'replay') -> Tuple[str, int]:
    """Turn the bag's losses (after a full pass) into warnings, status and exit code 4."""
    if status != 'ok' or not bag.data_lost:
        return status, code
    warnings.extend(bag.problems)
    n = sum(bag.lost.values())
    what = f'{n} messages of the bag were lost' if n else 'damaged data was skipped'
    by_topic = ', '.join(f'{t}: {k}' for t, k in bag.lost.items())
    print(f'[wam_runtime] {label}: {what}' + (f' ({by_topic})' if by_topic else '') +
          '; the results cover the rest (messages.lost, warnings); exit code '
          f'{EXIT_DATA_LOST}', file=sys.stderr)
    return 'data_lost', EXIT_DATA_LOST


def check_expect(path: str, summary: Mapping[str, Any], args) -> int:
    """Compare with an older summary; print the diff; return the exit code."""
    import json
    try:
        with open(path, encoding='utf-8') as f:
            old = json.load(f)
    except (OSError, ValueError) as exc:
        print(f'[wam_runtime] --expect: cannot read {path!r} ({exc})', file=sys.stderr)
        return EXIT_CONFIG
    lines = report.compare(old, summary, args.rel_tol, args.abs_tol, args.count_tol,
                           args.exact)
    if not lines:
        print(f'regression check against {path}: no drift')
        return EXIT_OK
    print(f'regression check against {path}: {len(lines)} difference(s) beyond tolerance')
    for line in lines:
        print(f'  {line}')
    return EXIT_DRIFT


def setup(args) -> Tuple[Dict, SafetySetup, str, Dict[str, Any]]:
    """Load and validate config, URDF and model path.

    Returns (policy parameters, safety setup, model path, the inputs' identity for the
    summary).
    """
    policy_values, safety_values = load_config(args.config, args.param)
    urdf = resolve_urdf(safety_values, args.config, args.urdf)
    if args.model:
        policy_values['model_path'] = args.model
    if not policy_values.get('model_path'):
        bundled = default_model()
        if bundled is None:
            raise UsageError('--model: no model given and the config has no '
                             'policy_node.model_path')
        policy_values['model_path'] = bundled
    pp = resolve(POLICY_PARAMS, policy_values, 'policy_node')
    if not pp['inference_rate_hz'] > 0 or not pp['max_observation_age_s'] > 0:
        raise ConfigError('inference_rate_hz and max_observation_age_s: must be > 0')
    if not pp['max_observation_skew_s'] >= 0:
        raise ConfigError('max_observation_skew_s: must be >= 0')
    safety = build_safety(safety_values)
    model = pp['model_path']
    inputs: Dict[str, Any] = {
        'bag': os.path.basename(os.path.normpath(args.bag)),
        'config': os.path.basename(args.config), 'config_sha256': file_sha256(args.config),
        'params': list(args.param),
        'model': os.path.basename(model),
        'model_sha256': file_sha256(model) if os.path.isfile(model) else None,
        'urdf': os.path.basename(urdf) if urdf else None,
        'urdf_sha256': file_sha256(urdf) if urdf and os.path.isfile(urdf) else None,
        'inference_delay_s': args.inference_delay_s,
    }
    return pp, safety, model, inputs


def load_policy(model: str, pp: Mapping[str, Any]) -> OnnxPolicy:
    """Load the model for a deterministic replay: CPU, one thread."""
    return OnnxPolicy(model, providers=[CPU], intra_op_num_threads=1, inter_op_num_threads=1,
                      model_sha256=pp['model_sha256'], io_binding=pp['io_binding'],
                      log=lambda line: None)


def recorded_stamps(bag, topic: str) -> List[int]:
    """Return the header stamps (ns) of the recorded chunks (as far as the bag reads)."""
    from wam_runtime.replay.bag_io import typestore
    stamps: List[int] = []
    try:
        for rec in bag.messages([topic]):
            try:
                st = typestore().deserialize_cdr(rec.data, rec.msgtype).header.stamp
            except Exception:  # noqa: B902 - corrupt bytes: the main pass counts them
                continue
            stamps.append(st.sec * 1_000_000_000 + st.nanosec)
    except BagError:
        pass      # the main pass reports where the bag breaks
    return stamps


def run_offline(args) -> int:
    """Run the offline replay; return the exit code."""
    out = args.out
    inputs: Dict[str, Any] = {'bag': os.path.basename(os.path.normpath(args.bag))}
    try:
        _prepare_out(out, args.force)
        pp, safety, model, inputs = setup(args)
        policy = load_policy(model, pp)
    except (UsageError, OSError) + CONFIG_ERRORS as exc:
        msg = str(exc) if not isinstance(exc, OSError) else f'{exc.filename}: {exc.strerror}'
        print(f'[wam_runtime] replay: {msg}', file=sys.stderr)
        if not isinstance(exc, UsageError) or not str(exc).startswith('--out'):
            _error_summary(out, 'error', msg, inputs)
        return EXIT_CONFIG
    t_wall0 = time.monotonic()
    try:
        bag = open_bag(args.bag)
    except BagError as exc:
        print(f'[wam_runtime] replay: {exc}', file=sys.stderr)
        _error_summary(out, 'error', str(exc), inputs)
        return EXIT_INPUT
    with bag:
        inputs['storage'] = bag.storage
        inputs['salvaged'] = bag.salvaged
        ns = args.namespace.strip('/')
        try:
            topics = resolve_inputs(bag.topics, [c.name for c in policy.contract.cameras],
                                    pp['compressed_cameras'] or [],
                                    safety.params['output_mode'], ns)
        except InputError as exc:
            print(f'[wam_runtime] replay: {exc}', file=sys.stderr)
            _error_summary(out, 'error', str(exc), inputs)
            return EXIT_INPUT
        inputs['topics'] = {'cameras': {k: v[0] for k, v in topics.cameras.items()},
                            'joint_states': topics.joint_states, 'estop': topics.estop,
                            'recorded_commands': topics.recorded_commands,
                            'recorded_chunks': topics.recorded_chunks}
        stamps = None
        schedule = args.schedule
        if schedule == 'auto':
            schedule = 'recorded' if topics.recorded_chunks else 'rate'
        if schedule == 'recorded':
            if not topics.recorded_chunks:
                print('[wam_runtime] replay: --schedule recorded: the bag has no '
                      'policy/action_chunk topic', file=sys.stderr)
                _error_summary(out, 'error', 'no recorded chunks to schedule by', inputs)
                return EXIT_INPUT
            stamps = recorded_stamps(bag, topics.recorded_chunks)
        gate = args.gate
        if gate == 'auto':
            gate = 'recorded' if topics.recorded_commands else 'open'
        if gate == 'recorded' and not topics.recorded_commands:
            print('[wam_runtime] replay: --gate recorded: the bag has no recorded commands',
                  file=sys.stderr)
            _error_summary(out, 'error', 'no recorded commands to follow', inputs)
            return EXIT_INPUT
        inputs['schedule'] = schedule
        inputs['gate'] = gate
        bag_path = os.path.join(out, BAG_NAME)
        writer = BagWriter(bag_path, 'mcap')
        pipe = ReplayPipeline(policy, pp, safety, topics, writer, args.inference_delay_s,
                              ns, bag.topics, stamps, gate == 'recorded')
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
        warnings = list(bag.warnings)
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
        _print_summary(summary, timing, out)
    if code == EXIT_OK and args.expect:
        code = check_expect(args.expect, summary, args)
    return code


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``wam-runtime replay`` (argv without the ``replay`` word)."""
    args = build_parser().parse_args(argv)
    if args.realtime:
        from wam_runtime.replay import realtime
        return realtime.main(args)
    return run_offline(args)


if __name__ == '__main__':
    raise SystemExit(main(sys.argv[1:]))
