"""ALOHA transfer-cube world (gym-aloha, unmodified): seeding, joints, time, rendering, reward."""

import os

import numpy as np
import pytest

from wam_runtime.sim.aloha_world import AlohaTransferCubeWorld, JOINT_NAMES, START_POSE
from wam_runtime.sim.worlds import Episode, make_world, WORLDS

os.environ.setdefault('MUJOCO_GL', 'egl')

SIZE = (160, 120)   # width, height: small, for speed


@pytest.fixture(scope='module')
def world():
    w = AlohaTransferCubeWorld(camera_width=SIZE[0], camera_height=SIZE[1], seed=0,
                               camera_names=('top', 'left_wrist', 'right_wrist'))
    yield w
    w.close()


def test_joint_names_in_the_package_order(world):
    arm = ['waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle', 'wrist_rotate',
           'gripper']
    expected = [f'left_{j}' for j in arm] + [f'right_{j}' for j in arm]
    assert list(world.joint_names) == expected == list(JOINT_NAMES)
    assert world.camera_names == ('top', 'left_wrist', 'right_wrist')
    assert world.camera_size == SIZE


def test_limits_come_from_the_model(world):
    lower, upper = world.lower_limits, world.upper_limits
    assert lower.shape == upper.shape == (14,)
    assert lower[1] == pytest.approx(-1.85005) and upper[1] == pytest.approx(1.25664)
    assert lower[9] == pytest.approx(-1.76278) and upper[9] == pytest.approx(1.6057)
    # Grippers: the finger range 0.021..0.057 m in the package's normalised units.
    for i in (6, 13):
        assert lower[i] == pytest.approx(0.0647, abs=1e-3)
        assert upper[i] == pytest.approx(0.9747, abs=1e-3)
    assert np.all(lower <= START_POSE) and np.all(START_POSE <= upper)
    assert world.velocity_limits is None


def test_reset_reads_back_the_start_pose_with_reward_zero(world):
    world.reset(3)
    assert world.time_s == 0.0
    np.testing.assert_allclose(world.joint_positions(), START_POSE, atol=1e-9)
    np.testing.assert_allclose(world.command(), START_POSE)
    np.testing.assert_allclose(world.joint_velocities(), np.zeros(14), atol=1e-9)
    assert START_POSE[1] == pytest.approx(-0.96)
    assert START_POSE[6] == pytest.approx(0.0998, abs=1e-3)
    assert world.reward == 0 and not world.is_success() and world.max_reward == 4


def test_same_seed_same_cube_and_first_frame_other_seed_differs(world):
    world.reset(11)
    cube_a, frame_a = world.cube_pose(), world.render('top')
    world.step(0.2)
    world.reset(11)
    cube_b, frame_b = world.cube_pose(), world.render('top')
    np.testing.assert_array_equal(cube_a, cube_b)
    np.testing.assert_array_equal(frame_a, frame_b)
    world.reset(12)
    assert np.linalg.norm(world.cube_pose()[:2] - cube_a[:2]) > 1e-3
    assert not np.array_equal(world.render('top'), frame_a)
    # The package's sampling area: x in [0, 0.2], y in [0.4, 0.6], on the table.
    assert 0.0 <= cube_a[0] <= 0.2 and 0.4 <= cube_a[1] <= 0.6 and cube_a[2] == 0.05


def test_step_advances_whole_control_steps(world):
    world.reset(0)
    world.step(0.02)
    assert world.time_s == 0.02
    assert world.physics.data.time == pytest.approx(0.02, abs=1e-12)
    world.step(0.01)                      # a fraction of a step is dropped
    assert world.time_s == 0.02
    world.step(0.05)                      # two whole steps
    assert world.time_s == pytest.approx(0.06, abs=1e-12)
    assert world.physics.data.time == pytest.approx(0.06, abs=1e-12)
    with pytest.raises(ValueError):
        world.step(-0.02)


def test_render_has_the_configured_size_and_is_not_black(world):
    world.reset(0)
    for camera in world.camera_names:
        image = world.render(camera)
        assert image.shape == (SIZE[1], SIZE[0], 3) and image.dtype == np.uint8, camera
        assert image.max() > 50 and image.std() > 5, camera
    top = world.render('top')
    r, g, b = (top[:, :, i].astype(int) for i in range(3))
    assert ((r > 120) & (g < 60) & (b < 60)).sum() > 3, 'the red cube is not in the top view'
    with pytest.raises(ValueError):
        world.render('angle')             # a model camera not asked for


def test_commanding_the_current_pose_holds_it(world):
    world.reset(5)
    q0 = world.joint_positions()
    world.set_command(q0)
    worst = 0.0
    for _ in range(50):                   # 1 s
        world.step(0.02)
        worst = max(worst, float(np.max(np.abs(world.joint_positions() - q0))))
    assert world.time_s == pytest.approx(1.0)
    assert worst < 0.02
    assert world.reward == 0 and not world.is_success()


def test_a_command_moves_the_joint_and_the_gripper(world):
    world.reset(5)
    target = world.joint_positions()
    target[0] += 0.3                      # left waist
    target[13] = 0.9                      # right gripper open
    world.set_command(target)
    world.step(1.0)
    q = world.joint_positions()
    assert q[0] == pytest.approx(target[0], abs=0.03)
    assert q[13] == pytest.approx(0.9, abs=0.05)
    assert abs(q[7]) < 0.02               # the right waist stayed


@pytest.mark.parametrize('bad', [np.zeros(13), np.zeros(16), np.zeros((2, 7)),
                                 np.r_[np.zeros(13), np.nan], np.r_[np.inf, np.zeros(13)]])
def test_a_bad_command_is_refused_and_the_previous_one_stays(world, bad):
    world.reset(0)
    before = world.command()
    with pytest.raises(ValueError):
        world.set_command(bad)
    np.testing.assert_array_equal(world.command(), before)


def test_constructor_validates_cameras_size_and_seed():
    with pytest.raises(ValueError, match='camera_names'):
        AlohaTransferCubeWorld(64, 48, camera_names=('no_such_camera',))
    with pytest.raises(ValueError, match='camera_names'):
        AlohaTransferCubeWorld(64, 48, camera_names=())
    with pytest.raises(ValueError, match='camera_width'):
        AlohaTransferCubeWorld(0, 48)
    with pytest.raises(ValueError, match='offscreen'):
        AlohaTransferCubeWorld(1280, 960)
    with pytest.raises(ValueError, match='seed'):
        AlohaTransferCubeWorld(64, 48, seed=-1)


def test_make_world_and_episode_timeout_outcome():
    with pytest.raises(ValueError, match='world'):
        make_world('no_such_world')
    with make_world('aloha_transfer_cube', 64, 48, seed=7) as w:
        assert isinstance(w, AlohaTransferCubeWorld) and w.camera_names == ('top',)
        episode = Episode(w, 7, 0.1, WORLDS['aloha_transfer_cube'].score)
        outcomes = []
        while not outcomes:
            w.step(0.02)
            outcomes = [o for o in [episode.update()] if o is not None]
        assert outcomes[0] == {'seed': 7, 'success': False, 'time_s': 0.1, 'reward': 0,
                               'best_reward': 0, 'max_reward': 4}
