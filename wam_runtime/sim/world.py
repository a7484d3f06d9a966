"""The reference reaching world: a 6-DoF MuJoCo arm, a red cube and one fixed camera.

Pure Python (MuJoCo + numpy). The ROS sim node, the dataset generator and the in-process
evaluator all drive the same :class:`ReachWorld`.

Frames: the arm base is the world origin, the table top is z = 0 (see the MJCF header);
``config/reference_arm.urdf`` uses the same base frame.
"""

import os
import threading
from typing import Optional, Tuple

import mujoco
import numpy as np

ASSET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'assets')
MJCF_PATH = os.path.join(ASSET_DIR, 'reference_arm.xml')

JOINT_NAMES = ('joint_1', 'joint_2', 'joint_3', 'joint_4', 'joint_5', 'joint_6')
# Home pose: tool tip about (0.2, 0.0, 0.3) m, pointing down, clear of the cube area.
HOME_Q = np.array([0.0, -0.25, 2.0, 1.5, 0.0, -0.1])
# The cube centre is sampled uniformly in this 30 x 40 cm area of the table (metres).
CUBE_X_RANGE = (0.25, 0.55)
CUBE_Y_RANGE = (-0.2, 0.2)
CUBE_HALF_SIZE_M = 0.02
# The goal point sits this far above the top face of the cube.
TARGET_CLEARANCE_M = 0.01
SCENE_CAMERA = 'scene'
EE_SITE = 'ee_site'


def _release_egl_context() -> None:
    """Detach the EGL context from this thread, so that another thread can render next.

    An EGL context can be current in one thread only; MuJoCo's renderer makes it current on
    every render but never releases it. Other GL backends are left alone.
    """
    if os.environ.get('MUJOCO_GL', '').lower() != 'egl':
        return
    from mujoco import egl
    if egl.EGL_DISPLAY is not None:
        egl.EGL.eglMakeCurrent(egl.EGL_DISPLAY, egl.EGL.EGL_NO_SURFACE,
                               egl.EGL.EGL_NO_SURFACE, egl.EGL.EGL_NO_CONTEXT)


def validate_seed(seed: object) -> int:
    """Return ``seed`` as an int; raise ValueError unless it is a non-negative integer."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f'seed must be a non-negative int, got {seed!r}')
    if seed < 0:
        raise ValueError(f'seed must be a non-negative int, got {seed}')
    return int(seed)


class ReachWorld:
    """A seeded reaching task in MuJoCo, driven through joint position commands.

    The arm has position actuators with gravity compensation; ``set_command`` sets their
    targets and ``step`` integrates the physics. The cube is placed by ``reset(seed)``.
    """

    success_radius_m = 0.02

    def __init__(self, camera_width: int = 128, camera_height: int = 128,
                 seed: int = 0) -> None:
        """Load the model and reset to ``seed``; the renderer is created on first use."""
        for name, value in (('camera_width', camera_width), ('camera_height', camera_height)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f'{name} must be a positive int, got {value!r}')
        self._model = mujoco.MjModel.from_xml_path(MJCF_PATH)
        if camera_width > self._model.vis.global_.offwidth or \
                camera_height > self._model.vis.global_.offheight:
            raise ValueError(
                f'camera size {camera_width}x{camera_height} exceeds the offscreen buffer '
                f'{self._model.vis.global_.offwidth}x{self._model.vis.global_.offheight}')
        self._data = mujoco.MjData(self._model)
        self._width = int(camera_width)
        self._height = int(camera_height)
        self._renderer: Optional[mujoco.Renderer] = None
        self._render_lock = threading.Lock()

        model = self._model
        joint_ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in JOINT_NAMES]
        if min(joint_ids) < 0:
            raise RuntimeError('the MJCF lacks one of ' + ', '.join(JOINT_NAMES))
        self._qpos_adr = model.jnt_qposadr[joint_ids].copy()
        self._dof_adr = model.jnt_dofadr[joint_ids].copy()
        self._lower = model.jnt_range[joint_ids, 0].copy()
        self._upper = model.jnt_range[joint_ids, 1].copy()
        self._velocity_limits = model.numeric('velocity_limits').data.copy()
        if self._velocity_limits.shape != (len(JOINT_NAMES),):
            raise RuntimeError('the MJCF numeric velocity_limits must have one value per joint')
        # Actuator i drives joint i (checked, so ctrl can be set in joint order).
        act_joints = [int(model.actuator_trnid[i, 0]) for i in range(model.nu)]
        if act_joints != joint_ids:
            raise RuntimeError('actuators must drive joint_1..joint_6 in order')
        self._site_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, EE_SITE)
        cube_body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, 'cube')
        self._cube_mocap = int(model.body_mocapid[cube_body])
        self._camera_names = tuple(
            mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam))
        self._seed = 0
        self.reset(seed)

    # ------------------------------------------------------------------ properties
    @property
    def model(self) -> mujoco.MjModel:
        """Return the MuJoCo model; read it, do not modify it."""
        return self._model

    @property
    def data(self) -> mujoco.MjData:
        """Return the live MuJoCo data, for inspection; drive the world through its methods."""
        return self._data

    @property
    def joint_names(self) -> Tuple[str, ...]:
        """Arm joint names, in the order of every joint vector of this class."""
        return JOINT_NAMES

    @property
    def lower_limits(self) -> np.ndarray:
        """Lower joint position limits (rad), from the model."""
        return self._lower.copy()

    @property
    def upper_limits(self) -> np.ndarray:
        """Upper joint position limits (rad), from the model."""
        return self._upper.copy()

    @property
    def velocity_limits(self) -> np.ndarray:
        """Joint velocity limits (rad/s), from the model's ``velocity_limits`` numeric."""
        return self._velocity_limits.copy()

    @property
    def time_s(self) -> float:
        """Simulated time since the last reset (s)."""
        return float(self._data.time)

    @property
    def timestep_s(self) -> float:
        """Physics timestep (s)."""
        return float(self._model.opt.timestep)

    @property
    def seed(self) -> int:
        """Seed of the current episode."""
        return self._seed

    @property
    def camera_names(self) -> Tuple[str, ...]:
        """Names of the cameras ``render`` accepts."""
        return self._camera_names

    @property
    def camera_size(self) -> Tuple[int, int]:
        """Rendered image size as (width, height)."""
        return self._width, self._height

    # ------------------------------------------------------------------ episode control
    def reset(self, seed: int) -> None:
        """Put the arm at ``HOME_Q`` at rest and place the cube at random from ``seed``."""
        seed = validate_seed(seed)
        rng = np.random.default_rng(seed)
        cube_xy = np.array([rng.uniform(*CUBE_X_RANGE), rng.uniform(*CUBE_Y_RANGE)])
        mujoco.mj_resetData(self._model, self._data)
        self._data.qpos[self._qpos_adr] = HOME_Q
        self._data.qvel[self._dof_adr] = 0.0
        self._data.ctrl[:] = HOME_Q
        self._data.mocap_pos[self._cube_mocap] = [cube_xy[0], cube_xy[1], CUBE_HALF_SIZE_M]
        self._data.mocap_quat[self._cube_mocap] = [1.0, 0.0, 0.0, 0.0]
        mujoco.mj_forward(self._model, self._data)
        self._seed = seed

    def set_command(self, q_target: np.ndarray) -> None:
        """Set the position targets (rad, joint order), clipped to the joint range.

        Raises ValueError for a wrong length or a non-finite value; the previous command
        then stays in force.
        """
        q = np.asarray(q_target, dtype=np.float64)
        if q.shape != (len(JOINT_NAMES),):
            raise ValueError(
                f'command must have shape ({len(JOINT_NAMES)},), got {q.shape}')
        if not np.all(np.isfinite(q)):
            raise ValueError(f'command must be finite, got {q.tolist()}')
        self._data.ctrl[:] = np.clip(q, self._lower, self._upper)

    def command(self) -> np.ndarray:
        """Return the position targets in force (after clipping)."""
        return self._data.ctrl.copy()

    def step(self, duration_s: float) -> None:
        """Integrate the physics for ``duration_s``, rounded to whole timesteps."""
        duration = float(duration_s)
        if not np.isfinite(duration) or duration < 0.0:
            raise ValueError(f'duration_s must be finite and >= 0, got {duration_s!r}')
        n_steps = int(round(duration / self._model.opt.timestep))
        if n_steps > 0:
            mujoco.mj_step(self._model, self._data, nstep=n_steps)
            # Recompute positions so sensors and rendering see the state after the last step.
            mujoco.mj_forward(self._model, self._data)

    # ------------------------------------------------------------------ observations
    def joint_positions(self) -> np.ndarray:
        """Measured joint positions (rad)."""
        return self._data.qpos[self._qpos_adr].copy()

    def joint_velocities(self) -> np.ndarray:
        """Measured joint velocities (rad/s)."""
        return self._data.qvel[self._dof_adr].copy()

    def render(self, camera: str = SCENE_CAMERA) -> np.ndarray:
        """Render ``camera`` as an (H, W, 3) uint8 RGB array.

        With ``MUJOCO_GL=egl`` any thread may call this (calls are serialised); the world
        itself is not thread-safe, so do not step it while another thread renders.
        """
        if camera not in self._camera_names:
            raise ValueError(f'unknown camera {camera!r}; have {list(self._camera_names)}')
        with self._render_lock:
            try:
                if self._renderer is None:
                    self._renderer = mujoco.Renderer(self._model, self._height, self._width)
                self._renderer.update_scene(self._data, camera=camera)
                return self._renderer.render().copy()
            finally:
                _release_egl_context()

    def ee_position(self) -> np.ndarray:
        """Tool tip (``ee_site``) position in the world frame (m)."""
        return self._data.site_xpos[self._site_id].copy()

    def cube_position(self) -> np.ndarray:
        """Cube centre in the world frame (m)."""
        return self._data.mocap_pos[self._cube_mocap].copy()

    def target_position(self) -> np.ndarray:
        """Goal point: the top-centre of the cube plus a small clearance (m)."""
        return self.cube_position() + np.array(
            [0.0, 0.0, CUBE_HALF_SIZE_M + TARGET_CLEARANCE_M])

    def distance_to_target(self) -> float:
        """Distance between the tool tip and the goal point (m)."""
        return float(np.linalg.norm(self.ee_position() - self.target_position()))

    def is_success(self) -> bool:
        """Whether the tool tip is within ``success_radius_m`` of the goal point."""
        return self.distance_to_target() < self.success_radius_m

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Free the renderer (the world stays usable; rendering recreates it)."""
        with self._render_lock:
            if self._renderer is not None:
                self._renderer.close()
                self._renderer = None
                _release_egl_context()

    def __enter__(self) -> 'ReachWorld':
        """Use the world as a context manager that closes the renderer."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the renderer."""
        self.close()
