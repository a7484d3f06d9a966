"""Limits from the URDF intersected with config, and the Pinocchio workspace guard."""

import os

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from wam_runtime.core.gate import gate_step, GateState
from wam_runtime.core.limits import format_limits_table, LimitsError
from wam_runtime.core.urdf import parse_urdf_joints, resolve_limits
from wam_runtime.core.workspace import WorkspaceConfig, WorkspaceGuard
from wam_runtime.processes import REPO_ROOT

with open(os.path.join(REPO_ROOT, 'config', 'reference_arm.urdf'), encoding='utf-8') as _f:
    URDF = _f.read()
JOINTS = [f'joint_{i}' for i in range(1, 7)]
ACC = {'max_acceleration_rad_s2': [10.0] * 6}


def test_urdf_limits_prefer_soft_limits_and_report_sources():
    limits, rows = resolve_limits(URDF, JOINTS, ACC)
    urdf = parse_urdf_joints(URDF)
    assert limits.lower[1] == urdf['joint_2'].soft_lower == -1.95
    assert limits.max_velocity[0] == 2.0
    src = {(r.joint, r.field): r.source for r in rows}
    assert src[('joint_2', 'lower_limits_rad')].startswith('urdf <safety_controller')
    assert src[('joint_1', 'max_acceleration_rad_s2')] == 'config'
    assert 'joint_6' in format_limits_table(rows)


def test_rows_carry_the_unit_and_the_table_shows_it():
    _, rows = resolve_limits(URDF, JOINTS, dict(ACC, max_jerk_rad_s3=[100.0] * 6))
    units = {r.field: r.unit for r in rows}
    assert units == {'lower_limits_rad': 'rad', 'upper_limits_rad': 'rad',
                     'max_velocity_rad_s': 'rad/s', 'max_acceleration_rad_s2': 'rad/s^2',
                     'max_jerk_rad_s3': 'rad/s^3'}
    line = next(x for x in format_limits_table(rows).splitlines()
                if x.startswith('joint_3') and 'max_jerk_rad_s3' in x)
    assert line.split() == ['joint_3', 'max_jerk_rad_s3', '100', 'rad/s^3', 'config']


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=6, max_size=6))
def test_fk_of_an_arm_without_held_joints_equals_pinocchio(q):
    import pinocchio as pin
    g = _guard()
    assert g.kin.held_names == () and g.kin.mimic_names == ()
    model = pin.buildModelFromXML(URDF)
    data = model.createData()
    pin.framesForwardKinematics(model, data, np.array(q))
    expected = [data.oMf[model.getFrameId(f)].translation for f in g.kin.frame_names]
    np.testing.assert_allclose(g.kin.positions(np.array(q)), expected, atol=1e-12)


def test_config_may_tighten():
    limits, rows = resolve_limits(URDF, JOINTS, dict(ACC, upper_limits_rad=[1.0] * 6,
                                                     max_velocity_rad_s=[1.5] * 6))
    assert limits.upper[0] == 1.0 and limits.max_velocity[3] == 1.5


@pytest.mark.parametrize('config,message', [
    ({'upper_limits_rad': [2.76, 1, 1, 1, 1, 1]}, "upper_limits_rad: joint 'joint_1' = 2.76 "
                                                  'is looser'),
    ({'lower_limits_rad': [-1, -1.96, -1, -1, -1, -1]}, "lower_limits_rad: joint 'joint_2'"),
    ({'max_velocity_rad_s': [1, 1, 1, 1, 1, 2.5]}, "max_velocity_rad_s: joint 'joint_6'"),
    ({'max_velocity_rad_s': [1, 1]}, 'max_velocity_rad_s: expected 6 values'),
    ({'max_acceleration_rad_s2': []}, 'max_acceleration_rad_s2: required'),
])
def test_looser_or_malformed_config_names_joint_and_field(config, message):
    cfg = dict(ACC)
    cfg.update(config)
    with pytest.raises(LimitsError, match=message.replace('(', r'\(')):
        resolve_limits(URDF, JOINTS, cfg)


def test_joint_names_must_match_the_urdf():
    with pytest.raises(LimitsError, match="joint_names: \\['elbow'\\] not movable joints"):
        resolve_limits(URDF, JOINTS[:5] + ['elbow'], ACC)


@pytest.mark.parametrize('text,message', [
    ('<robot><joint', 'urdf: not valid XML'),
    ('<model/>', 'expected <robot>'),
    ('<robot><joint name="j" type="revolute"><limit lower="a" upper="1"/></joint></robot>',
     "lower='a' is not a number"),
    ('<robot><joint name="j" type="revolute"/></robot>', 'has no <limit lower upper>'),
])
def test_bad_urdf(text, message):
    with pytest.raises(LimitsError, match=message):
        parse_urdf_joints(text)


def _guard(**kw):
    cfg = WorkspaceConfig.from_params(
        kw.get('frames', ['ee_link', 'link_4', 'link_3']),
        kw.get('box', [-0.8, -0.8, 0.0, 0.8, 0.8, 1.2]),
        kw.get('boxes', [0.3, -0.1, 0.0, 0.5, 0.1, 0.15]),
        kw.get('spheres', [0.0, 0.45, 0.3, 0.1]), 'ee_link', kw.get('ee_speed', 0.0))
    return WorkspaceGuard(URDF, JOINTS, cfg)


def test_fk_matches_a_hand_computed_pose():
    g = _guard()
    # All joints at zero: the arm points straight up; tip at z = 0.1+0.1+0.35+0.3+0.06+0.05+0.08
    np.testing.assert_allclose(g.kin.positions(np.zeros(6))[0], [0, 0, 1.04], atol=1e-9)
    assert g.point_ok(np.zeros(6))


def test_keep_out_box_and_frame_reported():
    g = _guard(box=[])
    # Fold the arm down in front: tip goes low and forward.
    q = np.array([0.0, 1.2, 1.2, 0.7, 0.0, 0.0])
    tip = g.kin.positions(q)[0]
    assert tip[2] < 0.3
    inside_keepout = g.config.keep_out_boxes[0].contains(tip[None])[0]
    assert g.point_ok(q) == (not inside_keepout)


@pytest.mark.parametrize('bad', [
    {'box': [0, 0, 0, 1, 1]}, {'boxes': [1, 1, 1, 0, 0, 0]}, {'spheres': [0, 0, 0, -1]},
    {'frames': ['no_such_link']}])
def test_bad_workspace_params(bad):
    with pytest.raises(LimitsError):
        _guard(**bad)


LIMITS, _ = resolve_limits(URDF, JOINTS, {'max_acceleration_rad_s2': [8.0] * 6,
                                          'max_jerk_rad_s3': [400.0] * 6})


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.floats(-3, 3), min_size=6, max_size=6), min_size=3, max_size=12),
       st.integers(0, 2 ** 16))
def test_gated_motion_never_enters_keep_out_volumes(targets, seed):
    """Adversarial targets everywhere: every output keeps all frames in the workspace."""
    g = _guard()
    rng = np.random.default_rng(seed)
    q = np.zeros(6)
    assert g.point_ok(q)
    state = GateState.at_rest(q)
    for t in targets:
        for _ in range(int(rng.integers(5, 30))):
            res = gate_step(np.array(t), state, LIMITS, 0.01, 0.01, 0.0, 'uniform', g.ok)
            state = res.state
            assert g.point_ok(res.command), g.last_violation
            assert np.all(res.command >= LIMITS.lower - 1e-9)
            assert np.all(res.command <= LIMITS.upper + 1e-9)


def test_end_effector_speed_limit():
    g = _guard(box=[], boxes=[], spheres=[], ee_speed=0.1)
    lim, _ = resolve_limits(URDF, JOINTS, {'max_acceleration_rad_s2': [1e3] * 6})
    state = GateState.at_rest(np.zeros(6))
    prev = state.position
    for _ in range(50):
        res = gate_step(np.array([0, 1.0, 0, 0, 0, 0]), state, lim, 0.01, 0.01, 0.0,
                        'uniform', g.ok)
        a, b = (g.kin.positions(x)[0] for x in (res.command, prev))   # ee_link
        assert np.linalg.norm(a - b) / 0.01 <= 0.1 + 1e-6
        prev, state = res.command, res.state
    assert prev[1] > 0.05        # it still moves, slowly
