"""Replay reports: summary figures, plots and the regression diff against an older summary.

Everything in ``summary.json`` is computed on the bag clock, so it is as deterministic as
the replay itself; wall-clock timing (replay speed) is kept apart in ``timing.json``.
"""

import json
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from wam_runtime.replay.rundata import RunData

FORMAT_VERSION = 1
# Top-level summary sections that identify a run rather than describe its results.
IDENTITY_KEYS = ('inputs', 'outputs', 'warnings', 'format_version')
# Explanations for the reader, never compared.
NOTE_KEYS = ('notes',)
NOTES = {
    'safety.interventions': 'events the safety controller published on safety/events, one '
                            'per intervention, by reason; comparable with '
                            'safety.recorded_interventions (the same topic in the bag)',
    'safety.counters': "the safety controller's /diagnostics counters: the same reasons, "
                       'plus inputs refused without an event (chunks while the gate is '
                       'closed, rejected joint states) and surprise-level changes; a '
                       'latched fault counts once',
    'messages.lost': 'messages the bag lists (metadata.yaml or MCAP index) that could not be '
                     'read, by topic; any loss makes the exit code 4',
    'policy.not_inferred': 'observations without an inference, by reason (observation_stale, '
                           'observation_skewed, frame_*, ...)',
}
LATENCY_NOTE = ('on the bag clock: observation stamp -> first gated command using its chunk '
                '(recorded transport delay + simulated inference delay + wait for the '
                'control tick)')


def _r(x: Optional[float], digits: int = 9) -> Optional[float]:
    if x is None:
        return None
    x = float(x)
    return None if not math.isfinite(x) else round(x, digits)


def percentiles_ms(values_s: Sequence[float]) -> Dict[str, Any]:
    """Return n, p50, p99 and max of durations given in seconds, in milliseconds."""
    v = np.asarray(values_s, np.float64) * 1e3
    if v.size == 0:
        return {'n': 0, 'p50': None, 'p99': None, 'max': None}
    return {'n': int(v.size), 'p50': _r(np.percentile(v, 50), 6),
            'p99': _r(np.percentile(v, 99), 6), 'max': _r(v.max(), 6)}


def _stats(diff: np.ndarray) -> Dict[str, Any]:
    """Per-joint and overall RMS and max |difference| of an (N, J) array."""
    if diff.size == 0:
        return {'n': 0}
    a = np.abs(diff)
    return {'n': int(diff.shape[0]),
            'rms_rad': [_r(x) for x in np.sqrt(np.mean(diff ** 2, axis=0))],
            'max_rad': [_r(x) for x in a.max(axis=0)],
            'rms_all_rad': _r(np.sqrt(np.mean(diff ** 2))),
            'max_all_rad': _r(a.max())}


def _interp_recorded(rec_t: np.ndarray, rec_q: np.ndarray, t: np.ndarray,
                     max_gap_s: float) -> Tuple[np.ndarray, np.ndarray]:
    """Interpolate recorded commands at ``t``; return them and the mask of times covered."""
    i = np.searchsorted(rec_t, t, side='right')
    ok = (i > 0) & (i < rec_t.size)
    ii = np.clip(i, 1, max(1, rec_t.size - 1))
    t0, t1 = rec_t[ii - 1], rec_t[ii]
    ok &= (t1 - t0) <= max_gap_s
    w = np.where(t1 > t0, (t - t0) / np.where(t1 > t0, t1 - t0, 1.0), 0.0)
    q = rec_q[ii - 1] + w[:, None] * (rec_q[ii] - rec_q[ii - 1])
    return q, ok


def divergence(run: RunData, control_period_s: float) -> Optional[Dict[str, Any]]:
    """Compare the run's commands and chunks with what the bag recorded (None: nothing to).

    ``gated_commands``: at every recorded command, the replay's gated command of the latest
    tick at or before it. ``policy_first_step``: each replay chunk's first target against
    the recorded command interpolated at the time it is due. ``chunks_vs_recorded``: replay
    chunks against recorded chunks with the same stamp (the same model on the same inputs
    gives the same chunk); ``executed``: the recorded chunks the robot ran (named by
    ``safety/execution``), ``executed_matched`` of them reproduced.
    """
    out: Dict[str, Any] = {}
    if run.recorded_commands and run.commands:
        rec_t = np.array([t for t, _ in run.recorded_commands])
        rec_q = np.vstack([q for _, q in run.recorded_commands])
        cmd_t = np.array([t for t, _ in run.commands])
        cmd_q = np.vstack([q for _, q in run.commands])
        idx = np.searchsorted(cmd_t, rec_t + 1e-9, side='right') - 1
        ok = idx >= 0
        ok[ok] &= rec_t[ok] - cmd_t[idx[ok]] <= 2 * control_period_s
        out['gated_commands'] = _stats(cmd_q[idx[ok]] - rec_q[ok])
        if run.chunks:
            due = np.array([s * 1e-9 + run.dt_s for _, s, _ in run.chunks])
            first = np.vstack([p[0] for _, _, p in run.chunks])
            q, covered = _interp_recorded(rec_t, rec_q, due, 0.1)
            out['policy_first_step'] = _stats(first[covered] - q[covered])
    if run.recorded_chunks and run.chunks:
        diffs = []
        matched = set()
        for _, stamp_ns, pts in run.chunks:
            old = run.recorded_chunks.get(stamp_ns)
            if old is not None and old.shape == pts.shape:
                diffs.append(float(np.abs(old - pts).max()))
                matched.add(stamp_ns)
        executed = run.recorded_executed & set(run.recorded_chunks)
        out['chunks_vs_recorded'] = {
            'matched': len(diffs), 'recorded': len(run.recorded_chunks),
            'executed': len(executed), 'executed_matched': len(executed & matched),
            'max_abs_rad': _r(max(diffs)) if diffs else None,
            'mean_max_abs_rad': _r(float(np.mean(diffs))) if diffs else None,
            'executed_not_recorded': len(executed_not_recorded(run))}
    return out or None


def executed_not_recorded(run: RunData) -> List[int]:
    """Return the stamps of chunks the robot executed (``safety/execution``) but the bag lacks."""
    if not run.recorded_chunks:
        return []
    return sorted(run.recorded_executed - set(run.recorded_chunks))


def recording_warnings(run: RunData) -> List[str]:
    """Return what the recording lacks for replay to follow the recorded run."""
    missing = executed_not_recorded(run)
    if not missing:
        return []
    return [f'the robot executed {len(missing)} chunks the bag does not hold (first stamped '
            f'{missing[0] * 1e-9:.3f} s; was policy/action_chunk recorded from the start?): '
            'replay cannot follow the recorded commands while they ran']


def build_summary(run: RunData, control_period_s: float, inputs: Mapping[str, Any],
                  status: str = 'ok', error: Optional[str] = None,
                  warnings: Sequence[str] = (), written: Optional[Mapping[str, int]] = None,
                  latency_note: str = LATENCY_NOTE,
                  lost: Optional[Mapping[str, int]] = None) -> Dict[str, Any]:
    """Return the summary of a run as a JSON-ready dict (deterministic for a given run)."""
    cmds = np.vstack([q for _, q in run.commands]) if run.commands else np.zeros((0, 0))
    outside = int(np.sum((cmds < run.lower) | (cmds > run.upper))) if cmds.size else 0
    reasons: Dict[str, int] = {}
    for _, reason, _ in run.events:
        reasons[reason] = reasons.get(reason, 0) + 1
    recorded: Dict[str, int] = {}
    for _, reason in run.recorded_events:
        recorded[reason] = recorded.get(reason, 0) + 1
    duration = (run.last_ns - run.first_ns) * 1e-9 if run.first_ns is not None else 0.0
    return {
        'format_version': FORMAT_VERSION,
        'status': status,
        'error': error,
        'warnings': list(warnings),
        'inputs': dict(inputs),
        'replayed_s': _r(duration, 6),
        'messages': {'read': dict(sorted(run.read.items())),
                     'skipped': dict(sorted(run.skipped.items())),
                     'lost': dict(sorted((lost or {}).items())),
                     'written': dict(sorted((written or {}).items()))},
        'policy': {'inferences': run.inferences, 'chunks': len(run.chunks),
                   'not_inferred': dict(sorted(run.policy_counters.items()))},
        'safety': {'commands': len(run.commands), 'commands_outside_limits': outside,
                   'interventions': dict(sorted(reasons.items())),
                   'recorded_interventions': dict(sorted(recorded.items())),
                   'counters': dict(sorted(run.safety_counters.items()))},
        'latency_ms': {
            'observation_to_command': percentiles_ms(run.latencies_s),
            'note': latency_note},
        'divergence': divergence(run, control_period_s),
        'notes': dict(NOTES),
    }


def write_json(path: str, data: Mapping[str, Any]) -> None:
    """Write JSON with sorted keys and a final newline (stable bytes)."""
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f, indent=2, sort_keys=True, allow_nan=False)
        f.write('\n')


# ---------------------------------------------------------------------- regression
def compare(expected: Any, actual: Any, rel_tol: float = 0.05, abs_tol: float = 1e-4,
            count_tol: int = 0, exact: bool = False) -> List[str]:
    """Return one readable line per difference beyond the tolerances (empty: no drift).

    Integers (counts) may differ by ``count_tol``; floats by ``abs_tol + rel_tol * |old|``;
    everything else must be equal. A count present on one side only (a reason that
    vanished or newly appeared) counts as 0 on the other, within ``count_tol`` too. The
    identity sections (inputs, outputs, warnings) are compared only with ``exact``; the
    ``notes`` never.
    """
    lines: List[str] = []

    def walk(path: str, e: Any, a: Any) -> None:
        if isinstance(e, dict) and isinstance(a, dict):
            for key in sorted(set(e) | set(a), key=str):
                sub = f'{path}.{key}' if path else str(key)
                if not path and (key in NOTE_KEYS or key in IDENTITY_KEYS and not exact):
                    continue
                if key not in a:
                    if _count(e[key]):
                        if abs(e[key]) > count_tol:
                            lines.append(f'{sub}: expected {e[key]}, missing now (0; '
                                         f'{-e[key]:+d}; tolerance {count_tol})')
                    else:
                        lines.append(f'{sub}: expected {_show(e[key])}, missing now')
                elif key not in e:
                    if _count(a[key]):
                        if abs(a[key]) > count_tol:
                            lines.append(f'{sub}: not in the expected summary (0), now '
                                         f'{a[key]} ({a[key]:+d}; tolerance {count_tol})')
                    else:
                        lines.append(f'{sub}: not in the expected summary, now '
                                     f'{_show(a[key])}')
                else:
                    walk(sub, e[key], a[key])
            return
        if isinstance(e, list) and isinstance(a, list):
            if len(e) != len(a):
                lines.append(f'{path}: expected {len(e)} entries, got {len(a)}')
                return
            for i, (x, y) in enumerate(zip(e, a)):
                walk(f'{path}[{i}]', x, y)
            return
        numbers = (int, float)
        if isinstance(e, numbers) and isinstance(a, numbers) and not isinstance(e, bool) \
                and not isinstance(a, bool):
            if isinstance(e, int) and isinstance(a, int):
                tol = count_tol
            else:
                tol = abs_tol + rel_tol * abs(e)
            if abs(a - e) > tol:
                lines.append(f'{path}: expected {_show(e)}, got {_show(a)} '
                             f'({a - e:+.6g}; tolerance {tol:.3g})')
            return
        if e != a:
            lines.append(f'{path}: expected {_show(e)}, got {_show(a)}')

    walk('', expected, actual)
    return lines


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _show(v: Any) -> str:
    if isinstance(v, float):
        return f'{v:.6g}'
    text = json.dumps(v, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + '...'


# ---------------------------------------------------------------------- figures
def plot(run: RunData, joints_png: str, interventions_png: str) -> None:
    """Draw the per-joint figure and the intervention timeline.

    Per joint: measured position, recorded command, replay policy target (step 1) and
    replay gated command. Timeline: one row of marks per intervention reason.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    t0 = run.first_ns * 1e-9 if run.first_ns is not None else 0.0
    names = run.joint_names
    rows = (len(names) + 1) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(13, 2.8 * rows), squeeze=False)
    axes = axes.ravel()

    def series(items):
        if not items:
            return np.zeros(0), np.zeros((0, len(names)))
        return (np.array([t for t, _ in items]) - t0, np.vstack([q for _, q in items]))

    ms_t, ms_q = series(run.measured)
    rc_t, rc_q = series(run.recorded_commands)
    gc_t, gc_q = series(run.commands)
    ch_t = np.array([s * 1e-9 + run.dt_s for _, s, _ in run.chunks]) - t0
    ch_q = np.vstack([p[0] for _, _, p in run.chunks]) if run.chunks else \
        np.zeros((0, len(names)))
    for j, name in enumerate(names):
        ax = axes[j]
        if ms_q.size:
            ax.plot(ms_t, ms_q[:, j], color='0.7', lw=2.5, label='measured')
        if rc_q.size:
            ax.plot(rc_t, rc_q[:, j], color='k', lw=1, ls='--', label='recorded command')
        if gc_q.size:
            ax.plot(gc_t, gc_q[:, j], color='tab:blue', lw=1, label='replay gated')
        if ch_q.size and ch_q.shape[1] == len(names):
            ax.plot(ch_t, ch_q[:, j], '.', color='tab:red', ms=2, label='replay policy (step 1)')
        parts = [a[:, j] for a in (ms_q, rc_q, gc_q) if a.size] + \
            ([ch_q[:, j]] if ch_q.size and ch_q.shape[1] == len(names) else [])
        if parts:
            lo = min(float(np.min(p)) for p in parts)
            hi = max(float(np.max(p)) for p in parts)
            pad = max(0.05, 0.1 * (hi - lo))
            ax.set_ylim(lo - pad, hi + pad)
            for limit in (run.lower[j], run.upper[j]):
                if lo - pad <= limit <= hi + pad:
                    ax.axhline(limit, color='k', ls=':', lw=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel('bag time (s)', fontsize=8)
        ax.set_ylabel('rad', fontsize=8)
    axes[0].legend(fontsize=7, loc='best')
    for ax in axes[len(names):]:
        ax.axis('off')
    fig.tight_layout()
    fig.savefig(joints_png, dpi=80, metadata={'Software': None})
    plt.close(fig)

    reasons = sorted({r for _, r, _ in run.events} | {r for _, r in run.recorded_events})
    fig, ax = plt.subplots(figsize=(13, 1.2 + 0.4 * max(1, len(reasons))))
    for i, reason in enumerate(reasons):
        old = [t - t0 for t, r in run.recorded_events if r == reason]
        ts = [t - t0 for t, r, _ in run.events if r == reason]
        ax.plot(old, [i + 0.18] * len(old), '|', ms=8, color='0.55',
                label='recorded' if i == 0 else None)
        ax.plot(ts, [i - 0.18] * len(ts), '|', ms=8, color='tab:red',
                label='replay' if i == 0 else None)
    ax.set_yticks(range(len(reasons)))
    ax.set_yticklabels([f'{r} (replay {sum(1 for _, x, _ in run.events if x == r)}, '
                        f'recorded {sum(1 for _, x in run.recorded_events if x == r)})'
                        for r in reasons], fontsize=8)
    if reasons:
        ax.legend(fontsize=7, loc='upper right')
    ax.set_ylim(-0.7, max(0.7, len(reasons) - 0.3))
    if run.first_ns is not None and run.last_ns is not None:
        ax.set_xlim(0, max(1e-3, (run.last_ns - run.first_ns) * 1e-9))
    ax.set_xlabel('bag time (s)', fontsize=8)
    ax.set_title('safety interventions' if reasons else 'safety interventions: none',
                 fontsize=9)
    fig.tight_layout()
    fig.subplots_adjust(left=0.3)
    fig.savefig(interventions_png, dpi=80, metadata={'Software': None})
    plt.close(fig)
