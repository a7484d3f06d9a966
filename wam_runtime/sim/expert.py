"""Scripted expert for the reaching task: straight-line tool motion solved by damped IK.

The expert is re-planned from the measured state at every call: it draws a straight line from
the current tool tip to the goal, walks along it at a bounded tool speed, and solves each
waypoint with damped least-squares IK (``mj_jacSite`` on a scratch ``MjData``) while keeping
the tool pointing down. The result is the next ``horizon`` absolute joint targets.
"""

from typing import Optional

import mujoco
import numpy as np

from wam_runtime.sim.world import EE_SITE, HOME_Q, JOINT_NAMES

HORIZON = 16
DT_S = 0.05
TOOL_SPEED_M_S = 0.2


class ReachExpert:
    """Damped least-squares IK planner over a MuJoCo model (does not touch the live data)."""

    def __init__(self, model: mujoco.MjModel, horizon: int = HORIZON, dt_s: float = DT_S,
                 tool_speed_m_s: float = TOOL_SPEED_M_S, damping: float = 0.02,
                 orientation_weight: float = 0.3, ik_iterations: int = 1,
                 max_joint_speed: float = 1.0, limit_margin: float = 0.05,
                 rest_q: Optional[np.ndarray] = None, rest_gain: float = 0.2) -> None:
        """Create the planner.

        ``max_joint_speed`` (rad/s) bounds every planned joint step. The one redundant degree
        of freedom (roll about the tool axis) is pulled towards ``rest_q`` (default
        ``HOME_Q``) with ``rest_gain`` per IK iteration, so the roll does not drift.
        """
        if horizon < 1 or dt_s <= 0.0 or tool_speed_m_s <= 0.0:
            raise ValueError('horizon, dt_s and tool_speed_m_s must be positive')
        self._model = model
        self._scratch = mujoco.MjData(model)
        self.horizon = int(horizon)
        self.dt_s = float(dt_s)
        self.tool_speed_m_s = float(tool_speed_m_s)
        self._damping_sq = float(damping) ** 2
        self._w_rot = float(orientation_weight)
        self._iterations = int(ik_iterations)
        self._max_step = float(max_joint_speed) * self.dt_s
        joint_ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in JOINT_NAMES]
        self._qpos_adr = model.jnt_qposadr[joint_ids].copy()
        self._dof_adr = model.jnt_dofadr[joint_ids].copy()
        self._lower = model.jnt_range[joint_ids, 0] + limit_margin
        self._upper = model.jnt_range[joint_ids, 1] - limit_margin
        self._site_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, EE_SITE)
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))
        self._down = np.array([0.0, 0.0, -1.0])
        self._rest_q = np.array(HOME_Q if rest_q is None else rest_q, dtype=np.float64)
        self._rest_gain = float(rest_gain)

    def tool_position(self, q: np.ndarray) -> np.ndarray:
        """Forward kinematics of the tool tip for joint positions ``q``."""
        self._forward(q)
        return self._scratch.site_xpos[self._site_id].copy()

    def plan(self, q: np.ndarray, target: np.ndarray,
             tool_speed_m_s: Optional[float] = None) -> np.ndarray:
        """Return the next ``horizon`` absolute joint targets, shape (horizon, 6).

        Row k is the target for ``(k + 1) * dt_s`` after the observation of ``q``.
        """
        q = np.asarray(q, dtype=np.float64).copy()
        target = np.asarray(target, dtype=np.float64)
        if q.shape != (len(JOINT_NAMES),) or target.shape != (3,):
            raise ValueError('q must have shape (6,) and target shape (3,)')
        speed = self.tool_speed_m_s if tool_speed_m_s is None else float(tool_speed_m_s)
        start = self.tool_position(q)
        offset = target - start
        distance = float(np.linalg.norm(offset))
        direction = offset / distance if distance > 1e-9 else np.zeros(3)
        plan = np.empty((self.horizon, len(JOINT_NAMES)))
        for k in range(self.horizon):
            travelled = min(speed * self.dt_s * (k + 1), distance)
            waypoint = start + direction * travelled
            q_next = self._solve(q, waypoint)
            step = np.clip(q_next - q, -self._max_step, self._max_step)
            q = q + step
            plan[k] = q
        return plan

    def _forward(self, q: np.ndarray) -> None:
        data = self._scratch
        data.qpos[self._qpos_adr] = q
        mujoco.mj_kinematics(self._model, data)
        mujoco.mj_comPos(self._model, data)

    def _solve(self, q: np.ndarray, waypoint: np.ndarray) -> np.ndarray:
        """Damped least-squares IK for the tool position, tool axis pointing down."""
        q = q.copy()
        for _ in range(self._iterations):
            self._forward(q)
            data = self._scratch
            position = data.site_xpos[self._site_id]
            tool_z = data.site_xmat[self._site_id].reshape(3, 3)[:, 2]
            mujoco.mj_jacSite(self._model, data, self._jacp, self._jacr, self._site_id)
            # Pointing error only: remove rotation about the tool axis (roll stays free).
            project = np.eye(3) - np.outer(tool_z, tool_z)
            jac = np.vstack([
                self._jacp[:, self._dof_adr],
                self._w_rot * project @ self._jacr[:, self._dof_adr]])
            error = np.concatenate([
                waypoint - position,
                self._w_rot * project @ np.cross(tool_z, self._down)])
            gram = jac @ jac.T + self._damping_sq * np.eye(6)
            # Damped pseudo-inverse; (I - pinv @ jac) projects the posture pull onto the
            # directions the task does not use.
            pinv = jac.T @ np.linalg.inv(gram)
            null = np.eye(len(q)) - pinv @ jac
            dq = pinv @ error + null @ (self._rest_gain * (self._rest_q - q))
            q = np.clip(q + dq, self._lower, self._upper)
        return q


def expert_chunk(expert: ReachExpert, q: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Return the expert's next 16 absolute joint targets at 0.05 s, shape (16, 6)."""
    return expert.plan(q, target)
