"""A URDF's movable joints, and the limits, units, held and mimic joints they give the gate.

Position limits start from the URDF's ``<safety_controller>`` soft limits where present,
else its ``<limit>``; velocity from ``<limit velocity>``. Acceleration and jerk have no URDF
element and come from configuration. A configured value looser than the URDF's is a
startup error naming the joint and the field. Continuous joints need no position limits
(configured ones are optional).

Joints of the URDF the gate does not command (fingers, a second arm) are *held*: forward
kinematics uses a configured or measured value for them. *Mimic* joints follow their
leader (``value = multiplier * leader + offset``) and cannot be commanded.
"""

from dataclasses import dataclass
import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple
from xml.etree import ElementTree

from wam_runtime.core.limits import (
    group_values, JOINT_KINDS, JointLimits, LIMIT_FIELDS, LimitRow, LimitsError)


@dataclass(frozen=True)
class Mimic:
    """A URDF ``<mimic>``: this joint's value is ``multiplier * leader + offset``."""

    joint: str
    multiplier: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True)
class UrdfJoint:
    """One movable URDF joint and its limits (inf where the URDF gives none)."""

    name: str
    type: str  # noqa: A003 - the URDF attribute name
    lower: float
    upper: float
    velocity: float
    soft_lower: Optional[float]
    soft_upper: Optional[float]
    mimic: Optional[Mimic] = None

    @property
    def unit(self) -> str:
        """Unit of the joint's position: 'm' for prismatic joints, else 'rad'."""
        return 'm' if self.type == 'prismatic' else 'rad'

    @property
    def continuous(self) -> bool:
        """Whether the joint turns without end (URDF type continuous)."""
        return self.type == 'continuous'


def _float(elem: ElementTree.Element, attr: str, where: str) -> Optional[float]:
    raw = elem.get(attr)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise LimitsError(f'urdf: {where} {attr}={raw!r} is not a number') from None
    if not math.isfinite(value):
        raise LimitsError(f'urdf: {where} {attr}={raw!r} is not finite')
    return value


def parse_urdf_joints(urdf_text: str) -> Dict[str, UrdfJoint]:
    """Return the movable joints of a URDF by name; raise LimitsError on bad input."""
    try:
        root = ElementTree.fromstring(urdf_text)
    except ElementTree.ParseError as exc:
        raise LimitsError(f'urdf: not valid XML ({exc})') from None
    if root.tag != 'robot':
        raise LimitsError(f'urdf: root element is <{root.tag}>, expected <robot>')
    joints: Dict[str, UrdfJoint] = {}
    for j in root.findall('joint'):
        name, typ = j.get('name'), j.get('type')
        if typ in ('fixed', 'floating', 'planar'):
            continue
        where = f'joint {name!r}'
        limit = j.find('limit')
        lo = hi = None
        vel = math.inf
        if limit is not None:
            lo = _float(limit, 'lower', where)
            hi = _float(limit, 'upper', where)
            v = _float(limit, 'velocity', where)
            vel = v if v is not None and v > 0 else math.inf
        if typ == 'continuous':
            lo, hi = -math.inf, math.inf
        elif lo is None or hi is None:
            raise LimitsError(f'urdf: {where} ({typ}) has no <limit lower upper>')
        safety = j.find('safety_controller')
        s_lo = s_hi = None
        if safety is not None:
            s_lo = _float(safety, 'soft_lower_limit', where)
            s_hi = _float(safety, 'soft_upper_limit', where)
        mimic = None
        m = j.find('mimic')
        if m is not None:
            if not m.get('joint'):
                raise LimitsError(f'urdf: {where} <mimic> has no joint attribute')
            mult = _float(m, 'multiplier', where)
            off = _float(m, 'offset', where)
            mimic = Mimic(m.get('joint'), 1.0 if mult is None else mult,
                          0.0 if off is None else off)
        joints[name] = UrdfJoint(name, typ, lo, hi, vel, s_lo, s_hi, mimic)
    for j in joints.values():
        mimic_source(joints, j.name)     # leaders exist, no cycles
    return joints


def mimic_source(joints: Mapping[str, UrdfJoint], name: str) -> Tuple[str, float, float]:
    """Return ``(driver, multiplier, offset)``: ``name = multiplier * driver + offset``.

    Follows chains of mimic joints to the first joint that mimics nothing (``name`` itself
    when it is no mimic joint). Raises LimitsError for an unknown leader or a cycle.
    """
    mult, off, seen = 1.0, 0.0, [name]
    joint = joints[name]
    while joint.mimic is not None:
        leader = joint.mimic.joint
        if leader not in joints:
            raise LimitsError(f'urdf: joint {joint.name!r} mimics {leader!r}, which is not a '
                              'movable joint of the URDF')
        if leader in seen:
            raise LimitsError(f'urdf: mimic joints form a cycle: {seen + [leader]}')
        mult, off = mult * joint.mimic.multiplier, mult * joint.mimic.offset + off
        seen.append(leader)
        joint = joints[leader]
    return joint.name, mult, off


def check_commanded(joints: Mapping[str, UrdfJoint], joint_names: Sequence[str]) -> None:
    """Raise LimitsError unless every name is a movable, non-mimic joint of the URDF."""
    names = list(joint_names)
    missing = [n for n in names if n not in joints]
    if missing:
        raise LimitsError(f'joint_names: {missing} not movable joints of the URDF (it has '
                          f'{sorted(joints)})')
    for n in names:
        if joints[n].mimic is not None:
            raise LimitsError(f'joint_names: {n!r} is a mimic joint (it follows '
                              f'{joints[n].mimic.joint!r}); it cannot be commanded, list the '
                              'joint it follows instead')


def joint_units(urdf_text: str, joint_names: Sequence[str]) -> Tuple[str, ...]:
    """Per joint of ``joint_names``: 'rad' (revolute, continuous) or 'm' (prismatic)."""
    joints = parse_urdf_joints(urdf_text)
    check_commanded(joints, joint_names)
    return tuple(joints[n].unit for n in joint_names)


def continuous_joints(urdf_text: str, joint_names: Sequence[str]) -> Tuple[bool, ...]:
    """Per joint of ``joint_names``: whether it is a continuous (endless) joint."""
    joints = parse_urdf_joints(urdf_text)
    check_commanded(joints, joint_names)
    return tuple(joints[n].continuous for n in joint_names)


def resolve_limits(urdf_text: str, joint_names: Sequence[str],
                   config: Mapping[str, Optional[Sequence[float]]]
                   ) -> Tuple[JointLimits, List[LimitRow]]:
    """Intersect URDF limits with ``config``; return the limits and the table of sources.

    ``config`` keys (each optional; see ``LIMIT_FIELDS``): ``lower_limits_rad``,
    ``upper_limits_rad``, ``max_velocity_rad_s``, ``max_acceleration_rad_s2``,
    ``max_jerk_rad_s3`` with one value per revolute or continuous joint, and the ``_m``
    counterparts (``lower_limits_m`` ... ``max_jerk_m_s3``) with one value per prismatic
    joint. Acceleration is required (the URDF has none); jerk is optional; position limits
    of continuous joints are optional (+-inf, or ``.inf`` in the arrays, means endless).
    """
    urdf = parse_urdf_joints(urdf_text)
    names = list(joint_names)
    check_commanded(urdf, names)
    units = [urdf[n].unit for n in names]
    groups = {u: [i for i, x in enumerate(units) if x == u] for u in ('rad', 'm')}
    cfg: Dict[Tuple[str, str], Optional[List[float]]] = {}
    for quantity, key_rad, key_m, _, _ in LIMIT_FIELDS:
        cfg[quantity, 'rad'] = group_values(config, key_rad, names, groups['rad'], 'rad',
                                            key_m)
        cfg[quantity, 'm'] = group_values(config, key_m, names, groups['m'], 'm', key_rad)
    for unit, key in (('rad', 'max_acceleration_rad_s2'), ('m', 'max_acceleration_m_s2')):
        if groups[unit] and cfg['acc', unit] is None:
            raise LimitsError(f'{key}: required, one value per {JOINT_KINDS[unit]} joint '
                              f'({[names[i] for i in groups[unit]]}; the URDF has no '
                              'acceleration limits)')
    rows: List[LimitRow] = []
    out: Dict[str, List[float]] = {f[0]: [] for f in LIMIT_FIELDS}
    for i, name in enumerate(names):
        u = urdf[name]
        pos = groups[u.unit].index(i)
        base = {
            'lower': (u.soft_lower, 'urdf <safety_controller soft_lower_limit>')
            if u.soft_lower is not None else (u.lower, 'urdf <limit lower>'),
            'upper': (u.soft_upper, 'urdf <safety_controller soft_upper_limit>')
            if u.soft_upper is not None else (u.upper, 'urdf <limit upper>'),
            'vel': (u.velocity, 'urdf <limit velocity>'),
            'acc': (math.inf, 'none'),
            'jerk': (math.inf, 'none'),
        }
        if u.continuous and u.soft_lower is None:
            base['lower'] = (-math.inf, 'none (continuous)')
        if u.continuous and u.soft_upper is None:
            base['upper'] = (math.inf, 'none (continuous)')
        for quantity, key_rad, key_m, unit_rad, unit_m in LIMIT_FIELDS:
            field_name, unit = (key_m, unit_m) if u.unit == 'm' else (key_rad, unit_rad)
            value, source = base[quantity]
            given = cfg[quantity, u.unit]
            if given is not None:
                c = given[pos]
                endless = u.continuous and quantity in ('lower', 'upper') and c == value
                if not math.isfinite(c) and not endless:
                    raise LimitsError(f'{field_name}: joint {name!r} is not finite')
                if quantity in ('vel', 'acc', 'jerk') and not c > 0:
                    raise LimitsError(f'{field_name}: joint {name!r} = {c} must be > 0')
                tighter = c >= value if quantity == 'lower' else c <= value
                if not tighter:
                    raise LimitsError(f'{field_name}: joint {name!r} = {c} is looser than '
                                      f'{source} = {value}; configuration may only tighten')
                value, source = c, 'config'
            out[quantity].append(value)
            rows.append(LimitRow(name, field_name, value, source, unit))
        if out['lower'][-1] >= out['upper'][-1]:
            keys = LIMIT_FIELDS[0][2 if u.unit == 'm' else 1], \
                LIMIT_FIELDS[1][2 if u.unit == 'm' else 1]
            raise LimitsError(f'{keys[0]}/{keys[1]}: joint {name!r} has lower '
                              f'{out["lower"][-1]} >= upper {out["upper"][-1]} {u.unit}')
    for i, v in enumerate(out['vel']):
        if math.isinf(v):
            key = LIMIT_FIELDS[2][2 if units[i] == 'm' else 1]
            raise LimitsError(f'{key}: joint {names[i]!r} has no velocity limit in the URDF; '
                              'configure one')
    limits = JointLimits.create(names, out['lower'], out['upper'], out['vel'], out['acc'],
                                out['jerk'], [urdf[n].continuous for n in names])
    return limits, rows


def default_held_position(joint: UrdfJoint) -> float:
    """Position a held joint has until configured or measured: 0 clipped into its limits."""
    return min(max(0.0, joint.lower), joint.upper)


def resolve_held(urdf_text: str, joint_names: Sequence[str], held_names: Sequence[str],
                 held_positions: Sequence[float]) -> Dict[str, float]:
    """Validate configured positions of held joints; return them by joint name.

    A held joint is a movable URDF joint that is neither commanded (``joint_names``) nor a
    mimic joint; its position is in its unit (rad or m) and inside its URDF limits.
    Raises LimitsError naming ``held_joint_names`` / ``held_joint_positions`` and the joint.
    """
    joints = parse_urdf_joints(urdf_text)
    names, values = list(held_names or []), list(held_positions or [])
    if len(names) != len(values):
        raise LimitsError(f'held_joint_positions: expected {len(names)} values (one per '
                          f'held_joint_names entry), got {len(values)}')
    if len(set(names)) != len(names):
        raise LimitsError(f'held_joint_names: duplicates in {names}')
    out: Dict[str, float] = {}
    for name, raw in zip(names, values):
        if name not in joints:
            raise LimitsError(f'held_joint_names: {name!r} is not a movable joint of the URDF')
        j = joints[name]
        if name in joint_names:
            raise LimitsError(f'held_joint_names: {name!r} is commanded (in joint_names); '
                              'only joints the gate does not command are held')
        if j.mimic is not None:
            raise LimitsError(f'held_joint_names: {name!r} is a mimic joint; it follows '
                              f'{j.mimic.joint!r}, hold that one instead')
        v = float(raw)
        if not math.isfinite(v):
            raise LimitsError(f'held_joint_positions: joint {name!r} is not finite')
        if not j.lower <= v <= j.upper:
            raise LimitsError(f'held_joint_positions: joint {name!r} = {v} {j.unit} is outside '
                              f'its URDF limits [{j.lower}, {j.upper}]')
        out[name] = v
    return out


def held_rows(urdf_text: str, joint_names: Sequence[str],
              configured: Mapping[str, float]) -> List[LimitRow]:
    """Table rows for the URDF joints the gate does not command: held and mimic joints."""
    joints = parse_urdf_joints(urdf_text)
    rows = []
    for j in joints.values():
        if j.name in joint_names:
            continue
        if j.mimic is not None:
            driver, mult, off = mimic_source(joints, j.name)
            rows.append(LimitRow(j.name, 'mimic', math.nan,
                                 f'follows {driver} (* {mult:g} + {off:g})', j.unit))
        elif j.name in configured:
            rows.append(LimitRow(j.name, 'held_position', configured[j.name],
                                 'config held_joint_positions (until measured)', j.unit))
        else:
            rows.append(LimitRow(j.name, 'held_position', default_held_position(j),
                                 'default: 0 clipped into <limit> (until measured)', j.unit))
    return rows
