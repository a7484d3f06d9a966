"""Reference world: MJCF and URDF agree, seeding, input validation, expert, rendering."""

import os
import threading
from xml.etree import ElementTree

import mujoco
import numpy as np
import pinocchio as pin
import pytest

from wam_runtime.processes import REPO_ROOT
from wam_runtime.sim.expert import ReachExpert
from wam_runtime.sim.world import (
    CUBE_HALF_SIZE_M, CUBE_X_RANGE, CUBE_Y_RANGE, HOME_Q, JOINT_NAMES, ReachWorld,
    TARGET_CLEARANCE_M)

os.environ.setdefault('MUJOCO_GL', 'egl')

REPO = REPO_ROOT
URDF_PATH = os.path.join(REPO, 'config', 'reference_arm.urdf')


@pytest.fixture(scope='module')
def world():
    w = ReachWorld(camera_width=128, camera_height=128, seed=0)
    yield w
    w.close()


@pytest.fixture(scope='module')
def urdf_text():
    with open(URDF_PATH, encoding='utf-8') as f:
        return f.read()


@pytest.fixture(scope='module')
def pin_model(urdf_text):
    return pin.buildModelFromXML(urdf_text)


def test_fk_mujoco_matches_urdf_pinocchio(world, pin_model):
    model = world.model
    data = mujoco.MjData(model)
    site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, 'ee_site')
    pdata = pin_model.createData()
    frame = pin_model.getFrameId('ee_link')
    assert frame < len(pin_model.frames)
    # Pinocchio's configuration order must be the joint_1..joint_6 order.
    assert [pin_model.names[i] for i in range(1, pin_model.njoints)] == list(JOINT_NAMES)
    rng = np.random.default_rng(42)
    worst = 0.0
    for _ in range(250):
        q = rng.uniform(world.lower_limits, world.upper_limits)
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        pin.framesForwardKinematics(pin_model, pdata, q)
        p_mj = data.site_xpos[site]
        p_pin = pdata.oMf[frame].translation
        worst = max(worst, float(np.linalg.norm(p_mj - p_pin)))
        # Orientation of the tool frame agrees too.
        r_mj = data.site_xmat[site].reshape(3, 3)
        assert np.allclose(r_mj, pdata.oMf[frame].rotation, atol=1e-6)
    assert worst < 1e-3, f'FK differs by {worst * 1000:.3f} mm'


def test_joint_names_and_limits_match_urdf(world, pin_model, urdf_text):
    assert world.joint_names == JOINT_NAMES
    names = [pin_model.names[i] for i in range(1, pin_model.njoints)]
    assert names == list(JOINT_NAMES)
    assert np.allclose(pin_model.lowerPositionLimit, world.lower_limits)
    assert np.allclose(pin_model.upperPositionLimit, world.upper_limits)
    assert np.allclose(pin_model.velocityLimit, world.velocity_limits)
    assert np.all(world.velocity_limits > 0)
    root = ElementTree.fromstring(urdf_text)
    joints = {j.get('name'): j for j in root.iter('joint') if j.get('type') == 'revolute'}
    assert sorted(joints) == sorted(JOINT_NAMES)
    for i, name in enumerate(JOINT_NAMES):
        limit = joints[name].find('limit')
        safety = joints[name].find('safety_controller')
        assert limit is not None and safety is not None, name
        for key in ('lower', 'upper', 'effort', 'velocity'):
            assert limit.get(key) is not None, f'{name} limit lacks {key}'
        lower, upper = float(limit.get('lower')), float(limit.get('upper'))
        soft_lo = float(safety.get('soft_lower_limit'))
        soft_hi = float(safety.get('soft_upper_limit'))
        assert lower < soft_lo < soft_hi < upper, name
        assert lower == pytest.approx(world.lower_limits[i])
        assert upper == pytest.approx(world.upper_limits[i])
        for key in ('k_position', 'k_velocity'):
            assert safety.get(key) is not None, f'{name} safety_controller lacks {key}'


def test_home_pose_holds_under_gravity(world):
    world.reset(0)
    assert np.allclose(world.joint_positions(), HOME_Q)
    world.set_command(HOME_Q)
    world.step(1.0)
    assert world.time_s == pytest.approx(1.0)
    assert np.allclose(world.joint_positions(), HOME_Q, atol=1e-3)
    assert np.all(np.abs(world.joint_velocities()) < 1e-2)


def test_seeded_reset_is_reproducible(world):
    world.reset(7)
    first = world.target_position()
    world.set_command(HOME_Q + 0.1)
    world.step(0.2)
    world.reset(7)
    assert np.array_equal(world.target_position(), first)
    assert world.time_s == 0.0
    assert np.allclose(world.joint_positions(), HOME_Q)
    world.reset(8)
    assert not np.allclose(world.target_position(), first)
    targets = []
    for seed in range(50):
        world.reset(seed)
        cube = world.cube_position()
        assert CUBE_X_RANGE[0] <= cube[0] <= CUBE_X_RANGE[1]
        assert CUBE_Y_RANGE[0] <= cube[1] <= CUBE_Y_RANGE[1]
        assert cube[2] == pytest.approx(CUBE_HALF_SIZE_M)
        target = world.target_position()
        assert target[2] == pytest.approx(2 * CUBE_HALF_SIZE_M + TARGET_CLEARANCE_M)
        targets.append(target)
    assert len({tuple(np.round(t, 6)) for t in targets}) == 50


@pytest.mark.parametrize('seed', [-1, 1.5, '3', None, True])
def test_bad_seed_raises_and_world_keeps_working(world, seed):
    world.reset(3)
    target = world.target_position()
    with pytest.raises(ValueError):
        world.reset(seed)
    assert np.array_equal(world.target_position(), target)
    world.reset(np.int64(4))
    world.step(0.01)
    assert world.time_s == pytest.approx(0.01)


@pytest.mark.parametrize('command', [
    np.zeros(5), np.zeros(7), np.zeros((2, 6)),
    np.array([0.0, 0.0, np.nan, 0.0, 0.0, 0.0]),
    np.array([0.0, np.inf, 0.0, 0.0, 0.0, 0.0]),
])
def test_bad_command_raises_and_world_keeps_working(world, command):
    world.reset(1)
    world.set_command(HOME_Q)
    with pytest.raises(ValueError):
        world.set_command(command)
    assert np.allclose(world.command(), HOME_Q)
    world.step(0.05)
    assert np.all(np.isfinite(world.joint_positions()))
    assert np.allclose(world.joint_positions(), HOME_Q, atol=1e-3)


def test_command_is_clipped_to_joint_range(world):
    world.reset(1)
    world.set_command(np.full(6, 10.0))
    assert np.allclose(world.command(), world.upper_limits)
    world.set_command(np.full(6, -10.0))
    assert np.allclose(world.command(), world.lower_limits)


def test_bad_step_duration_raises(world):
    world.reset(1)
    for bad in (-0.1, float('nan'), float('inf')):
        with pytest.raises(ValueError):
            world.step(bad)
    assert world.time_s == 0.0


def test_area_corners_are_reachable_by_the_expert(world):
    """IK alone (no physics) converges to the goal above every corner of the cube area."""
    expert = ReachExpert(world.model)
    z = 2 * CUBE_HALF_SIZE_M + TARGET_CLEARANCE_M
    for x in CUBE_X_RANGE:
        for y in CUBE_Y_RANGE:
            target = np.array([x, y, z])
            q = HOME_Q.copy()
            for _ in range(12):
                q = expert.plan(q, target)[-1]
            assert np.linalg.norm(expert.tool_position(q) - target) < 2e-3, (x, y)
            assert np.all(q > world.lower_limits) and np.all(q < world.upper_limits)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_expert_reaches_target_in_closed_loop(world, seed):
    world.reset(seed)
    expert = ReachExpert(world.model)
    target = world.target_position()
    command = world.command()
    reached = None
    max_speed = 0.0
    for _ in range(80):  # 4 s at 20 Hz
        plan = expert.plan(world.joint_positions(), target)
        assert plan.shape == (16, 6)
        for i in range(5):
            world.set_command(command + (plan[0] - command) * (i + 1) / 5)
            world.step(0.01)
            max_speed = max(max_speed, float(np.max(np.abs(world.joint_velocities()))))
        command = plan[0]
        if reached is None and world.distance_to_target() < world.success_radius_m:
            reached = world.time_s
    assert reached is not None and reached < 3.5
    assert world.distance_to_target() < 0.005
    # Well inside the 2 rad/s velocity limits the runtime's safety gate enforces.
    assert max_speed < 0.5 * float(np.min(world.velocity_limits))


def test_render_shows_red_cube(world):
    world.reset(5)
    image = world.render()
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    r, g, b = (image[:, :, i].astype(int) for i in range(3))
    red = (r > 150) & (g < 70) & (b < 70)
    assert red.sum() >= 5, f'only {red.sum()} strongly red pixels'
    # Same state, same image; the renderer is reused.
    assert np.array_equal(world.render(), image)
    with pytest.raises(ValueError):
        world.render('no_such_camera')


@pytest.mark.skipif(os.environ.get('MUJOCO_GL', '').lower() != 'egl',
                    reason='thread-agnostic rendering is implemented for MUJOCO_GL=egl only')
def test_render_from_other_threads(world):
    """A ROS executor may call render() from any of its threads."""
    world.reset(5)
    expected = world.render()
    results = []

    def render():
        try:
            results.append(world.render())
        except Exception as exc:  # reported by the assertion below
            results.append(exc)

    for _ in range(3):
        thread = threading.Thread(target=render)
        thread.start()
        thread.join()
    assert all(isinstance(r, np.ndarray) and np.array_equal(r, expected) for r in results), \
        results
    assert np.array_equal(world.render(), expected)


def test_constructor_validates_camera_size():
    with pytest.raises(ValueError):
        ReachWorld(camera_width=0)
    with pytest.raises(ValueError):
        ReachWorld(camera_height=100000)
