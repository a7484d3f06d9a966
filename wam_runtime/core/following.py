"""Following-error monitor: a robot that does not follow its commands is a fault.

Industrial drives fault on following error and joint_trajectory_controller has path
tolerances; this is the same check for the safety controller's command stream. A blocked
joint, a driver that ignores commands or a stuck gripper shows as a measured position that
stays away from the command.

The command needs time to take effect: transport to the driver, the downstream controller,
the robot's own dynamics and the way back on joint_states. So the measured position at
time ``t`` is compared with the command issued at ``t - delay_s``, interpolated from a short
history of the commands issued (a ring buffer a little longer than the delay). Per joint:

- ``error = measured - command(t - delay_s)`` in the joint's unit (rad, or m for prismatic
  joints); continuous joints compare the short way round;
- a joint is watched only while its command moves or moved within the last ``delay_s``
  plus one command period (a gripper squeezing an object it holds still is not a
  following error; monitored standstill covers a holding arm);
- ``|error| > tolerance`` sustained for ``timeout_s`` (measured-state time) is a fault.

Time is passed in; the monitor never reads a clock. Per call: a few numpy operations on
one row per joint, no Python loop over the history.
"""

from dataclasses import dataclass
import math
from typing import Optional, Sequence, Union

import numpy as np

from wam_runtime.core.gate import wrap_angle

# A command that changes by less than this per tick (joint units) counts as not moving.
MOVING_EPSILON = 1e-9


@dataclass(frozen=True)
class FollowingFault:
    """A joint that did not follow: its index, the delayed command and the measurement."""

    joint: int
    commanded: float    # the command issued delay_s before the measurement
    measured: float     # by whole turns nearest ``commanded`` for a continuous joint
    error: float        # measured - commanded (joint units)
    duration_s: float   # how long |error| has been beyond the tolerance
    tolerance: float


def describe(joint_name: str, fault: FollowingFault, unit: str = '') -> str:
    """Return a one-line description of a following fault naming the joint and the error."""
    u = f' {unit}' if unit else ''
    return (f'{joint_name}: following error {fault.error:+.4g}{u} (measured '
            f'{fault.measured:.6g}, commanded {fault.commanded:.6g}, max '
            f'{fault.tolerance:g}{u}) for {fault.duration_s:.3f} s')


class FollowingMonitor:
    """Compare measured positions with the commands issued ``delay_s`` earlier."""

    def __init__(self, tolerance: Union[float, Sequence[float], np.ndarray], timeout_s: float,
                 delay_s: float, period_s: float, n_joints: int,
                 continuous: Optional[Sequence[bool]] = None) -> None:
        """Set up for ``n_joints`` joints commanded about every ``period_s``.

        ``tolerance`` is one value per joint (or one for all) in the joint's unit; inf (or
        0) turns a joint's check off. Raises ValueError for a negative or non-finite
        ``timeout_s``, ``delay_s`` or a non-positive ``period_s``.
        """
        for name, value in (('timeout_s', timeout_s), ('delay_s', delay_s)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f'{name} must be finite and >= 0, got {value}')
        if not (math.isfinite(period_s) and period_s > 0):
            raise ValueError(f'period_s must be > 0, got {period_s}')
        tol = np.broadcast_to(np.asarray(tolerance, dtype=np.float64), (n_joints,)).copy()
        if np.any(np.isnan(tol)) or np.any(tol < 0):
            raise ValueError(f'tolerance must be >= 0, got {tol.tolist()}')
        tol[tol == 0] = np.inf
        self.tolerance = tol
        self.timeout_s = float(timeout_s)
        self.delay_s = float(delay_s)
        self.period_s = float(period_s)
        self.n_joints = int(n_joints)
        self.continuous = np.zeros(n_joints, bool) if continuous is None else \
            np.asarray(continuous, dtype=bool)
        # Enough rows for the delay at the nominal rate, twice over (ticks may come early).
        self.capacity = 2 * int(math.ceil(self.delay_s / period_s)) + 8
        # Each row is written twice (at i and i + capacity): rows [head, head + capacity)
        # are always one contiguous, time-ordered slice.
        self._t = np.full(2 * self.capacity, np.inf)
        self._q = np.zeros((2 * self.capacity, n_joints))
        self.error = np.full(n_joints, np.nan)   # the last error, nan where unknown
        self.clear()

    @property
    def enabled(self) -> bool:
        """Whether any joint is checked."""
        return bool(np.isfinite(self.tolerance).any())

    def clear(self) -> None:
        """Forget the command history and every running excursion (a new command stream)."""
        self._head = 0          # index of the oldest row
        self._count = 0
        self._last_cmd: Optional[np.ndarray] = None
        self._last_cmd_t = -np.inf
        self._moved_t = np.full(self.n_joints, -np.inf)   # last time each command moved
        self._over_since = np.full(self.n_joints, np.nan)
        self._state_t = -np.inf
        self.error[:] = np.nan

    def on_command(self, t_s: float, command: np.ndarray) -> None:
        """Record the command issued at ``t_s``; a time not after the last one restarts."""
        if t_s <= self._last_cmd_t:
            self.clear()        # the clock went back (or stood still): a new time base
        q = np.asarray(command, dtype=np.float64)
        if self._last_cmd is not None:
            moved = np.abs(q - self._last_cmd) > MOVING_EPSILON
            self._moved_t[moved] = t_s
        cap = self.capacity
        if self._count < cap:
            i = self._head + self._count
            self._count += 1
        else:
            i = self._head
            self._head = (self._head + 1) % cap
        self._t[i] = self._t[i + cap] = t_s
        self._q[i] = self._q[i + cap] = q
        self._last_cmd = q
        self._last_cmd_t = t_s

    def reference(self, t_s: float) -> Optional[np.ndarray]:
        """Return the command in force at ``t_s`` (linear between issued commands).

        None before the oldest command held; after the newest one, the newest one.
        """
        if self._count == 0:
            return None
        lo = self._head
        times = self._t[lo:lo + self._count]
        if t_s < times[0]:
            return None
        k = int(np.searchsorted(times, t_s, side='right'))
        if k >= self._count:
            return self._q[lo + self._count - 1].copy()
        t0, t1 = times[k - 1], times[k]
        w = (t_s - t0) / (t1 - t0)
        return self._q[lo + k - 1] + w * (self._q[lo + k] - self._q[lo + k - 1])

    def on_state(self, t_s: float, measured: np.ndarray) -> Optional[FollowingFault]:
        """Check a measurement taken at ``t_s``; return a fault once one is sustained.

        A measurement not newer than the previous one is ignored (None). While a joint
        stays beyond its tolerance the fault is returned again on every new measurement.
        """
        if t_s <= self._state_t:
            return None
        self._state_t = t_s
        ref = self.reference(t_s - self.delay_s)
        if ref is None:
            self._over_since[:] = np.nan
            self.error[:] = np.nan
            return None
        err = np.asarray(measured, dtype=np.float64) - ref
        c = self.continuous
        if c.any():
            err[c] = wrap_angle(err[c])
        self.error = err
        # Watched while the command moves or moved within the delay (plus one period: a
        # measurement may fall between two commands).
        watched = self._moved_t >= t_s - self.delay_s - self.period_s
        over = watched & ~(np.abs(err) <= self.tolerance)    # NaN measured counts as over
        since = self._over_since
        if not over.any():          # the usual case: nothing beyond the tolerance
            since.fill(np.nan)
            return None
        since[~over] = np.nan
        since[over & np.isnan(since)] = t_s
        duration = np.where(over, t_s - since, -np.inf)
        j = int(np.argmax(duration))
        if not over[j] or duration[j] < self.timeout_s:
            return None
        return FollowingFault(j, float(ref[j]), float(ref[j] + err[j]), float(err[j]),
                              float(duration[j]), float(self.tolerance[j]))
