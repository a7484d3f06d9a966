"""Parameters at runtime, over rclpy's parameter services on live node processes.

A set that cannot take effect is refused with a reason naming the parameter: the
safety_controller takes its safety parameters only while unconfigured and applies them at
configure, validated as at startup; plain nodes (policy_node, recorder_node,
synthetic_camera) refuse every set of their parameters.
"""

import numpy as np
import pytest
from test_safety_faults import Harness, PARAMS, PERIOD

from wam_runtime.core.params import POLICY_PARAMS, SAFETY_PARAMS
from wam_runtime.processes import call_service, NodeProcess, wait_for, write_params

pytestmark = [pytest.mark.ros, pytest.mark.slow]

SAFETY = dict(PARAMS, autostart=False)
SLOW_RAD_S = 0.2        # tighter than the URDF's 2 rad/s and than the motion chunk


class ParamClient:
    """Clients of one node's parameter services."""

    def __init__(self, node, target):
        from rcl_interfaces.srv import (
            DescribeParameters, GetParameters, SetParameters, SetParametersAtomically)
        self.clients = {kind: node.create_client(srv, f'{target}/{kind}') for kind, srv in (
            ('set_parameters', SetParameters), ('get_parameters', GetParameters),
            ('set_parameters_atomically', SetParametersAtomically),
            ('describe_parameters', DescribeParameters))}
        self.types = {'set_parameters': SetParameters, 'get_parameters': GetParameters,
                      'set_parameters_atomically': SetParametersAtomically,
                      'describe_parameters': DescribeParameters}
        for client in self.clients.values():
            assert client.wait_for_service(timeout_sec=30.0), client.srv_name

    def _call(self, kind, **fields):
        return call_service(self.clients[kind], self.types[kind].Request(**fields), 10.0)

    def set_each(self, values):
        """set_parameters: one result per parameter."""
        return self._call('set_parameters', parameters=_msgs(values)).results

    def set_atomically(self, values):
        """set_parameters_atomically: one result for all."""
        return self._call('set_parameters_atomically', parameters=_msgs(values)).result

    def get(self, names):
        """Values by name (None: not set; rclpy answers nothing when one of many is unset)."""
        from rclpy.parameter import parameter_value_to_python
        out = {}
        for name in names:
            values = self._call('get_parameters', names=[name]).values
            out[name] = _plain(parameter_value_to_python(values[0])) if values else None
        return out

    def describe(self, names):
        return dict(zip(names, self._call('describe_parameters', names=list(names))
                        .descriptors))


def _plain(value):
    return value if value is None or isinstance(value, (str, bool, int, float)) else \
        list(value)


def _msgs(values):
    from rclpy.parameter import Parameter
    return [Parameter(name, value=value).to_parameter_msg() for name, value in values.items()]


def _changed(client, names):
    """Return a value of the declared type, different from the current one, per name."""
    from rcl_interfaces.msg import ParameterType
    t = ParameterType
    current = client.get(names)
    out = {}
    for name, desc in client.describe(names).items():
        old = current[name]
        out[name] = {t.PARAMETER_BOOL: lambda: not old,
                     t.PARAMETER_INTEGER: lambda: old + 1,
                     t.PARAMETER_DOUBLE: lambda: old + 0.5,
                     t.PARAMETER_STRING: lambda: (old or '') + '_changed',
                     t.PARAMETER_DOUBLE_ARRAY: lambda: [0.25] * (len(old or ()) + 1),
                     t.PARAMETER_STRING_ARRAY: lambda: list(old or ()) + ['changed'],
                     }[desc.type]()
    return out


def _change_state(node, target, transition, goal):
    """Trigger one lifecycle transition; a lost response is checked through get_state."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    change = node.create_client(ChangeState, f'{target}/change_state')
    assert change.wait_for_service(timeout_sec=30.0)
    tid = getattr(Transition, f'TRANSITION_{transition.upper()}')
    future = change.call_async(ChangeState.Request(transition=Transition(id=tid)))
    if wait_for(future.done, 10.0):
        return future.result().success
    return _state(node, target) == goal


def _state(node, target):
    from lifecycle_msgs.srv import GetState
    client = node.create_client(GetState, f'{target}/get_state')
    assert client.wait_for_service(timeout_sec=30.0)
    return call_service(client, GetState.Request(), 10.0).current_state.label


def _safety(proc_env, tmp_path):
    pf = write_params(str(tmp_path / 'safety.yaml'), 'safety_controller', SAFETY)
    return NodeProcess('wam_runtime.ros.safety_controller', proc_env, 'safety_controller', pf,
                       log_dir=str(tmp_path))


def _joint1_steps(h, start):
    cmds = np.array(h.commands[start:])
    return np.abs(np.diff(cmds[:, 0])), abs(cmds[-1, 0] - cmds[0, 0])


def _move(h, offset):
    """Send a joint_1 motion chunk; return the index of the first command after it."""
    start = len(h.commands)
    q0 = h.commands[-1][0]
    h.chunk(h.motion_chunk(offset))
    assert wait_for(lambda: abs(h.commands[-1][0] - q0) > 0.08, 10.0), h.diag
    return start


def test_configured_safety_controller_refuses_safety_parameters(proc_env, tmp_path,
                                                                ros_context):
    proc = _safety(proc_env, tmp_path)
    try:
        h = Harness(ros_context)
        params = ParamClient(h.node, 'safety_controller')
        names = [p.name for p in SAFETY_PARAMS]
        assert _change_state(h.node, 'safety_controller', 'configure', 'inactive')
        assert _change_state(h.node, 'safety_controller', 'activate', 'active')
        assert h.wait_matched() and wait_for(lambda: len(h.commands) > 5, 10.0)
        # Before: the URDF's 2 rad/s lets a 0.75 rad/s chunk through at full speed.
        steps, _ = _joint1_steps(h, _move(h, 0.6))
        assert steps.max() > 1.5 * SLOW_RAD_S * PERIOD, steps.max()

        before = params.get(names)
        new = _changed(params, names)
        results = params.set_each(new)            # every safety parameter in one call
        assert len(results) == len(names)
        for name, result in zip(names, results):
            assert not result.successful and name in result.reason, (name, result)
        atomic = params.set_atomically(new)
        assert not atomic.successful and atomic.reason
        slow = {'max_velocity_rad_s': [SLOW_RAD_S] * 6}
        atomic = params.set_atomically(slow)
        assert not atomic.successful
        assert 'max_velocity_rad_s' in atomic.reason and 'configured' in atomic.reason
        assert params.get(names) == before   # nothing changed, nothing half-applied
        desc = params.describe(['max_velocity_rad_s', 'autostart'])
        assert not desc['max_velocity_rad_s'].read_only      # settable while unconfigured
        assert 'configure' in desc['max_velocity_rad_s'].additional_constraints
        assert desc['autostart'].read_only                    # read once at startup

        # deactivate, cleanup, set, configure: the tighter limit is what the gate enforces.
        assert _change_state(h.node, 'safety_controller', 'deactivate', 'inactive')
        assert _change_state(h.node, 'safety_controller', 'cleanup', 'unconfigured')
        assert all(r.successful for r in params.set_each(slow))
        assert params.get(['max_velocity_rad_s'])['max_velocity_rad_s'] == [SLOW_RAD_S] * 6
        assert _change_state(h.node, 'safety_controller', 'configure', 'inactive')
        assert _change_state(h.node, 'safety_controller', 'activate', 'active')
        n = len(h.commands)
        assert wait_for(lambda: len(h.commands) > n + 5, 10.0)
        steps, moved = _joint1_steps(h, _move(h, 0.6))
        assert steps.max() <= SLOW_RAD_S * PERIOD + 1e-9, steps.max()
        assert steps.max() > 0.75 * SLOW_RAD_S * PERIOD       # the new limit is what binds
        assert wait_for(lambda: 'parameter max_velocity_rad_s: None -> [0.2, 0.2'
                        in proc.output(), 5.0), proc.output()[-3000:]
        assert proc.alive()
    finally:
        proc.stop()


def test_invalid_value_fails_configure_and_can_be_fixed(proc_env, tmp_path, ros_context):
    proc = _safety(proc_env, tmp_path)
    try:
        h = Harness(ros_context)
        params = ParamClient(h.node, 'safety_controller')
        for bad, message in (([SLOW_RAD_S] * 5, 'max_velocity_rad_s: expected 6 values'),
                             ([50.0] * 6, 'max_velocity_rad_s: joint')):
            assert all(r.successful for r in params.set_each({'max_velocity_rad_s': bad}))
            assert not _change_state(h.node, 'safety_controller', 'configure', 'inactive')
            assert wait_for(lambda: f'configure failed: {message}' in proc.output(), 10.0), \
                proc.output()[-3000:]
            assert _state(h.node, 'safety_controller') == 'unconfigured'
        assert all(r.successful for r in params.set_each({'max_velocity_rad_s': [SLOW_RAD_S] * 6}))
        assert _change_state(h.node, 'safety_controller', 'configure', 'inactive')
        assert _state(h.node, 'safety_controller') == 'inactive'
        assert not params.set_each({'max_velocity_rad_s': [0.1] * 6})[0].successful
        assert proc.alive()
    finally:
        proc.stop()


def _plain_node(kind, proc_env, tmp_path, model):
    module, params, names = {
        'policy_node': ('wam_runtime.ros.policy_node', {'model_path': model},
                        [p.name for p in POLICY_PARAMS]),
        'recorder_node': ('wam_runtime.ros.recorder_node',
                          {'output_dir': str(tmp_path / 'episodes')}, None),
        'synthetic_camera': ('wam_runtime.ros.synthetic_camera',
                             {'width': 32, 'height': 24, 'frame_rate_hz': 5.0}, None),
    }[kind]
    if names is None:
        import importlib
        names = [p.name for p in importlib.import_module(module).PARAMS]
    pf = write_params(str(tmp_path / f'{kind}.yaml'), kind, params)
    return NodeProcess(module, proc_env, kind, pf, log_dir=str(tmp_path)), names


@pytest.mark.parametrize('kind', ['policy_node', 'recorder_node', 'synthetic_camera'])
def test_plain_nodes_refuse_every_parameter(kind, proc_env, tmp_path, ros_context,
                                            generated_model):
    import rclpy
    proc, names = _plain_node(kind, proc_env, tmp_path, generated_model)
    try:
        node = ros_context(rclpy.create_node('param_test', context=ros_context.context))
        params = ParamClient(node, kind)
        before = params.get(names)
        new = _changed(params, names)
        results = params.set_each(new)
        for name, result in zip(names, results):
            assert not result.successful and name in result.reason, (name, result)
        assert not params.set_atomically(new).successful
        assert params.get(names) == before
        for name, desc in params.describe(names).items():
            assert desc.read_only and 'restart' in desc.additional_constraints, name
        # use_sim_time stays rclpy's to handle, applied live.
        assert all(r.successful for r in params.set_each({'use_sim_time': True}))
        assert params.get(['use_sim_time']) == {'use_sim_time': True}
        assert proc.alive(), proc.output()[-2000:]
    finally:
        proc.stop()


def test_sim_node_applies_episode_seed_live_and_refuses_the_rest(proc_env, tmp_path,
                                                                 ros_context):
    import rclpy
    from wam_runtime.sim.sim_node import PARAMS as SIM_PARAMS
    pf = write_params(str(tmp_path / 'sim.yaml'), 'sim_node', {'camera_rate_hz': 5.0})
    proc = NodeProcess('wam_runtime.sim.sim_node', proc_env, 'sim_node', pf,
                       log_dir=str(tmp_path))
    try:
        node = ros_context(rclpy.create_node('param_test', context=ros_context.context))
        params = ParamClient(node, 'sim_node')
        names = [p.name for p in SIM_PARAMS if p.name != 'episode_seed']
        before = params.get(names)
        results = params.set_each(_changed(params, names))
        for name, result in zip(names, results):
            assert not result.successful and name in result.reason, (name, result)
        assert params.get(names) == before
        assert params.set_each({'episode_seed': 42})[0].successful      # applied live
        assert params.get(['episode_seed']) == {'episode_seed': 42}
        refused = params.set_each({'episode_seed': -1})[0]              # validated
        assert not refused.successful and refused.reason
        assert not params.describe(['episode_seed'])['episode_seed'].read_only
        assert proc.alive(), proc.output()[-2000:]
    finally:
        proc.stop()
