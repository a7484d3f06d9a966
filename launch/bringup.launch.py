"""Bring up the policy and the safety gate for one robot: policy_node + safety_controller.

    ros2 launch wam_runtime bringup.launch.py config_file:=/path/robot.yaml \
        model_path:=/path/policy.onnx urdf_path:=/path/robot.urdf

Commands go to ros2_control: ``output_mode:=forward_command`` publishes Float64MultiArray
on ``command_topic`` (forward_command_controller), ``output_mode:=joint_trajectory``
publishes single-point JointTrajectory on ``trajectory_topic`` (joint_trajectory_controller);
``config/controllers/`` holds matching controller configurations. The safety controller is
a lifecycle node; ``autostart:=true`` configures and activates it (opens the gate) at
startup, ``autostart:=false`` leaves it unconfigured until
``ros2 lifecycle set <namespace>/safety_controller configure`` and ``activate``.

Remote inference: ``launch_policy:=false`` on the robot (safety controller only) and
``launch_safety:=false`` on the GPU host (policy only), same ROS_DOMAIN_ID.

SROS2: each node runs in its own enclave (``policy_enclave``, ``safety_enclave``; see
config/security/policy.xml and doc/security.md), effective only with ROS_SECURITY_ENABLE=true.

Uses only launch API present in Jazzy and Kilted (``wam-runtime check-launch`` checks it).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare('wam_runtime')
    config_file = LaunchConfiguration('config_file')
    model_path = LaunchConfiguration('model_path')
    urdf_path = LaunchConfiguration('urdf_path')
    namespace = LaunchConfiguration('namespace')
    use_sim_time = LaunchConfiguration('use_sim_time')
    output_mode = LaunchConfiguration('output_mode')
    autostart = LaunchConfiguration('autostart')
    command_topic = LaunchConfiguration('command_topic')
    trajectory_topic = LaunchConfiguration('trajectory_topic')
    joint_states_topic = LaunchConfiguration('joint_states_topic')
    camera_name = LaunchConfiguration('camera_name')
    camera_topic = LaunchConfiguration('camera_topic')
    log_level = LaunchConfiguration('log_level')

    return LaunchDescription([
        DeclareLaunchArgument(
            'config_file',
            default_value=PathJoinSubstitution([share, 'config', 'reference_arm.yaml']),
            description='ROS parameter YAML with policy_node and safety_controller sections '
                        '(config/generic_7dof.yaml is a commented template; use /**/<node> '
                        'keys together with a namespace).'),
        DeclareLaunchArgument(
            'model_path',
            default_value=PathJoinSubstitution([share, 'models', 'reference_reach.onnx']),
            description='ONNX model carrying a wam_runtime.contract (check it with '
                        'wam-runtime inspect).'),
        DeclareLaunchArgument(
            'urdf_path',
            default_value=PathJoinSubstitution([share, 'config', 'reference_arm.urdf']),
            description='URDF giving position and velocity limits and the kinematics of the '
                        'workspace check; empty = limits from config_file only.'),
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='Namespace of both nodes (relative topics follow it).'),
        DeclareLaunchArgument(
            'use_sim_time', default_value='false', choices=['true', 'false'],
            description='Use /clock (simulation, bag playback) instead of the system clock.'),
        DeclareLaunchArgument(
            'output_mode', default_value='forward_command',
            choices=['forward_command', 'joint_trajectory'],
            description='forward_command: Float64MultiArray in joint_names order on '
                        'command_topic (forward_command_controller); joint_trajectory: a '
                        'single-point JointTrajectory per tick on trajectory_topic '
                        '(joint_trajectory_controller).'),
        DeclareLaunchArgument(
            'autostart', default_value='true', choices=['true', 'false'],
            description='Configure and activate the safety controller at startup (the gate '
                        'opens); false: wait for lifecycle transitions.'),
        DeclareLaunchArgument(
            'command_topic', default_value='/forward_position_controller/commands',
            description='Where the gated commands go in forward_command mode.'),
        DeclareLaunchArgument(
            'trajectory_topic', default_value='/joint_trajectory_controller/joint_trajectory',
            description='Where the gated commands go in joint_trajectory mode.'),
        DeclareLaunchArgument(
            'joint_states_topic', default_value='joint_states',
            description='sensor_msgs/JointState of the robot, read by both nodes (for '
                        'example /joint_states from joint_state_broadcaster).'),
        DeclareLaunchArgument(
            'camera_name', default_value='scene',
            description='Camera of the model contract whose topic is remapped '
                        '(policy_node reads camera/<camera_name>/image_raw).'),
        DeclareLaunchArgument(
            'camera_topic', default_value='camera/scene/image_raw',
            description='sensor_msgs/Image topic of that camera, for example '
                        '/camera/color/image_raw. More cameras: wrap this launch file in a '
                        'GroupAction with SetRemap.'),
        DeclareLaunchArgument(
            'launch_policy', default_value='true', choices=['true', 'false'],
            description='Start policy_node here (false on a robot whose policy runs on a '
                        'GPU host).'),
        DeclareLaunchArgument(
            'launch_safety', default_value='true', choices=['true', 'false'],
            description='Start safety_controller here (false on a GPU host: the gate always '
                        'runs on the robot).'),
        DeclareLaunchArgument(
            'policy_enclave', default_value='/wam_runtime/policy',
            description='SROS2 enclave of policy_node (config/security/policy.xml); used '
                        'only with ROS_SECURITY_ENABLE=true.'),
        DeclareLaunchArgument(
            'safety_enclave', default_value='/wam_runtime/safety',
            description='SROS2 enclave of safety_controller; used only with '
                        'ROS_SECURITY_ENABLE=true.'),
        DeclareLaunchArgument(
            'log_level', default_value='info',
            choices=['debug', 'info', 'warn', 'error', 'fatal'],
            description='Log level of both nodes.'),

        Node(
            package='wam_runtime', executable='policy_node', name='policy_node',
            namespace=namespace, output='screen',
            condition=IfCondition(LaunchConfiguration('launch_policy')),
            parameters=[config_file, {
                'model_path': ParameterValue(model_path, value_type=str),
                'use_sim_time': use_sim_time,
            }],
            remappings=[
                ('joint_states', joint_states_topic),
                (['camera/', camera_name, '/image_raw'], camera_topic),
            ],
            arguments=['--ros-args', '--enclave', LaunchConfiguration('policy_enclave'),
                       '--log-level', log_level]),
        Node(
            package='wam_runtime', executable='safety_controller', name='safety_controller',
            namespace=namespace, output='screen',
            condition=IfCondition(LaunchConfiguration('launch_safety')),
            parameters=[config_file, {
                'urdf_path': ParameterValue(urdf_path, value_type=str),
                'output_mode': output_mode,
                'autostart': autostart,
                'use_sim_time': use_sim_time,
            }],
            remappings=[
                ('joint_states', joint_states_topic),
                ('commands', command_topic),
                ('joint_trajectory', trajectory_topic),
            ],
            arguments=['--ros-args', '--enclave', LaunchConfiguration('safety_enclave'),
                       '--log-level', log_level]),
    ])
