"""Joint limits from the URDF, intersected with configuration that may only tighten them.

Position limits start from the URDF's ``<safety_controller>`` soft limits where present,
else its ``<limit>``; velocity from ``<limit velocity>``. Acceleration and jerk have no URDF
element and come from configuration. A configured value looser than the URDF's is a
startup error naming the joint and the field.
"""

from dataclasses import dataclass
import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple
from xml.etree import ElementTree

from wam_runtime.core.gate import JointLimits, LimitsError


LIMIT_KEYS = ('lower_limits_rad', 'upper_limits_rad', 'max_velocity_rad_s',
              'max_acceleration_rad_s2', 'max_jerk_rad_s3')


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


@dataclass(frozen=True)
class LimitRow:
    """One line of the effective-limits table: value and where it came from."""

    joint: str
    field: str
    value: float
    source: str


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
        joints[name] = UrdfJoint(name, typ, lo, hi, vel, s_lo, s_hi)
    return joints


def _given(values: Optional[Sequence[float]]) -> bool:
    return values is not None and len(values) > 0


def resolve_limits(urdf_text: str, joint_names: Sequence[str],
                   config: Mapping[str, Optional[Sequence[float]]]
                   ) -> Tuple[JointLimits, List[LimitRow]]:
    """Intersect URDF limits with ``config``; return the limits and the table of sources.

    ``config`` keys (each optional, one value per joint): ``lower_limits_rad``,
    ``upper_limits_rad``, ``max_velocity_rad_s``, ``max_acceleration_rad_s2``,
    ``max_jerk_rad_s3``. Acceleration is required (the URDF has none); jerk is optional.
    """
    urdf = parse_urdf_joints(urdf_text)
    names = list(joint_names)
    missing = [n for n in names if n not in urdf]
    if missing:
        raise LimitsError(f'joint_names: {missing} not movable joints of the URDF (it has '
                          f'{sorted(urdf)})')
    n = len(names)
    for key in LIMIT_KEYS:
        values = config.get(key)
        if _given(values) and len(values) != n:
            raise LimitsError(f'{key}: expected {n} values (one per joint in joint_names), '
                              f'got {len(values)}')
    rows: List[LimitRow] = []
    out: Dict[str, List[float]] = {k: [] for k in ('lower', 'upper', 'vel', 'acc', 'jerk')}
    if not _given(config.get('max_acceleration_rad_s2')):
        raise LimitsError('max_acceleration_rad_s2: required, one value per joint (the URDF '
                          'has no acceleration limits)')
    for i, name in enumerate(names):
        u = urdf[name]
        base = {
            'lower': (u.soft_lower, 'urdf <safety_controller soft_lower_limit>')
            if u.soft_lower is not None else (u.lower, 'urdf <limit lower>'),
            'upper': (u.soft_upper, 'urdf <safety_controller soft_upper_limit>')
            if u.soft_upper is not None else (u.upper, 'urdf <limit upper>'),
            'vel': (u.velocity, 'urdf <limit velocity>'),
            'acc': (math.inf, 'none'),
            'jerk': (math.inf, 'none'),
        }
        for key, cfg_key, field_name, tighter in (
                ('lower', 'lower_limits_rad', 'lower_limits_rad', lambda c, b: c >= b),
                ('upper', 'upper_limits_rad', 'upper_limits_rad', lambda c, b: c <= b),
                ('vel', 'max_velocity_rad_s', 'max_velocity_rad_s', lambda c, b: c <= b),
                ('acc', 'max_acceleration_rad_s2', 'max_acceleration_rad_s2',
                 lambda c, b: c <= b),
                ('jerk', 'max_jerk_rad_s3', 'max_jerk_rad_s3', lambda c, b: c <= b)):
            value, source = base[key]
            cfg = config.get(cfg_key)
            if _given(cfg):
                c = float(cfg[i])
                if not math.isfinite(c):
                    raise LimitsError(f'{field_name}: joint {name!r} is not finite')
                if not tighter(c, value):
                    raise LimitsError(f'{field_name}: joint {name!r} = {c} is looser than '
                                      f'{source} = {value}; configuration may only tighten')
                value, source = c, 'config'
            out[key].append(value)
            rows.append(LimitRow(name, field_name, value, source))
    if any(math.isinf(v) for v in out['vel']):
        j = names[[math.isinf(v) for v in out['vel']].index(True)]
        raise LimitsError(f'max_velocity_rad_s: joint {j!r} has no velocity limit in the URDF; '
                          'configure one')
    if any(math.isinf(v) for v in out['lower'] + out['upper']):
        raise LimitsError('lower_limits_rad/upper_limits_rad: continuous joints need '
                          'configured position limits')
    limits = JointLimits.create(names, out['lower'], out['upper'], out['vel'], out['acc'],
                                out['jerk'])
    return limits, rows


def format_limits_table(rows: Sequence[LimitRow]) -> str:
    """Render the effective-limits table as aligned text."""
    lines = [f'{"joint":<16}{"field":<26}{"value":>12}  source']
    for r in rows:
        lines.append(f'{r.joint:<16}{r.field:<26}{r.value:>12.4g}  {r.source}')
    return '\n'.join(lines)
