"""The bimanual ALOHA transfer-cube task of the third-party ``gym-aloha`` package.

The package is used as installed, never patched: this module builds the package's own
dm_control physics (``bimanual_viperx_transfer_cube.xml``) and ``TransferCubeTask``, as
``gym_aloha/env.py`` does, and drives them itself so that it controls rendering. Each control
step goes through the package's ``before_step`` (action to actuator targets, grippers
unnormalised), dm_control's physics step and the package's ``get_reward``, so the reward and
success follow the package's rule; the cube is placed with the package's ``sample_box_pose``.

What differs from ``gym_aloha.AlohaEnv``, all set at run time on the loaded model: shadows
and multisampling are off (``light_castshadow``, ``vis.quality.offsamples``), and a camera is
rendered only when asked (the stock env renders three 480x640 cameras every step, ~300 ms);
the action is not clipped to the declared ``Box(-1, 1)`` (wrong: the start pose lies
outside it).

Units, as the package's action and observation: per arm waist, shoulder, elbow,
forearm_roll, wrist_angle, wrist_rotate (rad) and gripper (normalised, 0 closed .. 1 open;
the finger range makes about 0.065-0.975 reachable), left arm first: 14 values.
"""

import math
import threading
from typing import Optional, Sequence, Tuple

from dm_control import mujoco as dm_mujoco
from dm_control.rl.control import compute_n_steps
from gym_aloha.constants import (
    ASSETS_DIR, DT, normalize_puppet_gripper_position, START_ARM_POSE)
from gym_aloha.tasks.sim import BOX_POSE, TransferCubeTask
from gym_aloha.utils import sample_box_pose
import mujoco
import numpy as np

from wam_runtime.sim.world import _release_egl_context, validate_seed

MJCF_PATH = str(ASSETS_DIR / 'bimanual_viperx_transfer_cube.xml')
ARM_JOINTS = ('waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle', 'wrist_rotate')
JOINT_NAMES = tuple(f'{side}_{j}' for side in ('left', 'right')
                    for j in ARM_JOINTS + ('gripper',))
# The model's joints behind each of the 14 values (a gripper reads its left finger).
MODEL_JOINTS = tuple(f'vx300s_{side}/{j}' for side in ('left', 'right')
                     for j in ARM_JOINTS + ('left_finger',))
GRIPPER_INDEXES = (6, 13)
TOP_CAMERA = 'top'
WRIST_CAMERAS = ('left_wrist', 'right_wrist')
# The start pose in action units: the package's START_ARM_POSE, fingers normalised.
START_POSE = np.array(
    START_ARM_POSE[:6] + [normalize_puppet_gripper_position(START_ARM_POSE[6])]
    + START_ARM_POSE[8:14] + [normalize_puppet_gripper_position(START_ARM_POSE[14])])


class AlohaTransferCubeWorld:
    """gym-aloha's transfer-cube task, stepped in whole 0.02 s control steps.

    ``set_command`` sets the 14 absolute joint targets (action units) that each control
    step hands to the package's ``before_step``; ``reward`` is the package's (0-4, 4: the
    left gripper holds the cube in the air after the hand-over).
    """

    max_reward = 4

    def __init__(self, camera_width: int = 640, camera_height: int = 480, seed: int = 0,
                 camera_names: Sequence[str] = (TOP_CAMERA,)) -> None:
        """Load the package's model and task and reset to ``seed``.

        ``camera_names``: the model cameras ``render`` accepts (``top``, ``left_wrist``,
        ``right_wrist``, ...). The renderer is created on first use, at the camera size
        (at most 640x480, the model's offscreen buffer).
        """
        for name, value in (('camera_width', camera_width), ('camera_height', camera_height)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f'{name} must be a positive int, got {value!r}')
        self._physics = dm_mujoco.Physics.from_xml_path(MJCF_PATH)
        model = self._physics.model.ptr
        if camera_width > model.vis.global_.offwidth or \
                camera_height > model.vis.global_.offheight:
            raise ValueError(
                f'camera size {camera_width}x{camera_height} exceeds the offscreen buffer '
                f'{model.vis.global_.offwidth}x{model.vis.global_.offheight}')
        # Rendering cost, set at run time: no shadow map, no multisampling.
        model.light_castshadow[:] = 0
        model.vis.quality.offsamples = 0
        have = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i)
                for i in range(model.ncam)]
        cameras = tuple(camera_names)
        if not cameras or any(c not in have for c in cameras) or len(set(cameras)) < len(cameras):
            raise ValueError(
                f'camera_names must be distinct names among {have}, got {list(cameras)}')
        self._camera_names = cameras
        ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in MODEL_JOINTS]
        if min(ids) < 0:
            raise RuntimeError(f'{MJCF_PATH} lacks one of {MODEL_JOINTS}')
        ranges = model.jnt_range[ids].copy()
        ranges[list(GRIPPER_INDEXES)] = normalize_puppet_gripper_position(
            ranges[list(GRIPPER_INDEXES)])
        self._lower, self._upper = ranges[:, 0].copy(), ranges[:, 1].copy()
        self._task = TransferCubeTask()
        self._n_sub_steps = compute_n_steps(DT, self._physics.timestep())
        self._width, self._height = int(camera_width), int(camera_height)
        self._renderer: Optional[mujoco.Renderer] = None
        self._render_lock = threading.Lock()
        self._command = START_POSE.copy()
        self._steps = 0
        self._reward = 0
        self._seed = 0
        self.reset(seed)

    # ------------------------------------------------------------------ properties
    @property
    def physics(self) -> dm_mujoco.Physics:
        """Return the package's dm_control physics; read it, drive the world by its methods."""
        return self._physics

    @property
    def model(self) -> mujoco.MjModel:
        """Return the MuJoCo model; rendering settings are changed as the module docstring says."""
        return self._physics.model.ptr

    @property
    def joint_names(self) -> Tuple[str, ...]:
        """Return the 14 joint names, left_waist .. right_gripper: the order of every vector."""
        return JOINT_NAMES

    @property
    def lower_limits(self) -> np.ndarray:
        """Lower position limits from the model's joint ranges (rad; grippers normalised)."""
        return self._lower.copy()

    @property
    def upper_limits(self) -> np.ndarray:
        """Upper position limits from the model's joint ranges (rad; grippers normalised)."""
        return self._upper.copy()

    @property
    def velocity_limits(self) -> None:
        """None: the model declares no velocity limits; they must come from configuration."""
        return None

    @property
    def time_s(self) -> float:
        """Simulated time since the last reset: control steps x 0.02 s."""
        return self._steps * DT

    @property
    def timestep_s(self) -> float:
        """The control timestep (0.02 s): the world advances in whole control steps."""
        return DT

    @property
    def seed(self) -> int:
        """Seed of the current episode."""
        return self._seed

    @property
    def camera_names(self) -> Tuple[str, ...]:
        """Names of the cameras ``render`` accepts (chosen in the constructor)."""
        return self._camera_names

    @property
    def camera_size(self) -> Tuple[int, int]:
        """Rendered image size as (width, height)."""
        return self._width, self._height

    @property
    def reward(self) -> int:
        """The package's reward after the last control step (0 at reset; 4 = success)."""
        return self._reward

    # ------------------------------------------------------------------ episode control
    def reset(self, seed: int) -> None:
        """Start an episode: the package's start pose at rest, the cube placed from ``seed``.

        Same seed, same cube pose (the package's ``sample_box_pose``); the command becomes
        the start pose.
        """
        seed = validate_seed(seed)
        # As gym_aloha's AlohaEnv.reset: seed the task, hand the box pose over in BOX_POSE.
        self._task.random.seed(seed)
        BOX_POSE[0] = sample_box_pose(seed)
        with self._physics.reset_context():
            self._task.initialize_episode(self._physics)
        self._command = START_POSE.copy()
        self._steps = 0
        self._reward = int(self._task.get_reward(self._physics))
        self._seed = seed

    def set_command(self, q_target: np.ndarray) -> None:
        """Set the 14 targets (action units) applied from the next control step on.

        Not clipped here (the actuators' control ranges bound what MuJoCo applies). Raises
        ValueError for a wrong length or a non-finite value; the previous command then
        stays in force.
        """
        q = np.asarray(q_target, dtype=np.float64)
        if q.shape != (len(JOINT_NAMES),):
            raise ValueError(f'command must have shape ({len(JOINT_NAMES)},), got {q.shape}')
        if not np.all(np.isfinite(q)):
            raise ValueError(f'command must be finite, got {q.tolist()}')
        self._command = q.copy()

    def command(self) -> np.ndarray:
        """Return the targets in force (action units)."""
        return self._command.copy()

    def step(self, duration_s: float) -> None:
        """Advance ``duration_s`` in whole 0.02 s control steps.

        A fraction of a control step is dropped (floor, within 1e-6 of a step): ``step(0.03)``
        advances one step, ``step(0.01)`` none. A caller that follows a clock passes the whole
        lag each time (``target - time_s``), so the world never runs ahead of it and trails
        it by less than one control step.
        """
        duration = float(duration_s)
        if not np.isfinite(duration) or duration < 0.0:
            raise ValueError(f'duration_s must be finite and >= 0, got {duration_s!r}')
        for _ in range(int(math.floor(duration / DT + 1e-6))):
            self._task.before_step(self._command, self._physics)
            self._physics.step(self._n_sub_steps)
            self._task.after_step(self._physics)
            self._reward = int(self._task.get_reward(self._physics))
            self._steps += 1

    # ------------------------------------------------------------------ observations
    def joint_positions(self) -> np.ndarray:
        """Measured positions, the package's ``qpos`` observation (rad; grippers normalised)."""
        return self._task.get_qpos(self._physics)

    def joint_velocities(self) -> np.ndarray:
        """Measured velocities, the package's ``qvel`` (rad/s; grippers normalised per s)."""
        return self._task.get_qvel(self._physics)

    def cube_pose(self) -> np.ndarray:
        """Cube position (m) and quaternion (w, x, y, z) in the world frame."""
        return self._task.get_env_state(self._physics)

    def is_success(self) -> bool:
        """Whether the package's reward is at its maximum (the cube handed over, held up)."""
        return self._reward >= self.max_reward

    def render(self, camera: str = TOP_CAMERA) -> np.ndarray:
        """Render ``camera`` as an (H, W, 3) uint8 RGB array.

        With ``MUJOCO_GL=egl`` any thread may call this (calls are serialised); the world
        itself is not thread-safe, so do not step it while another thread renders.
        """
        if camera not in self._camera_names:
            raise ValueError(f'unknown camera {camera!r}; have {list(self._camera_names)}')
        with self._render_lock:
            try:
                if self._renderer is None:
                    self._renderer = mujoco.Renderer(self.model, self._height, self._width)
                self._renderer.update_scene(self._physics.data.ptr, camera=camera)
                return self._renderer.render().copy()
            finally:
                _release_egl_context()

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Free the renderer (the world stays usable; rendering recreates it)."""
        with self._render_lock:
            if self._renderer is not None:
                self._renderer.close()
                self._renderer = None
                _release_egl_context()

    def __enter__(self) -> 'AlohaTransferCubeWorld':
        """Use the world as a context manager that closes the renderer."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the renderer."""
        self.close()
