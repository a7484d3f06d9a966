"""Forward kinematics of named URDF frames through Pinocchio, in the controller's joint order."""

from typing import List, Sequence

import numpy as np
import pinocchio as pin

from wam_runtime.core.gate import LimitsError


class Kinematics:
    """Forward kinematics of named frames from a URDF, in the controller's joint order."""

    def __init__(self, urdf_text: str, joint_names: Sequence[str],
                 frames: Sequence[str]) -> None:
        """Build the Pinocchio model; raise LimitsError for unknown joints or frames."""
        try:
            self.model = pin.buildModelFromXML(urdf_text)
        except Exception as exc:  # noqa: B902 - pinocchio raises untyped errors on bad XML
            raise LimitsError(f'urdf: pinocchio cannot build a model ({exc})') from None
        self.data = self.model.createData()
        self._idx: List[int] = []
        for name in joint_names:
            if not self.model.existJointName(name):
                raise LimitsError(f'joint_names: {name!r} is not a joint of the URDF')
            joint = self.model.joints[self.model.getJointId(name)]
            if joint.nq != 1:
                raise LimitsError(f'joint_names: {name!r} has {joint.nq} position variables; '
                                  'only revolute and prismatic joints are supported')
            self._idx.append(joint.idx_q)
        if self.model.nq != len(self._idx):
            raise LimitsError(f'joint_names: the URDF has {self.model.nq} position variables, '
                              f'joint_names lists {len(self._idx)}')
        self._frames = []
        for f in frames:
            if not self.model.existFrame(f):
                raise LimitsError(f'workspace_frames: {f!r} is not a frame of the URDF')
            self._frames.append(self.model.getFrameId(f))
        self.frame_names = tuple(frames)
        self._q = pin.neutral(self.model)

    def positions(self, q: Sequence[float]) -> np.ndarray:
        """Return the (F, 3) positions of the monitored frames at joint positions ``q``."""
        self._q[self._idx] = q
        pin.framesForwardKinematics(self.model, self.data, self._q)
        return np.array([self.data.oMf[f].translation for f in self._frames])
