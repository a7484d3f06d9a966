"""Topic names from parameters: the builders refuse what rclpy would, naming the parameter.

The last test creates a subscription for every name with rclpy itself, so the rules here are
the ones a node applies (on the installed ROS distribution).
"""

import pytest

from wam_runtime.core.params import ConfigError
from wam_runtime.core.topic_names import check_topic_names, topic_name_problem

VALID = ['joint_states', 'gripper/joint_states', '/gripper/joint_states', '~/joint_states',
         '~', '{node}/joint_states', '{ns}/joint_states', '{namespace}/js', 'a_1/b_2', '_x',
         '/_x/__y', 'A/B', 'x{node}y', '{node}{ns}', 'a/a/a/b', '_/_', 'a' * 200]
INVALID = ['', 'bad topic', 'gripper//js', '//js', 'js/', '/', '1js', 'a/1b', '/1b', '~js',
           'a~', '~/~', '{robot}/js', '{node', 'node}', '{{node}}', '{1node}', 'a/{no/de}',
           'a-b', 'ä', 'a.b', '~/1a', '{}', '/{ns}/js', 'a/{namespace}', '/' + 'a' * 300]


@pytest.mark.parametrize('name', VALID)
def test_valid_names_pass(name):
    assert topic_name_problem(name) is None


@pytest.mark.parametrize('name', INVALID)
def test_invalid_names_are_refused_naming_the_parameter(name):
    assert topic_name_problem(name)
    with pytest.raises(ConfigError, match=r'^extra_joint_state_topics: .* is not a valid ROS '
                                          r'topic name \('):
        check_topic_names('extra_joint_state_topics', ['joint_states', name])


def test_nothing_to_check():
    check_topic_names('extra_joint_state_topics', None)
    check_topic_names('extra_joint_state_topics', [])
    assert 'string' in topic_name_problem(5)


@pytest.mark.ros
def test_rclpy_refuses_exactly_these_names():
    rclpy = pytest.importorskip('rclpy')
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
    context = rclpy.Context()
    rclpy.init(context=context)
    refused = {}
    try:
        # In a namespace: in the root one, '{ns}/x' expands to '//x' (the builders cannot
        # know the namespace; rclpy refuses that one when it subscribes).
        for namespace in ('/robot1',):
            node = Node('topic_names', namespace=namespace, context=context)
            try:
                for name in VALID + INVALID:
                    try:
                        node.destroy_subscription(
                            node.create_subscription(JointState, name, lambda _m: None, 1))
                    except Exception:  # noqa: B902 - rclpy's refusal, whatever its type
                        refused[name] = True
            finally:
                node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    assert set(refused) ^ set(INVALID) == set(), sorted(set(refused) ^ set(INVALID))
