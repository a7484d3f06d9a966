"""Cartesian workspace guard: monitored frames inside a box, outside keep-out volumes.

Kinematics come from the URDF (``wam_runtime.core.kinematics``). ``WorkspaceGuard.check`` is
what the gate calls on every candidate command (the command, the path the arm would brake
along from it, and the end-effector speed); ``point_ok`` checks chunk
points. The two use separate kinematics data, so chunk validation on another thread never
races the control tick.
"""

from dataclasses import dataclass
import math
from typing import Any, Mapping, Optional, Sequence, Tuple

import numpy as np

from wam_runtime.core.gate import BRAKING, EE_SPEED, OUTSIDE
from wam_runtime.core.kinematics import Kinematics
from wam_runtime.core.limits import LimitsError


@dataclass(frozen=True)
class Box:
    """Axis-aligned box ``[min, max]`` in the URDF base frame (m)."""

    min: np.ndarray  # noqa: A003
    max: np.ndarray  # noqa: A003

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Per point: inside (boundary included)."""
        return ((points >= self.min) & (points <= self.max)).all(axis=-1)


@dataclass(frozen=True)
class Sphere:
    """A sphere in the URDF base frame (m)."""

    center: np.ndarray
    radius: float

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Per point: strictly inside."""
        d = points - self.center
        return (d * d).sum(axis=-1) < self.radius * self.radius


@dataclass(frozen=True)
class WorkspaceConfig:
    """Which frames are monitored and where they may be."""

    frames: Tuple[str, ...]
    inside: Optional[Box] = None
    keep_out_boxes: Tuple[Box, ...] = ()
    keep_out_spheres: Tuple[Sphere, ...] = ()
    ee_frame: Optional[str] = None
    max_ee_speed_m_s: float = float('inf')

    @classmethod
    def from_params(cls, frames: Sequence[str], box: Sequence[float],
                    keep_out_boxes: Sequence[float], keep_out_spheres: Sequence[float],
                    ee_frame: str = '', max_ee_speed_m_s: float = 0.0) -> 'WorkspaceConfig':
        """Build from flat ROS parameter arrays; raise LimitsError naming the parameter.

        ``box``: [xmin, ymin, zmin, xmax, ymax, zmax] or empty; ``keep_out_boxes``: six
        numbers per box; ``keep_out_spheres``: [x, y, z, radius] per sphere.
        """
        def boxes(values, key):
            v = np.asarray(values, dtype=np.float64)
            if v.size % 6:
                raise LimitsError(f'{key}: six numbers per box (xmin ymin zmin xmax ymax '
                                  f'zmax), got {v.size}')
            out = []
            for b in v.reshape(-1, 6):
                if np.any(b[:3] >= b[3:]) or not np.isfinite(b).all():
                    raise LimitsError(f'{key}: box {b.tolist()} has min >= max')
                out.append(Box(b[:3], b[3:]))
            return out

        inside = boxes(box, 'workspace_box_m')
        if len(inside) > 1:
            raise LimitsError('workspace_box_m: one box (six numbers) or empty')
        s = np.asarray(keep_out_spheres, dtype=np.float64)
        if s.size % 4:
            raise LimitsError(f'keep_out_spheres_m: four numbers per sphere, got {s.size}')
        spheres = []
        for row in s.reshape(-1, 4):
            if row[3] <= 0 or not np.isfinite(row).all():
                raise LimitsError(f'keep_out_spheres_m: sphere {row.tolist()} needs a '
                                  'positive radius')
            spheres.append(Sphere(row[:3], float(row[3])))
        return cls(tuple(frames), inside[0] if inside else None,
                   tuple(boxes(keep_out_boxes, 'keep_out_boxes_m')), tuple(spheres),
                   ee_frame or None,
                   float(max_ee_speed_m_s) if max_ee_speed_m_s > 0 else float('inf'))

    @property
    def active(self) -> bool:
        """Whether anything is monitored at all."""
        return bool(self.frames) and (self.inside is not None or bool(self.keep_out_boxes)
                                      or bool(self.keep_out_spheres)) \
            or np.isfinite(self.max_ee_speed_m_s)


class WorkspaceGuard:
    """The Cartesian checks the gate and the chunk validation call."""

    def __init__(self, urdf_text: str, joint_names: Sequence[str],
                 config: WorkspaceConfig) -> None:
        """Prepare kinematics for the monitored frames (and the end effector)."""
        frames = list(config.frames)
        params = ['workspace_frames'] * len(frames)     # what an unknown frame's error names
        if config.ee_frame and config.ee_frame not in frames:
            frames.append(config.ee_frame)
            params.append('ee_frame')
        self.config = config
        self.kin = Kinematics(urdf_text, joint_names, frames,           # the control tick
                              frame_params=params)
        self.kin_points = Kinematics(urdf_text, joint_names, frames,    # chunk validation
                                     frame_params=params)
        self._ee = frames.index(config.ee_frame) if config.ee_frame else None
        # How far each monitored frame can move per unit of each joint, in any pose.
        self._levers = self.kin.lever_arms()[:len(config.frames)]
        self.last_violation: Optional[Tuple[str, str]] = None
        self._prev_key: Optional[bytes] = None
        self._prev_ee = np.zeros(3)

    def _violation(self, pts: np.ndarray) -> Optional[str]:
        cfg = self.config
        mon = pts[:len(cfg.frames)]
        bad = np.zeros(len(mon), bool)
        if cfg.inside is not None:
            bad |= ~cfg.inside.contains(mon)
        for vol in cfg.keep_out_boxes + cfg.keep_out_spheres:
            bad |= vol.contains(mon)
        return cfg.frames[int(np.argmax(bad))] if bad.any() else None

    def set_held(self, values: Mapping[str, float]) -> None:
        """Set the positions of joints the gate does not command (e.g. measured fingers)."""
        for kin in (self.kin, self.kin_points):
            kin.set_held(values)

    def point_ok(self, q: np.ndarray) -> bool:
        """Whether every monitored frame is inside the box and outside the keep-outs."""
        frame = self._violation(self.kin_points.positions(q))
        if frame is not None:
            self.last_violation = (frame, 'outside workspace')
            return False
        return True

    def clearance(self, pts: np.ndarray) -> np.ndarray:
        """Return, per monitored frame at ``pts``, its distance to the nearest wall (m).

        The walls are the workspace box's faces and the keep-out volumes' surfaces; 0 or
        less means on or beyond one.
        """
        cfg = self.config
        mon = pts[:len(cfg.frames)]
        c = np.full(len(mon), np.inf)
        if cfg.inside is not None:
            c = np.minimum(c, np.minimum(mon - cfg.inside.min, cfg.inside.max - mon).min(1))
        for box in cfg.keep_out_boxes:
            gap = np.maximum(np.maximum(box.min - mon, mon - box.max), 0.0)
            c = np.minimum(c, np.sqrt((gap * gap).sum(1)))
        for sphere in cfg.keep_out_spheres:
            c = np.minimum(c, np.linalg.norm(mon - sphere.center, axis=1) - sphere.radius)
        return c

    def check(self, q: np.ndarray, previous: np.ndarray, dt: float,
              path: Any = None, speed: bool = True,
              reach: Optional[np.ndarray] = None) -> Optional[str]:
        """Return None when the command ``q`` is admissible, else why not.

        OUTSIDE: a monitored frame leaves the workspace at ``q``; BRAKING: it would at a
        point of ``path`` (the positions the arm takes, tick by tick, if it brakes from
        ``q``; an array, or a callable returning it, None if it does not come to rest);
        EE_SPEED: the end effector moves faster than its limit from ``previous`` to ``q`` in
        ``dt``. ``reach`` (optional)
        bounds each joint's travel along the path: when no frame can reach a wall with it
        (lever arms times travel below the clearance), the path is not evaluated at all.
        """
        pts = self.kin.positions(q)
        frame = self._violation(pts)
        if frame is not None:
            self.last_violation = (frame, 'outside workspace')
            return OUTSIDE
        if path is not None and self._has_volumes() and not (
                reach is not None and np.all(self._levers @ reach < self.clearance(pts))):
            if callable(path):
                path = path()
            if path is None:                   # no rest within the simulated horizon
                self.last_violation = ('', 'braking path too long to check')
                return BRAKING
            # Every point: the successor's path is the rest of this one, so checking the
            # same points every tick keeps "brake from here stays inside" true (an exact
            # invariant); skipping points would let one tick miss what the next one sees.
            for x in path:
                frame = self._violation(self.kin.positions(x))
                if frame is not None:
                    self.last_violation = (frame, 'braking path leaves the workspace')
                    return BRAKING
        if speed and not self._ee_speed_ok(pts, previous, dt):
            return EE_SPEED
        return None

    def _has_volumes(self) -> bool:
        cfg = self.config
        return bool(cfg.frames) and (cfg.inside is not None or bool(cfg.keep_out_boxes)
                                     or bool(cfg.keep_out_spheres))

    def _ee_speed_ok(self, pts: np.ndarray, previous: np.ndarray, dt: float) -> bool:
        if self._ee is None or not np.isfinite(self.config.max_ee_speed_m_s) or dt <= 0:
            return True
        key = previous.tobytes()
        if key != self._prev_key:     # previous is usually the last accepted command
            self._prev_key, self._prev_ee = key, self.kin.positions(previous)[self._ee]
        d = pts[self._ee] - self._prev_ee
        if math.sqrt(float(d @ d)) / dt > self.config.max_ee_speed_m_s + 1e-9:
            self.last_violation = (self.config.ee_frame, 'end-effector speed')
            return False
        return True

    def ok(self, q: np.ndarray, previous: np.ndarray, dt: float) -> bool:
        """Whether ``q`` is in the workspace and the end effector is not too fast."""
        return self.check(q, previous, dt) is None


def workspace_from_params(urdf_text: str, joint_names: Sequence[str],
                          params: Mapping[str, Any]) -> Optional[WorkspaceGuard]:
    """Build a guard from node parameters, or None when nothing is monitored."""
    cfg = WorkspaceConfig.from_params(
        params.get('workspace_frames') or [], params.get('workspace_box_m') or [],
        params.get('keep_out_boxes_m') or [], params.get('keep_out_spheres_m') or [],
        params.get('ee_frame') or '', params.get('max_ee_speed_m_s') or 0.0)
    return WorkspaceGuard(urdf_text, joint_names, cfg) if cfg.active else None
