"""The replay's outputs besides the bag: progress, summaries, exit codes for data loss."""

import json
import os
import shutil
import sys
import time
from typing import Any, List, Mapping, Tuple

from wam_runtime.replay import report
from wam_runtime.replay.config import EXIT_CONFIG, EXIT_DATA_LOST, EXIT_DRIFT, EXIT_OK, \
    UsageError

BAG_NAME = 'replay'
OUTPUT_FILES = (BAG_NAME, 'summary.json', 'timing.json', 'joints.png', 'interventions.png',
                'realtime')


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


def prepare_out(out: str, force: bool) -> None:
    """Create ``out``; refuse (or with ``force`` remove) earlier outputs in it."""
    os.makedirs(out, exist_ok=True)
    present = [n for n in OUTPUT_FILES if os.path.exists(os.path.join(out, n))]
    if present and not force:
        raise UsageError(f'--out: {out!r} already holds {present}; choose a new folder or '
                         'pass --force')
    for name in present:
        path = os.path.join(out, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def error_summary(out: str, status: str, error: str, inputs: Mapping[str, Any]) -> None:
    """Write a summary.json that says why there are no results."""
    try:
        os.makedirs(out, exist_ok=True)
        report.write_json(os.path.join(out, 'summary.json'), {
            'format_version': report.FORMAT_VERSION, 'status': status, 'error': error,
            'inputs': dict(inputs)})
    except OSError:
        pass


def print_summary(s: Mapping[str, Any], timing: Mapping[str, Any], out: str) -> None:
    """Print the summary's headline figures."""
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
