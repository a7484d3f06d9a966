"""Chunk validation: a received action chunk -> a ``Chunk`` the controller may adopt.

Pure functions shared by the safety controller (``SafetyController.prepare_chunk``), its
node's intake thread and the offline replay: shape, joints, finite values, increasing times,
size and age (``make_chunk``), then the robot's own limits (``check_chunk``: continuous joints
unwrapped to start nearest the arm, the distance from the measured state, position limits
with margins, the workspace); ``validate_chunk`` runs both with the controller's
configuration. Every rejection is a ``ChunkError`` whose ``reason`` is the code counted on
/diagnostics.
"""

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from wam_runtime.core.gate import unwrap_near
from wam_runtime.core.stamps import s_to_ns

# Chunk rejection reasons.
CHUNK_NON_FINITE = 'chunk_non_finite'
CHUNK_JOINTS = 'chunk_joint_mismatch'
CHUNK_SHAPE = 'chunk_malformed'
CHUNK_TIME = 'chunk_time_not_increasing'
CHUNK_STALE = 'chunk_stale'
CHUNK_FUTURE = 'chunk_future_stamp'
CHUNK_EMPTY = 'chunk_empty'
CHUNK_DISABLED = 'chunk_while_disabled'
CHUNK_START_FAR = 'chunk_start_too_far'
CHUNK_LIMITS = 'chunk_outside_limits'
CHUNK_WORKSPACE = 'chunk_outside_workspace'
CHUNK_TOO_LARGE = 'chunk_too_large'
CHUNK_BACKLOG = 'chunk_backlog_dropped'


def check_points(count: int, max_points: float) -> None:
    """Raise ChunkError (``chunk_too_large``) for a chunk of more than ``max_points`` points."""
    if count > max_points:
        raise ChunkError(CHUNK_TOO_LARGE, f'{count} points (max_chunk_points {max_points:g})')


def check_age(stamp_s: float, now_s: float, max_chunk_age_s: float) -> None:
    """Raise ChunkError (``chunk_stale``) for a stamp older than ``max_chunk_age_s``."""
    age = now_s - stamp_s
    if age > max_chunk_age_s:
        raise ChunkError(CHUNK_STALE, f'stamp is {age:.3f} s old (max {max_chunk_age_s} s)')


class ChunkError(ValueError):
    """A chunk is rejected; ``reason`` is the code counted on /diagnostics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f'{reason}: {detail}')
        self.reason = reason


@dataclass(frozen=True)
class Chunk:
    """A validated action chunk in the controller's joint order, on absolute time."""

    stamp_s: float
    times_s: np.ndarray      # (N,) absolute times, strictly increasing
    positions: np.ndarray    # (N, J)
    stamp_ns: int = 0        # the exact stamp (integer nanoseconds), as received


def make_chunk(joint_names: Sequence[str], stamp_s: float, time_from_start_s: Sequence[float],
               positions: Sequence[Sequence[float]], controller_joints: Sequence[str],
               now_s: float, max_chunk_age_s: float, max_future_s: float = 0.05,
               stamp_ns: Optional[int] = None, max_points: float = float('inf'),
               max_duration_s: float = float('inf')) -> Chunk:
    """Validate a received chunk and reorder it to ``controller_joints``; raise ChunkError.

    ``stamp_ns`` is the exact stamp (integer nanoseconds); by default ``stamp_s`` rounded.
    A chunk of more than ``max_points`` points or spanning more than ``max_duration_s``
    is rejected (``chunk_too_large``).
    """
    check_points(len(time_from_start_s), max_points)
    names = list(joint_names)
    if len(set(names)) != len(names):
        raise ChunkError(CHUNK_JOINTS, f'duplicated joint names {names}')
    if set(names) != set(controller_joints):
        missing = sorted(set(controller_joints) - set(names))
        unknown = sorted(set(names) - set(controller_joints))
        raise ChunkError(CHUNK_JOINTS, f'missing {missing}, unknown {unknown}')
    t = np.asarray(time_from_start_s, dtype=np.float64)
    if t.size == 0:
        raise ChunkError(CHUNK_EMPTY, 'no points')
    try:
        p = np.asarray(positions, dtype=np.float64)
    except ValueError:
        raise ChunkError(CHUNK_SHAPE, 'points have different lengths') from None
    if p.shape != (t.size, len(names)):
        raise ChunkError(CHUNK_SHAPE, f'positions shape {p.shape}, expected '
                                      f'({t.size}, {len(names)})')
    if not (np.isfinite(p).all() and np.isfinite(t).all() and np.isfinite(stamp_s)):
        raise ChunkError(CHUNK_NON_FINITE, 'NaN or Inf in positions, times or stamp')
    if t[0] < 0 or np.any(np.diff(t) <= 0):
        raise ChunkError(CHUNK_TIME, f'time_from_start must be >= 0 and strictly increasing, '
                                     f'got {t.tolist()[:4]}...')
    if t[-1] > max_duration_s:
        raise ChunkError(CHUNK_TOO_LARGE, f'spans {t[-1]:.3f} s (max_chunk_duration_s '
                                          f'{max_duration_s:g})')
    check_age(stamp_s, now_s, max_chunk_age_s)
    if now_s - stamp_s < -max_future_s:
        raise ChunkError(CHUNK_FUTURE, f'stamp is {stamp_s - now_s:.3f} s in the future')
    order = [names.index(n) for n in controller_joints]
    ns = s_to_ns(stamp_s) if stamp_ns is None else int(stamp_ns)
    return Chunk(float(stamp_s), stamp_s + t, p[:, order], ns)


def check_chunk(chunk: Chunk, cfg: Any, joint_names: Sequence[str],
                state: Optional[np.ndarray], reference: Optional[np.ndarray]) -> Chunk:
    """Check a chunk from ``make_chunk`` against the robot; return it (maybe clamped).

    ``cfg`` is the controller's ``ControllerConfig`` (limits, margins, start distance, limit
    policy, workspace); ``state`` the last measured position and ``reference`` where the
    command stream is (the last command, else the state). Raises ChunkError (start too far,
    outside the limits or the workspace, unless ``chunk_limit_policy`` is 'clamp').
    """
    endless = cfg.limits.continuous
    if endless.any():
        # Continuous joints: a chunk may carry wrapped angles. Unwrap along the chunk and
        # shift it by whole turns to start nearest the arm (interpolation then never
        # takes the long way round).
        p = chunk.positions.copy()
        p[:, endless] = np.unwrap(p[:, endless], axis=0)
        if reference is not None:
            p[:, endless] += (unwrap_near(p[0], reference, endless) - p[0])[endless]
        chunk = Chunk(chunk.stamp_s, chunk.times_s, p, chunk.stamp_ns)
    if state is not None:
        far = np.abs(chunk.positions[0] - state)
        limit = np.broadcast_to(cfg.max_start_distance_rad, far.shape)
        j = int(np.argmax(far - limit))
        if far[j] > limit[j]:
            raise ChunkError(CHUNK_START_FAR,
                             f'first point is {far[j]:.3f} from the measured '
                             f'{joint_names[j]} (max {limit[j]:g}, joint units)')
    lim = cfg.limits
    lo, hi = lim.lower + cfg.position_margin_rad, lim.upper - cfg.position_margin_rad
    outside = (chunk.positions < lo) | (chunk.positions > hi)
    positions_ = chunk.positions
    if outside.any():
        if cfg.chunk_limit_policy != 'clamp':
            k, j = np.argwhere(outside)[0]
            raise ChunkError(CHUNK_LIMITS, f'point {k} {joint_names[j]} = '
                                           f'{positions_[k, j]:.4f} outside '
                                           f'[{lo[j]:.4f}, {hi[j]:.4f}]')
        positions_ = np.clip(positions_, lo, hi)
    if cfg.point_in_workspace is not None:
        bad = [k for k in range(len(positions_)) if not cfg.point_in_workspace(positions_[k])]
        if bad:
            if cfg.chunk_limit_policy != 'clamp' or bad[0] == 0:
                raise ChunkError(CHUNK_WORKSPACE, f'point {bad[0]} leaves the workspace')
            return Chunk(chunk.stamp_s, chunk.times_s[:bad[0]], positions_[:bad[0]],
                         chunk.stamp_ns)
    return Chunk(chunk.stamp_s, chunk.times_s, positions_, chunk.stamp_ns)


def validate_chunk(joint_names: Sequence[str], stamp_s: float,
                   time_from_start_s: Sequence[float], positions: Sequence[Sequence[float]],
                   now_s: float, cfg: Any, controller_joints: Sequence[str],
                   state: Optional[np.ndarray], reference: Optional[np.ndarray],
                   stamp_ns: Optional[int] = None) -> Chunk:
    """Validate a received chunk completely; return it (maybe clamped) or raise ChunkError.

    ``make_chunk`` with the age and size limits of ``cfg`` (the controller's
    ``ControllerConfig``), then ``check_chunk`` against the measured ``state`` and the
    ``reference`` where the command stream is.
    """
    chunk = make_chunk(joint_names, stamp_s, time_from_start_s, positions, controller_joints,
                       now_s, cfg.max_chunk_age_s, stamp_ns=stamp_ns,
                       max_points=cfg.max_chunk_points, max_duration_s=cfg.max_chunk_duration_s)
    return check_chunk(chunk, cfg, controller_joints, state, reference)
