"""The foundation slice over real DDS: separate OS processes, real rclpy, real ONNX Runtime."""

import array
import json
import os
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
import yaml

from wam_runtime.core.param_files import node_parameters
from wam_runtime.processes import NodeProcess, REPO_ROOT, wait_for, write_params
from wam_runtime.testing.model_gen import build_model, make_contract_dict

pytestmark = [pytest.mark.ros, pytest.mark.slow]

CONFIG = os.path.join(REPO_ROOT, 'config', 'slice.yaml')
with open(CONFIG, encoding='utf-8') as _f:
    SAFETY = node_parameters(yaml.safe_load(_f), 'safety_controller')
LOWER = np.array(SAFETY['lower_limits_rad'])
UPPER = np.array(SAFETY['upper_limits_rad'])
VMAX = np.array(SAFETY['max_velocity_rad_s'])
PERIOD = 1.0 / SAFETY['control_rate_hz']


@pytest.fixture
def moving_model(tmp_path):
    path = str(tmp_path / 'moving.onnx')
    onnx.save(build_model(ramp_per_step=0.03), path)
    return path


@pytest.fixture
def slice_nodes(proc_env, moving_model, tmp_path):
    procs = {
        'camera': NodeProcess('wam_runtime.ros.synthetic_camera', proc_env,
                              'synthetic_camera', CONFIG,
                              ['-p', 'width:=320', '-p', 'height:=240',
                               '-p', 'brightness_period_s:=2.0'], log_dir=str(tmp_path)),
        'policy': NodeProcess('wam_runtime.ros.policy_node', proc_env, 'policy_node', CONFIG,
                              ['-p', f'model_path:={moving_model}'], log_dir=str(tmp_path)),
        'safety': NodeProcess('wam_runtime.ros.safety_controller', proc_env,
                              'safety_controller', CONFIG, log_dir=str(tmp_path)),
    }
    yield procs
    for p in procs.values():
        p.stop()


@pytest.fixture
def monitor(ros_context):
    from wam_runtime.ros.monitor import Monitor
    return ros_context(Monitor('test_monitor', context=ros_context.context))


def _tracking(monitor):
    d = monitor.diag(': safety')
    return d is not None and d.get('mode') == 'tracking' and int(d.get('chunks_used', 0)) > 5


def test_gated_commands_flow_and_respect_limits(slice_nodes, monitor):
    assert wait_for(lambda: _tracking(monitor), 40.0), \
        slice_nodes['safety'].output()[-2000:] + slice_nodes['policy'].output()[-2000:]
    t0 = time.monotonic()
    time.sleep(3.0)
    times, cmds = monitor.command_array(since=t0)
    assert cmds.shape[0] > 100 and cmds.shape[1] == 6
    assert np.isfinite(cmds).all()
    assert np.all(cmds >= LOWER) and np.all(cmds <= UPPER)
    # Every consecutive pair published by the gate is within one control period of motion.
    assert np.all(np.abs(np.diff(cmds, axis=0)) <= VMAX * PERIOD + 1e-9)
    # The policy really drives the arm: the brightness sine makes the command move.
    assert np.ptp(cmds[:, 0]) > 0.05
    assert wait_for(lambda: len(monitor.chunks) > 10, 10.0)   # the policy keeps publishing
    assert all(p.alive() for p in slice_nodes.values())


def test_killing_the_policy_makes_the_controller_hold(slice_nodes, monitor):
    assert wait_for(lambda: _tracking(monitor), 40.0)
    time.sleep(1.0)
    before = time.monotonic()
    slice_nodes['policy'].kill()
    killed = time.monotonic()
    time.sleep(SAFETY['command_timeout_s'] + 1.5)
    # On a loaded machine this process may read the stream late: wait until it holds the
    # commands of a while after the latest the arm may still move (below).
    assert wait_for(lambda: len(monitor.command_array(since=killed + 16 * 0.05 + 0.5)[0])
                    > 60, 10.0)
    times, cmds = monitor.command_array(since=before - 0.5)
    pre = cmds[times < before]
    assert np.abs(np.diff(pre, axis=0)).max() > 0, 'the arm was not moving before the kill'
    moving = np.flatnonzero(np.any(np.diff(cmds, axis=0) != 0, axis=1))
    last_move = times[moving[-1] + 1]
    # The last chunk is executed to its end (the generated model's 16 steps x 0.05 s, from
    # its stamp, before the kill), then the arm brakes and holds (plus scheduling slack);
    # command_timeout_s later, with still no chunk, the command timeout is counted.
    assert last_move - killed <= 16 * 0.05 + 0.5
    after = cmds[times > last_move]
    assert len(after) > 50 and np.all(after == after[0])
    assert np.all(after[0] >= LOWER) and np.all(after[0] <= UPPER)
    assert wait_for(lambda: int((monitor.diag(': safety') or {}).get(
        'count_command_timeout', 0)) >= 1, 3.0)
    assert monitor.diag(': safety')['mode'] == 'holding'
    assert slice_nodes['safety'].alive()


def test_bad_images_are_counted_and_publish_nothing(proc_env, generated_model, ros_context,
                                                    tmp_path):
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, JointState
    from wam_runtime.ros.monitor import Monitor
    policy = NodeProcess('wam_runtime.ros.policy_node', proc_env, 'policy_node', CONFIG,
                         ['-p', f'model_path:={generated_model}', '-p',
                          'diagnostics_period_s:=0.2'], log_dir=str(tmp_path))
    try:
        mon = ros_context(Monitor('test_monitor', context=ros_context.context))
        import rclpy
        pub_node = ros_context(rclpy.create_node('bad_camera', context=ros_context.context))
        img_pub = pub_node.create_publisher(Image, 'camera/scene/image_raw',
                                            qos_profile_sensor_data)
        js_pub = pub_node.create_publisher(JointState, 'joint_states', qos_profile_sensor_data)

        def send(encoding, h, w, nbytes):
            now = pub_node.get_clock().now().to_msg()
            js = JointState(name=list(make_contract_dict()['state']['joint_names']),
                            position=[0.0] * 6)
            js.header.stamp = now
            js_pub.publish(js)
            msg = Image(height=h, width=w, encoding=encoding, step=w * 3)
            msg.header.stamp = now
            msg.data = array.array('B', bytes(nbytes))
            img_pub.publish(msg)

        assert wait_for(lambda: img_pub.get_subscription_count() > 0, 30.0)

        def counters():
            d = mon.diag(': policy') or {}
            return (int(d.get('rejected_frame_unsupported_encoding', 0)),
                    int(d.get('rejected_frame_bad_size', 0)))

        def bad_until_counted():
            send('yuv422', 48, 64, 48 * 64 * 3)
            time.sleep(0.12)
            send('rgb8', 48, 64, 100)
            time.sleep(0.12)
            return all(c >= 1 for c in counters())

        assert wait_for(bad_until_counted, 20.0, period_s=0.0), policy.output()[-2000:]
        assert mon.chunks == []
        assert policy.alive()
        # A good frame afterwards is used: the node kept running.
        assert wait_for(lambda: send('rgb8', 48, 64, 48 * 64 * 3) or len(mon.chunks) > 0,
                        10.0, period_s=0.15)
    finally:
        policy.stop()


def _startup(module, env, params, tmp_path, name):
    pf = write_params(str(tmp_path / 'p.yaml'), name, params)
    proc = NodeProcess(module, env, name, pf, log_dir=str(tmp_path))
    assert wait_for(lambda: not proc.alive(), 30.0), 'node did not exit on bad config'
    return proc.stop(), proc.output()


SAFE_OK = {k: SAFETY[k] for k in ('joint_names', 'lower_limits_rad', 'upper_limits_rad',
                                  'max_velocity_rad_s', 'autostart')}


@pytest.mark.parametrize('case', ['missing', 'corrupt', 'no_contract', 'mismatch',
                                  'joints', 'no_model_param'])
def test_policy_node_refuses_bad_models_at_startup(case, proc_env, tmp_path):
    path = str(tmp_path / 'm.onnx')
    if case == 'corrupt':
        with open(path, 'wb') as f:
            f.write(b'not an onnx file' * 64)
    elif case == 'no_contract':
        m = build_model()
        del m.metadata_props[:]
        onnx.save(m, path)
    elif case == 'mismatch':
        d = make_contract_dict()
        d['cameras'][0]['height'] = 96
        onnx.save(build_model(contract=d), path)
    elif case == 'joints':
        onnx.save(build_model(joint_names=[f'arm_{i}' for i in range(6)]), path)
    params = {} if case == 'no_model_param' else {'model_path': path}
    params['joint_names'] = [f'joint_{i}' for i in range(1, 7)]
    code, out = _startup('wam_runtime.ros.policy_node', proc_env, params, tmp_path,
                         'policy_node')
    expect = {'missing': 'model_path: no such file', 'corrupt': 'not a loadable ONNX model',
              'no_contract': 'wam_runtime.contract', 'mismatch': 'contract.cameras[0].height',
              'joints': 'joint_names: the robot has', 'no_model_param': "'model_path'"}[case]
    assert code == 2
    lines = [x for x in out.splitlines() if 'startup failed' in x]
    assert len(lines) == 1 and expect in lines[0], out
    assert 'Traceback' not in out


@pytest.mark.parametrize('change,expect', [
    ({'lower_limits_rad': [0.0] * 6, 'upper_limits_rad': [0.0] * 6},
     "joint 'joint_1' has lower"),
    ({'max_velocity_rad_s': [1.0] * 5}, 'max_velocity_rad_s: expected 6 values'),
    ({'control_rate_hz': 0.0}, 'control_rate_hz: must be > 0'),
    ({'joint_names': None}, "'joint_names' is required"),
    ({'command_timeout_s': 'soon'}, 'command_timeout_s'),
])
def test_safety_controller_refuses_bad_config(change, expect, proc_env, tmp_path):
    params = dict(SAFE_OK)
    for k, v in change.items():
        if v is None:
            params.pop(k)
        else:
            params[k] = v
    code, out = _startup('wam_runtime.ros.safety_controller', proc_env, params, tmp_path,
                         'safety_controller')
    assert code == 2, out
    lines = [x for x in out.splitlines() if 'startup failed' in x]
    assert len(lines) == 1 and expect in lines[0], out


def test_malformed_yaml_is_one_clear_line(proc_env, tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('safety_controller:\n  ros__parameters:\n    joint_names: [a, b\n')
    proc = NodeProcess('wam_runtime.ros.safety_controller', proc_env, 'safety_controller',
                       str(bad), log_dir=str(tmp_path))
    assert wait_for(lambda: not proc.alive(), 30.0)
    assert proc.stop() == 2
    out = proc.output()
    lines = [x for x in out.splitlines() if 'startup failed' in x]
    assert len(lines) == 1 and 'params file' in lines[0], out


def test_slice_demo_prints_its_figures(proc_env, tmp_path):
    out = tmp_path / 'demo'
    res = subprocess.run([sys.executable, '-m', 'wam_runtime.demo.slice_demo', '--duration-s',
                          '4', '--width', '320', '--height', '240', '--out', str(out)],
                         env=proc_env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    for needle in ('commands:', 'latency observation stamp -> gated command: p50',
                   'safety events:', 'commands outside limits: 0'):
        assert needle in res.stdout
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['commands_received'] > 100
    assert summary['latency_obs_to_command_ms_p50'] is not None
    assert summary['commands_outside_limits'] == 0
    assert all(code == 0 for code in summary['exit_codes'].values()), summary
