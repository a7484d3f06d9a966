"""``core.interfaces`` endpoints in rclpy terms: message classes and QoS profiles.

``message_class('sensor_msgs/msg/Image')`` imports ``sensor_msgs.msg.Image``; ``qos(endpoint)``
is ``qos_profile_sensor_data`` for a 'sensor' endpoint and a reliable keep-last queue for a
'reliable' one, each with the endpoint's depth.
"""

import copy
import importlib
from typing import Any

from rclpy.qos import qos_profile_sensor_data, QoSProfile

from wam_runtime.core.interfaces import Endpoint, RELIABLE, SENSOR


def message_class(msgtype: str) -> Any:
    """Return the message class of a ROS interface name (``pkg/msg/Type``)."""
    package, kind, name = msgtype.split('/')
    if kind != 'msg':
        raise ValueError(f'{msgtype!r} is not a message type (pkg/msg/Type)')
    return getattr(importlib.import_module(f'{package}.msg'), name)


def qos(endpoint: Endpoint) -> QoSProfile:
    """Return the QoS profile of an endpoint's QoS class, with its depth."""
    if endpoint.qos == SENSOR:
        profile = copy.copy(qos_profile_sensor_data)
        profile.depth = endpoint.depth
        return profile
    if endpoint.qos == RELIABLE:
        return QoSProfile(depth=endpoint.depth)
    raise ValueError(f'{endpoint.topic}: unknown QoS class {endpoint.qos!r}')
