"""Static validation of launch files and parameter files (no launch, no ROS graph needed).

Every launch file is evaluated from its source as ``ros2 launch`` would with its default
arguments (and with the variants below) and must produce no error: portable launch API,
documented arguments, executables that are console scripts, existing config/URDF/model
paths, parameters the nodes declare with the declared types, a safety configuration that
builds against the URDF, a valid model contract, and topics that stay connected after
namespaces and remaps. The negative tests show each check catching its mistake.
"""

import ast
import os
import textwrap

import pytest
import yaml

from wam_runtime.core.param_files import key_matches, load_param_file
from wam_runtime.core.params import Kind
from wam_runtime.processes import REPO_ROOT
from wam_runtime.tools import config_docs
from wam_runtime.tools.controllers_check import check_controllers, load_controllers
from wam_runtime.tools.launch_check import (
    console_scripts, evaluate_launch, launch_files, NODE_TOPICS, ros_arguments,
    SAFETY_OUTPUTS, validate_launch)
from wam_runtime.tools.params_check import (
    check_param_file, NODE_MODULES, node_schema, NODE_SCHEMAS)

LAUNCH = os.path.join(REPO_ROOT, 'launch')
CONFIG = os.path.join(REPO_ROOT, 'config')
EXPECTED_LAUNCH_FILES = ['bringup.launch.py', 'gazebo.launch.py', 'replay.launch.py',
                         'sim.launch.py']


def _launch(name):
    return os.path.join(LAUNCH, name)


def _validate(name, **arguments):
    return validate_launch(_launch(name), REPO_ROOT, arguments)


def _errors(plan):
    return [str(f) for f in plan.errors]


def _write_launch(tmp_path, body):
    """Write a launch file into a copy of the share layout's launch folder."""
    path = tmp_path / 'test.launch.py'
    path.write_text(textwrap.dedent(body))
    return str(path)


# ------------------------------------------------------------------ the shipped files
def test_the_four_launch_files_exist():
    assert [os.path.basename(p) for p in launch_files(REPO_ROOT)] == EXPECTED_LAUNCH_FILES


@pytest.mark.parametrize('name', EXPECTED_LAUNCH_FILES)
def test_launch_file_validates_with_default_arguments(name, tmp_path):
    args = {'bag': str(tmp_path)} if name == 'replay.launch.py' else {}
    plan = _validate(name, **args)
    assert _errors(plan) == []
    assert plan.nodes, 'no node found'
    for arg in plan.args.values():
        assert arg.description.strip(), arg.name


@pytest.mark.parametrize('output_mode,topic', [
    ('forward_command', '/forward_position_controller/commands'),
    ('joint_trajectory', '/joint_trajectory_controller/joint_trajectory')])
def test_bringup_sends_commands_to_the_example_controllers(output_mode, topic):
    plan = _validate('bringup.launch.py', output_mode=output_mode)
    assert _errors(plan) == []
    original = SAFETY_OUTPUTS[output_mode][0]
    assert plan.resolved('/safety_controller', original) == topic
    controllers, findings = load_controllers(
        os.path.join(CONFIG, 'controllers', 'reference_arm_controllers.yaml'))
    assert findings == []
    assert topic in {c.command_topic for c in controllers.values()}
    names = [n.name for n in plan.nodes]
    assert names == ['policy_node', 'safety_controller']


def test_bringup_passes_autostart_model_and_urdf_as_parameters():
    plan = evaluate_launch(_launch('bringup.launch.py'), REPO_ROOT)
    safety = plan.node('safety_controller')
    overrides = dict(kv for kind, src in safety.params if kind == 'dict' for kv in src.items())
    assert overrides['autostart'] is True and overrides['use_sim_time'] is False
    assert os.path.isfile(overrides['urdf_path'])
    policy = plan.node('policy_node')
    assert [kind for kind, _ in policy.params] == ['file', 'dict']   # config, then overrides
    assert os.path.isfile(policy.params[1][1]['model_path'])


@pytest.mark.parametrize('switch,remaining', [
    ('launch_policy', ['safety_controller']), ('launch_safety', ['policy_node'])])
def test_bringup_splits_for_remote_inference(switch, remaining):
    plan = _validate('bringup.launch.py', **{switch: 'false'})
    assert _errors(plan) == []
    assert [n.name for n in plan.nodes] == remaining


def test_sim_launch_is_a_closed_loop():
    plan = _validate('sim.launch.py')
    assert [n.name for n in plan.nodes] == ['sim_node', 'policy_node', 'safety_controller']
    camera = plan.resolved('/sim_node', 'camera/scene/image_raw')
    assert plan.resolved('/policy_node', 'camera/scene/image_raw') == camera
    assert plan.resolved('/safety_controller', 'commands') == \
        plan.resolved('/sim_node', 'commands') == '/commands'
    missing = {e.original for e in plan.unconnected_inputs()}
    assert missing == {'safety/estop'}, missing      # an operator's e-stop, not the launch's


def test_gazebo_launch_bridges_camera_joint_states_and_commands():
    plan = _validate('gazebo.launch.py')
    bridge = {(e.direction, e.resolved): e.type for e in plan.endpoints if e.bridge}
    assert bridge[('pub', '/camera/scene/image_raw')] == 'sensor_msgs/msg/Image'
    assert bridge[('pub', '/joint_states')] == 'sensor_msgs/msg/JointState'
    assert bridge[('pub', '/clock')] == 'rosgraph_msgs/msg/Clock'
    assert bridge[('sub', '/joint_trajectory')] == 'trajectory_msgs/msg/JointTrajectory'
    assert plan.resolved('/safety_controller', 'joint_trajectory') == '/joint_trajectory'
    assert {e.original for e in plan.unconnected_inputs()} == {'safety/estop'}
    for node in plan.nodes:
        sim_time = [src['use_sim_time'] for kind, src in node.params
                    if kind == 'dict' and 'use_sim_time' in src]
        assert sim_time == [True], node.name


def test_gazebo_starts_gz_sim_only_when_a_world_is_given():
    assert evaluate_launch(_launch('gazebo.launch.py'), REPO_ROOT).external_includes == []
    plan = evaluate_launch(_launch('gazebo.launch.py'), REPO_ROOT, {'world': 'arm.sdf'})
    assert plan.external_includes == ['<share:ros_gz_sim>/launch/gz_sim.launch.py']


@pytest.mark.parametrize('player,expected', [
    ('wam', ['replay', 'BAG', '--realtime']), ('ros2', ['bag', 'play', 'BAG', '--clock'])])
def test_replay_launch_plays_the_bag_with_the_chosen_player(player, expected, tmp_path):
    plan = _validate('replay.launch.py', bag='BAG', player=player)
    assert [e for e in _errors(plan) if 'BAG' not in e] == []
    (proc,) = plan.processes
    assert proc.cmd[1:1 + len(expected)] == expected
    if player == 'wam':
        assert proc.cmd[0] == '<prefix:wam_runtime>/lib/wam_runtime/wam-runtime'
    for node in plan.nodes:
        assert ('dict', {}) not in node.params
        assert any(kind == 'dict' and src.get('use_sim_time') is True
                   for kind, src in node.params)


def test_replay_launch_command_line_is_accepted_by_the_replay_tool():
    cli = pytest.importorskip('wam_runtime.replay.cli',
                              reason='the replay tool is not in this tree yet')
    plan = evaluate_launch(_launch('replay.launch.py'), REPO_ROOT, {'bag': '/b'})
    args = cli.build_parser().parse_args([str(c) for c in plan.processes[0].cmd[2:]])
    assert args.realtime and args.bag == '/b' and args.out


def test_namespaced_bringup_needs_wildcard_sections(tmp_path):
    # The shipped configuration uses /**/ keys, so it applies in any namespace...
    plan = _validate('sim.launch.py', namespace='robot1')
    assert _errors(plan) == []
    assert {n.fqn for n in plan.nodes} == {'/robot1/sim_node', '/robot1/policy_node',
                                           '/robot1/safety_controller'}
    assert plan.resolved('/robot1/safety_controller', 'commands') == '/robot1/commands'
    assert plan.resolved('/robot1/policy_node', 'camera/scene/image_raw') == \
        '/robot1/camera/scene/image_raw'
    # ...while plain node-name keys would silently apply to /node only: refused.
    with open(os.path.join(CONFIG, 'reference_arm.yaml'), encoding='utf-8') as f:
        doc = yaml.safe_load(f)
    plain = tmp_path / 'plain.yaml'
    plain.write_text(yaml.safe_dump({k.replace('/**/', ''): v for k, v in doc.items()}))
    plan = _validate('sim.launch.py', namespace='robot1', config_file=str(plain))
    errors = _errors(plan)
    assert any('none applies in namespace /robot1' in e and '/**/safety_controller' in e
               for e in errors), errors


def test_generic_template_with_the_reference_model_is_refused_for_its_joints():
    plan = _validate('bringup.launch.py', config_file=os.path.join(CONFIG, 'generic_7dof.yaml'),
                     urdf_path=os.path.join(CONFIG, 'generic_7dof.urdf'))
    errors = _errors(plan)
    assert errors and all('joint' in e for e in errors), errors


def test_ros_arguments_reproduce_launch_order(tmp_path):
    plan = evaluate_launch(_launch('sim.launch.py'), REPO_ROOT, {'namespace': 'ns'})
    args = ros_arguments(plan.node('safety_controller'), str(tmp_path))
    assert args[:2] == ['-r', '__ns:=/ns']
    files = [args[i + 1] for i, a in enumerate(args) if a == '--params-file']
    assert files[0].endswith('config/reference_arm.yaml')
    override = load_param_file(files[1])['/**']
    assert override['output_mode'] == 'forward_command' and override['autostart'] is True
    assert 'commands:=commands' in args and args[-2:] == ['--log-level', 'info']


# ------------------------------------------------------------------ each check catches its mistake
def test_kilted_only_launch_api_is_refused(tmp_path):
    path = _write_launch(tmp_path, """
        from launch import LaunchDescription
        from launch.actions import ForEach


        def generate_launch_description():
            return LaunchDescription([])
    """)
    errors = _errors(validate_launch(path, REPO_ROOT))
    assert any('ForEach' in e and 'Jazzy and Kilted' in e for e in errors), errors


def test_unknown_executable_missing_file_and_undocumented_argument(tmp_path):
    path = _write_launch(tmp_path, """
        from launch import LaunchDescription
        from launch.actions import DeclareLaunchArgument
        from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
        from launch_ros.actions import Node
        from launch_ros.substitutions import FindPackageShare


        def generate_launch_description():
            share = FindPackageShare('wam_runtime')
            return LaunchDescription([
                DeclareLaunchArgument('x', default_value='1'),
                Node(package='wam_runtime', executable='policy', name='policy_node',
                     parameters=[PathJoinSubstitution([share, 'config', 'nope.yaml'])],
                     arguments=[LaunchConfiguration('y')]),
            ])
    """)
    errors = _errors(validate_launch(path, REPO_ROOT))
    text = '\n'.join(errors)
    assert "argument 'x' has no description" in text
    assert "executable 'policy' is not a console script" in text
    assert 'config/nope.yaml does not exist' in text
    assert "LaunchConfiguration('y') is used but not declared" in text


def test_parameter_type_and_name_mistakes_are_named(tmp_path):
    cfg = tmp_path / 'bad.yaml'
    cfg.write_text(textwrap.dedent("""
        policy_node:
          ros__parameters:
            inference_rate_hz: 10
            joint_names: [joint_1, joint_2, joint_3, joint_4, joint_5, joint_6]
        safety_controller:
          ros__parameters:
            joint_names: [joint_1, joint_2, joint_3, joint_4, joint_5, joint_6]
            max_acceleration_rad_s2: [15, 15, 15, 20, 20, 20]
            max_velocity: [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    """))
    errors = '\n'.join(_errors(_validate('bringup.launch.py', config_file=str(cfg))))
    assert 'inference_rate_hz: 10 is integer, the node declares double' in errors
    assert 'decimal point' in errors
    assert 'max_acceleration_rad_s2: [15, 15, 15, 20, 20, 20] is integer array' in errors
    assert 'max_velocity: not a parameter of safety_controller' in errors


def test_limits_looser_than_the_urdf_fail_validation(tmp_path):
    with open(os.path.join(CONFIG, 'reference_arm.yaml'), encoding='utf-8') as f:
        doc = yaml.safe_load(f)
    doc['/**/safety_controller']['ros__parameters']['upper_limits_rad'] = [9.0] * 6
    cfg = tmp_path / 'loose.yaml'
    cfg.write_text(yaml.safe_dump(doc))
    errors = '\n'.join(_errors(_validate('bringup.launch.py', config_file=str(cfg))))
    assert 'is looser than urdf' in errors


def test_remaps_that_split_a_topic_and_wrong_camera_names_are_found(tmp_path):
    path = _write_launch(tmp_path, """
        from launch import LaunchDescription
        from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
        from launch.launch_description_sources import PythonLaunchDescriptionSource
        from launch.substitutions import PathJoinSubstitution
        from launch_ros.actions import Node, SetRemap
        from launch.actions import GroupAction
        from launch_ros.substitutions import FindPackageShare


        def generate_launch_description():
            share = FindPackageShare('wam_runtime')
            return LaunchDescription([
                DeclareLaunchArgument('unused', default_value='', description='Nothing.'),
                Node(package='wam_runtime', executable='sim_node', name='sim_node',
                     parameters=[PathJoinSubstitution([share, 'config', 'reference_arm.yaml'])],
                     remappings=[('joint_states', '/sim/joint_states')]),
                GroupAction([
                    SetRemap(src='policy/action_chunk', dst='chunks'),
                    IncludeLaunchDescription(
                        PythonLaunchDescriptionSource(
                            PathJoinSubstitution([share, 'launch', 'bringup.launch.py'])),
                        launch_arguments={'camera_name': 'wrist',
                                          'command_topic': 'commands'}.items()),
                ]),
            ])
    """)
    errors = '\n'.join(_errors(validate_launch(path, REPO_ROOT)))
    assert "topic 'joint_states' resolves to ['/joint_states', '/sim/joint_states']" in errors
    assert 'remapping camera/wrist/image_raw -> camera/scene/image_raw matches no topic' \
        in errors
    # SetRemap applies to both nodes of the include: the chunk topic stays connected.
    assert 'policy/action_chunk' not in errors


def _policy_config(tmp_path, **changes):
    with open(os.path.join(CONFIG, 'reference_arm.yaml'), encoding='utf-8') as f:
        doc = yaml.safe_load(f)
    doc['/**/policy_node']['ros__parameters'].update(changes)
    cfg = tmp_path / 'policy.yaml'
    cfg.write_text(yaml.safe_dump(doc))
    return str(cfg)


@pytest.mark.parametrize('change,message', [
    ({'inference_trigger': 'sometimes'}, "inference_trigger: 'sometimes' is not one of"),
    ({'inference_rate_hz': 0.0}, 'inference_rate_hz: must be > 0'),
    ({'compressed_cameras': ['wrist']}, "compressed_cameras: ['wrist'] are not cameras"),
])
def test_policy_values_are_built_like_the_node_builds_them(tmp_path, change, message):
    plan = _validate('bringup.launch.py', config_file=_policy_config(tmp_path, **change))
    errors = _errors(plan)
    assert any(message in e and '/policy_node' in e for e in errors), errors


def test_inference_inputs_are_offered_to_a_recorder_outside_the_launch():
    plan = _validate('sim.launch.py', namespace='robot1')
    assert _errors(plan) == []
    assert plan.resolved('/robot1/policy_node', 'policy/inference_inputs') == \
        '/robot1/policy/inference_inputs'
    offered = {e.resolved for e in plan.unconsumed_outputs()}
    assert {'/robot1/policy/inference_inputs', '/diagnostics'} <= offered
    assert '/robot1/policy/surprise' not in offered       # the safety controller takes it


def test_launch_parameters_merge_like_rcl(tmp_path):
    from wam_runtime.tools.launch_check.checks import node_values
    from wam_runtime.tools.launch_check.plan import LaunchPlan, NodeDecl
    first = tmp_path / 'first.yaml'
    first.write_text(yaml.safe_dump({'/**': {'ros__parameters': {'a': 1, 'b': 1}},
                                     '/**/n': {'ros__parameters': {'a': 2}}}))
    second = tmp_path / 'second.yaml'
    second.write_text(yaml.safe_dump({'/ns/n': {'ros__parameters': {'c': 3}},
                                      'n': {'ros__parameters': {'c': 4}}}))
    node = NodeDecl('wam_runtime', 'n', 'n', '/ns',
                    [('file', str(first)), ('dict', {'a': 5, 'b': 5}), ('file', str(second))],
                    [], [], 'test.launch.py')
    plan = LaunchPlan('test.launch.py', {}, nodes=[node])
    # The dictionary is a /** section: it updates the first file's /** in its place, so the
    # later /**/n section still wins for a; 'n' means /n and misses /ns/n.
    assert node_values(plan, node) == {'a': 2, 'b': 5, 'c': 3}
    assert plan.findings == []


def test_bridge_entry_without_a_ros_side_is_found(tmp_path):
    with open(os.path.join(CONFIG, 'gz_bridge.yaml'), encoding='utf-8') as f:
        entries = yaml.safe_load(f)
    entries[3]['ros_topic_name'] = 'arm/joint_trajectory'
    bridge = tmp_path / 'bridge.yaml'
    bridge.write_text(yaml.safe_dump(entries))
    errors = '\n'.join(_errors(_validate('gazebo.launch.py', bridge_config=str(bridge))))
    assert 'bridge forwards /arm/joint_trajectory to Gazebo, but no node' in errors


# ------------------------------------------------------------------ parameter files
def _config_files():
    files = [os.path.join(CONFIG, f) for f in sorted(os.listdir(CONFIG)) if f.endswith('.yaml')
             and f != 'gz_bridge.yaml']
    nodes = os.path.join(CONFIG, 'nodes')
    return files + [os.path.join(nodes, f) for f in sorted(os.listdir(nodes))]


@pytest.mark.parametrize('path', _config_files(), ids=os.path.basename)
def test_every_parameter_in_the_config_files_is_declared_with_its_type(path):
    assert [str(f) for f in check_param_file(path)] == []


@pytest.mark.parametrize('robot', ['reference_arm', 'generic_7dof'])
def test_controller_examples_match_the_safety_joint_order(robot):
    sections = load_param_file(os.path.join(CONFIG, f'{robot}.yaml'))
    safety = next(v for k, v in sections.items() if k.endswith('safety_controller'))
    path = os.path.join(CONFIG, 'controllers', f'{robot}_controllers.yaml')
    assert check_controllers(path, safety['joint_names']) == []
    reordered = list(reversed(safety['joint_names']))
    assert any('same order' in f.message for f in check_controllers(path, reordered))
    controllers, _ = load_controllers(path)
    assert {c.type for c in controllers.values()} >= {
        'forward_command_controller/ForwardCommandController',
        'joint_trajectory_controller/JointTrajectoryController',
        'joint_state_broadcaster/JointStateBroadcaster'}


@pytest.mark.parametrize('node', sorted(NODE_SCHEMAS))
def test_node_parameter_files_document_every_parameter(node):
    path = config_docs.path_for(REPO_ROOT, node)
    with open(path, encoding='utf-8') as f:
        text = f.read()
    assert text == config_docs.render(node), (
        f'{path} is out of date: python -m wam_runtime.tools.config_docs --write')
    values = load_param_file(path)[f'/**/{node}']
    for p in node_schema(node):
        assert f'    # {p.name}: ' in text or f'    {p.name}: ' in text, p.name
        if isinstance(p.default, Kind):
            assert p.name not in values
        else:
            assert values[p.name] == (list(p.default) if isinstance(p.default, tuple)
                                      else p.default)
    assert text.count('# unit: ') == len(node_schema(node))


def test_section_keys_match_like_rcl():
    assert key_matches('policy_node', '/policy_node')
    assert not key_matches('policy_node', '/arm/policy_node')
    assert key_matches('/**/policy_node', '/arm/left/policy_node')
    assert key_matches('/**', '/a/b')
    assert key_matches('arm/*', '/arm/policy_node')
    assert not key_matches('/*/policy_node', '/policy_node')


# ------------------------------------------------------------------ the tables match the code
def test_node_schemas_are_what_the_node_modules_declare():
    import importlib
    import re
    scripts = console_scripts(REPO_ROOT)
    assert set(NODE_MODULES) <= scripts and 'wam-runtime' in scripts
    for node, module in NODE_MODULES.items():
        assert importlib.import_module(module).PARAMS is node_schema(node)
    # Every console script that is a node with a parameter schema is known to the checks.
    with open(os.path.join(REPO_ROOT, 'setup.py'), encoding='utf-8') as f:
        entries = re.findall(r"'([\w-]+) = ([\w.]+):main'", f.read())
    nodes = {name for name, module in entries
             if hasattr(importlib.import_module(module), 'PARAMS')}
    assert nodes == set(NODE_MODULES) == set(NODE_SCHEMAS)


def _code_topics(module):
    """Topics the module creates publishers/subscriptions for (f-strings as patterns).

    A topic given by name (``ACTION_CHUNK``, ``interfaces.EVENTS``) is the module's value.
    """
    import importlib
    namespace = vars(importlib.import_module(module))
    path = importlib.util.find_spec(module).origin
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read())
    found = set()
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and \
                call.func.attr in ('create_publisher', 'create_subscription') and \
                len(call.args) >= 2:
            arg = call.args[1]
            direction = 'pub' if call.func.attr == 'create_publisher' else 'sub'
            if isinstance(arg, ast.Constant):
                found.add((direction, arg.value))
            elif isinstance(arg, ast.JoinedStr):
                found.add((direction, ast.unparse(arg)))
            elif isinstance(arg, ast.Name) and isinstance(namespace.get(arg.id), str):
                found.add((direction, namespace[arg.id]))
            elif isinstance(arg, ast.Attribute) and isinstance(arg.value, ast.Name) and \
                    isinstance(getattr(namespace.get(arg.value.id), arg.attr, None), str):
                found.add((direction, getattr(namespace[arg.value.id], arg.attr)))
    return found


@pytest.mark.parametrize('node', sorted(NODE_TOPICS))
def test_topic_table_matches_the_node_code(node):
    import importlib
    code = _code_topics(NODE_MODULES[node])
    table = {(d, e.topic) for d in ('pub', 'sub') for e in NODE_TOPICS[node][d]}
    if node == 'safety_controller':     # its command output: SAFETY_OUTPUTS[output_mode]
        outputs = {('pub', t) for t, _ in SAFETY_OUTPUTS.values()}
        module = importlib.import_module(NODE_MODULES[node])
        assert getattr(module, 'SAFETY_OUTPUTS', None) is SAFETY_OUTPUTS or outputs <= code
        code -= outputs
    static = {(d, t) for d, t in code if not t.startswith('f')}
    dynamic = code - static
    # /clock (sim_node, only under use_sim_time) and the cameras are added per launch.
    assert static - {('pub', '/clock')} == table - {('pub', 'camera/scene/image_raw')}
    for direction, pattern in dynamic:      # camera topics: from the contract or a parameter
        assert 'camera/' in pattern and 'image_raw' in pattern, pattern
