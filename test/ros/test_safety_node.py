"""safety_controller lifecycle, enable service and joint_trajectory output over real DDS."""

import time

import numpy as np
import pytest
from test_safety_faults import _call, Harness, HOME, JOINTS, PARAMS

from wam_runtime.processes import NodeProcess, wait_for, write_params

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def _start(proc_env, tmp_path, **extra):
    pf = write_params(str(tmp_path / 'safety.yaml'), 'safety_controller', dict(PARAMS, **extra))
    return NodeProcess('wam_runtime.ros.safety_controller', proc_env, 'safety_controller', pf,
                       log_dir=str(tmp_path))


def _transition(node, tid):
    """Trigger a lifecycle transition; a lost response is checked through get_state."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    goal = {Transition.TRANSITION_CONFIGURE: 'inactive', Transition.TRANSITION_ACTIVATE:
            'active', Transition.TRANSITION_DEACTIVATE: 'inactive'}[tid]
    change = node.create_client(ChangeState, 'safety_controller/change_state')
    state = node.create_client(GetState, 'safety_controller/get_state')
    assert change.wait_for_service(timeout_sec=30.0) and state.wait_for_service(timeout_sec=5.0)
    fut = change.call_async(ChangeState.Request(transition=Transition(id=tid)))
    if wait_for(fut.done, 5.0):
        return fut.result().success
    return _call(state, GetState.Request()).current_state.label == goal


def test_gate_starts_closed_and_follows_the_lifecycle(proc_env, tmp_path, ros_context):
    from lifecycle_msgs.msg import Transition
    from std_srvs.srv import SetBool
    proc = _start(proc_env, tmp_path, autostart=False)
    try:
        h = Harness(ros_context)
        assert _transition(h.node, Transition.TRANSITION_CONFIGURE)
        assert h.wait_matched()
        time.sleep(0.5)
        assert h.commands == []                       # configured, inactive: nothing
        enable = h.node.create_client(SetBool, 'safety/enable')
        assert enable.wait_for_service(timeout_sec=10.0)
        assert not _call(enable, SetBool.Request(data=True)).success   # not active yet
        assert _transition(h.node, Transition.TRANSITION_ACTIVATE)
        assert wait_for(lambda: len(h.commands) > 10, 10.0)
        # The first command is the measured position (the harness robot sits at HOME).
        np.testing.assert_allclose(h.commands[0], HOME, atol=1e-9)
        h.chunk(h.motion_chunk(0.6))
        assert wait_for(lambda: h.diag.get('mode') == 'tracking', 10.0)
        assert _transition(h.node, Transition.TRANSITION_DEACTIVATE)
        # Controlled stop, then silence.
        assert wait_for(lambda: h.diag.get('mode') == 'disabled', 10.0), h.diag
        n = len(h.commands)
        time.sleep(0.3)
        assert len(h.commands) == n
        h.assert_commands_in_limits()
        # safety/enable re-opens after re-activation, from the measured position.
        assert _transition(h.node, Transition.TRANSITION_ACTIVATE)
        assert _call(enable, SetBool.Request(data=False)).success
        assert _call(enable, SetBool.Request(data=True)).success
        assert wait_for(lambda: len(h.commands) > n + 5, 10.0)
        assert proc.alive()
    finally:
        proc.stop()


def test_joint_trajectory_output_mode(proc_env, tmp_path, ros_context):
    from trajectory_msgs.msg import JointTrajectory
    proc = _start(proc_env, tmp_path, autostart=True, output_mode='joint_trajectory')
    try:
        h = Harness(ros_context)
        got = []
        h.node.create_subscription(JointTrajectory, 'joint_trajectory', got.append, 100)
        assert wait_for(lambda: len(got) > 10, 30.0), proc.output()[-2000:]
        msg = got[-1]
        assert list(msg.joint_names) == JOINTS and len(msg.points) == 1
        pt = msg.points[0]
        assert len(pt.positions) == 6
        assert pt.time_from_start.nanosec == 10_000_000      # one control period
        assert h.commands == []                               # nothing on commands
    finally:
        proc.stop()
