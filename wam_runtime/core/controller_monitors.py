"""The safety controller's monitors: e-stop heartbeat, intervention escalation, standstill.

Each holds the little state one of ``core.controller.SafetyController``'s fault rules needs
and decides on it; the controller latches the fault it reports. The limits are passed in
on every call (read from the controller's configuration then), never kept here.
"""

from collections import deque
from typing import Deque, Optional, Sequence, Union

import numpy as np

from wam_runtime.core.controller_config import STANDSTILL
from wam_runtime.core.gate import Intervention


def marker(reason: str, value: float = float('nan')) -> Intervention:
    """Return an intervention that names no joint (a stop, a clock jump, a speed limit)."""
    return Intervention(reason, '', float('nan'), value)


class EstopMonitor:
    """The last e-stop message: pressed or released, and when it came."""

    def __init__(self) -> None:
        """Start released, without any message."""
        self.pressed = False
        self.time_s: Optional[float] = None

    def on_message(self, pressed: bool, now_s: float) -> None:
        """Record an e-stop message."""
        self.pressed = bool(pressed)
        self.time_s = now_s

    def heartbeat_lost(self, now_s: float, timeout_s: float) -> bool:
        """Whether heartbeat mode (``timeout_s`` > 0) has had no message for ``timeout_s``."""
        return timeout_s > 0 and (self.time_s is None or now_s - self.time_s > timeout_s)

    def reset_refusal(self, heartbeat_fault: bool) -> Optional[str]:
        """Return why a fault may not be reset yet (None: the e-stop allows it).

        ``heartbeat_fault``: the latched fault is the lost heartbeat, which only a first
        message clears.
        """
        if self.pressed:
            return 'e-stop is still pressed'
        if heartbeat_fault and self.time_s is None:
            return 'no e-stop heartbeat received yet'
        return None


class EscalationWindow:
    """Interventions within a sliding time window; too many of them escalate to a fault."""

    def __init__(self) -> None:
        """Start with no intervention."""
        self._times: Deque[float] = deque()

    def clear(self) -> None:
        """Forget every intervention."""
        self._times.clear()

    def note(self, now_s: float, max_count: int, window_s: float) -> bool:
        """Count an intervention; return whether more than ``max_count`` are in the window.

        ``max_count`` <= 0 never escalates (and counts nothing).
        """
        if max_count <= 0:
            return False
        self._times.append(now_s)
        while self._times and self._times[0] < now_s - window_s:
            self._times.popleft()
        return len(self._times) > max_count


class StandstillMonitor:
    """Monitored standstill: a holding arm whose measured position drifts from the hold."""

    def __init__(self) -> None:
        """Start not holding."""
        self.since: Optional[float] = None

    def clear(self) -> None:
        """Forget the hold (the arm moves or tracks): the next one settles anew."""
        self.since = None

    def drifting(self, now_s: float, state: np.ndarray, state_time_s: float,
                 command: np.ndarray, joint_names: Sequence[str],
                 tolerance: Union[float, Sequence[float], np.ndarray], settle_s: float,
                 state_timeout_s: float) -> Optional[Intervention]:
        """Check a holding tick; return the drift of a joint beyond ``tolerance``, if any.

        The first holding tick starts the hold; nothing is checked for ``settle_s`` after
        it, nor while the measured state (at ``state_time_s``) is older than
        ``state_timeout_s``. The drift is a ``standstill_drift`` intervention naming the
        joint, its measured position and the position held.
        """
        if self.since is None:
            self.since = now_s
            return None
        if now_s - self.since < settle_s or now_s - state_time_s > state_timeout_s:
            return None
        drift = np.abs(state - command)
        limit = np.broadcast_to(tolerance, drift.shape)
        j = int(np.argmax(drift - limit))
        if drift[j] > limit[j]:
            return Intervention(STANDSTILL, joint_names[j], float(state[j]), float(command[j]))
        return None
