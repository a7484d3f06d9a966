"""Policy-side chunk continuity: when to start the next inference, and what to feed it.

``ExecutionTracker`` keeps the chunks ``policy_node`` published and the execution feedback
the safety controller publishes (``safety/execution``: the executing chunk's stamp, the
remaining horizon and the playback speed). From these it decides when to start the next
inference so that it lands before the current chunk runs out, and it builds the
real-time-chunking prefix: the executing chunk's targets at the new observation's step
times, and the expected delay in steps.
"""

from collections import OrderedDict
import math
from typing import Optional, Tuple

import numpy as np


FEEDBACK_GRACE_S = 0.1   # publication -> controller -> feedback, with margin


class ExecutionTracker:
    """Published chunks + execution feedback -> inference trigger and prefix inputs."""

    def __init__(self, dt_s: float, horizon: int, feedback_timeout_s: float = 0.5,
                 history: int = 16) -> None:
        """Track chunks of ``horizon`` steps of ``dt_s``."""
        self.dt_s = dt_s
        self.horizon = horizon
        self.feedback_timeout_s = feedback_timeout_s
        self._chunks: 'OrderedDict[float, np.ndarray]' = OrderedDict()
        self._history = history
        self._feedback: Optional[Tuple[float, float, float, float]] = None
        self._published_s = -math.inf
        self._delay = 0.0

    def on_published(self, stamp_s: float, positions: np.ndarray,
                     published_s: Optional[float] = None) -> None:
        """Remember a published chunk (absolute targets, step k at stamp + (k+1) dt)."""
        self._chunks[stamp_s] = np.asarray(positions, np.float64).copy()
        self._published_s = stamp_s if published_s is None else published_s
        while len(self._chunks) > self._history:
            self._chunks.popitem(last=False)

    def on_feedback(self, chunk_stamp_s: float, remaining_s: float, speed: float,
                    received_s: float) -> None:
        """Record ``safety/execution`` feedback received at ``received_s``."""
        self._feedback = (chunk_stamp_s, remaining_s, speed, received_s)

    def on_delay(self, delay_s: float) -> None:
        """Record observation stamp -> chunk published for one inference."""
        self._delay = delay_s if self._delay == 0.0 else \
            max(delay_s, 0.8 * self._delay + 0.2 * delay_s)

    @property
    def expected_delay_s(self) -> float:
        """Observation-to-publish delay to plan for (recent worst, smoothed)."""
        return self._delay

    def _newest_unconfirmed(self) -> Optional[float]:
        """Return the newest published stamp while feedback cannot have seen it yet.

        Feedback received more than FEEDBACK_GRACE_S after the publication that still names
        an older chunk means the controller did not take the new one: trust the feedback.
        """
        if not self._chunks:
            return None
        newest = next(reversed(self._chunks))
        if self._feedback is not None and (
                round(self._feedback[0], 6) >= round(newest, 6)
                or self._feedback[3] > self._published_s + FEEDBACK_GRACE_S):
            return None
        return newest

    def remaining_s(self, now_s: float) -> Optional[float]:
        """Horizon left in the executing chunk now, or None without fresh feedback.

        A chunk published after the last feedback counts as executing (the controller
        takes a new chunk on arrival), so the next inference is not started twice.
        """
        if self._feedback is None:
            return None
        newest = self._newest_unconfirmed()
        if newest is not None:
            return max(0.0, newest + self.horizon * self.dt_s - now_s)
        _, remaining, speed, received = self._feedback
        age = now_s - received
        if age > self.feedback_timeout_s or age < 0:
            return None
        return max(0.0, remaining - age * speed)

    def should_infer(self, now_s: float, trigger_remaining_s: float) -> Optional[bool]:
        """Whether the next inference must start now (None: no feedback, use the rate).

        ``trigger_remaining_s`` <= 0 means automatic: the expected delay plus one step.
        """
        remaining = self.remaining_s(now_s)
        if remaining is None:
            return None
        threshold = trigger_remaining_s if trigger_remaining_s > 0 else \
            self._delay + self.dt_s
        return remaining <= threshold

    def executing_chunk(self) -> Optional[Tuple[float, np.ndarray]]:
        """Return the executing chunk (by feedback), else the newest published one."""
        if not self._chunks:
            return None
        if self._feedback is not None and self._newest_unconfirmed() is None:
            # Stamps travel as ROS Time (ns): match to the microsecond, not bit for bit.
            wanted = round(self._feedback[0], 6)
            for key in reversed(self._chunks):
                if round(key, 6) == wanted:
                    return key, self._chunks[key]
        key = next(reversed(self._chunks))
        return key, self._chunks[key]

    def prefix(self, obs_stamp_s: float) -> Tuple[Optional[np.ndarray], int]:
        """Return the executing chunk's targets at the new chunk's step times, and the delay.

        Row k is the executing chunk's target at ``obs_stamp_s + (k + 1) * dt_s`` (linear
        between its steps, held past its ends); the delay is the expected delay in steps,
        rounded up. (None, 0) when nothing was published yet.
        """
        current = self.executing_chunk()
        if current is None:
            return None, 0
        stamp, positions = current
        t_old = stamp + self.dt_s * np.arange(1, len(positions) + 1)
        t_new = obs_stamp_s + self.dt_s * np.arange(1, self.horizon + 1)
        targets = np.column_stack([np.interp(t_new, t_old, positions[:, j])
                                   for j in range(positions.shape[1])])
        delay = int(math.ceil(self._delay / self.dt_s - 1e-9)) if self._delay > 0 else 0
        return targets, min(delay, self.horizon)
