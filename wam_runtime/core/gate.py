"""The safety gate: a pure function from a requested command to an allowed one.

Every outgoing command passes ``gate_command``. It never lets a non-finite value through
(NaN fails every comparison, so min/max clamps would pass it: we test for it first), keeps
positions inside the limits minus a margin, and bounds the step from the previous output by
``max_velocity * dt`` with ``dt`` capped at the nominal control period, so a late tick or a
clock jump never widens the window and ``dt <= 0`` holds still.
"""

from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import numpy as np

NON_FINITE = 'non_finite'
POSITION_LIMIT = 'position_limit'
VELOCITY_LIMIT = 'velocity_limit'


class LimitsError(ValueError):
    """Limits are inconsistent; the message names the field and joint."""


@dataclass(frozen=True)
class JointLimits:
    """Per-joint position and velocity limits, in the controller's joint order."""

    joint_names: Tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    max_velocity: np.ndarray

    @classmethod
    def create(cls, joint_names: Sequence[str], lower: Sequence[float],
               upper: Sequence[float], max_velocity: Sequence[float]) -> 'JointLimits':
        """Validate and build limits; raise LimitsError naming the field and joint."""
        names = tuple(joint_names)
        if not names:
            raise LimitsError('joint_names: empty')
        if len(set(names)) != len(names):
            raise LimitsError(f'joint_names: duplicates in {list(names)}')
        arrays = {}
        for key, values in (('lower_limits_rad', lower), ('upper_limits_rad', upper),
                            ('max_velocity_rad_s', max_velocity)):
            a = np.asarray(values, dtype=np.float64)
            if a.shape != (len(names),):
                raise LimitsError(f'{key}: expected {len(names)} values (one per joint in '
                                  f'joint_names), got {len(a)}')
            bad = np.flatnonzero(~np.isfinite(a))
            if bad.size:
                raise LimitsError(f'{key}: joint {names[bad[0]]!r} is not finite')
            arrays[key] = a
        lo, hi, vmax = arrays['lower_limits_rad'], arrays['upper_limits_rad'], \
            arrays['max_velocity_rad_s']
        bad = np.flatnonzero(lo >= hi)
        if bad.size:
            j = bad[0]
            raise LimitsError(f'lower_limits_rad/upper_limits_rad: joint {names[j]!r} has '
                              f'lower {lo[j]} >= upper {hi[j]}')
        bad = np.flatnonzero(vmax <= 0)
        if bad.size:
            raise LimitsError(f'max_velocity_rad_s: joint {names[bad[0]]!r} must be > 0')
        for a in (lo, hi, vmax):
            a.setflags(write=False)
        return cls(names, lo, hi, vmax)


@dataclass(frozen=True)
class Intervention:
    """One change the gate made: reason code, joint, requested and allowed value."""

    reason: str
    joint: str
    requested: float
    allowed: float


@dataclass
class GateResult:
    """The allowed command and the interventions that produced it."""

    command: np.ndarray
    interventions: List[Intervention] = field(default_factory=list)


def gate_command(requested: np.ndarray, previous: np.ndarray, limits: JointLimits,
                 dt_s: float, nominal_dt_s: float, margin_rad: float = 0.0) -> GateResult:
    """Return the command closest to ``requested`` that the limits allow after ``previous``.

    ``previous`` is the last command this gate published (or the measured position before
    the first). Velocity limiting scales the whole step uniformly, so the direction of
    motion in joint space is kept.
    """
    req = np.asarray(requested, dtype=np.float64)
    prev = np.asarray(previous, dtype=np.float64)
    names = limits.joint_names
    out: List[Intervention] = []
    if req.shape != prev.shape:
        raise ValueError(f'requested has shape {req.shape}, previous {prev.shape}')
    target = req.copy()
    bad = ~np.isfinite(target)
    if bad.any():
        for j in np.flatnonzero(bad):
            out.append(Intervention(NON_FINITE, names[j], float(req[j]), float(prev[j])))
        # A request with any non-finite entry is not a request: hold every joint.
        return GateResult(prev.copy(), out)
    lo = limits.lower + margin_rad
    hi = limits.upper - margin_rad
    clipped = np.minimum(np.maximum(target, lo), hi)
    for j in np.flatnonzero(clipped != target):
        out.append(Intervention(POSITION_LIMIT, names[j], float(target[j]), float(clipped[j])))
    target = clipped
    dt = float(dt_s)
    # NaN, -0.0 and negative dt all mean "no time has passed": hold.
    dt = min(dt, float(nominal_dt_s)) if dt > 0.0 else 0.0
    max_step = limits.max_velocity * dt
    step = target - prev
    mag = np.abs(step)
    over = mag > max_step
    if over.any():
        # Uniform scaling: the most constrained joint sets the factor for all of them.
        factors = np.ones_like(mag)
        factors[over] = max_step[over] / mag[over]
        worst = int(np.argmin(factors))
        allowed = prev + step * factors[worst]
        # Guard against rounding pushing a joint past its own bound.
        allowed = np.clip(allowed, prev - max_step, prev + max_step)
        out.append(Intervention(VELOCITY_LIMIT, names[worst], float(target[worst]),
                                float(allowed[worst])))
        target = allowed
    return GateResult(target, out)
