"""bringup.launch.py next to a Gazebo (gz sim) robot, connected through ros_gz_bridge.

    ros2 launch wam_runtime gazebo.launch.py world:=/path/arm_world.sdf \
        config_file:=/path/robot.yaml urdf_path:=/path/robot.urdf model_path:=/path/m.onnx

The bridge (``bridge_config``, default ``config/gz_bridge.yaml``) carries ``/clock``, the
camera image and the joint states from Gazebo to ROS and the gated commands from ROS to
Gazebo: the safety controller runs in ``joint_trajectory`` mode and its single-point
trajectories reach the Gazebo JointTrajectoryController system. Every node uses simulation
time. With ``world:=''`` (default) Gazebo is expected to be running already; otherwise
``ros_gz_sim``'s ``gz_sim.launch.py`` starts it with the world, running.

With gz_ros2_control instead of Gazebo's own controllers, use bringup.launch.py with
``use_sim_time:=true`` and the controller configurations in ``config/controllers/``; the
bridge then only needs /clock and the camera.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import (
    LaunchConfiguration, NotEqualsSubstitution, PathJoinSubstitution)
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare('wam_runtime')
    world = LaunchConfiguration('world')
    namespace = LaunchConfiguration('namespace')
    config_file = LaunchConfiguration('config_file')

    return LaunchDescription([
        DeclareLaunchArgument(
            'world', default_value='',
            description="SDF world to start with gz sim (running); '' = Gazebo is already "
                        'running.'),
        DeclareLaunchArgument(
            'bridge_config',
            default_value=PathJoinSubstitution([share, 'config', 'gz_bridge.yaml']),
            description='ros_gz_bridge YAML: camera, joint states, commands and /clock '
                        '(edit the Gazebo topic names for your world and model).'),
        DeclareLaunchArgument(
            'config_file',
            default_value=PathJoinSubstitution([share, 'config', 'reference_arm.yaml']),
            description='Parameters of policy_node and safety_controller.'),
        DeclareLaunchArgument(
            'model_path',
            default_value=PathJoinSubstitution([share, 'models', 'reference_reach.onnx']),
            description='ONNX policy with its contract.'),
        DeclareLaunchArgument(
            'urdf_path',
            default_value=PathJoinSubstitution([share, 'config', 'reference_arm.urdf']),
            description='URDF of the simulated robot (limits and workspace).'),
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='Namespace of the bridge and both nodes.'),

        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(
                PathJoinSubstitution([FindPackageShare('ros_gz_sim'), 'launch',
                                      'gz_sim.launch.py'])),
            launch_arguments={'gz_args': ['-r ', world]}.items(),
            condition=IfCondition(NotEqualsSubstitution(world, ''))),
        Node(
            package='ros_gz_bridge', executable='parameter_bridge', name='gz_bridge',
            namespace=namespace, output='screen',
            parameters=[{
                'config_file': LaunchConfiguration('bridge_config'),
                'use_sim_time': True,
            }]),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(
                PathJoinSubstitution([share, 'launch', 'bringup.launch.py'])),
            launch_arguments={
                'config_file': config_file,
                'model_path': LaunchConfiguration('model_path'),
                'urdf_path': LaunchConfiguration('urdf_path'),
                'namespace': namespace,
                'use_sim_time': 'true',
                'output_mode': 'joint_trajectory',
                'trajectory_topic': 'joint_trajectory',
                'joint_states_topic': 'joint_states',
                'camera_name': 'scene',
                'camera_topic': 'camera/scene/image_raw',
            }.items()),
    ])
