"""SafetyRuntime: the safety loop the node, the replay and the evaluator all run.

Driven on a synthetic clock (integer ns): joint-state merge with held joints, one chunk
validation, events, incident triggers (stops, rejection bursts), execution feedback.
"""

import os

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest
import yaml

from wam_runtime.core import controller as ctl
from wam_runtime.core.chunks import CHUNK_BACKLOG, CHUNK_TOO_LARGE, ChunkError
from wam_runtime.core.interfaces import execution_fields, EXECUTION_LABELS
from wam_runtime.core.param_files import node_parameters
from wam_runtime.core.safety_config import build_safety
from wam_runtime.core.safety_runtime import REJECTION_BURSTS, SafetyRuntime
from wam_runtime.processes import REPO_ROOT

MS = 1_000_000
JOINTS = [f'joint_{i}' for i in range(1, 7)]


def _params(name):
    with open(os.path.join(REPO_ROOT, 'config', name), encoding='utf-8') as f:
        return node_parameters(yaml.safe_load(f), 'safety_controller')


def _slice_runtime(**overrides):
    return SafetyRuntime(build_safety({**_params('slice.yaml'), **overrides}), enabled=True)


def _chunk(rt, t_ns, q, n=10, dt=0.05):
    return rt.on_chunk(JOINTS, t_ns, [dt * (k + 1) for k in range(n)],
                       np.tile(np.asarray(q, float), (n, 1)), t_ns)


def test_a_chunk_runs_and_feeds_back_execution():
    rt = _slice_runtime()
    assert rt.tick(0).command is None                    # no measured state yet
    rt.on_joint_state(JOINTS, [0.0] * 6, 0, 0)
    assert _chunk(rt, 0, [0.05] * 6).events == []
    t, last = 0, None
    for k in range(1, 40):
        t = k * 10 * MS
        rt.on_joint_state(JOINTS, [0.0] * 6, t, t)
        tick = rt.tick(t)
        assert tick.command is not None and tick.mode == ctl.MODE_TRACKING
        last = tick
    fields = execution_fields(EXECUTION_LABELS, last.execution)
    assert fields['chunk_stamp_ns'] == 0 and fields['remaining_s'] > 0
    assert fields['tick_ns'] == t              # the tick's own time, exact
    assert fields['adopted_ns'] == 0           # when the chunk was adopted
    assert np.all(last.command > 0.0)


def test_rejections_report_events_and_trigger_incidents_on_bursts():
    rt = _slice_runtime()
    rt.on_joint_state(JOINTS, [0.0] * 6, 0, 0)
    incidents = []
    for k in range(1, 61):
        reaction = rt.reject(ChunkError(CHUNK_BACKLOG, 'test'), None, k * MS)
        assert [e.name for e in reaction.events] == [CHUNK_BACKLOG]
        incidents += [(k, r) for r in reaction.incidents]
    assert incidents == [(n, f'{CHUNK_BACKLOG}_burst') for n in REJECTION_BURSTS if n <= 60]
    assert rt.controller.counters[CHUNK_BACKLOG] == 60
    with pytest.raises(ChunkError) as exc:
        rt.check_size(10 ** 6)
    assert exc.value.reason == CHUNK_TOO_LARGE


def test_a_closed_gate_reports_nothing():
    rt = SafetyRuntime(build_safety(_params('slice.yaml')), enabled=False)
    rt.on_joint_state(JOINTS, [0.0] * 6, 0, 0)
    assert _chunk(rt, 0, [0.05] * 6).events == []
    assert rt.controller.counters == {} and rt.tick(10 * MS).command is None


def test_estop_is_reported_once_and_stops_with_an_incident():
    rt = _slice_runtime()
    rt.on_joint_state(JOINTS, [0.0] * 6, 0, 0)
    _chunk(rt, 0, [0.05] * 6)
    rt.tick(10 * MS)
    first = rt.on_estop(True, 15 * MS)
    assert [(e.name, e.level) for e in first.events] == [(ctl.ESTOP, 2)]
    assert rt.on_estop(True, 16 * MS).events == []        # latched: reported once
    stops = []
    for k in range(2, 60):
        rt.on_joint_state(JOINTS, [0.0] * 6, k * 10 * MS, k * 10 * MS)
        tick = rt.tick(k * 10 * MS)
        stops += tick.stops
        assert tick.mode == ctl.ESTOP
    assert ctl.ESTOP in stops


def test_state_timeout_is_a_stop_with_an_incident():
    rt = _slice_runtime(state_timeout_s=0.05)
    rt.on_joint_state(JOINTS, [0.0] * 6, 0, 0)
    _chunk(rt, 0, [0.05] * 6)
    seen = []
    for k in range(1, 30):
        tick = rt.tick(k * 10 * MS)
        seen += tick.incidents
    assert ctl.STATE_TIMEOUT in seen


def test_held_joints_reach_the_workspace_guard():
    """The measured gripper of a second publisher goes to the workspace kinematics."""
    values = _params(os.path.join('examples', 'arm7_gripper.yaml'))
    values['urdf_path'] = os.path.join(REPO_ROOT, 'config', 'examples', 'arm7_gripper.urdf')
    rt = SafetyRuntime(build_safety(values), enabled=True)
    assert rt.held == ['gripper_finger_left_joint']
    arm = [f'arm_joint_{i}' for i in range(1, 8)]
    home = [0.0, 0.0, 0.0, -1.5, 0.0, 1.5, 0.8]
    assert rt.on_joint_state(arm, home, 0, 0, 'arm')
    assert rt.guard.kin.held_positions()['gripper_finger_left_joint'] == 0.04   # configured
    rt.on_joint_state(['gripper_finger_left_joint'], [0.013], 0, 1 * MS, 'gripper')
    assert rt.guard.kin.held_positions()['gripper_finger_left_joint'] == 0.013  # measured
    assert set(rt.joints.sources) == {'arm', 'gripper'}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-4.0, 4.0), st.floats(0.0, 0.3)), min_size=1,
                max_size=8))
def test_no_command_ever_leaves_the_limits(targets):
    """Whatever chunks arrive (targets far outside, late ones), commands stay inside."""
    rt = _slice_runtime(chunk_limit_policy='clamp')
    lim = rt.controller.config.limits
    margin = 0.02
    t = 0
    for target, late_s in targets:
        for _ in range(10):
            t += 10 * MS
            rt.on_joint_state(JOINTS, [0.0] * 6, t, t)
            tick = rt.tick(t)
            if tick.command is not None:
                assert np.all(tick.command >= lim.lower + margin - 1e-9)
                assert np.all(tick.command <= lim.upper - margin + 1e-9)
        stamp = t - int(late_s * 1e9)
        rt.on_chunk(JOINTS, stamp, [0.05 * (k + 1) for k in range(8)],
                    np.full((8, 6), target), t)
