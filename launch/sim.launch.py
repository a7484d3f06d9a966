"""The reference simulation: sim_node (MuJoCo arm + camera) driven by bringup.launch.py.

    ros2 launch wam_runtime sim.launch.py

sim_node publishes ``camera/scene/image_raw`` and ``joint_states`` and takes ``commands``
(Float64MultiArray, the forward_command_controller interface) in the same namespace, so the
safety controller's output is remapped to the relative ``commands``. Episodes start with
``ros2 service call sim/reset std_srvs/srv/Trigger``; outcomes arrive on
``sim/episode_outcome``. With ``use_sim_time:=true`` sim_node publishes ``/clock``.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare('wam_runtime')
    config_file = LaunchConfiguration('config_file')
    namespace = LaunchConfiguration('namespace')
    use_sim_time = LaunchConfiguration('use_sim_time')

    return LaunchDescription([
        DeclareLaunchArgument(
            'config_file',
            default_value=PathJoinSubstitution([share, 'config', 'reference_arm.yaml']),
            description='Parameters of policy_node, safety_controller and sim_node.'),
        DeclareLaunchArgument(
            'model_path',
            default_value=PathJoinSubstitution([share, 'models', 'reference_reach.onnx']),
            description='ONNX policy for the reference arm.'),
        DeclareLaunchArgument(
            'urdf_path',
            default_value=PathJoinSubstitution([share, 'config', 'reference_arm.urdf']),
            description='URDF of the reference arm (limits and workspace).'),
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='Namespace of all three nodes.'),
        DeclareLaunchArgument(
            'use_sim_time', default_value='false', choices=['true', 'false'],
            description='sim_node publishes /clock and every node follows it.'),

        Node(
            package='wam_runtime', executable='sim_node', name='sim_node',
            namespace=namespace, output='screen',
            parameters=[config_file, {'use_sim_time': use_sim_time}]),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(
                PathJoinSubstitution([share, 'launch', 'bringup.launch.py'])),
            launch_arguments={
                'config_file': config_file,
                'model_path': LaunchConfiguration('model_path'),
                'urdf_path': LaunchConfiguration('urdf_path'),
                'namespace': namespace,
                'use_sim_time': use_sim_time,
                'output_mode': 'forward_command',
                'command_topic': 'commands',
                'joint_states_topic': 'joint_states',
                'camera_name': 'scene',
                'camera_topic': 'camera/scene/image_raw',
            }.items()),
    ])
