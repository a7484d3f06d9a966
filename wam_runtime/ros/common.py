"""Shared node plumbing: typed parameters with descriptors, diagnostics, time, main()."""

import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
import rclpy
from rclpy.exceptions import (
    InvalidParameterTypeException, InvalidParameterValueException,
    ParameterUninitializedException)
from rclpy.executors import (
    ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor)
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy_impl
from rclpy.lifecycle import LifecycleNode
from rclpy.node import Node
from rclpy.parameter import Parameter

from wam_runtime.core.contract import ContractError
from wam_runtime.core.image import FrameError
from wam_runtime.core.inference import ModelLoadError
from wam_runtime.core.interfaces import Event
from wam_runtime.core.limits import LimitsError
from wam_runtime.core.params import ConfigError, CONFIGURE, Kind, LIVE, Param
from wam_runtime.core.stamps import split_ns, to_ns


# Errors that mean "this configuration or model cannot run": one line, exit code 2.
STARTUP_ERRORS = (ConfigError, ContractError, LimitsError, ModelLoadError, FrameError,
                  InvalidParameterTypeException, InvalidParameterValueException,
                  ParameterUninitializedException)


ParamSpec = Param   # the schemas live in wam_runtime.core.params

_KINDS = {'string': Parameter.Type.STRING, 'string_array': Parameter.Type.STRING_ARRAY,
          'double_array': Parameter.Type.DOUBLE_ARRAY, 'integer': Parameter.Type.INTEGER,
          'double': Parameter.Type.DOUBLE, 'bool': Parameter.Type.BOOL}


# What a refused parameter set tells the operator to do instead.
RESTART = 'restart the node with the new value'
RECONFIGURE = 'deactivate, cleanup, set, then configure'


def declare_params(node: Node, specs: Sequence[ParamSpec]) -> Dict[str, Any]:
    """Declare every parameter with a descriptor and return their values by name.

    A required parameter that was not given raises ConfigError naming it. No later set is
    accepted that cannot take effect (``Param.applied``): a LIVE parameter is left to the
    node's own set-parameters callback, which validates and applies it; in a LifecycleNode
    a CONFIGURE parameter may be set while the node is unconfigured (``on_configure``
    re-reads it with :func:`read_params`) and is refused with a reason once it is
    configured; every other parameter is read-only in its descriptor (``ros2 param
    describe`` shows it), so rclpy refuses every set of it.
    """
    lifecycle = isinstance(node, LifecycleNode)
    for spec in specs:
        reconfigurable = lifecycle and spec.applied == CONFIGURE
        if spec.applied == LIVE:
            rule = 'applied live'
        elif reconfigurable:
            rule = f'set while unconfigured, applied by configure; once configured: {RECONFIGURE}'
        else:
            rule = f'read only: {RESTART}'
        desc = ParameterDescriptor(description=spec.description, additional_constraints=rule,
                                   read_only=spec.applied != LIVE and not reconfigurable)
        default = _KINDS[spec.default] if isinstance(spec.default, Kind) else spec.default
        node.declare_parameter(spec.name, default, desc)
    if lifecycle:
        node.add_on_set_parameters_callback(_refuse_once_configured(node, specs))
    return read_params(node, specs)


def read_params(node: Node, specs: Sequence[ParamSpec],
                previous: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Return the current value of every declared parameter by name (None: not set).

    A required parameter without a value raises ConfigError naming it. With ``previous``
    (the values read before) every difference is logged: the log shows what a configure
    applies.
    """
    values: Dict[str, Any] = {}
    for spec in specs:
        value = node.get_parameter_or(spec.name).value
        if value is None and spec.required:
            raise ConfigError(f'parameter {spec.name!r} is required: {spec.description}')
        values[spec.name] = value
    if previous is not None:
        for name, value in values.items():
            if _plain(previous.get(name)) != _plain(value):
                node.get_logger().info(f'parameter {name}: {_plain(previous.get(name))} -> '
                                       f'{_plain(value)}')
    return values


def _plain(value: Any) -> Any:
    """Return a parameter value with arrays as lists (comparable, readable in a log)."""
    return value if value is None or isinstance(value, (str, bool, int, float)) else \
        list(value)


def lifecycle_state(node: LifecycleNode) -> str:
    """Return the label of a LifecycleNode's current state ('unconfigured', 'active', ...).

    rclpy has no public getter (its get_state service reads the same state machine); an
    rclpy without it reads as 'unknown', under which parameter sets are refused.
    """
    try:
        return str(node._state_machine.current_state[1])
    except (AttributeError, IndexError, TypeError):
        return 'unknown'


def _refuse_once_configured(node: LifecycleNode, specs: Sequence[ParamSpec]) -> Callable:
    """Return a set-parameters callback refusing CONFIGURE parameters unless unconfigured."""
    guarded = {spec.name for spec in specs if spec.applied == CONFIGURE}

    def callback(params: List[Parameter]) -> SetParametersResult:
        names = [p.name for p in params if p.name in guarded]
        state = lifecycle_state(node)
        if not names or state == 'unconfigured':
            return SetParametersResult(successful=True)
        what = ', '.join(names) + (' is' if len(names) == 1 else ' are')
        if state == 'finalized':
            reason = f'{what} read only: the node is finalized; {RESTART}'
        else:
            reason = f'{what} read-only while the node is configured ({state}): {RECONFIGURE}'
        node.get_logger().warning(f'parameter set refused: {reason}')
        return SetParametersResult(successful=False, reason=reason)

    return callback


def stamp_to_s(stamp) -> float:
    """Convert builtin_interfaces/Time to float seconds (for ages and intervals only)."""
    return stamp.sec + stamp.nanosec * 1e-9


def stamp_to_ns(stamp) -> int:
    """Convert builtin_interfaces/Time to integer nanoseconds (exact)."""
    return to_ns(stamp.sec, stamp.nanosec)


def ns_to_time(ns: int) -> Time:
    """Convert integer nanoseconds to builtin_interfaces/Time (exact, never via float)."""
    sec, nanosec = split_ns(int(ns))
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


def event_msg(event: Event, hardware_id: str) -> DiagnosticStatus:
    """Build the ``safety/events`` DiagnosticStatus of a core event."""
    msg = DiagnosticStatus(level=bytes([event.level]), name=event.name, message=event.message,
                           hardware_id=hardware_id)
    msg.values = [KeyValue(key=k, value=v) for k, v in event.values]
    return msg


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f'{v:.6g}'
    return 'n/a' if v is None else str(v)


SHUTDOWN_GRACE_S = 1.0


def _shutdown_follows(timeout_s: float) -> bool:
    """Return True once rclpy is shut down, waiting at most ``timeout_s`` for it."""
    deadline = time.monotonic() + timeout_s
    while rclpy.ok():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


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
        # machine, as in ros/joint_state_publisher#117), sometimes just before the signal
        # handler has shut the context down. A shutdown that follows within a second makes
        # it a clean exit; while rclpy stays up it is a real failure.
        if not _shutdown_follows(SHUTDOWN_GRACE_S):
            raise
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
