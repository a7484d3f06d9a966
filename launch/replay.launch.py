"""bringup.launch.py against a recorded bag played back in real time.

    ros2 launch wam_runtime replay.launch.py bag:=/path/run_bag out:=/tmp/replay_run

The nodes run on simulation time; the player publishes the bag's input topics (camera,
joint states) at the recorded rate together with ``/clock``. ``player:=wam`` (default) is
``wam-runtime replay BAG --realtime``, which also records what the nodes publish into
``out``; ``player:=ros2`` is ``ros2 bag play BAG --clock`` (record with ``ros2 bag record``
yourself). Commands stay inside the launch namespace (``commands``), so they never reach a
controller. For the deterministic offline replay use ``wam-runtime replay`` without
``--realtime``; it needs no running nodes.
"""

from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, TimerAction)
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import (
    EqualsSubstitution, LaunchConfiguration, PathJoinSubstitution)
from launch_ros.substitutions import FindPackagePrefix, FindPackageShare


def generate_launch_description():
    share = FindPackageShare('wam_runtime')
    bag = LaunchConfiguration('bag')
    player = LaunchConfiguration('player')
    rate = LaunchConfiguration('rate')
    config_file = LaunchConfiguration('config_file')
    wam_runtime_cli = PathJoinSubstitution(
        [FindPackagePrefix('wam_runtime'), 'lib', 'wam_runtime', 'wam-runtime'])

    return LaunchDescription([
        DeclareLaunchArgument(
            'bag',
            description='rosbag2 folder (sqlite3 or MCAP) with the camera and joint_states '
                        'topics the nodes read.'),
        DeclareLaunchArgument(
            'out', default_value='/tmp/wam_runtime_replay',
            description='Folder for what wam-runtime replay records (player:=wam).'),
        DeclareLaunchArgument(
            'player', default_value='wam', choices=['wam', 'ros2'],
            description='wam: wam-runtime replay --realtime (plays and records); ros2: ros2 '
                        'bag play --clock.'),
        DeclareLaunchArgument(
            'rate', default_value='1.0',
            description='Playback rate (1.0 = as recorded).'),
        DeclareLaunchArgument(
            'config_file',
            default_value=PathJoinSubstitution([share, 'config', 'reference_arm.yaml']),
            description='Parameters of policy_node and safety_controller.'),
        DeclareLaunchArgument(
            'model_path',
            default_value=PathJoinSubstitution([share, 'models', 'reference_reach.onnx']),
            description='ONNX policy to run against the bag.'),
        DeclareLaunchArgument(
            'urdf_path',
            default_value=PathJoinSubstitution([share, 'config', 'reference_arm.urdf']),
            description='URDF of the recorded robot (limits and workspace).'),

        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(
                PathJoinSubstitution([share, 'launch', 'bringup.launch.py'])),
            launch_arguments={
                'config_file': config_file,
                'model_path': LaunchConfiguration('model_path'),
                'urdf_path': LaunchConfiguration('urdf_path'),
                'use_sim_time': 'true',
                'output_mode': 'forward_command',
                'command_topic': 'commands',
            }.items()),
        # Give the nodes time to load the model and configure before the first message.
        TimerAction(period=3.0, actions=[
            ExecuteProcess(
                cmd=[wam_runtime_cli, 'replay', bag, '--realtime', '--rate', rate,
                     '--config', config_file, '--model', LaunchConfiguration('model_path'),
                     '--urdf', LaunchConfiguration('urdf_path'),
                     '--out', LaunchConfiguration('out')],
                output='screen', condition=IfCondition(EqualsSubstitution(player, 'wam'))),
            ExecuteProcess(
                cmd=['ros2', 'bag', 'play', bag, '--clock', '--rate', rate],
                output='screen', condition=IfCondition(EqualsSubstitution(player, 'ros2'))),
        ]),
    ])
