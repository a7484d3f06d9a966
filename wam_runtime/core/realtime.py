"""Policy-side chunk continuity: when to start the next inference, and what to feed it.

``ExecutionTracker`` keeps the chunks ``policy_node`` published and the execution feedback
the safety controller publishes (``safety/execution``: the executing chunk's stamp, the
remaining horizon and the playback speed). From these it decides when to start the next
inference so that it lands before the current chunk runs out, and it builds the
real-time-chunking prefix: the executing chunk's targets at the new observation's step
times, and the expected delay in steps.

Chunks are keyed by their header stamp in integer nanoseconds, the form in which both the
chunk header and ``safety/execution`` (``chunk_stamp_sec`` + ``chunk_stamp_nanosec``) carry
it, so feedback names a chunk exactly; times of day (``now_s``, ``received_s``) and
intervals stay float seconds.
"""

from collections import deque, OrderedDict
import math
import operator
from typing import Optional, Tuple

import numpy as np


FEEDBACK_GRACE_S = 0.1   # publication -> controller -> feedback, with margin
# The delay to plan for is the worst of this many recent inferences: a policy whose every
# fifth inference is four times slower starts each one early enough for the slow one.
DELAY_WINDOW = 16


class ExecutionTracker:
    """Published chunks + execution feedback -> inference trigger and prefix inputs."""

    def __init__(self, dt_s: float, horizon: int, feedback_timeout_s: float = 0.5,
                 history: int = 16) -> None:
        """Track chunks of ``horizon`` steps of ``dt_s``."""
        self.dt_s = dt_s
        self.horizon = horizon
        self.feedback_timeout_s = feedback_timeout_s
        self._chunks: 'OrderedDict[int, np.ndarray]' = OrderedDict()
        self._history = history
        self._feedback: Optional[Tuple[int, float, float, float]] = None
        self._published_s = -math.inf
        self._delays: 'deque[float]' = deque(maxlen=DELAY_WINDOW)
        self._delay = 0.0

    def on_published(self, stamp_ns: int, positions: np.ndarray,
                     published_s: Optional[float] = None) -> None:
        """Remember a published chunk (absolute targets, step k at stamp + (k+1) dt)."""
        stamp_ns = operator.index(stamp_ns)
        self._chunks[stamp_ns] = np.asarray(positions, np.float64).copy()
        self._published_s = stamp_ns * 1e-9 if published_s is None else published_s
        while len(self._chunks) > self._history:
            self._chunks.popitem(last=False)

    def on_feedback(self, chunk_stamp_ns: int, remaining_s: float, speed: float,
                    received_s: float) -> None:
        """Record ``safety/execution`` feedback received at ``received_s``."""
        self._feedback = (operator.index(chunk_stamp_ns), remaining_s, speed, received_s)

    def on_delay(self, delay_s: float) -> None:
        """Record observation stamp -> chunk published for one inference."""
        self._delays.append(float(delay_s))
        self._delay = max(self._delays)

    @property
    def expected_delay_s(self) -> float:
        """Observation-to-publish delay to plan for (the worst of the recent inferences)."""
        return self._delay

    def _newest_unconfirmed(self) -> Optional[int]:
        """Return the newest published stamp while feedback cannot have seen it yet.

        Feedback received more than FEEDBACK_GRACE_S after the publication that still names
        an older chunk means the controller did not take the new one: trust the feedback.
        """
        if not self._chunks:
            return None
        newest = next(reversed(self._chunks))
        if self._feedback is not None and (
                self._feedback[0] >= newest
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
            return max(0.0, newest * 1e-9 + self.horizon * self.dt_s - now_s)
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

    def executing_chunk(self) -> Optional[Tuple[int, np.ndarray]]:
        """Return (stamp ns, targets) of the executing chunk (by feedback), else the newest."""
        if not self._chunks:
            return None
        if self._feedback is not None and self._newest_unconfirmed() is None:
            positions = self._chunks.get(self._feedback[0])
            if positions is not None:
                return self._feedback[0], positions
        key = next(reversed(self._chunks))
        return key, self._chunks[key]

    def prefix(self, obs_stamp_ns: int) -> Tuple[Optional[np.ndarray], int]:
        """Return the executing chunk's targets at the new chunk's step times, and the delay.

        Row k is the executing chunk's target at ``obs_stamp_ns`` + (k + 1) * ``dt_s``
        (linear between its steps, held past its ends); the delay is the expected delay in
        steps, rounded up. (None, 0) when nothing was published yet.
        """
        current = self.executing_chunk()
        if current is None:
            return None, 0
        stamp_ns, positions = current
        # Relative times: the offset between the stamps is exact before it becomes float.
        offset_s = (operator.index(obs_stamp_ns) - stamp_ns) * 1e-9
        t_old = self.dt_s * np.arange(1, len(positions) + 1)
        t_new = offset_s + self.dt_s * np.arange(1, self.horizon + 1)
        targets = np.column_stack([np.interp(t_new, t_old, positions[:, j])
                                   for j in range(positions.shape[1])])
        delay = int(math.ceil(self._delay / self.dt_s - 1e-9)) if self._delay > 0 else 0
        return targets, min(delay, self.horizon)
