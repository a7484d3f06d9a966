"""Shared node plumbing: typed parameters with descriptors, diagnostics, time, main()."""

import sys
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
import rclpy
from rclpy.exceptions import (
    InvalidParameterTypeException, InvalidParameterValueException,
    ParameterUninitializedException)
from rclpy.executors import (
    ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor)
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy_impl
from rclpy.node import Node
from rclpy.parameter import Parameter

from wam_runtime.core.contract import ContractError
from wam_runtime.core.gate import LimitsError
from wam_runtime.core.image import FrameError
from wam_runtime.core.inference import ModelLoadError
from wam_runtime.core.params import ConfigError, Kind, Param


# Errors that mean "this configuration or model cannot run": one line, exit code 2.
STARTUP_ERRORS = (ConfigError, ContractError, LimitsError, ModelLoadError, FrameError,
                  InvalidParameterTypeException, InvalidParameterValueException,
                  ParameterUninitializedException)


ParamSpec = Param   # the schemas live in wam_runtime.core.params

_KINDS = {'string': Parameter.Type.STRING, 'string_array': Parameter.Type.STRING_ARRAY,
          'double_array': Parameter.Type.DOUBLE_ARRAY, 'integer': Parameter.Type.INTEGER,
          'double': Parameter.Type.DOUBLE, 'bool': Parameter.Type.BOOL}


def declare_params(node: Node, specs: Sequence[ParamSpec]) -> Dict[str, Any]:
    """Declare every parameter with a descriptor and return their values by name.

    A required parameter that was not given raises ConfigError naming it.
    """
    values: Dict[str, Any] = {}
    for spec in specs:
        desc = ParameterDescriptor(description=spec.description)
        default = _KINDS[spec.default] if isinstance(spec.default, Kind) else spec.default
        param = node.declare_parameter(spec.name, default, desc)
        if param.type_ == Parameter.Type.NOT_SET and spec.required:
            raise ConfigError(f'parameter {spec.name!r} is required: {spec.description}')
        values[spec.name] = param.value
    return values


def stamp_to_s(stamp) -> float:
    """Convert builtin_interfaces/Time to float seconds (for ages and intervals only)."""
    return stamp.sec + stamp.nanosec * 1e-9


def stamp_to_ns(stamp) -> int:
    """Convert builtin_interfaces/Time to integer nanoseconds (exact)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_time(ns: int) -> Time:
    """Convert integer nanoseconds to builtin_interfaces/Time (exact, never via float)."""
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def now_s(node: Node) -> float:
    """Return the node clock (ROS time: /clock under use_sim_time) in seconds."""
    return node.get_clock().now().nanoseconds * 1e-9


def now_ns(node: Node) -> int:
    """Return the node clock (ROS time: /clock under use_sim_time) in integer nanoseconds."""
    return node.get_clock().now().nanoseconds


def diagnostic_array(node: Node, name: str, level: bytes, message: str,
                     values: Mapping[str, Any]) -> DiagnosticArray:
    """Build a DiagnosticArray holding one status, values rendered as strings."""
    status = DiagnosticStatus(level=level, name=name, message=message,
                              hardware_id=node.get_fully_qualified_name())
    status.values = [KeyValue(key=str(k), value=_fmt(v)) for k, v in values.items()]
    arr = DiagnosticArray()
    arr.header.stamp = node.get_clock().now().to_msg()
    arr.status = [status]
    return arr


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f'{v:.6g}'
    return 'n/a' if v is None else str(v)


def run_node(factory: Callable[[Optional[List[str]]], Node], args: Optional[List[str]] = None,
             num_threads: int = 1) -> int:
    """Init rclpy, build the node, spin until shutdown; exit 2 with one line on bad config.

    ``num_threads == 1`` uses the SingleThreadedExecutor: measurably less overhead and jitter
    than rclpy's MultiThreadedExecutor for nodes whose heavy work runs on their own thread.
    Works on Jazzy and Kilted (no ``with rclpy.init()``).
    """
    try:
        rclpy.init(args=args)
    except _rclpy_impl.RCLError as exc:  # a malformed --params-file fails here
        detail = ' '.join(str(exc).split(', at ')[0].split())
        print(f'[wam_runtime] startup failed: {detail}', file=sys.stderr)
        return 2
    node = None
    try:
        node = factory(args)
        executor = SingleThreadedExecutor() if num_threads == 1 else \
            MultiThreadedExecutor(num_threads=num_threads)
        executor.add_node(node)
        executor.spin()
    except STARTUP_ERRORS as exc:
        print(f'[wam_runtime] startup failed: {exc}', file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        # Shutting down under load, a message take already in flight can fail inside rclpy
        # ("Unable to convert call argument '0' to Python object"; seen on a loaded CI
        # machine, as in ros/joint_state_publisher#117). After shutdown that is a clean
        # exit; while rclpy is up it is a real failure.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
