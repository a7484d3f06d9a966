"""Cartesian limits that brake within the joint limits (Pinocchio FK of the reference arm).

Promise: from rest inside the workspace, whatever is requested, every command keeps the
monitored frames inside the workspace AND within every joint's velocity, acceleration and
jerk limit: the gate slows down approaching a wall instead of stopping dead, and the
end-effector speed limit scales the motion within the acceleration limit.
"""

import math
import os

from hypothesis import given, settings, strategies as st
import numpy as np

from wam_runtime.core.gate import (
    braking_path, braking_reach, EE_SPEED_LIMIT, gate_step, GateState, WORKSPACE_HOLD,
    WORKSPACE_LIMIT)
from wam_runtime.core.limits import JointLimits
from wam_runtime.core.urdf import resolve_limits
from wam_runtime.core.workspace import WorkspaceConfig, WorkspaceGuard
from wam_runtime.processes import REPO_ROOT

with open(os.path.join(REPO_ROOT, 'config', 'reference_arm.urdf'), encoding='utf-8') as _f:
    URDF = _f.read()
JOINTS = [f'joint_{i}' for i in range(1, 7)]
DT = 0.01
ACC, JERK = 8.0, 400.0
LIMITS, _ = resolve_limits(URDF, JOINTS, {'max_acceleration_rad_s2': [ACC] * 6,
                                          'max_jerk_rad_s3': [JERK] * 6})
HOME = np.array([0.0, 0.3, 0.6, 0.4, 0.0, 0.0])


def _guard(box=(-0.6, -0.6, 0.25, 0.6, 0.6, 1.1), boxes=(0.3, -0.1, 0.0, 0.5, 0.1, 0.35),
           spheres=(0.0, 0.45, 0.5, 0.1), ee_speed=0.0):
    cfg = WorkspaceConfig.from_params(['ee_link', 'link_4'], list(box), list(boxes),
                                      list(spheres), 'ee_link', ee_speed)
    return WorkspaceGuard(URDF, JOINTS, cfg)


def _check_dynamics(cmds, lim=LIMITS, dt=DT, tol=1e-6):
    """Assert joint velocity, acceleration and jerk of a command stream from rest."""
    cmds = np.asarray(cmds)
    v = np.diff(cmds, axis=0) / dt
    v = np.vstack([np.zeros(cmds.shape[1]), v])          # from rest
    a = np.diff(v, axis=0) / dt
    a = np.vstack([np.zeros(cmds.shape[1]), a])
    j = np.diff(a, axis=0) / dt
    assert np.all(np.abs(v) <= lim.max_velocity * (1 + tol) + tol)
    assert np.all(np.abs(a) <= lim.max_acceleration * (1 + tol) + tol), np.abs(a).max()
    assert np.all(np.abs(j) <= lim.max_jerk * (1 + tol) + 1e-3), np.abs(j).max()
    return v, a


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.floats(-2.5, 2.5), min_size=6, max_size=6), min_size=2,
                max_size=6), st.integers(5, 60))
def test_from_rest_inside_every_command_stays_inside_and_within_acceleration(targets, hold):
    g = _guard()
    assert g.point_ok(HOME)
    state = GateState.at_rest(HOME)
    cmds, reasons = [HOME], set()
    for target in targets:
        for _ in range(hold):
            res = gate_step(np.array(target), state, LIMITS, DT, DT, 0.0, 'uniform', g)
            state = res.state
            cmds.append(res.command)
            reasons.update(iv.reason for iv in res.interventions)
            assert g.point_ok(res.command), g.last_violation
    _check_dynamics(cmds)
    assert WORKSPACE_HOLD not in reasons            # never a dead stop from rest inside


def test_approaching_a_wall_slows_down_before_it():
    """Full speed towards the floor of the box: the arm brakes early and stops at the wall."""
    g = _guard(box=(-0.9, -0.9, 0.45, 0.9, 0.9, 1.3), boxes=(), spheres=())
    state = GateState.at_rest(np.zeros(6))
    target = np.array([0.0, 1.6, 0.0, 0.0, 0.0, 0.0])     # folds the arm down into the floor
    cmds, first_limit = [state.position], None
    for k in range(300):
        res = gate_step(target, state, LIMITS, DT, DT, 0.0, 'uniform', g)
        if first_limit is None and any(iv.reason == WORKSPACE_LIMIT
                                       for iv in res.interventions):
            first_limit = k
        state = res.state
        cmds.append(res.command)
        assert g.point_ok(res.command)
    v, a = _check_dynamics(cmds)
    z = np.array([g.kin.positions(q)[:, 2].min() for q in cmds])   # lowest frame
    assert first_limit is not None
    assert z.min() >= 0.45 - 1e-9 and z[-1] < 0.5          # it got close to the wall
    assert np.abs(v[-1]).max() < 1e-6                       # and stopped there
    # It was braking before the wall (decelerating while still far from the floor).
    assert np.min(a[:, 1]) < -0.5 * ACC


def test_end_effector_speed_limit_scales_within_the_acceleration_limit():
    """A 0.1 m/s limit while the joints move fast: slowed down at <= ACC, never cut to 0."""
    g = _guard(box=(), boxes=(), spheres=())
    state = GateState.at_rest(np.zeros(6))
    cmds = [state.position]
    target = np.array([0.0, 1.9, 0.0, 0.0, 0.0, 0.0])
    for _ in range(40):                                    # speed up without a limit
        res = gate_step(target, state, LIMITS, DT, DT, 0.0, 'uniform', g)
        state = res.state
        cmds.append(res.command)
    fast = np.abs(state.velocity).max()
    assert fast > 1.0
    g.config = WorkspaceConfig.from_params(['ee_link'], [], [], [], 'ee_link', 0.1)
    g._prev_key = None
    reasons, speeds = [], []
    for _ in range(60):
        prev = state.position
        res = gate_step(target, state, LIMITS, DT, DT, 0.0, 'uniform', g)
        state = res.state
        cmds.append(res.command)
        reasons += [iv.reason for iv in res.interventions]
        a_, b_ = (g.kin.positions(x)[0] for x in (res.command, prev))
        speeds.append(np.linalg.norm(a_ - b_) / DT)
    _check_dynamics(cmds)
    assert EE_SPEED_LIMIT in reasons
    assert speeds[-1] <= 0.1 + 1e-6                        # the limit is reached ...
    assert min(speeds[:5]) > 0.1                           # ... by braking, not in one tick
    assert speeds[-1] > 0.05                               # still moving


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.floats(0.5, 3.0), st.sampled_from([math.inf, 2.0, 10.0, 30.0]),
                          st.sampled_from([math.inf, 1000.0, 5000.0]),
                          st.floats(-1, 1), st.floats(-1, 1)), min_size=1, max_size=4),
       st.sampled_from([0.002, 0.004, 0.01]))
def test_braking_reach_bounds_every_joints_travel_on_the_braking_path(joints, dt):
    """The cheap bound that lets the gate skip the path near no wall is never exceeded."""
    n = len(joints)
    vmax, amax, jmax, vf, af = (np.array(c, dtype=float) for c in zip(*joints))
    lim = JointLimits.create([f'j{i}' for i in range(n)], [-10.0] * n, [10.0] * n, vmax,
                             amax, jmax)
    state = GateState(np.zeros(n), vf * vmax, af * np.where(np.isfinite(amax), amax, 50.0))
    path = braking_path(state, lim, dt)
    reach = braking_reach(state, lim, dt)
    if path is not None and len(path):
        assert np.all(np.abs(path - state.position).max(axis=0) <= reach + 1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-2.0, 2.0), min_size=6, max_size=6))
def test_lever_arms_bound_how_fast_each_frame_moves_per_joint(q):
    """|d frame / d q_j| <= lever (any pose): what lets the gate skip far-away checks."""
    g = _guard()
    levers = g.kin.lever_arms()
    q = np.asarray(q)
    x = g.kin.positions(q)
    for j in range(6):
        dq = np.zeros(6)
        dq[j] = 1e-6
        speed = np.linalg.norm(g.kin.positions(q + dq) - x, axis=1) / 1e-6
        assert np.all(speed <= levers[:, j] + 1e-6), (j, speed, levers[:, j])
