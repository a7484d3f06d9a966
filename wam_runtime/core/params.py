"""Parameter schemas: one place for every node parameter's name, default and meaning.

The rclpy nodes declare these with descriptors; offline tools (replay, check-config) read
the same YAML through ``resolve`` and get the same defaults and the same errors: ``resolve``
checks types the way rclpy does (:func:`type_error`, rclpy's own message) and reads an empty
array as not set, as rcl does, so a value is refused or defaulted the same everywhere.
"""

import array
from dataclasses import dataclass
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from wam_runtime.core.surprise import METRICS


class Kind(str):
    """The type of a parameter that has no default (``Kind('string_array')``)."""


class ConfigError(ValueError):
    """A parameter value is invalid; the message names the parameter."""


# When a value set at runtime (ros2 param set) takes effect, ``Param.applied``: LIVE at
# once (the node validates and applies it in its own callback); CONFIGURE when the node
# configures (a plain node only at startup, a lifecycle node at every configure
# transition); STARTUP only when the node starts.
LIVE, CONFIGURE, STARTUP = 'live', 'configure', 'startup'
APPLIED = (LIVE, CONFIGURE, STARTUP)


@dataclass(frozen=True)
class Param:
    """One parameter: name, default (a ``Kind`` when it has none), description.

    A parameter without a default is required unless ``optional`` is set; an optional one
    reads as None when not given. ``applied`` says when a value set at runtime takes
    effect (one of ``APPLIED``); a set that cannot take effect is refused.
    """

    name: str
    default: Any
    description: str
    optional: bool = False
    applied: str = CONFIGURE

    def __post_init__(self) -> None:
        """Refuse an unknown ``applied``."""
        if self.applied not in APPLIED:
            raise ValueError(f'{self.name}: applied={self.applied!r} is not one of {APPLIED}')

    @property
    def required(self) -> bool:
        """Whether the parameter must come from configuration."""
        return isinstance(self.default, Kind) and not self.optional


# ROS parameter types by the names rcl_interfaces gives them, lower case ('double_array').
SCALAR_TYPES = ('bool', 'integer', 'double', 'string')
TYPES = SCALAR_TYPES + tuple(t + '_array' for t in SCALAR_TYPES)


def param_type(default: Any) -> str:
    """Return the ROS parameter type a schema default declares ('double', 'string_array')."""
    kind = str(default) if isinstance(default, Kind) else value_type(default)
    if kind not in TYPES:
        raise TypeError(f'no ROS parameter type for the default {default!r}')
    return kind


def _as_list(value: Any) -> Optional[List[Any]]:
    """Return the elements of an array value (list, tuple, array.array, numpy), else None."""
    if isinstance(value, (list, tuple, array.array)):
        return list(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return None


def value_type(value: Any) -> Optional[str]:
    """Return the ROS parameter type rclpy infers for a value ('integer', 'double_array').

    None for a value that is not set: None, or an empty array (rcl reads ``[]`` as not
    set). 'mixed' for an array whose elements do not share one scalar type (rcl refuses
    such a file). A value of no ROS type gives the name of its Python type.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return 'bool'
    if isinstance(value, int):
        return 'integer'
    if isinstance(value, float):
        return 'double'
    if isinstance(value, str):
        return 'string'
    items = _as_list(value)
    if items is None:
        return type(value).__name__
    if not items:
        return None
    kinds = {value_type(v) for v in items}
    if len(kinds) != 1 or not kinds <= set(SCALAR_TYPES):
        return 'mixed'
    return kinds.pop() + '_array'


def is_set(value: Any) -> bool:
    """Whether a parameter value counts as given (not None, not an empty array)."""
    return value_type(value) is not None


def type_error(p: Param, value: Any) -> Optional[str]:
    """Return rclpy's message refusing ``value`` for ``p`` when its type differs, else None.

    rclpy declares every parameter with the type of its default and refuses any other
    type with ``InvalidParameterTypeException``: an integer is not a double (``10`` for
    ``10.0``), a double not an integer, a bool neither, and an array must hold elements of
    the declared type. The message is rclpy's, word for word, so an offline reader refuses
    a value exactly as the node does. A value that is not set is no error.
    """
    got = value_type(value)
    want = param_type(p.default)
    if got is None or got == want:
        return None
    if got == 'mixed':
        return (f'{p.name}: {value!r}: the elements of an array must all have one type, '
                'of bool, integer, double or string (rcl refuses the file)')
    shown = _as_list(value)
    return (f"Trying to set parameter '{p.name}' to '{value if shown is None else shown}' of "
            f"type '{got.upper()}', expecting type '{want.upper()}': {p.name}")


def resolve(schema: Sequence[Param], values: Mapping[str, Any],
            node: str = 'node') -> Dict[str, Any]:
    """Check types as rclpy does and fill defaults, as the node's declared parameters read.

    Raises ConfigError for an undeclared parameter, a value of the wrong type (rclpy's
    own message, see :func:`type_error`; checked for every parameter first, as rclpy
    declares them all before the node reads one) and a missing required parameter. A value
    that is not set (None, or ``[]``: rcl reads an empty array as not set) takes the
    default, or is missing when the parameter is required.
    """
    known = {p.name for p in schema}
    unknown = sorted(set(values) - known - {'use_sim_time'})
    if unknown:
        raise ConfigError(f'{node}: {unknown} are not parameters of this node (known: '
                          f'{sorted(known)})')
    for p in schema:
        problem = type_error(p, values.get(p.name))
        if problem:
            raise ConfigError(problem)
    out: Dict[str, Any] = {}
    for p in schema:
        value = values.get(p.name)
        if is_set(value):
            out[p.name] = value
        elif p.required:
            raise ConfigError(f'parameter {p.name!r} is required: {p.description}')
        else:
            out[p.name] = None if isinstance(p.default, Kind) else p.default
    return out


def check_finite(schema: Sequence[Param], values: Mapping[str, Any]) -> None:
    """Raise ConfigError for a double parameter (not an array) that is inf or nan.

    rclpy accepts ``.inf`` and ``.nan``; no scalar parameter of these nodes means anything
    with them (arrays may: ``-.inf`` is the lower limit of an endless joint).
    """
    for p in schema:
        value = values.get(p.name)
        if param_type(p.default) == 'double' and isinstance(value, float) \
                and not math.isfinite(value):
            raise ConfigError(f'{p.name}: must be a finite number, got {value}')


POLICY_PARAMS = (
    Param('model_path', Kind('string'),
          'Path of the ONNX model carrying a wam_runtime.contract metadata entry.'),
    Param('model_sha256', '',
          'SHA-256 (64 hex digits) the model file must have; empty = not checked.'),
    Param('providers', ['CPUExecutionProvider'],
          'ONNX Runtime execution providers in priority order (for example '
          'TensorrtExecutionProvider, CUDAExecutionProvider, CPUExecutionProvider); '
          'unavailable ones are skipped and the fallback is logged once with the reason.'),
    Param('cuda_device_id', 0, 'CUDA device for the CUDA and TensorRT providers.'),
    Param('tensorrt_fp16', False, 'Let TensorRT build float16 engines.'),
    Param('tensorrt_engine_cache_path', '',
          'Folder for cached TensorRT engines (empty = no cache; engines are rebuilt at '
          'every start).'),
    Param('intra_op_num_threads', 0, 'ONNX Runtime intra-op threads (0 = library '
                                     'default).'),
    Param('inter_op_num_threads', 0, 'ONNX Runtime inter-op threads (0 = library '
                                     'default).'),
    Param('io_binding', True,
          'Bind inputs and outputs in place (IO binding) where the provider allows it.'),
    Param('inference_rate_hz', 10.0, 'Maximum inferences per second (Hz).'),
    Param('max_observation_age_s', 0.5,
          'An observation whose oldest part is older than this (s) is not used.'),
    Param('max_observation_skew_s', 0.1,
          'An observation whose frames and joint state are further apart than this (s) '
          'is not used.'),
    Param('compressed_cameras', Kind('string_array'),
          'Contract cameras read as sensor_msgs/CompressedImage (jpeg, png, '
          'compressedDepth) from camera/<name>/image_raw/compressed.', optional=True),
    Param('preprocess_threads', 0,
          'Threads that decode and preprocess the cameras of one observation (0 = one '
          'per camera, at most one per CPU; 1 = serial).'),
    Param('preprocess_on', 'auto',
          "When a frame becomes its model tensor: 'arrival' (in the subscription callback, "
          "every frame: the least latency, the most CPU), 'inference' (only the frames an "
          "inference uses, cameras in parallel: the least CPU) or 'auto' (raw Image cameras "
          'on arrival, compressed ones, whose decoding costs far more, at inference).'),
    Param('fast_jpeg_decode', False,
          'Decode JPEG frames at 1/2, 1/4 or 1/8 size when the model input is at most '
          'that large (DCT scaling: faster, within JPEG tolerance of a full decode).'),
    Param('surprise_metric', 'mse',
          f'World-model prediction error on policy/surprise: one of {list(METRICS)}.'),
    Param('joint_names', Kind('string_array'),
          "The robot's joints; when set, a model whose action joints differ is refused at "
          'startup.', optional=True),
    Param('extra_joint_state_topics', Kind('string_array'),
          'JointState topics merged per joint with joint_states (for example a gripper '
          "driver's gripper/joint_states); every publisher may send any subset of joints.",
          optional=True),
    Param('inference_trigger', 'rate',
          "'rate': infer at inference_rate_hz; 'remaining': also start the next inference "
          'as soon as the executing chunk (safety/execution feedback) has less than '
          'trigger_remaining_s left, so that chunks follow each other without a gap.'),
    Param('trigger_remaining_s', 0.0, 'Remaining horizon that triggers inference in '
                                      "'remaining' mode (s; 0 = the worst of the last 16 "
                                      'measured delays + one step).'),
    Param('diagnostics_period_s', 1.0, 'Period of /diagnostics messages (s).'),
)


SAFETY_PARAMS = (
    Param('joint_names', Kind('string_array'),
          'Joints in command order (the order of the downstream controller).'),
    Param('urdf_path', Kind('string'),
          'URDF of the robot: position and velocity limits from <limit>/<safety_controller>, '
          'kinematics for the workspace. Config limits may only tighten it.', optional=True),
    Param('lower_limits_rad', Kind('double_array'),
          'Lower position limit per revolute or continuous joint, in joint_names order '
          '(rad; -.inf for an endless continuous joint). Prismatic joints: lower_limits_m. '
          'Without urdf_path every joint counts as revolute.', optional=True),
    Param('upper_limits_rad', Kind('double_array'),
          'Upper position limit per revolute or continuous joint (rad; .inf for an endless '
          'continuous joint).', optional=True),
    Param('max_velocity_rad_s', Kind('double_array'),
          'Maximum speed per revolute or continuous joint (rad/s).', optional=True),
    Param('max_acceleration_rad_s2', Kind('double_array'),
          'Maximum acceleration per revolute or continuous joint (rad/s^2); required with '
          'urdf_path.', optional=True),
    Param('max_jerk_rad_s3', Kind('double_array'),
          'Maximum jerk per revolute or continuous joint (rad/s^3).', optional=True),
    Param('lower_limits_m', Kind('double_array'),
          'Lower position limit per prismatic joint, in joint_names order (m; needs '
          'urdf_path).', optional=True),
    Param('upper_limits_m', Kind('double_array'), 'Upper position limit per prismatic '
                                                  'joint (m).', optional=True),
    Param('max_velocity_m_s', Kind('double_array'), 'Maximum speed per prismatic joint '
                                                    '(m/s).', optional=True),
    Param('max_acceleration_m_s2', Kind('double_array'),
          'Maximum acceleration per prismatic joint (m/s^2); required with urdf_path when '
          'joint_names has prismatic joints.', optional=True),
    Param('max_jerk_m_s3', Kind('double_array'), 'Maximum jerk per prismatic joint (m/s^3).',
          optional=True),
    Param('position_margin_rad', 0.0, 'Commands stay this far inside the limits of every '
                                      'revolute or continuous joint (rad).'),
    Param('position_margin_m', 0.0, 'Commands stay this far inside the limits of every '
                                    'prismatic joint (m).'),
    Param('position_margins_rad', Kind('double_array'),
          'Per revolute or continuous joint, in joint_names order: margin overriding '
          'position_margin_rad (rad).', optional=True),
    Param('position_margins_m', Kind('double_array'),
          'Per prismatic joint, in joint_names order: margin overriding position_margin_m '
          '(m).', optional=True),
    Param('held_joint_names', Kind('string_array'),
          'URDF joints the gate does not command (gripper, second arm) with a configured '
          'position for the workspace kinematics; the others are held at 0 clipped into '
          'their limits. A measured position replaces it. Mimic joints follow their leader.',
          optional=True),
    Param('held_joint_positions', Kind('double_array'),
          'Position of each held_joint_names entry (joint units: rad, or m for prismatic '
          'joints).', optional=True),
    Param('scaling', 'uniform', "How a command outside the limits is reduced: 'uniform' "
                                "(keeps the direction of motion) or 'per_joint'."),
    Param('control_rate_hz', 100.0, 'Command publication rate (Hz).'),
    Param('command_timeout_s', 0.5,
          'Still no new chunk this long after the executing chunk ran out: '
          'command_timeout stop (s).'),
    Param('state_timeout_s', 0.5, 'A commanded joint not heard on joint_states for this '
                                  'long (each joint separately, whichever publisher sends '
                                  'it): stop (s).'),
    Param('extra_joint_state_topics', Kind('string_array'),
          'JointState topics merged per joint with joint_states (for example a gripper '
          "driver's gripper/joint_states); every publisher may send any subset of joints.",
          optional=True),
    Param('max_chunk_age_s', 1.0, 'Chunks stamped longer ago than this are rejected, and a '
                                  'step due longer ago than this is never executed (s).'),
    Param('max_chunk_points', 1000, 'Chunks with more points are rejected before they are '
                                    'decoded (chunk_too_large).'),
    Param('max_chunk_duration_s', 10.0, 'Chunks whose last point is due later than this '
                                        'after their stamp are rejected (s).'),
    Param('max_start_distance_rad', 0.0, 'Reject a chunk whose first point is farther '
                                         'than this from the measured state (rad; 0 = off; '
                                         'revolute and continuous joints).'),
    Param('max_start_distance_m', 0.0, 'The same for prismatic joints (m; 0 = off).'),
    Param('chunk_limit_policy', 'reject', 'Chunk points outside limits or workspace: '
                                          "'reject' the chunk or 'clamp' it."),
    Param('workspace_frames', Kind('string_array'), 'URDF frames kept inside the workspace.',
          optional=True),
    Param('workspace_box_m', Kind('double_array'),
          'Allowed box [xmin ymin zmin xmax ymax zmax] in the URDF base frame (m).',
          optional=True),
    Param('keep_out_boxes_m', Kind('double_array'), 'Keep-out boxes, six numbers each (m).',
          optional=True),
    Param('keep_out_spheres_m', Kind('double_array'), 'Keep-out spheres [x y z r] each (m).',
          optional=True),
    Param('ee_frame', '', 'End-effector frame for max_ee_speed_m_s.'),
    Param('max_ee_speed_m_s', 0.0, 'Maximum end-effector speed (m/s; 0 = off).'),
    Param('standstill_tolerance_rad', 0.0, 'While holding, a measured drift beyond this '
                                           'latches a fault (rad; 0 = off; revolute and '
                                           'continuous joints).'),
    Param('standstill_tolerance_m', 0.0, 'The same for prismatic joints (m; 0 = off).'),
    Param('standstill_settle_s', 0.5, 'Time allowed to settle before standstill '
                                      'monitoring starts (s).'),
    Param('max_following_error_rad', 0.0,
          'While a joint is commanded to move: measured minus the command issued '
          'following_error_delay_s earlier beyond this for following_error_timeout_s '
          'latches a following_error fault (rad; 0 = off; revolute and continuous '
          'joints). Off by default: measure the robot first (doc/safety.md).'),
    Param('max_following_error_m', 0.0, 'The same for prismatic joints (m; 0 = off).'),
    Param('following_error_timeout_s', 0.1, 'How long the following error must stay '
                                            'beyond the tolerance to latch (s).'),
    Param('following_error_delay_s', 0.03,
          "The command's own delay to the measured position: transport, the downstream "
          'controller, the robot, joint_states back (s, at most 1).'),
    Param('escalation_max_interventions', 0, 'More interventions than this within '
                                             'escalation_window_s latch a stop (0 = off).'),
    Param('escalation_window_s', 1.0, 'Window for escalation_max_interventions (s).'),
    Param('estop_timeout_s', 0.0, 'Heartbeat mode: an e-stop publisher silent for this '
                                  'long counts as pressed (s; 0 = off).'),
    Param('blend', 'latest', "How a new chunk joins the executing one: 'latest', "
                             "'temporal_ensemble' or 'crossfade'."),
    Param('interpolation', 'cubic', "Sampling between chunk steps: 'cubic' (C1) or "
                                    "'linear'."),
    Param('ensemble_decay', 0.1, 'temporal_ensemble weight exp(-m * i), i = 0 for the '
                                 'oldest chunk (m, 1/chunk).'),
    Param('crossfade_s', 0.1, 'crossfade duration (s).'),
    Param('min_playback_speed', 0.5, 'When inference falls behind, playback slows down '
                                     'to this fraction of real time.'),
    Param('max_playback_speed', 1.25,
          'A playback lag the chunks no longer need (they arrive in time again) is worked '
          'off at up to this multiple of real time, in (1, 2].'),
    Param('surprise_slow_threshold', 0.0, 'World-model surprise (policy/surprise) above '
                                          'which playback slows down (0 = off).'),
    Param('surprise_stop_threshold', 0.0, 'Surprise at or above which the controller '
                                          'makes a controlled stop.'),
    Param('surprise_min_scale', 0.25, 'Playback speed just below the stop threshold.'),
    Param('surprise_recovery_s', 0.5, 'Surprise must stay low this long before speed '
                                      'recovers (s).'),
    Param('surprise_timeout_s', 0.0, 'With surprise monitoring on: no surprise message '
                                     'for this long stops (s; 0 = off).'),
    Param('output_mode', 'forward_command', "'forward_command' (Float64MultiArray on "
                                            "commands) or 'joint_trajectory' (single "
                                            'point on joint_trajectory).'),
    Param('autostart', False, 'Configure and activate at startup (activation opens '
                              'the gate).', applied=STARTUP),
    Param('incident_dir', '', 'Write an MCAP rosbag2 of the last incident_window_s on '
                              'every stop, rejection burst and e-stop here ("" = off).'),
    Param('incident_window_s', 10.0, 'Seconds of inputs and outputs in an incident bag.'),
    Param('incident_min_interval_s', 2.0,
          'At most one incident bag per this many seconds; an incident sooner after the '
          'previous bag is written once the interval has passed, never dropped (s).'),
    Param('incident_max_total_mb', 1024.0,
          'Keep incident_dir under this size: the oldest incident bags are deleted after '
          'each new one (MB; 0 = no limit).'),
    Param('diagnostics_period_s', 1.0, 'Period of /diagnostics messages (s).'),
)
