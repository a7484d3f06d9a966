"""Small statistics helpers shared by nodes, the demo and the benchmarks."""

from typing import Dict, Optional

import numpy as np


class RollingStats:
    """The last ``capacity`` samples of a quantity, with percentiles on demand."""

    def __init__(self, capacity: int = 1000) -> None:
        """Create an empty window of ``capacity`` samples."""
        self._buf = np.zeros(capacity, np.float64)
        self._n = 0
        self.total = 0

    def add(self, value: float) -> None:
        """Record one sample (O(1))."""
        self._buf[self._n % self._buf.size] = value
        self._n += 1
        self.total += 1

    def values(self) -> np.ndarray:
        """Return the samples currently in the window (unordered)."""
        return self._buf[:min(self._n, self._buf.size)]

    def percentile(self, q: float) -> Optional[float]:
        """Return the q-th percentile of the window, or None when empty."""
        v = self.values()
        return float(np.percentile(v, q)) if v.size else None

    def summary(self, scale: float = 1.0) -> Dict[str, Optional[float]]:
        """Return count, mean, p50, p99 and max, times ``scale`` (e.g. 1e3 for ms)."""
        v = self.values()
        if not v.size:
            return {'count': 0, 'mean': None, 'p50': None, 'p99': None, 'max': None}
        p50, p99 = np.percentile(v, [50, 99])
        return {'count': int(self.total), 'mean': float(v.mean() * scale),
                'p50': float(p50 * scale), 'p99': float(p99 * scale),
                'max': float(v.max() * scale)}


class RateMeter:
    """Event rate over a sliding window of event times (seconds)."""

    def __init__(self, window: int = 200) -> None:
        """Keep the last ``window`` event times."""
        self._times = RollingStats(window)
        self._last: Optional[float] = None

    def tick(self, t: float) -> None:
        """Record an event at time ``t``."""
        self._times.add(t)
        self._last = t

    def rate_hz(self) -> float:
        """Return events per second over the window (0 with fewer than two events)."""
        v = np.sort(self._times.values())
        if v.size < 2 or v[-1] <= v[0]:
            return 0.0
        return float((v.size - 1) / (v[-1] - v[0]))
