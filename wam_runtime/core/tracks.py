"""Chunk tracks: a chunk's steps on absolute time, sampled by cubic Hermite or linearly.

The chunk scheduler (``core.scheduler``) keeps one track per chunk it blends; this module
only holds the interpolation, so the scheduler reads as the playback clock and the blends.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass
class Track:
    """One chunk's plan: positions at absolute times, with Hermite tangents."""

    times: np.ndarray              # (N,) absolute, strictly increasing
    positions: np.ndarray          # (N, J)
    tangents: np.ndarray           # (N, J) for cubic Hermite
    arrival_tau: float
    index: int                     # arrival order
    steps: Optional[np.ndarray] = None   # the chunk's own due times (absolute), all points

    @property
    def end(self) -> float:
        """Return the time of the last point."""
        return float(self.times[-1])


def hermite_tangents(times: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Return finite-difference tangents (central inside, one-sided at the ends)."""
    n = len(times)
    if n == 1:
        return np.zeros_like(positions)
    d = np.diff(positions, axis=0) / np.diff(times)[:, None]
    m = np.empty_like(positions)
    m[0], m[-1] = d[0], d[-1]
    if n > 2:
        m[1:-1] = 0.5 * (d[:-1] + d[1:])
    return m


def evaluate(track: Track, t: float, cubic: bool) -> np.ndarray:
    """Return the position of a track at time ``t`` (held at its ends)."""
    ts, ps = track.times, track.positions
    if t <= ts[0]:
        return ps[0].copy()
    if t >= ts[-1]:
        return ps[-1].copy()
    i = int(np.searchsorted(ts, t, side='right')) - 1
    h = ts[i + 1] - ts[i]
    u = (t - ts[i]) / h
    if not cubic:
        return ps[i] + u * (ps[i + 1] - ps[i])
    u2, u3 = u * u, u * u * u
    return ((2 * u3 - 3 * u2 + 1) * ps[i] + (u3 - 2 * u2 + u) * h * track.tangents[i]
            + (-2 * u3 + 3 * u2) * ps[i + 1] + (u3 - u2) * h * track.tangents[i + 1])


def velocity(track: Track, t: float, cubic: bool, eps: float = 1e-3) -> np.ndarray:
    """Return the velocity of a track at ``t`` (central difference over ``eps``)."""
    return (evaluate(track, t + eps, cubic) - evaluate(track, t - eps, cubic)) / (2 * eps)
