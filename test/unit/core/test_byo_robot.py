"""Bring your own robot: grippers, mimic joints, prismatic and continuous joints, two arms.

Every URDF here is written by the test: a 7-DoF arm with a parallel gripper whose second
finger mimics the first, a linear rail (prismatic) under an arm, an arm with continuous
joints, and two such arms on one torso. Forward kinematics is checked against Pinocchio's
own mimic support and against hand-computed poses; the live test runs the safety_controller
over real DDS with the arm + gripper robot.
"""

import math
import os
import threading

from hypothesis import given, settings, strategies as st
import numpy as np
import pinocchio as pin
import pytest
import yaml

from wam_runtime import cli
from wam_runtime.core.gate import gate_step, GateState
from wam_runtime.core.kinematics import Kinematics
from wam_runtime.core.limits import format_limits_table, LimitsError, resolve_margins
from wam_runtime.core.param_files import node_parameters
from wam_runtime.core.params import ConfigError
from wam_runtime.core.safety_config import build_safety
from wam_runtime.core.urdf import (
    continuous_joints, joint_units, parse_urdf_joints, resolve_held, resolve_limits)
from wam_runtime.core.workspace import WorkspaceConfig, WorkspaceGuard
from wam_runtime.processes import NodeProcess, REPO_ROOT, wait_for, write_params

EXAMPLES = os.path.join(REPO_ROOT, 'config', 'examples')

# Panda-like arm without link rotations: (origin xyz, axis, lower, upper, velocity).
ARM = (('0 0 0.333', '0 0 1', -2.8973, 2.8973, 2.175),
       ('0 0 0', '0 1 0', -1.7628, 1.7628, 2.175),
       ('0 0 0.316', '0 0 1', -2.8973, 2.8973, 2.175),
       ('0.0825 0 0', '0 -1 0', -3.0718, -0.0698, 2.175),
       ('-0.0825 0 0.384', '0 0 1', -2.8973, 2.8973, 2.61),
       ('0 0 0', '0 -1 0', -0.0175, 3.7525, 2.61),
       ('0.088 0 0', '0 0 -1', -2.8973, 2.8973, 2.61))
HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
FLANGE_Z = 0.333 + 0.316 + 0.384 + 0.107      # flange height with every joint at 0
FINGER_Z = 0.0584 + 0.045                     # fingertip above the flange


def _joint(name, typ, parent, child, xyz='0 0 0', axis='0 0 1', lower=None, upper=None,
           velocity=2.0, extra=''):
    limit = (f'<limit effort="10" velocity="{velocity}"/>' if lower is None else
             f'<limit lower="{lower}" upper="{upper}" effort="10" velocity="{velocity}"/>')
    if typ == 'fixed':
        limit = ''
    return (f'<link name="{child}"/><joint name="{name}" type="{typ}"><parent link="{parent}"/>'
            f'<child link="{child}"/><origin xyz="{xyz}" rpy="0 0 0"/><axis xyz="{axis}"/>'
            f'{limit}{extra}</joint>')


def _arm(prefix, base, types=('revolute',) * 7):
    parts, parent = [], base
    for i, ((xyz, axis, lo, hi, vel), typ) in enumerate(zip(ARM, types), 1):
        child = f'{prefix}link_{i}'
        if typ == 'continuous':
            lo = hi = None
        parts.append(_joint(f'{prefix}joint_{i}', typ, parent, child, xyz, axis, lo, hi, vel))
        parent = child
    parts.append(_joint(f'{prefix}flange_joint', 'fixed', parent, f'{prefix}flange',
                        '0 0 0.107'))
    return parts


def _gripper(prefix, parent, multiplier=1.0, offset=0.0):
    mimic = (f'<mimic joint="{prefix}finger_left_joint" multiplier="{multiplier}" '
             f'offset="{offset}"/>')
    return [
        _joint(f'{prefix}finger_left_joint', 'prismatic', parent, f'{prefix}finger_left',
               '0 0 0.0584', '0 1 0', 0.0, 0.04, 0.2),
        _joint(f'{prefix}finger_right_joint', 'prismatic', parent, f'{prefix}finger_right',
               '0 0 0.0584', '0 -1 0', 0.0, 0.04, 0.2, mimic),
        _joint(f'{prefix}left_tip_joint', 'fixed', f'{prefix}finger_left',
               f'{prefix}left_fingertip', '0 0 0.045'),
        _joint(f'{prefix}right_tip_joint', 'fixed', f'{prefix}finger_right',
               f'{prefix}right_fingertip', '0 0 0.045'),
    ]


def _robot(*parts, base='base_link'):
    return f'<robot name="t"><link name="{base}"/>{"".join(parts)}</robot>'


ARM_JOINTS = [f'joint_{i}' for i in range(1, 8)]
GRIPPER_URDF = _robot(*_arm('', 'base_link'), *_gripper('', 'flange'))
ACC7 = {'max_acceleration_rad_s2': [10.0] * 7, 'max_jerk_rad_s3': [1000.0] * 7}


# ------------------------------------------------------------------ gripper and mimic
def test_gripper_joints_are_held_and_the_mimic_finger_follows():
    """7 commanded of 9 joints; the fingertips follow the held (measured) gripper value."""
    kin = Kinematics(GRIPPER_URDF, ARM_JOINTS, ['left_fingertip', 'right_fingertip'])
    assert kin.held_names == ('finger_left_joint',)
    assert kin.mimic_names == ('finger_right_joint',)
    assert kin.held_positions() == {'finger_left_joint': 0.0}   # 0 is inside [0, 0.04]
    tip = np.array([0.088, 0.0, FLANGE_Z + FINGER_Z])
    np.testing.assert_allclose(kin.positions(np.zeros(7)), [tip, tip], atol=1e-12)
    assert kin.set_held({'finger_left_joint': 0.03}) == ('finger_left_joint',)
    np.testing.assert_allclose(kin.positions(np.zeros(7)),
                               [tip + [0, 0.03, 0], tip - [0, 0.03, 0]], atol=1e-12)


def test_held_values_from_configuration_and_measurement():
    kin = Kinematics(GRIPPER_URDF, ARM_JOINTS, ['left_fingertip'],
                     held={'finger_left_joint': 0.04})
    assert kin.held_positions() == {'finger_left_joint': 0.04}
    # A joint_states message carries everything: commanded, mimic, unknown names and
    # non-finite values are skipped, the held joint is applied.
    applied = kin.set_held({'joint_1': 1.0, 'finger_right_joint': 0.01, 'camera_pan': 0.3,
                            'finger_left_joint': 0.02})
    assert applied == ('finger_left_joint',)
    assert kin.set_held({'finger_left_joint': float('nan')}) == ()
    assert kin.held_positions() == {'finger_left_joint': 0.02}
    for name, why in (('joint_1', 'is commanded'), ('finger_right_joint', 'is a mimic'),
                      ('camera_pan', 'not a movable joint')):
        with pytest.raises(LimitsError, match=f"held_joint_names: '{name}' .*{why}"):
            kin.set_held({name: 0.0}, strict=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-3.0, 3.0), min_size=7, max_size=7), st.floats(0.0, 0.04),
       st.floats(-3.0, 3.0), st.floats(-0.05, 0.05))
def test_mimic_fk_equals_pinocchio_mimic_model(q, g, mult, off):
    """Our mimic handling against Pinocchio's own JointModelMimic, any multiplier/offset."""
    urdf = _robot(*_arm('', 'base_link'), *_gripper('', 'flange', mult, off))
    frames = ['left_fingertip', 'right_fingertip', 'flange']
    kin = Kinematics(urdf, ARM_JOINTS, frames, held={'finger_left_joint': g})
    ours = kin.positions(np.array(q))
    ref = pin.buildModelFromXML(urdf, True)           # Pinocchio's mimic joints
    data = ref.createData()
    pin.framesForwardKinematics(ref, data, np.array(list(q) + [g]))
    expected = [data.oMf[ref.getFrameId(f)].translation for f in frames]
    np.testing.assert_allclose(ours, expected, atol=1e-12)


def test_mimic_chains_follow_the_driving_joint():
    urdf = _robot(*_arm('', 'base_link'), *_gripper('', 'flange'),
                  _joint('third_joint', 'prismatic', 'flange', 'third', '0 0 0.2', '1 0 0',
                         -1, 1, 1, '<mimic joint="finger_right_joint" multiplier="-2" '
                                   'offset="0.01"/>'))
    kin = Kinematics(urdf, ARM_JOINTS, ['third'], held={'finger_left_joint': 0.02})
    q = kin.full_configuration(np.zeros(7))
    assert q[-1] == pytest.approx(-2 * 0.02 + 0.01)      # third = -2 * right + 0.01
    np.testing.assert_allclose(kin.positions(np.zeros(7))[0],
                               [0.088 - 0.03, 0, FLANGE_Z + 0.2], atol=1e-12)


@pytest.mark.parametrize('make,message', [
    (lambda: Kinematics(GRIPPER_URDF, ARM_JOINTS + ['finger_right_joint'], []),
     "joint_names: 'finger_right_joint' is a mimic joint"),
    (lambda: resolve_limits(GRIPPER_URDF, ARM_JOINTS + ['finger_right_joint'], ACC7),
     "joint_names: 'finger_right_joint' is a mimic joint"),
    (lambda: parse_urdf_joints(_robot(_joint('a', 'revolute', 'base_link', 'l', lower=-1,
                                             upper=1, extra='<mimic joint="b"/>'))),
     "joint 'a' mimics 'b', which is not a movable joint"),
    (lambda: parse_urdf_joints(_robot(
        _joint('a', 'revolute', 'base_link', 'l1', lower=-1, upper=1, extra='<mimic joint="b"/>'),
        _joint('b', 'revolute', 'l1', 'l2', lower=-1, upper=1, extra='<mimic joint="a"/>'))),
     'mimic joints form a cycle'),
])
def test_mimic_errors_name_the_joint(make, message):
    with pytest.raises(LimitsError, match=message):
        make()


def test_workspace_guard_on_finger_frames_uses_the_held_gripper():
    """A box the closed fingers fit in and the open ones do not."""
    cfg = WorkspaceConfig.from_params(['left_fingertip', 'right_fingertip'],
                                      [-1.0, -0.035, 0.0, 1.0, 0.035, 2.0], [], [])
    guard = WorkspaceGuard(GRIPPER_URDF, ARM_JOINTS, cfg)
    guard.set_held({'finger_left_joint': 0.03})
    assert guard.point_ok(np.zeros(7))
    assert guard.check(np.zeros(7), np.zeros(7), 0.01) is None
    guard.set_held({'finger_left_joint': 0.04})
    assert guard.check(np.zeros(7), np.zeros(7), 0.01) is not None
    assert not guard.point_ok(np.zeros(7))
    assert guard.last_violation[0] == 'left_fingertip'


@pytest.mark.parametrize('names,values,message', [
    (['joint_1'], [0.0], "'joint_1' is commanded"),
    (['finger_right_joint'], [0.0], "'finger_right_joint' is a mimic joint"),
    (['wrist_cam'], [0.0], "'wrist_cam' is not a movable joint"),
    (['finger_left_joint'], [0.05], "joint 'finger_left_joint' = 0.05 m is outside"),
    (['finger_left_joint'], [float('nan')], 'not finite'),
    (['finger_left_joint'], [], 'held_joint_positions: expected 1 values'),
])
def test_held_configuration_errors(names, values, message):
    with pytest.raises(LimitsError, match=message):
        resolve_held(GRIPPER_URDF, ARM_JOINTS, names, values)


# ------------------------------------------------------------------ prismatic joints
RAIL_URDF = _robot(_joint('linear_rail_carriage_joint', 'prismatic', 'base_link', 'carriage',
                          '0 0 0', '1 0 0', -0.5, 0.8, 0.3),
                   *_arm('', 'carriage'))
RAIL_JOINTS = ['linear_rail_carriage_joint'] + ARM_JOINTS
RAIL_CFG = {'max_acceleration_rad_s2': [10.0] * 7, 'max_acceleration_m_s2': [2.0],
            'max_velocity_m_s': [0.25]}


def test_prismatic_limits_are_in_metres_with_their_own_parameters():
    limits, rows = resolve_limits(RAIL_URDF, RAIL_JOINTS, RAIL_CFG)
    assert joint_units(RAIL_URDF, RAIL_JOINTS) == ('m',) + ('rad',) * 7
    assert limits.lower[0] == -0.5 and limits.max_velocity[0] == 0.25
    assert limits.max_acceleration[0] == 2.0 and limits.max_acceleration[1] == 10.0
    rail = {r.field: r for r in rows if r.joint == 'linear_rail_carriage_joint'}
    assert set(rail) == {'lower_limits_m', 'upper_limits_m', 'max_velocity_m_s',
                         'max_acceleration_m_s2', 'max_jerk_m_s3'}
    assert rail['max_velocity_m_s'].unit == 'm/s' and rail['lower_limits_m'].unit == 'm'
    assert all('_rad' not in r.field for r in rail.values())
    assert {r.unit for r in rows if r.joint == 'joint_1'} == {'rad', 'rad/s', 'rad/s^2',
                                                              'rad/s^3'}


@pytest.mark.parametrize('change,message', [
    ({'max_acceleration_rad_s2': [10.0] * 8},
     r'max_acceleration_rad_s2: expected 7 values \(one per revolute or continuous joint.*'
     'the prismatic joints take theirs from max_acceleration_m_s2'),
    ({'max_acceleration_m_s2': []}, 'max_acceleration_m_s2: required, one value per '
                                    r"prismatic joint \(\['linear_rail_carriage_joint'\]"),
    ({'max_velocity_m_s': [0.5]}, "max_velocity_m_s: joint 'linear_rail_carriage_joint' = 0.5 "
                                  'is looser than urdf <limit velocity> = 0.3'),
    ({'upper_limits_m': [0.9]}, "upper_limits_m: joint 'linear_rail_carriage_joint'"),
    ({'lower_limits_m': [0.5], 'upper_limits_m': [0.4]},
     "lower_limits_m/upper_limits_m: joint 'linear_rail_carriage_joint' has lower 0.5"),
    ({'max_jerk_m_s3': [0.0]}, "max_jerk_m_s3: joint 'linear_rail_carriage_joint' = 0.0 "
                               'must be > 0'),
])
def test_prismatic_errors_name_the_metre_field(change, message):
    with pytest.raises(LimitsError, match=message):
        resolve_limits(RAIL_URDF, RAIL_JOINTS, dict(RAIL_CFG, **change))


def test_metre_parameters_without_prismatic_joints_are_refused():
    with pytest.raises(LimitsError, match='max_velocity_m_s: joint_names has no prismatic'):
        resolve_limits(GRIPPER_URDF, ARM_JOINTS, dict(ACC7, max_velocity_m_s=[0.1]))


def test_per_joint_margins_in_joint_units():
    limits, _ = resolve_limits(RAIL_URDF, RAIL_JOINTS, RAIL_CFG)
    units = joint_units(RAIL_URDF, RAIL_JOINTS)
    margins, rows = resolve_margins(
        RAIL_JOINTS, units, limits.lower, limits.upper,
        {'position_margin_rad': 0.02, 'position_margin_m': 0.005,
         'position_margins_rad': [0.02, 0.02, 0.02, 0.1, 0.02, 0.02, 0.02]})
    np.testing.assert_allclose(margins, [0.005, 0.02, 0.02, 0.02, 0.1, 0.02, 0.02, 0.02])
    by_joint = {r.joint: r for r in rows}
    assert by_joint['linear_rail_carriage_joint'].field == 'position_margin_m'
    assert by_joint['linear_rail_carriage_joint'].unit == 'm'
    assert by_joint['joint_4'].field == 'position_margins_rad'


@pytest.mark.parametrize('config,message', [
    ({'position_margin_m': 0.65},                      # range 1.3 m: collapses to a point
     "position_margin_m: joint 'linear_rail_carriage_joint' margin 0.65 m leaves no range"),
    ({'position_margin_m': 1.0},                       # inverts it
     "position_margin_m: joint 'linear_rail_carriage_joint' margin 1 m leaves no range"),
    ({'position_margins_rad': [0.0, 0.0, 0.0, 1.6, 0.0, 0.0, 0.0]},   # joint_4: 3.0 rad wide
     "position_margins_rad: joint 'joint_4' margin 1.6 rad leaves no range"),
    ({'position_margins_rad': [0.0, -0.1, 0.0, 0.0, 0.0, 0.0, 0.0]},
     "position_margins_rad: joint 'joint_2' = -0.1 must be finite and >= 0"),
    ({'position_margins_m': [0.1, 0.1]}, r'position_margins_m: expected 1 values'),
])
def test_margin_that_collapses_or_inverts_a_range_is_an_error(config, message):
    limits, _ = resolve_limits(RAIL_URDF, RAIL_JOINTS, RAIL_CFG)
    with pytest.raises(LimitsError, match=message):
        resolve_margins(RAIL_JOINTS, joint_units(RAIL_URDF, RAIL_JOINTS), limits.lower,
                        limits.upper, config)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-5, 5), st.floats(0.001, 5), st.floats(0, 3),
                          st.sampled_from(['rad', 'm'])), min_size=1, max_size=6))
def test_margins_either_leave_a_range_or_raise(joints):
    """Property: a margin is accepted exactly when the range stays non-empty."""
    names = [f'j{i}' for i in range(len(joints))]
    lower = [lo for lo, _, _, _ in joints]
    upper = [lo + width for lo, width, _, _ in joints]
    units = [u for _, _, _, u in joints]
    config = {'position_margins_rad': [m for _, _, m, u in joints if u == 'rad'],
              'position_margins_m': [m for _, _, m, u in joints if u == 'm']}
    collapses = [lo + m >= hi - m for lo, hi, m in zip(lower, upper,
                                                       [m for _, _, m, _ in joints])]
    if any(collapses):
        bad = names[collapses.index(True)]
        with pytest.raises(LimitsError, match=f"joint '{bad}' margin .* leaves no range"):
            resolve_margins(names, units, lower, upper, config)
    else:
        margins, _ = resolve_margins(names, units, lower, upper, config)
        assert np.all(np.array(lower) + margins < np.array(upper) - margins)


def _write(tmp_path, urdf, section):
    path = tmp_path / 'robot.urdf'
    path.write_text(urdf)
    cfg = tmp_path / 'robot.yaml'
    cfg.write_text(yaml.safe_dump({'/**/safety_controller': {'ros__parameters': section}}))
    return str(cfg), str(path)


def test_check_config_never_says_valid_for_a_collapsing_margin(tmp_path, capsys):
    section = dict(RAIL_CFG, joint_names=RAIL_JOINTS, position_margin_m=0.7)
    cfg, urdf = _write(tmp_path, RAIL_URDF, section)
    with pytest.raises(LimitsError, match='position_margin_m: joint '):
        build_safety(dict(section, urdf_path=urdf))
    code = cli.main(['check-config', cfg, '--urdf', urdf])
    out = capsys.readouterr().out
    assert code == 2
    assert "INVALID   safety_controller: position_margin_m: joint 'linear_rail_carriage_joint'" \
        in out
    assert 'valid     ' not in out.replace('INVALID', '')


def test_gate_keeps_every_joint_inside_its_own_margin(tmp_path):
    """Per-joint margins reach the gate: adversarial targets stay inside limits - margin."""
    section = dict(RAIL_CFG, joint_names=RAIL_JOINTS, position_margin_m=0.05,
                   position_margins_rad=[0.3, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02])
    _, urdf = _write(tmp_path, RAIL_URDF, section)
    setup = build_safety(dict(section, urdf_path=urdf))
    cfg = setup.config
    margins = np.asarray(cfg.position_margin_rad)
    np.testing.assert_allclose(margins, [0.05, 0.3] + [0.02] * 6)
    lim = cfg.limits
    state = GateState.at_rest(np.clip(np.zeros(8), lim.lower + margins, lim.upper - margins))
    for target in (lim.upper + 1.0, lim.lower - 1.0):
        for _ in range(600):
            res = gate_step(target, state, lim, 0.01, 0.01, margins, 'per_joint')
            state = res.state
            assert np.all(res.command >= lim.lower + margins - 1e-9)
            assert np.all(res.command <= lim.upper - margins + 1e-9)
        np.testing.assert_allclose(state.position, np.clip(target, lim.lower + margins,
                                                           lim.upper - margins), atol=1e-6)


def test_limits_table_shows_units_and_aligns_long_joint_names(tmp_path):
    section = dict(RAIL_CFG, joint_names=RAIL_JOINTS, position_margin_m=0.01)
    _, urdf = _write(tmp_path, RAIL_URDF, section)
    table = build_safety(dict(section, urdf_path=urdf)).limits_table
    lines = table.splitlines()
    header = lines[0].split()
    assert header == ['joint', 'field', 'value', 'unit', 'source']
    # Every row puts the value column at the same place, long name or short.
    value_end = lines[0].index('value') + len('value')
    rail = [line for line in lines if line.startswith('linear_rail_carriage_joint ')]
    assert len(rail) == 6              # five limits and the margin
    for line in lines[1:]:
        assert line[value_end - 1] != ' ', line
        assert line[value_end] == ' ', line
    velocity = next(line for line in rail if 'max_velocity_m_s' in line).split()
    assert velocity[2:] == ['0.25', 'm/s', 'config']
    margin = next(line for line in rail if 'position_margin_m' in line).split()
    assert margin[2:4] == ['0.01', 'm']


# ------------------------------------------------------------------ continuous joints
CONT_TYPES = ('continuous', 'revolute', 'continuous', 'revolute', 'continuous', 'revolute',
              'continuous')
CONT_URDF = _robot(*_arm('', 'base_link', CONT_TYPES))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-3.0, 3.0), min_size=7, max_size=7),
       st.lists(st.integers(-2, 2), min_size=7, max_size=7))
def test_continuous_joints_in_fk_take_angles(q, turns):
    """Same poses as revolute joints, and a full turn changes nothing."""
    revolute = _robot(*_arm('', 'base_link', ('revolute',) * 7))
    frames = ['flange', 'link_4']
    kin = Kinematics(CONT_URDF, ARM_JOINTS, frames)
    ref = Kinematics(revolute, ARM_JOINTS, frames)
    q = np.array(q)
    wrapped = q + 2 * np.pi * np.array(turns) * [t == 'continuous' for t in CONT_TYPES]
    np.testing.assert_allclose(kin.positions(wrapped), ref.positions(q), atol=1e-9)


def test_held_continuous_joint():
    commanded = [j for j in ARM_JOINTS if j != 'joint_5']
    kin = Kinematics(CONT_URDF, commanded, ['flange'])
    assert kin.held_names == ('joint_5',) and kin.held_positions() == {'joint_5': 0.0}
    kin.set_held({'joint_5': math.pi / 2})      # turns the 0.088 m offset of joint_7 to +y
    q = np.zeros(6)
    np.testing.assert_allclose(kin.positions(q)[0], [0.0, 0.088, FLANGE_Z], atol=1e-12)


def test_continuous_joints_are_reported_and_take_optional_configured_limits():
    assert continuous_joints(CONT_URDF, ARM_JOINTS) == tuple(t == 'continuous'
                                                             for t in CONT_TYPES)
    # Configured limits may be wider than one turn (cable wrap) and endless entries
    # (.inf) are allowed for continuous joints only.
    lower = [-4.0, -1.0, -6.0, -3.0, -2.0, 0.0, -3.0]
    upper = [4.0, 1.0, 6.0, -0.5, 2.0, 3.0, 3.0]
    limits, rows = resolve_limits(CONT_URDF, ARM_JOINTS, dict(
        ACC7, lower_limits_rad=lower, upper_limits_rad=upper))
    np.testing.assert_allclose(limits.lower, lower)
    np.testing.assert_allclose(limits.upper, upper)
    src = {(r.joint, r.field): r.source for r in rows}
    assert src[('joint_1', 'lower_limits_rad')] == 'config'
    with pytest.raises(LimitsError, match="lower_limits_rad: joint 'joint_2' is not finite"):
        resolve_limits(CONT_URDF, ARM_JOINTS, dict(
            ACC7, lower_limits_rad=[-4.0, -math.inf, -6.0, -3.0, -2.0, 0.0, -3.0]))


def test_continuous_joint_without_configured_limits_is_endless():
    limits, rows = resolve_limits(CONT_URDF, ARM_JOINTS, ACC7)
    assert limits.lower[0] == -math.inf and limits.upper[0] == math.inf
    assert tuple(limits.continuous) == continuous_joints(CONT_URDF, ARM_JOINTS)
    assert limits.continuous[0]
    assert {(r.joint, r.source) for r in rows if r.field == 'lower_limits_rad'} >= {
        ('joint_1', 'none (continuous)')}


# ------------------------------------------------------------------ two arms
DUAL_URDF = _robot(_joint('left_mount', 'fixed', 'torso', 'left_base', '0 0.3 0'),
                   _joint('right_mount', 'fixed', 'torso', 'right_base', '0 -0.3 0'),
                   *_arm('left_', 'left_base'), *_gripper('left_', 'left_flange'),
                   *_arm('right_', 'right_base'), *_gripper('right_', 'right_flange'),
                   base='torso')
LEFT = [f'left_joint_{i}' for i in range(1, 8)]
RIGHT = [f'right_joint_{i}' for i in range(1, 8)]


def test_dual_arm_commands_one_arm_while_the_other_is_held():
    kin = Kinematics(DUAL_URDF, LEFT, ['left_flange', 'right_flange', 'right_left_fingertip'])
    assert set(kin.held_names) == set(RIGHT) | {'left_finger_left_joint',
                                                'right_finger_left_joint'}
    # The right arm is held at 0 clipped into its limits (joint_4: -0.0698, joint_6: 0).
    assert kin.held_positions()['right_joint_4'] == pytest.approx(-0.0698)
    assert kin.held_positions()['right_joint_6'] == 0.0
    right_before = kin.positions(np.zeros(7))[1]
    moved = kin.positions(HOME)
    np.testing.assert_allclose(moved[1], right_before)       # commanding left moves left only
    # Measured right-arm positions move the right frames, and only them.
    kin.set_held(dict(zip(RIGHT, np.zeros(7))))
    np.testing.assert_allclose(kin.positions(HOME)[1], [0.088, -0.3, FLANGE_Z], atol=1e-12)
    np.testing.assert_allclose(kin.positions(HOME)[0], moved[0])
    limits, _ = resolve_limits(DUAL_URDF, LEFT, ACC7)
    assert limits.joint_names == tuple(LEFT)
    # All 14 arm joints commanded: the two grippers are held.
    both = Kinematics(DUAL_URDF, LEFT + RIGHT, ['left_flange'])
    assert set(both.held_names) == {'left_finger_left_joint', 'right_finger_left_joint'}
    limits, _ = resolve_limits(DUAL_URDF, LEFT + RIGHT, {'max_acceleration_rad_s2': [9.0] * 14})
    assert len(limits.joint_names) == 14


# ------------------------------------------------------------------ the worked example
def _example():
    with open(os.path.join(EXAMPLES, 'arm7_gripper.yaml'), encoding='utf-8') as f:
        doc = yaml.safe_load(f)
    return dict(node_parameters(doc, 'safety_controller'),
                urdf_path=os.path.join(EXAMPLES, 'arm7_gripper.urdf'))


def test_worked_example_builds_and_checks(capsys):
    setup = build_safety(_example())
    assert setup.workspace is not None
    for kin in (setup.workspace.kin, setup.workspace.kin_points):
        assert kin.held_positions() == {'gripper_finger_left_joint': 0.04}
    np.testing.assert_allclose(setup.config.position_margin_rad,
                               [0.02, 0.02, 0.02, 0.05, 0.02, 0.05, 0.02])
    assert setup.workspace.point_ok(HOME)
    code = cli.main(['check-config', os.path.join(EXAMPLES, 'arm7_gripper.yaml'), '--urdf',
                     os.path.join(EXAMPLES, 'arm7_gripper.urdf')])
    out = capsys.readouterr().out
    assert code == 0, out
    assert 'valid     parameters, URDF and joint names agree' in out
    held = next(line for line in out.splitlines()
                if line.startswith('gripper_finger_left_joint ')).split()
    assert held[1:4] == ['held_position', '0.04', 'm']
    mimic = next(line for line in out.splitlines()
                 if line.startswith('gripper_finger_right_joint ')).split()
    assert mimic[1] == 'mimic' and 'follows gripper_finger_left_joint' in ' '.join(mimic)


def test_worked_example_commanding_the_gripper_too():
    p = _example()
    p.update(joint_names=p['joint_names'] + ['gripper_finger_left_joint'],
             held_joint_names=[], held_joint_positions=[], max_velocity_m_s=[0.1],
             max_acceleration_m_s2=[1.0], position_margin_m=0.002)
    setup = build_safety(p)
    assert setup.config.limits.max_velocity[-1] == 0.1
    assert setup.config.position_margin_rad[-1] == 0.002
    assert 'gripper_finger_left_joint' not in setup.workspace.kin.held_names
    p['held_joint_names'], p['held_joint_positions'] = ['gripper_finger_left_joint'], [0.0]
    with pytest.raises(LimitsError, match="held_joint_names: 'gripper_finger_left_joint' is "
                                          'commanded'):
        build_safety(p)


def test_metre_and_held_parameters_need_a_urdf():
    p = {'joint_names': ['a', 'b'], 'lower_limits_rad': [-1.0, -1.0],
         'upper_limits_rad': [1.0, 1.0], 'max_velocity_rad_s': [1.0, 1.0]}
    assert 'position_margin_rad' in build_safety(p).limits_table
    for key, value in (('max_velocity_m_s', [0.1]), ('held_joint_names', ['c']),
                       ('position_margin_m', 0.01)):
        with pytest.raises(ConfigError, match=f'{key}: needs urdf_path'):
            build_safety(dict(p, **{key: value}))
    with pytest.raises(LimitsError, match="position_margin_rad: joint 'a' margin 1 rad"):
        build_safety(dict(p, position_margin_rad=1.0))


def test_table_format_handles_names_longer_than_any_column():
    from wam_runtime.core.limits import LimitRow
    long = 'a_very_long_joint_name_from_a_vendor_description_' * 2
    rows = [LimitRow(long, 'max_velocity_rad_s', 1.5, 'config', 'rad/s'),
            LimitRow('j', 'lower_limits_m', -0.25, 'urdf <limit lower>', 'm')]
    lines = format_limits_table(rows).splitlines()
    assert lines[1].split() == [long, 'max_velocity_rad_s', '1.5', 'rad/s', 'config']
    assert lines[2].split()[:4] == ['j', 'lower_limits_m', '-0.25', 'm']
    assert len({line.index('  ', len(long)) for line in lines[1:]}) == 1


# ------------------------------------------------------------------ live over DDS
class _Robot:
    """Joint states (7 arm joints + the gripper, one message) echoing the commands."""

    def __init__(self, add_node, joints, gripper, q0):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import qos_profile_sensor_data, QoSProfile
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray
        from trajectory_msgs.msg import JointTrajectory
        self.node = add_node(rclpy.create_node('byo_robot', context=add_node.context))
        self.joints, self.gripper = list(joints), gripper
        self.q = np.array(q0, dtype=float)
        self.commands, self.diag = [], {}
        self._lock = threading.Lock()
        self.JointState = JointState
        self.js_pub = self.node.create_publisher(JointState, 'joint_states',
                                                 qos_profile_sensor_data)
        self.chunk_pub = self.node.create_publisher(JointTrajectory, 'policy/action_chunk',
                                                    QoSProfile(depth=100))
        self.node.create_subscription(Float64MultiArray, 'commands', self._on_cmd, 100)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)
        self.node.create_timer(0.01, self._publish)

    def _on_cmd(self, msg):
        with self._lock:
            self.q = np.asarray(msg.data, dtype=float)
            self.commands.append(self.q)

    def _on_diag(self, msg):
        for status in msg.status:
            if status.name.endswith(': safety'):
                self.diag = {kv.key: kv.value for kv in status.values}

    def _publish(self):
        with self._lock:
            q = self.q.tolist()
        msg = self.JointState(name=self.joints + [self.gripper[0]],
                              position=q + [self.gripper[1]])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.js_pub.publish(msg)

    def chunk(self, joint_1_offset, n=16, dt=0.05):
        from builtin_interfaces.msg import Time
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
        from wam_runtime.ros.conversions import s_to_duration
        with self._lock:
            q0 = self.q.copy()
        ns = self.node.get_clock().now().nanoseconds
        msg = JointTrajectory(joint_names=self.joints)
        msg.header.stamp = Time(sec=ns // 10 ** 9, nanosec=ns % 10 ** 9)
        for k in range(n):
            p = q0.copy()
            p[0] += joint_1_offset * (k + 1) / n
            msg.points.append(JointTrajectoryPoint(positions=p.tolist(),
                                                   time_from_start=s_to_duration(dt * (k + 1))))
        self.chunk_pub.publish(msg)


@pytest.mark.ros
@pytest.mark.slow
def test_live_safety_controller_with_arm_and_gripper(proc_env, tmp_path, ros_context):
    """7 arm joints commanded, gripper held, workspace box on the fingertips, over DDS."""
    urdf = tmp_path / 'arm_gripper.urdf'
    urdf.write_text(GRIPPER_URDF)
    box = [-0.2, -0.3, 0.5, 0.6, 0.2, 1.2]
    params = {
        'autostart': True, 'joint_names': ARM_JOINTS, 'urdf_path': str(urdf),
        'max_acceleration_rad_s2': [10.0] * 7, 'max_jerk_rad_s3': [1000.0] * 7,
        'position_margin_rad': 0.02,
        'position_margins_rad': [0.05, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02],
        'held_joint_names': ['finger_left_joint'], 'held_joint_positions': [0.04],
        'workspace_frames': ['left_fingertip', 'right_fingertip'], 'workspace_box_m': box,
        'control_rate_hz': 100.0, 'command_timeout_s': 0.5, 'state_timeout_s': 0.5,
        'max_chunk_age_s': 0.5, 'diagnostics_period_s': 0.2,
    }
    setup = build_safety(params)            # the same parameters, offline: the reference
    kin, lim = setup.workspace.kin, setup.config.limits
    margins = np.asarray(setup.config.position_margin_rad)
    assert setup.workspace.point_ok(HOME)
    pf = write_params(str(tmp_path / 'safety.yaml'), 'safety_controller', params)
    proc = NodeProcess('wam_runtime.ros.safety_controller', proc_env, 'safety_controller', pf,
                       log_dir=str(tmp_path))
    try:
        robot = _Robot(ros_context, ARM_JOINTS, ('finger_left_joint', 0.04), HOME)
        assert wait_for(lambda: len(robot.commands) > 20, 40.0), proc.output()[-3000:]
        assert wait_for(lambda: robot.chunk_pub.get_subscription_count() > 0, 30.0)
        start = robot.commands[-1][0]
        robot.chunk(0.3)
        assert wait_for(lambda: robot.diag.get('mode') == 'tracking', 10.0), robot.diag
        assert wait_for(lambda: robot.commands[-1][0] > start + 0.2, 10.0)
        # Turning joint_1 a long way swings the left fingertip out of the box (y > 0.2).
        robot.chunk(1.2)
        assert wait_for(lambda: int(robot.diag.get('count_chunk_outside_workspace', 0)) >= 1,
                        10.0), robot.diag
        assert proc.alive()
        cmds = np.array(robot.commands)
        assert np.all(cmds >= lim.lower + margins - 1e-9)
        assert np.all(cmds <= lim.upper - margins + 1e-9)
        kin.set_held({'finger_left_joint': 0.04})
        for q in cmds:
            tips = kin.positions(q)
            assert np.all(tips >= np.array(box[:3]) - 1e-9) and np.all(
                tips <= np.array(box[3:]) + 1e-9), (q, tips)
        log = proc.output()
        assert 'finger_left_joint' in log and 'held_position' in log
        assert 'follows finger_left_joint' in log
    finally:
        proc.stop()


@pytest.mark.ros
@pytest.mark.slow
def test_live_dual_arm_from_two_joint_state_drivers(proc_env, tmp_path, ros_context):
    """Command both arms of the dual-arm URDF, each arm with a joint_states driver of its own.

    14 joints merged per joint from the two drivers (each also sends its gripper, which is
    held for the fingertip workspace); a dead right driver stops everything (per joint
    state timeout) and names the right arm's joints as stale.
    """
    from builtin_interfaces.msg import Time
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import qos_profile_sensor_data, QoSProfile
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
    from wam_runtime.ros.conversions import s_to_duration

    urdf = tmp_path / 'dual.urdf'
    urdf.write_text(DUAL_URDF)
    joints = LEFT + RIGHT
    params = {
        'autostart': True, 'joint_names': joints, 'urdf_path': str(urdf),
        'max_acceleration_rad_s2': [10.0] * 14, 'max_jerk_rad_s3': [1000.0] * 14,
        'position_margin_rad': 0.02, 'control_rate_hz': 100.0, 'command_timeout_s': 0.5,
        'state_timeout_s': 0.3, 'max_chunk_age_s': 0.5, 'diagnostics_period_s': 0.2,
        'workspace_frames': ['left_left_fingertip', 'right_right_fingertip'],
        'workspace_box_m': [-1.5, -1.5, 0.05, 1.5, 1.5, 2.0],
    }
    setup = build_safety(params)
    lim = setup.config.limits
    home = np.concatenate([HOME, HOME])
    proc = NodeProcess('wam_runtime.ros.safety_controller', proc_env, 'safety_controller',
                       write_params(str(tmp_path / 's.yaml'), 'safety_controller', params),
                       log_dir=str(tmp_path))
    ctx = ros_context.context
    lock = threading.Lock()
    q = home.copy()
    cmds, diag, alive = [], {}, {'left': True, 'right': True}

    def on_cmd(msg):
        with lock:
            q[:] = np.asarray(msg.data, dtype=float)
            cmds.append(q.copy())

    def on_diag(msg):
        for st_ in msg.status:
            if st_.name.endswith(': safety'):
                diag.clear()
                diag.update({kv.key: kv.value for kv in st_.values})

    policy = ros_context(rclpy.create_node('dual_policy', context=ctx))
    policy.create_subscription(Float64MultiArray, 'commands', on_cmd, 100)
    policy.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)
    chunk_pub = policy.create_publisher(JointTrajectory, 'policy/action_chunk',
                                        QoSProfile(depth=10))
    for side, sl, opening in (('left', slice(0, 7), 0.03), ('right', slice(7, 14), 0.01)):
        node = ros_context(rclpy.create_node(f'{side}_arm_driver', context=ctx))
        pub = node.create_publisher(JointState, 'joint_states', qos_profile_sensor_data)

        def publish(node=node, pub=pub, side=side, sl=sl, opening=opening):
            if not alive[side]:
                return
            with lock:
                values = q[sl].tolist()
            msg = JointState(name=joints[sl] + [f'{side}_finger_left_joint'],
                             position=values + [opening])
            msg.header.stamp = node.get_clock().now().to_msg()
            pub.publish(msg)
        node.create_timer(0.01, publish)
    try:
        assert wait_for(lambda: len(cmds) > 20, 40.0), proc.output()[-3000:]
        assert wait_for(lambda: chunk_pub.get_subscription_count() > 0, 30.0)
        with lock:
            start = q.copy()
        ns = policy.get_clock().now().nanoseconds
        msg = JointTrajectory(joint_names=joints)
        msg.header.stamp = Time(sec=ns // 10 ** 9, nanosec=ns % 10 ** 9)
        for k in range(20):                      # both first joints turn by 0.3 rad
            p = start.copy()
            p[[0, 7]] += 0.015 * (k + 1)
            msg.points.append(JointTrajectoryPoint(
                positions=p.tolist(), time_from_start=s_to_duration(0.05 * (k + 1))))
        chunk_pub.publish(msg)
        assert wait_for(lambda: diag.get('mode') == 'tracking', 10.0), diag
        assert diag['joint_states_sources'] == '2' and diag['joint_states_missing'] == 'none'
        assert wait_for(lambda: cmds[-1][0] > start[0] + 0.2 and cmds[-1][7] > start[7] + 0.2,
                        10.0)
        alive['right'] = False                   # the right arm's driver dies
        assert wait_for(lambda: int(diag.get('count_state_timeout', 0)) >= 1, 10.0), diag
        assert wait_for(lambda: diag.get('joint_states_stale', 'none') != 'none', 5.0), diag
        assert 'right_joint_1' in diag['joint_states_stale']
        with lock:
            out = np.array(cmds)
        assert np.all(out >= lim.lower + 0.02 - 1e-9) and np.all(out <= lim.upper - 0.02 + 1e-9)
        assert np.all(np.abs(np.diff(out, axis=0)) <= lim.max_velocity * 0.01 + 1e-9)
        assert proc.alive()
    finally:
        proc.stop()


def test_start_distance_and_standstill_use_metres_for_prismatic_joints(tmp_path):
    """The _rad thresholds never apply to a prismatic joint: it has its own _m ones."""
    from wam_runtime.core import controller as ctl
    section = dict(RAIL_CFG, joint_names=RAIL_JOINTS, max_start_distance_rad=0.5,
                   max_start_distance_m=0.02, standstill_tolerance_rad=0.05,
                   standstill_tolerance_m=0.001)
    _, urdf = _write(tmp_path, RAIL_URDF, section)
    cfg = build_safety(dict(section, urdf_path=urdf)).config
    np.testing.assert_allclose(cfg.max_start_distance_rad, [0.02] + [0.5] * 7)
    np.testing.assert_allclose(cfg.standstill_tolerance_rad, [0.001] + [0.05] * 7)
    core = ctl.SafetyController(cfg)
    q = np.clip(np.zeros(8), cfg.limits.lower + 0.1, cfg.limits.upper - 0.1)
    core.on_state(q, 0.0)
    core.tick(0.0)
    rail_far = q.copy()
    rail_far[0] += 0.1                      # 0.1 m: within 0.5 "rad", beyond 0.02 m
    with pytest.raises(ctl.ChunkError, match='linear_rail_carriage_joint') as info:
        core.on_chunk(RAIL_JOINTS, 0.0, [0.1], [rail_far.tolist()], 0.01)
    assert info.value.reason == ctl.CHUNK_START_FAR
    arm_near = q.copy()
    arm_near[1] += 0.1                      # 0.1 rad on an arm joint: accepted
    core.on_chunk(RAIL_JOINTS, 0.0, [0.1], [arm_near.tolist()], 0.01)
    with pytest.raises(ConfigError, match='max_start_distance_m'):
        build_safety(dict(section, max_start_distance_m=-1.0, urdf_path=urdf))
