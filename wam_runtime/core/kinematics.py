"""Forward kinematics of named URDF frames through Pinocchio, in the controller's joint order.

The gate commands ``joint_names``; every other movable joint of the URDF still moves the
frames. Mimic joints follow their leader (``multiplier * leader + offset``, computed here, so
any Pinocchio version works); the remaining joints (fingers, a second arm) are *held*: at
0 clipped into their URDF limits until a configured or measured value arrives through
``Kinematics.set_held``. Continuous joints (Pinocchio stores them as cos, sin) take angles.
"""

import math
import threading
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pinocchio as pin

from wam_runtime.core.limits import LimitsError
from wam_runtime.core.urdf import (
    check_commanded, default_held_position, mimic_source, parse_urdf_joints)


class Kinematics:
    """Forward kinematics of named frames from a URDF, in the controller's joint order."""

    def __init__(self, urdf_text: str, joint_names: Sequence[str], frames: Sequence[str],
                 held: Optional[Mapping[str, float]] = None,
                 frame_params: Optional[Sequence[str]] = None) -> None:
        """Build the Pinocchio model; raise LimitsError for unknown joints or frames.

        ``held``: positions of uncommanded joints (joint units), checked strictly like
        ``set_held(held, strict=True)``. Listing a mimic joint in ``joint_names`` is an
        error naming it. ``frame_params``: per frame, the parameter an unknown frame's
        error names (default: ``workspace_frames`` for every frame).
        """
        joints = parse_urdf_joints(urdf_text)
        try:
            self.model = pin.buildModelFromXML(urdf_text)
        except Exception as exc:  # noqa: B902 - pinocchio raises untyped errors on bad XML
            raise LimitsError(f'urdf: pinocchio cannot build a model ({exc})') from None
        self.data = self.model.createData()
        names = list(joint_names)
        for name in names:
            if not self.model.existJointName(name):
                raise LimitsError(f'joint_names: {name!r} is not a joint of the URDF')
        check_commanded(joints, names)
        # One scalar value (rad or m) per one-coordinate joint of the model.
        slot: Dict[str, int] = {}
        lin_q: List[int] = []
        lin_v: List[int] = []
        cs_q: List[int] = []
        cs_v: List[int] = []
        for jid in range(1, self.model.njoints):
            joint, name = self.model.joints[jid], self.model.names[jid]
            if joint.nq == 1:
                lin_q.append(joint.idx_q)
                lin_v.append(len(slot))
            elif joint.nq == 2 and joint.nv == 1:      # continuous: (cos, sin)
                cs_q.append(joint.idx_q)
                cs_v.append(len(slot))
            else:
                continue                                # floating, planar: stay neutral
            slot[name] = len(slot)
        self._values = np.zeros(len(slot))
        self._slot_names = list(slot)
        self._cmd = np.array([slot[n] for n in names], dtype=np.intp)
        mim, drv, mult, off = [], [], [], []
        self._held: Dict[str, int] = {}
        for name, i in slot.items():
            if name in names:
                continue
            j = joints.get(name)
            if j is not None and j.mimic is not None:
                driver, m, o = mimic_source(joints, name)
                if driver not in slot:
                    raise LimitsError(f'urdf: joint {name!r} mimics {driver!r}, which has no '
                                      'single coordinate')
                mim.append(i)
                drv.append(slot[driver])
                mult.append(m)
                off.append(o)
            else:
                self._held[name] = i
                self._values[i] = default_held_position(j) if j is not None else 0.0
        self._mim = np.array(mim, dtype=np.intp)
        self._drv = np.array(drv, dtype=np.intp)
        self._mult, self._off = np.array(mult), np.array(off)
        self._lin_q, self._lin_v = np.array(lin_q, np.intp), np.array(lin_v, np.intp)
        self._cs_q, self._cs_v = np.array(cs_q, np.intp), np.array(cs_v, np.intp)
        self.joint_names = tuple(names)
        self.held_names = tuple(self._held)
        mimics = set(mim)
        self.mimic_names = tuple(n for n, i in slot.items() if i in mimics)
        self._frames = []
        params = list(frame_params or ()) + ['workspace_frames'] * len(frames)
        for f, param in zip(frames, params):
            if not self.model.existFrame(f):
                raise LimitsError(f'{param}: {f!r} is not a frame of the URDF')
            self._frames.append(self.model.getFrameId(f))
        self.frame_names = tuple(frames)
        self._q = pin.neutral(self.model)
        self._lock = threading.Lock()
        if held:
            self.set_held(held, strict=True)

    def set_held(self, values: Mapping[str, float], strict: bool = False) -> Tuple[str, ...]:
        """Set positions (rad or m) of held joints; return the names that were applied.

        Meant to be fed the measured positions of a joint_states message: names that are not
        held joints (commanded, mimic, unknown) and non-finite values are skipped. With
        ``strict`` they raise LimitsError naming the joint instead (for configuration).
        """
        applied = []
        with self._lock:
            for name, value in values.items():
                i = self._held.get(name)
                try:
                    v = float(value)
                except (TypeError, ValueError):
                    v = math.nan
                if i is None or not math.isfinite(v):
                    if strict:
                        why = 'is not finite' if i is not None else (
                            'is commanded (in joint_names)' if name in self.joint_names
                            else 'is a mimic joint' if name in self.mimic_names
                            else 'is not a movable joint of the URDF')
                        raise LimitsError(f'held_joint_names: {name!r} {why}')
                    continue
                self._values[i] = v
                applied.append(name)
        return tuple(applied)

    def held_positions(self) -> Dict[str, float]:
        """Return the current position of every held joint."""
        with self._lock:
            return {n: float(self._values[i]) for n, i in self._held.items()}

    def lever_arms(self) -> np.ndarray:
        """Return (F, J): how far each frame can move per unit of each commanded joint.

        A bound valid in every configuration (m/rad for revolute and continuous joints, m/m
        for prismatic ones): for a revolute joint the length of the chain from its origin
        to the frame (every joint offset on the way, the frame's own offset, and the full
        travel of prismatic joints on the way), 1 for a prismatic joint, 0 for a joint not
        on the frame's chain; mimic joints on the chain add their multiplier times their own
        lever to their driver's. Used to tell cheaply that a motion cannot reach a wall.
        """
        model = self.model
        out = np.zeros((len(self._frames), len(self._cmd)))
        for row, fid in enumerate(self._frames):
            frame = model.frames[fid]
            chain = []                               # joint ids from the frame to the root
            jid = frame.parentJoint
            while jid > 0:
                chain.append(jid)
                jid = model.parents[jid]
            levers = {}
            length = float(np.linalg.norm(frame.placement.translation))
            for jid in chain:                        # walking up: length below jid so far
                joint, name = model.joints[jid], model.names[jid]
                prismatic = joint.shortname().startswith('JointModelP')
                levers[name] = 1.0 if prismatic else length
                length += float(np.linalg.norm(model.jointPlacements[jid].translation))
                if prismatic:
                    i = joint.idx_q
                    length += float(max(abs(model.lowerPositionLimit[i]),
                                        abs(model.upperPositionLimit[i])))
            for col, name in enumerate(self.joint_names):
                out[row, col] = levers.get(name, 0.0)
            for k, driver, mult in zip(self._mim, self._drv, self._mult):
                name = self._slot_names[k]
                col = np.flatnonzero(self._cmd == driver)
                if name in levers and col.size:
                    out[row, col[0]] += abs(mult) * levers[name]
        return out

    def full_configuration(self, q: Sequence[float]) -> np.ndarray:
        """Return Pinocchio's configuration vector for commanded positions ``q``."""
        with self._lock:
            self._fill(q)
            return self._q.copy()

    def _fill(self, q: Sequence[float]) -> None:
        v = self._values
        v[self._cmd] = q
        if self._mim.size:
            v[self._mim] = self._mult * v[self._drv] + self._off
        self._q[self._lin_q] = v[self._lin_v]
        if self._cs_q.size:
            a = v[self._cs_v]
            self._q[self._cs_q] = np.cos(a)
            self._q[self._cs_q + 1] = np.sin(a)

    def positions(self, q: Sequence[float]) -> np.ndarray:
        """Return the (F, 3) positions of the monitored frames at joint positions ``q``."""
        with self._lock:
            self._fill(q)
            pin.framesForwardKinematics(self.model, self.data, self._q)
            return np.array([self.data.oMf[f].translation for f in self._frames])
