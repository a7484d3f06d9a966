"""Joint limits: the validated per-joint limits the gate enforces, and their table.

:class:`JointLimits` holds position, velocity, acceleration and jerk limits in the
controller's joint order (inf = not limited) with the per-tick constants the gate needs.
Units follow the joint type: revolute and continuous joints take their values from the
``*_rad*`` parameters (rad, rad/s, ...), prismatic joints from the ``*_m*`` parameters
(m, m/s, ...). Each array holds one value per joint of its kind, in ``joint_names`` order.
Limits read from a URDF and tightened by configuration come from ``wam_runtime.core.urdf``.
"""

from dataclasses import dataclass
import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from wam_runtime.core.braking import stop_jerk_terms

# (quantity, parameter for revolute/continuous joints, parameter for prismatic joints,
#  unit of the first, unit of the second)
LIMIT_FIELDS = (
    ('lower', 'lower_limits_rad', 'lower_limits_m', 'rad', 'm'),
    ('upper', 'upper_limits_rad', 'upper_limits_m', 'rad', 'm'),
    ('vel', 'max_velocity_rad_s', 'max_velocity_m_s', 'rad/s', 'm/s'),
    ('acc', 'max_acceleration_rad_s2', 'max_acceleration_m_s2', 'rad/s^2', 'm/s^2'),
    ('jerk', 'max_jerk_rad_s3', 'max_jerk_m_s3', 'rad/s^3', 'm/s^3'),
)
LIMIT_KEYS = tuple(f[1] for f in LIMIT_FIELDS)
LIMIT_KEYS_M = tuple(f[2] for f in LIMIT_FIELDS)
# (unit, scalar margin for every joint of that unit, per-joint array overriding it)
MARGIN_FIELDS = (('rad', 'position_margin_rad', 'position_margins_rad'),
                 ('m', 'position_margin_m', 'position_margins_m'))
MARGIN_KEYS = tuple(k for f in MARGIN_FIELDS for k in f[1:])
# Unit of a joint's position -> the joints that have it, for messages.
JOINT_KINDS = {'rad': 'revolute or continuous', 'm': 'prismatic'}


class LimitsError(ValueError):
    """Limits are inconsistent; the message names the field and joint."""


@dataclass(frozen=True)
class JointLimits:
    """Per-joint limits in the controller's joint order (inf = not limited)."""

    joint_names: Tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    max_velocity: np.ndarray
    max_acceleration: np.ndarray = None
    max_jerk: np.ndarray = None
    continuous: np.ndarray = None     # per joint: endless (angles wrap at +-pi when measured)

    @classmethod
    def create(cls, joint_names: Sequence[str], lower: Sequence[float],
               upper: Sequence[float], max_velocity: Sequence[float],
               max_acceleration: Optional[Sequence[float]] = None,
               max_jerk: Optional[Sequence[float]] = None,
               continuous: Optional[Sequence[bool]] = None) -> 'JointLimits':
        """Validate and build limits; raise LimitsError naming the field and joint.

        A ``continuous`` joint may have no position limits (-inf and inf); every other
        position limit must be finite.
        """
        names = tuple(joint_names)
        if not names:
            raise LimitsError('joint_names: empty')
        if len(set(names)) != len(names):
            raise LimitsError(f'joint_names: duplicates in {list(names)}')
        n = len(names)
        endless = np.zeros(n, bool) if continuous is None else np.asarray(continuous, bool)
        if endless.shape != (n,):
            raise LimitsError(f'continuous: expected {n} flags, got {endless.size}')
        arrays = {}
        for key, values, finite in (
                ('lower_limits_rad', lower, ~endless), ('upper_limits_rad', upper, ~endless),
                ('max_velocity_rad_s', max_velocity, True),
                ('max_acceleration_rad_s2', max_acceleration, False),
                ('max_jerk_rad_s3', max_jerk, False)):
            if values is None:
                values = [math.inf] * n
            a = np.asarray(values, dtype=np.float64)
            if a.shape != (n,):
                raise LimitsError(f'{key}: expected {n} values (one per joint in '
                                  f'joint_names), got {a.size}')
            bad = np.flatnonzero(np.isnan(a) | (np.isinf(a) & finite))
            if bad.size:
                raise LimitsError(f'{key}: joint {names[bad[0]]!r} is not finite')
            arrays[key] = a
        lo, hi = arrays['lower_limits_rad'], arrays['upper_limits_rad']
        bad = np.flatnonzero((lo >= hi) | (np.isinf(lo) != np.isinf(hi)))
        if bad.size:
            j = bad[0]
            raise LimitsError(f'lower_limits_rad/upper_limits_rad: joint {names[j]!r} has '
                              f'lower {lo[j]} >= upper {hi[j]}')
        for key in ('max_velocity_rad_s', 'max_acceleration_rad_s2', 'max_jerk_rad_s3'):
            bad = np.flatnonzero(arrays[key] <= 0)
            if bad.size:
                raise LimitsError(f'{key}: joint {names[bad[0]]!r} must be > 0')
        for a in list(arrays.values()) + [endless]:
            a.setflags(write=False)
        return cls(names, lo, hi, arrays['max_velocity_rad_s'],
                   arrays['max_acceleration_rad_s2'], arrays['max_jerk_rad_s3'], endless)

    def __post_init__(self) -> None:
        """Fill unlimited acceleration and jerk, and precompute per-tick constants."""
        for name in ('max_acceleration', 'max_jerk'):
            if getattr(self, name) is None:
                a = np.full(len(self.joint_names), math.inf)
                a.setflags(write=False)
                object.__setattr__(self, name, a)
        if self.continuous is None:
            a = np.zeros(len(self.joint_names), bool)
            a.setflags(write=False)
            object.__setattr__(self, 'continuous', a)
        finite = np.isfinite(self.max_acceleration) & np.isfinite(self.max_jerk)
        # Time to turn the acceleration around under the jerk limit (0 when unlimited).
        ramp = np.zeros(len(self.joint_names))
        ramp[finite] = 2.0 * self.max_acceleration[finite] / self.max_jerk[finite]
        object.__setattr__(self, 'brake_ramp_s', ramp)
        # For braking_reach: the finite limits and their inverses (0 where unlimited).
        fa, fj = np.isfinite(self.max_acceleration), np.isfinite(self.max_jerk)
        object.__setattr__(self, '_finite_acc', fa)
        object.__setattr__(self, '_acc_or_0', np.where(fa, self.max_acceleration, 0.0))
        object.__setattr__(self, '_half_inv_acc', np.where(fa, 0.5 / np.where(
            fa, self.max_acceleration, 1.0), 0.0))
        object.__setattr__(self, '_inv_jerk', np.where(fj, 1.0 / np.where(
            fj, self.max_jerk, 1.0), 0.0))
        # For the jerk-limited stop (braking.stop_acceleration).
        jerk, inv = stop_jerk_terms(self.max_jerk)
        object.__setattr__(self, '_stop_jerk', jerk)
        object.__setattr__(self, '_stop_inv_jerk', inv)


@dataclass(frozen=True)
class LimitRow:
    """One line of the effective-limits table: value, unit and where it came from."""

    joint: str
    field: str
    value: float
    source: str
    unit: str = ''


def _given(values: Optional[Sequence[float]]) -> bool:
    return values is not None and len(values) > 0


def group_values(config: Mapping[str, object], key: str, names: Sequence[str],
                 idx: Sequence[int], unit: str,
                 other: Optional[str] = None) -> Optional[List[float]]:
    """Values of the per-joint array ``key`` for the joints ``idx``, or None if not given."""
    values = config.get(key)
    if not _given(values):
        return None
    if not idx:
        raise LimitsError(f'{key}: joint_names has no {JOINT_KINDS[unit]} joint; remove it'
                          + (f' (use {other})' if other else ''))
    if len(values) != len(idx):
        hint = ''
        if other and len(values) == len(names):
            hint = (f'; the {JOINT_KINDS["m" if unit == "rad" else "rad"]} joints take theirs '
                    f'from {other}')
        raise LimitsError(f'{key}: expected {len(idx)} values (one per {JOINT_KINDS[unit]} joint '
                          f'in joint_names: {[names[i] for i in idx]}), got {len(values)}'
                          f'{hint}')
    return [float(v) for v in values]


def resolve_margins(joint_names: Sequence[str], units: Sequence[str],
                    lower: Sequence[float], upper: Sequence[float],
                    config: Mapping[str, object]) -> Tuple[np.ndarray, List[LimitRow]]:
    """Return the position margin of every joint (in its unit) and the table rows.

    ``position_margin_rad`` applies to revolute and continuous joints, ``position_margin_m``
    to prismatic ones; ``position_margins_rad`` / ``position_margins_m`` (one value per joint
    of that kind) override them per joint. A margin that is negative, not finite, or leaves
    no range (``lower + margin >= upper - margin``) raises LimitsError naming the joint and
    the parameter.
    """
    names = list(joint_names)
    margins = np.zeros(len(names))
    rows: List[LimitRow] = []
    source: Dict[int, Tuple[str, float]] = {}        # joint -> (parameter, margin)
    for unit, scalar_key, array_key in MARGIN_FIELDS:
        idx = [i for i, x in enumerate(units) if x == unit]
        scalar = config.get(scalar_key)
        scalar = 0.0 if scalar is None else float(scalar)
        if not (math.isfinite(scalar) and scalar >= 0):
            raise LimitsError(f'{scalar_key}: must be finite and >= 0, got {scalar}')
        per_joint = group_values(config, array_key, names, idx, unit)
        for k, i in enumerate(idx):
            source[i] = (array_key, per_joint[k]) if per_joint is not None else (scalar_key,
                                                                                 scalar)
    for i, name in enumerate(names):
        key, m = source[i]
        unit = units[i]
        if not (math.isfinite(m) and m >= 0):
            raise LimitsError(f'{key}: joint {name!r} = {m} must be finite and >= 0')
        lo, hi = float(lower[i]), float(upper[i])
        if lo + m >= hi - m:
            raise LimitsError(f'{key}: joint {name!r} margin {m:g} {unit} leaves no range: '
                              f'[{lo:g}, {hi:g}] {unit} shrinks to [{lo + m:g}, {hi - m:g}]')
        margins[i] = m
        rows.append(LimitRow(name, key, m, 'config' if m > 0 else 'none', unit))
    return margins, rows


def config_rows(limits: JointLimits, config: Mapping[str, object]) -> List[LimitRow]:
    """Table rows for limits taken from configuration alone (no URDF: every joint in rad)."""
    rows = []
    for i, name in enumerate(limits.joint_names):
        for (_, key, _, unit, _), values in zip(LIMIT_FIELDS, (
                limits.lower, limits.upper, limits.max_velocity, limits.max_acceleration,
                limits.max_jerk)):
            rows.append(LimitRow(name, key, float(values[i]),
                                 'config' if _given(config.get(key)) else 'none', unit))
    return rows


def format_limits_table(rows: Sequence[LimitRow]) -> str:
    """Render the effective-limits table as aligned text, the rows of a joint together.

    Columns: joint, field, value, unit, source; the joint and field columns are as wide as
    their longest entry, so long joint names stay aligned.
    """
    order: Dict[str, int] = {}
    for r in rows:
        order.setdefault(r.joint, len(order))
    rows = sorted(rows, key=lambda r: order[r.joint])     # stable: keeps the field order
    wj = max([len('joint')] + [len(r.joint) for r in rows]) + 2
    wf = max([len('field')] + [len(r.field) for r in rows]) + 2
    wu = max([len('unit')] + [len(r.unit) for r in rows]) + 2
    lines = [f'{"joint":<{wj}}{"field":<{wf}}{"value":>12}  {"unit":<{wu}}source']
    for r in rows:
        value = '-' if math.isnan(r.value) else f'{r.value:.6g}'
        lines.append(f'{r.joint:<{wj}}{r.field:<{wf}}{value:>12}  {r.unit or "-":<{wu}}'
                     f'{r.source}')
    return '\n'.join(lines)
