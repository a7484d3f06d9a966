"""World-model monitor: the error of the model's prediction of what it now sees.

A model whose contract declares ``world_model`` returns, with every action chunk, an
embedding of the current observation and a prediction of the next one. At each inference
``SurpriseMonitor`` compares the previous step's prediction with the current embedding; the
error ("surprise") is low while the world behaves as in training and rises when the camera
shows something the model never saw. ``SurpriseGovernor`` turns a surprise value into a
speed scale in [0, 1] for the safety controller: full speed below ``slow_threshold``, slower
between the thresholds, a stop at or above ``stop_threshold`` (without one: slower at and
above ``slow_threshold``, never a stop). Pure Python + numpy.
"""

from collections import deque
from dataclasses import dataclass
import math
from typing import Deque, Optional, Tuple

import numpy as np

from wam_runtime.core.stats import RollingStats

METRICS = ('mse', 'relative', 'cosine')


def prediction_error(predicted: np.ndarray, observed: np.ndarray, metric: str = 'mse') -> float:
    """Return the error of an embedding prediction against the observed embedding.

    ``mse``: mean squared difference (the embedding's own units squared). ``relative``:
    ``|predicted - observed| / |observed|`` (scale-free; 1 means as large as the signal).
    ``cosine``: ``1 - cos(predicted, observed)`` in [0, 2] (ignores the magnitude).
    """
    p = np.asarray(predicted, dtype=np.float64).ravel()
    o = np.asarray(observed, dtype=np.float64).ravel()
    if p.shape != o.shape:
        raise ValueError(f'embedding sizes differ: {p.size} vs {o.size}')
    if metric == 'mse':
        return float(np.mean((p - o) ** 2))
    eps = 1e-12
    if metric == 'relative':
        return float(np.linalg.norm(p - o) / max(float(np.linalg.norm(o)), eps))
    if metric == 'cosine':
        denom = max(float(np.linalg.norm(p) * np.linalg.norm(o)), eps)
        return float(1.0 - np.dot(p, o) / denom)
    raise ValueError(f'metric: {metric!r} is not one of {list(METRICS)}')


class SurpriseMonitor:
    """Compare each step's prediction with the next step's observation embedding.

    ``max_gap_s`` bounds how far apart two observations may be for the comparison to mean
    anything (after a pause the old prediction is dropped instead of compared).
    """

    def __init__(self, metric: str = 'mse', max_gap_s: float = 1.0) -> None:
        """Use ``metric`` (see :func:`prediction_error`); compare steps <= ``max_gap_s`` apart."""
        if metric not in METRICS:
            raise ValueError(f'metric: {metric!r} is not one of {list(METRICS)}')
        if not max_gap_s > 0:
            raise ValueError(f'max_gap_s: must be > 0, got {max_gap_s!r}')
        self.metric = metric
        self.max_gap_s = max_gap_s
        self._previous: Optional[Tuple[float, np.ndarray]] = None
        self.last: Optional[float] = None
        self.last_gap_s: Optional[float] = None
        self.stats = RollingStats(1000)

    def update(self, stamp_s: float, embedding: Optional[np.ndarray],
               predicted: Optional[np.ndarray]) -> Optional[float]:
        """Score the previous prediction against ``embedding``; remember ``predicted``.

        Returns the surprise, or None when there is nothing to compare yet (first step,
        a gap longer than ``max_gap_s``, time going backwards, or no embeddings).
        """
        if embedding is None or predicted is None:
            self._previous = None
            return None
        surprise = None
        if self._previous is not None:
            gap = stamp_s - self._previous[0]
            if 0 < gap <= self.max_gap_s:
                surprise = prediction_error(self._previous[1], embedding, self.metric)
                self.last = surprise
                self.last_gap_s = gap
                self.stats.add(surprise)
        self._previous = (stamp_s, np.array(predicted, dtype=np.float64))
        return surprise

    def reset(self) -> None:
        """Forget the pending prediction (for example after an episode reset)."""
        self._previous = None


@dataclass(frozen=True)
class SpeedDecision:
    """A speed scale in [0, 1] and the reason code for it."""

    scale: float
    reason: str


NOMINAL = 'nominal'
SLOW = 'surprise_slow'
STOP = 'surprise_stop'
MISSING = 'surprise_missing'
TIMEOUT = 'surprise_timeout'
INVALID = 'surprise_invalid'


class SurpriseGovernor:
    """Map the world-model surprise to a speed scale for the safety controller.

    ``raw_scale(s)`` is 1 below ``slow_threshold``, falls linearly from 1 to ``min_scale``
    between ``slow_threshold`` and ``stop_threshold``, and is 0 at or above
    ``stop_threshold``. With ``stop_threshold`` None (no stop) it is ``min_scale`` at and
    above ``slow_threshold``, which must then be > 0. The scale drops at once but recovers
    only after the surprise has stayed low for ``recovery_s``: the output is the smallest
    raw scale of the values received in the last ``recovery_s`` (and never more than the
    latest one). It fails closed: a NaN or negative surprise stops; with ``timeout_s`` set,
    no value yet or none for ``timeout_s`` stops too.
    """

    def __init__(self, slow_threshold: float, stop_threshold: Optional[float],
                 min_scale: float = 0.25, recovery_s: float = 0.5,
                 timeout_s: Optional[float] = None) -> None:
        """Validate the thresholds; raise ValueError naming the offending argument."""
        for key, value in (('slow_threshold', slow_threshold),
                           ('stop_threshold', stop_threshold)):
            if value is None and key == 'stop_threshold':
                continue
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f'{key}: must be a finite number >= 0, got {value!r}')
        if stop_threshold is None and not slow_threshold > 0:
            raise ValueError(f'slow_threshold: must be > 0 without a stop_threshold, got '
                             f'{slow_threshold!r}')
        if stop_threshold is not None and stop_threshold < slow_threshold:
            raise ValueError(f'stop_threshold: must be >= slow_threshold ({slow_threshold}), '
                             f'got {stop_threshold}')
        if not 0.0 <= min_scale <= 1.0:
            raise ValueError(f'min_scale: must be in [0, 1], got {min_scale!r}')
        if not recovery_s >= 0:
            raise ValueError(f'recovery_s: must be >= 0, got {recovery_s!r}')
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(f'timeout_s: must be > 0 or None, got {timeout_s!r}')
        self.slow_threshold = float(slow_threshold)
        self.stop_threshold = None if stop_threshold is None else float(stop_threshold)
        self.min_scale = float(min_scale)
        self.recovery_s = float(recovery_s)
        self.timeout_s = timeout_s
        self._recent: Deque[Tuple[float, SpeedDecision]] = deque()
        self._last_t: Optional[float] = None

    def raw_scale(self, surprise: float) -> SpeedDecision:
        """Return the scale for one surprise value, without memory."""
        if not (isinstance(surprise, (int, float)) and math.isfinite(surprise)) \
                or surprise < 0:
            return SpeedDecision(0.0, INVALID)
        if self.stop_threshold is not None and surprise >= self.stop_threshold:
            return SpeedDecision(0.0, STOP)
        if surprise < self.slow_threshold:
            return SpeedDecision(1.0, NOMINAL)
        if self.stop_threshold is None:
            return SpeedDecision(self.min_scale, SLOW)
        frac = (surprise - self.slow_threshold) / (self.stop_threshold - self.slow_threshold)
        return SpeedDecision(1.0 - (1.0 - self.min_scale) * frac, SLOW)

    def update(self, surprise: float, now_s: float) -> SpeedDecision:
        """Record a surprise value received at ``now_s``; return the scale to use now."""
        if self._last_t is not None and now_s < self._last_t:
            self._recent.clear()            # the clock went back (sim reset): start over
        self._recent.append((now_s, self.raw_scale(float(surprise))))
        self._last_t = now_s
        return self.scale(now_s)

    def scale(self, now_s: float) -> SpeedDecision:
        """Return the scale to use at ``now_s`` (call at the control rate)."""
        if self._last_t is None:
            return SpeedDecision(0.0, MISSING) if self.timeout_s is not None \
                else SpeedDecision(1.0, NOMINAL)
        if self.timeout_s is not None and now_s - self._last_t > self.timeout_s:
            return SpeedDecision(0.0, TIMEOUT)
        while len(self._recent) > 1 and self._recent[0][0] < now_s - self.recovery_s:
            self._recent.popleft()
        return min((d for _, d in self._recent), key=lambda d: d.scale)
