"""``wam-runtime``: the commands and their help, inspect, check-config, check-launch, record."""

import json
import os
import signal
import subprocess
import sys
import time
import types

import onnx
import pytest
import yaml

from wam_runtime import cli
from wam_runtime.processes import REPO_ROOT
from wam_runtime.testing.model_gen import build_model, make_contract_dict

CONFIG = os.path.join(REPO_ROOT, 'config')
MODEL = os.path.join(REPO_ROOT, 'models', 'reference_reach.onnx')
REF_URDF = os.path.join(CONFIG, 'reference_arm.urdf')


def _run(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def _reference(tmp_path, **safety):
    with open(os.path.join(CONFIG, 'reference_arm.yaml'), encoding='utf-8') as f:
        doc = yaml.safe_load(f)
    doc['/**/safety_controller']['ros__parameters'].update(safety)
    path = tmp_path / 'robot.yaml'
    path.write_text(yaml.safe_dump(doc))
    return str(path)


# ------------------------------------------------------------------ inspect
def test_inspect_prints_contract_io_and_validity(capsys):
    code, out = _run(capsys, 'inspect', MODEL)
    assert code == 0
    for text in ('image_scene', '[1, 3, 64, 64]', 'actions', '[1, 16, 6]',
                 "camera 'scene' <- input 'image_scene': 64x64 rgb8 NCHW float32",
                 '16 steps x 0.05 s = 0.8 s', 'world model', 'sha256', 'valid     the contract'):
        assert text in out, text


def test_inspect_json_is_the_contract(capsys):
    code, out = _run(capsys, 'inspect', MODEL, '--json')
    assert code == 0
    assert json.loads(out)['action']['horizon'] == 16


def test_inspect_names_the_mismatching_field(tmp_path, capsys):
    bad = tmp_path / 'bad.onnx'
    onnx.save(build_model(contract=make_contract_dict(height=96)), str(bad))
    code, out = _run(capsys, 'inspect', str(bad))
    assert code == 2
    assert 'INVALID   contract.cameras[0].height: ' in out
    assert 'image_scene' in out          # the real inputs are still listed


def test_inspect_refuses_missing_contract_and_missing_file(tmp_path, capsys):
    model = build_model()
    del model.metadata_props[:]
    bare = tmp_path / 'bare.onnx'
    onnx.save(model, str(bare))
    code, out = _run(capsys, 'inspect', str(bare))
    assert code == 2 and "no 'wam_runtime.contract' metadata entry" in out
    code, out = _run(capsys, 'inspect', str(tmp_path / 'none.onnx'))
    assert code == 2 and 'no such file' in out


# ------------------------------------------------------------------ check-config
def test_check_config_prints_the_effective_limits_with_sources(capsys):
    code, out = _run(capsys, 'check-config', os.path.join(CONFIG, 'reference_arm.yaml'),
                     '--urdf', REF_URDF, '--model', MODEL, '--controllers',
                     os.path.join(CONFIG, 'controllers', 'reference_arm_controllers.yaml'))
    assert code == 0, out
    lines = out.splitlines()
    row = next(line for line in lines if line.startswith('joint_1') and 'upper_limits_rad' in line)
    assert row.split()[2] == '2.75' and row.endswith('urdf <safety_controller soft_upper_limit>')
    row = next(line for line in lines if line.startswith('joint_1') and 'acceleration' in line)
    assert row.endswith('config')
    assert 'valid     parameters, URDF and joint names agree' in out


def test_check_config_without_urdf_uses_config_limits(capsys):
    code, out = _run(capsys, 'check-config', os.path.join(CONFIG, 'slice.yaml'))
    assert code == 0, out
    assert 'limits from the config only' in out
    assert any(line.startswith('joint_2') and 'lower_limits_rad' in line
               and line.endswith('config') for line in out.splitlines())


def test_generic_template_checks_against_its_urdf(capsys):
    code, out = _run(capsys, 'check-config', os.path.join(CONFIG, 'generic_7dof.yaml'),
                     '--urdf', os.path.join(CONFIG, 'generic_7dof.urdf'), '--controllers',
                     os.path.join(CONFIG, 'controllers', 'generic_7dof_controllers.yaml'))
    assert code == 0, out
    assert "'joint_7'" in out


@pytest.mark.parametrize('change,message', [
    ({'upper_limits_rad': [2.76, 1.0, 1.0, 1.0, 1.0, 1.0]},
     "upper_limits_rad: joint 'joint_1' = 2.76 is looser than urdf"),
    ({'joint_names': ['joint_1', 'joint_2', 'joint_3', 'joint_4', 'joint_5', 'wrist']},
     "['wrist'] not movable joints of the URDF"),
    ({'max_acceleration_rad_s2': [15, 15, 15, 20, 20, 20]},
     'is integer array, the node declares double array'),
    ({'max_speed_rad_s': [1.0] * 6}, 'max_speed_rad_s: not a parameter of safety_controller'),
])
def test_check_config_refuses_with_the_reason(tmp_path, capsys, change, message):
    code, out = _run(capsys, 'check-config', _reference(tmp_path, **change), '--urdf', REF_URDF)
    assert code == 2
    assert message in out, out


def test_check_config_compares_model_and_controller_joints(tmp_path, capsys):
    model = tmp_path / 'm.onnx'
    onnx.save(build_model(joint_names=['a', 'b']), str(model))
    code, out = _run(capsys, 'check-config', os.path.join(CONFIG, 'reference_arm.yaml'),
                     '--urdf', REF_URDF, '--model', str(model))
    assert code == 2 and "model action joints ['a', 'b'] differ" in out
    with open(os.path.join(CONFIG, 'controllers', 'reference_arm_controllers.yaml'),
              encoding='utf-8') as f:
        ctl = yaml.safe_load(f)
    ctl['forward_position_controller']['ros__parameters']['joints'].reverse()
    path = tmp_path / 'ctl.yaml'
    path.write_text(yaml.safe_dump(ctl))
    code, out = _run(capsys, 'check-config', os.path.join(CONFIG, 'reference_arm.yaml'),
                     '--urdf', REF_URDF, '--controllers', str(path))
    assert code == 2 and 'in the same order' in out


def test_check_config_refuses_unreadable_yaml(tmp_path, capsys):
    path = tmp_path / 'broken.yaml'
    path.write_text('safety_controller: [unclosed\n')
    code, out = _run(capsys, 'check-config', str(path))
    assert code == 2 and 'not valid YAML' in out


def test_check_config_warns_when_the_model_is_too_slow_for_the_timeouts(tmp_path, capsys):
    # 80 chained 512x512 matrix products: tens of milliseconds on any CPU, against a 5 ms
    # chunk age, a 2 ms chunk and a 10 ms command timeout.
    model = tmp_path / 'slow.onnx'
    onnx.save(build_model(horizon=2, dt_s=0.001, delay_matmuls=80, delay_size=512),
              str(model))
    with open(os.path.join(CONFIG, 'slice.yaml'), encoding='utf-8') as f:
        doc = yaml.safe_load(f)
    doc['/**/safety_controller']['ros__parameters'].update(
        max_chunk_age_s=0.005, command_timeout_s=0.01)
    cfg = tmp_path / 'robot.yaml'
    cfg.write_text(yaml.safe_dump(doc))
    code, out = _run(capsys, 'check-config', str(cfg), '--model', str(model))
    assert code == 0, out                   # warnings, not errors
    timing = next(line for line in out.splitlines() if line.startswith('timing    '))
    assert 'inference p50' in timing and '5 runs after warm-up' in timing
    warnings = [line for line in out.splitlines() if line.startswith('WARNING   ')]
    assert len(warnings) == 3, out
    assert 'longer than safety_controller.max_chunk_age_s 0.005 s: every chunk' in warnings[0]
    assert 'chunk coverage 0.002 s (horizon 2 x dt_s 0.001)' in warnings[1]
    assert 'a command_timeout stop every chunk (command_timeout_s 0.01 s)' in warnings[2]
    assert 'ms / max' in warnings[0] and 'CPUExecutionProvider' in warnings[0]
    assert out.rstrip().endswith('(3 warnings above)')


def test_check_config_times_a_fast_model_without_warnings(capsys):
    code, out = _run(capsys, 'check-config', os.path.join(CONFIG, 'reference_arm.yaml'),
                     '--urdf', REF_URDF, '--model', MODEL)
    assert code == 0 and 'timing    inference p50' in out and 'WARNING' not in out, out
    code, out = _run(capsys, 'check-config', os.path.join(CONFIG, 'reference_arm.yaml'),
                     '--urdf', REF_URDF, '--model', MODEL, '--timing-runs', '0')
    assert code == 0 and 'timing ' not in out


# ------------------------------------------------------------------ check-launch
def test_check_launch_passes_for_the_package(capsys):
    code, out = _run(capsys, 'check-launch')
    assert code == 0, out
    assert out.count('  OK') == 4
    assert 'expects from outside: /camera/scene/image_raw' in out


def test_check_launch_reports_bad_arguments(capsys):
    code, out = _run(capsys, 'check-launch', os.path.join(REPO_ROOT, 'launch',
                                                          'bringup.launch.py'),
                     '--arg', 'output_mode:=velocity')
    assert code == 2 and "argument 'output_mode' = 'velocity' is not one of" in out


# ------------------------------------------------------------------ dispatch
def test_replay_dispatches_to_the_replay_tool(monkeypatch):
    seen = []
    fake = types.ModuleType('wam_runtime.replay.cli')
    fake.main = lambda argv: seen.append((argv, list(sys.argv))) or 7
    monkeypatch.setitem(sys.modules, 'wam_runtime.replay.cli', fake)
    argv0 = sys.argv[0]
    assert cli.main(['replay', 'bag', '--config', 'c.yaml', '--realtime']) == 7
    # The tool sees its own arguments, and argv[0] names it for its argparse usage line.
    assert seen == [(['bag', '--config', 'c.yaml', '--realtime'],
                     ['wam-runtime replay', 'bag', '--config', 'c.yaml', '--realtime'])]
    assert sys.argv[0] == argv0


def test_replay_without_the_replay_tool_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'wam_runtime.replay.cli', None)
    code, out = _run(capsys, 'replay', 'bag')
    assert code == 2
    assert 'the replay tool (wam_runtime.replay.cli) is not part of this installation' in out


def test_a_missing_dependency_of_a_tool_is_named(monkeypatch, tmp_path, capsys):
    (tmp_path / 'wam_fake_tool.py').write_text('import wam_no_such_dependency\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, 'train', cli.Command('wam_fake_tool', 'fake'))
    code, out = _run(capsys, 'train', '--help')
    assert code == 2
    assert "wam-runtime train: cannot start, module 'wam_no_such_dependency' is missing" in out


def test_an_interrupted_tool_exits_130(monkeypatch):
    fake = types.ModuleType('wam_runtime.sim.evaluate')

    def interrupted(argv):
        raise KeyboardInterrupt
    fake.main = interrupted
    monkeypatch.setitem(sys.modules, 'wam_runtime.sim.evaluate', fake)
    assert cli.main(['evaluate']) == 130


def test_every_command_module_exists_with_a_main():
    import importlib.util
    for name, command in cli.COMMANDS.items():
        assert importlib.util.find_spec(command.module) is not None, (name, command.module)
    assert set(cli.ALIASES.values()) <= set(cli.COMMANDS)


# ------------------------------------------------------------------ the console script
WAM = os.path.join(os.path.dirname(sys.executable), 'wam-runtime')


def _console(*argv, **kwargs):
    """Run the installed ``wam-runtime`` console script (``make setup`` installs it)."""
    if not os.path.isfile(WAM):
        pytest.skip(f'no wam-runtime console script next to {sys.executable} (make setup)')
    return subprocess.run([WAM, *argv], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, **kwargs)


@pytest.mark.parametrize('name', list(cli.COMMANDS) + list(cli.ALIASES))
def test_every_command_prints_its_own_help(name):
    res = _console(name, '--help')
    assert res.returncode == 0, res.stdout + res.stderr
    usage = res.stdout.splitlines()[0]
    assert usage.startswith('usage: ') and 'COMMAND' not in usage, res.stdout
    if name != 'export':        # export names its own program
        assert usage.startswith(f'usage: wam-runtime {cli.ALIASES.get(name, name)} '), usage


@pytest.mark.parametrize('name', list(cli.COMMANDS))
def test_every_command_module_runs_with_python_m(name):
    res = subprocess.run([sys.executable, '-m', cli.COMMANDS[name].module, '--help'],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith('usage: '), res.stdout + res.stderr


def test_help_lists_every_command():
    res = _console('--help')
    assert res.returncode == 0, res.stderr
    for name, command in cli.COMMANDS.items():
        assert f'  {name} ' in res.stdout and command.summary in res.stdout, name


@pytest.mark.parametrize('argv', [['bogus'], [], ['--bogus']])
def test_an_unknown_or_missing_command_exits_2_with_the_commands(argv):
    res = _console(*argv)
    assert res.returncode == 2, res.stdout + res.stderr
    for name in cli.COMMANDS:
        assert name in res.stderr, (name, res.stderr)
    if argv == ['bogus']:
        assert "wam-runtime: error: unknown command 'bogus' (commands: demo, " in res.stderr


def test_console_entry_point_runs_as_a_process():
    res = _console('inspect', MODEL)
    assert res.returncode == 0 and 'valid     the contract' in res.stdout, res.stderr
    res = subprocess.run([sys.executable, '-m', 'wam_runtime.cli', 'inspect', MODEL],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([sys.executable, '-m', 'wam_runtime.cli', 'bogus'], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "unknown command 'bogus'" in res.stderr


# ------------------------------------------------------------------ record
def test_record_turns_its_flags_into_recorder_parameters():
    from wam_runtime.ros.record import ros_arguments
    assert ros_arguments(['--out', '/data/ep 1', '--cameras', 'front', 'wrist',
                          '--compressed', 'wrist', '--storage', 'sqlite3',
                          '--max-episode-s', '30', '--no-split-on-outcome',
                          '--namespace', 'robot', '--ros-args', '-p', 'episode_prefix:=take']) \
        == ['wam-runtime record', '--ros-args', '-p', 'output_dir:="/data/ep 1"',
            '-p', 'camera_names:=["front", "wrist"]', '-p', 'compressed_cameras:=["wrist"]',
            '-p', 'storage_id:="sqlite3"', '-p', 'max_episode_s:=30.0',
            '-p', 'split_on_outcome:=false', '-r', '__ns:=/robot',
            '--ros-args', '-p', 'episode_prefix:=take']
    # Parameters without their flag keep the node's defaults.
    assert ros_arguments(['--out', 'x']) == ['wam-runtime record', '--ros-args',
                                             '-p', 'output_dir:="x"']


@pytest.mark.ros
def test_record_writes_an_episode_per_split(ros_context, proc_env, tmp_path):
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState
    from std_srvs.srv import Trigger
    from wam_runtime.processes import wait_for
    out = tmp_path / 'episodes'
    if not os.path.isfile(WAM):
        pytest.skip(f'no wam-runtime console script next to {sys.executable} (make setup)')
    log = open(tmp_path / 'record.log', 'w+', encoding='utf-8')
    proc = subprocess.Popen([WAM, 'record', '--out', str(out), '--storage', 'sqlite3',
                             '--namespace', 'cell'], env=proc_env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        node = ros_context(rclpy.create_node('record_test', context=ros_context.context))
        js = node.create_publisher(JointState, '/cell/joint_states', qos_profile_sensor_data)
        split = node.create_client(Trigger, '/cell/recorder/split')
        assert split.wait_for_service(timeout_sec=20.0)
        assert wait_for(lambda: js.get_subscription_count() > 0, 10.0)
        for _ in range(20):
            js.publish(JointState(name=['joint_1'], position=[0.0]))
            time.sleep(0.02)
        future = split.call_async(Trigger.Request())
        assert wait_for(future.done, 5.0) and future.result().success
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=15.0)
        log.seek(0)
        output = log.read()
        log.close()
    assert code == 0, output
    with open(out / 'episodes.jsonl', encoding='utf-8') as f:
        episodes = [json.loads(line) for line in f]
    assert episodes[0]['end_reason'] == 'manual' and episodes[0]['storage'] == 'sqlite3'
    assert episodes[0]['messages'].get('/cell/joint_states', 0) > 0, episodes
