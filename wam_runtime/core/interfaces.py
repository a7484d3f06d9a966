"""The package's ROS interfaces as data: topics, their types, the feedback layouts, events.

Every node, the recorder, the launch checks and the offline replay take topic names and
message types from here; the layouts of ``safety/execution`` and ``policy/inference_inputs``
(Float64MultiArray segments named by ``layout.dim`` labels) and the fields of a
``safety/events`` DiagnosticStatus are built and read only here. Names are relative (they
follow the node's namespace and remaps) except ``/diagnostics``.
"""

from dataclasses import dataclass
import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from wam_runtime.core.stamps import from_float_pair, split_ns, stamp_text

# Message types (ROS interface names, as rosbag2 stores them).
IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED_IMAGE = 'sensor_msgs/msg/CompressedImage'
JOINT_STATE = 'sensor_msgs/msg/JointState'
TRAJECTORY = 'trajectory_msgs/msg/JointTrajectory'
FLOAT64_ARRAY = 'std_msgs/msg/Float64MultiArray'
FLOAT32 = 'std_msgs/msg/Float32'
BOOL = 'std_msgs/msg/Bool'
STRING = 'std_msgs/msg/String'
STATUS = 'diagnostic_msgs/msg/DiagnosticStatus'
DIAGNOSTIC_ARRAY = 'diagnostic_msgs/msg/DiagnosticArray'
CLOCK = 'rosgraph_msgs/msg/Clock'

# Topics.
JOINT_STATES = 'joint_states'
ACTION_CHUNK = 'policy/action_chunk'
SURPRISE = 'policy/surprise'
INFERENCE_INPUTS = 'policy/inference_inputs'
EXECUTION = 'safety/execution'
EVENTS = 'safety/events'
ESTOP = 'safety/estop'
COMMANDS = 'commands'
JOINT_TRAJECTORY = 'joint_trajectory'
DIAGNOSTICS = '/diagnostics'
EPISODE_OUTCOME = 'sim/episode_outcome'
SIM_CAMERA = 'scene'

# QoS classes: 'sensor' is qos_profile_sensor_data, 'reliable' a reliable keep-last queue.
SENSOR, RELIABLE = 'sensor', 'reliable'
# The safety controller's command output per output_mode.
SAFETY_OUTPUTS = {'forward_command': (COMMANDS, FLOAT64_ARRAY),
                  'joint_trajectory': (JOINT_TRAJECTORY, TRAJECTORY)}


def camera_topic(camera: str, compressed: bool = False) -> str:
    """Return the topic of a camera of the model contract."""
    return f'camera/{camera}/image_raw' + ('/compressed' if compressed else '')


@dataclass(frozen=True)
class Endpoint:
    """One topic a node publishes or subscribes."""

    topic: str
    msgtype: str
    qos: str = RELIABLE
    depth: int = 10


# Topics of the package's nodes besides the cameras (policy_node's come from the contract,
# sim_node's is SIM_CAMERA) and the safety controller's command output (SAFETY_OUTPUTS).
NODE_TOPICS: Dict[str, Dict[str, Tuple[Endpoint, ...]]] = {
    'policy_node': {
        'sub': (Endpoint(JOINT_STATES, JOINT_STATE, SENSOR), Endpoint(EXECUTION, FLOAT64_ARRAY)),
        'pub': (Endpoint(ACTION_CHUNK, TRAJECTORY), Endpoint(SURPRISE, FLOAT32),
                Endpoint(INFERENCE_INPUTS, FLOAT64_ARRAY),
                Endpoint(DIAGNOSTICS, DIAGNOSTIC_ARRAY))},
    'safety_controller': {
        'sub': (Endpoint(ACTION_CHUNK, TRAJECTORY), Endpoint(JOINT_STATES, JOINT_STATE, SENSOR),
                Endpoint(ESTOP, BOOL), Endpoint(SURPRISE, FLOAT32)),
        'pub': (Endpoint(EVENTS, STATUS, depth=100), Endpoint(EXECUTION, FLOAT64_ARRAY),
                Endpoint(DIAGNOSTICS, DIAGNOSTIC_ARRAY))},
    'sim_node': {
        'sub': (Endpoint(COMMANDS, FLOAT64_ARRAY),),
        'pub': (Endpoint(camera_topic(SIM_CAMERA), IMAGE, SENSOR),
                Endpoint(JOINT_STATES, JOINT_STATE, SENSOR),
                Endpoint(EPISODE_OUTCOME, STRING))},
    'synthetic_camera': {
        'sub': (Endpoint(COMMANDS, FLOAT64_ARRAY),),
        'pub': (Endpoint(JOINT_STATES, JOINT_STATE, SENSOR),)},
}

# What an episode recording keeps besides the cameras (recorder_node): every input and
# output of the policy and safety loops, so that replay can reproduce them.
RECORDED: Tuple[Endpoint, ...] = (
    Endpoint(JOINT_STATES, JOINT_STATE, SENSOR, 200),
    Endpoint(ACTION_CHUNK, TRAJECTORY, RELIABLE, 100),
    Endpoint(INFERENCE_INPUTS, FLOAT64_ARRAY, RELIABLE, 100),
    Endpoint(SURPRISE, FLOAT32, RELIABLE, 100),
    Endpoint(COMMANDS, FLOAT64_ARRAY, RELIABLE, 500),
    Endpoint(JOINT_TRAJECTORY, TRAJECTORY, RELIABLE, 500),
    Endpoint(EVENTS, STATUS, RELIABLE, 500),
    Endpoint(EXECUTION, FLOAT64_ARRAY, RELIABLE, 500),
    Endpoint(ESTOP, BOOL, RELIABLE, 100),
)

# ---------------------------------------------------------------- safety/execution
# One per control tick while a chunk executes: the feedback policy_node uses to start the
# next inference before the current chunk runs out, and (on the controller's clock) the
# time of the tick and the time the chunk was adopted, that replay ticks and adopts at.
# Stamps travel as their two integer fields (exact in float64), never as float seconds;
# an unknown adoption time is NaN.
EXECUTION_LABELS = ('chunk_stamp_sec', 'chunk_stamp_nanosec', 'executed_step', 'remaining_s',
                    'playback_speed', 'lag_s', 'tick_sec', 'tick_nanosec', 'adopted_sec',
                    'adopted_nanosec')


def execution_data(chunk_stamp_ns: int, executed_step: int, remaining_s: float,
                   playback_speed: float, lag_s: float, tick_ns: int,
                   adopted_ns: Optional[int] = None) -> List[float]:
    """Return the ``safety/execution`` data in the order of :data:`EXECUTION_LABELS`."""
    sec, nanosec = split_ns(chunk_stamp_ns)
    tick_sec, tick_nanosec = split_ns(tick_ns)
    adopted = [float(v) for v in split_ns(adopted_ns)] if adopted_ns is not None \
        else [math.nan, math.nan]
    return [float(sec), float(nanosec), float(executed_step), float(remaining_s),
            float(playback_speed), float(lag_s), float(tick_sec), float(tick_nanosec)] + adopted


def execution_fields(labels: Sequence[str], data: Sequence[float]) -> Optional[Mapping]:
    """Read ``safety/execution`` (Float64MultiArray) by its ``layout.dim`` labels.

    Returns ``{'chunk_stamp_ns': int, 'remaining_s': float, 'playback_speed': float,
    'tick_ns': int or None, 'adopted_ns': int or None, ...}`` or None when the stamp or the
    remaining horizon is missing or not finite (the times are None where unknown or in
    feedback from before they were sent). Without labels the fields are taken in the order
    of :data:`EXECUTION_LABELS`.
    """
    names = list(labels) if labels else list(EXECUTION_LABELS)
    if len(names) > len(data):
        names = names[:len(data)]
    values = dict(zip(names, (float(v) for v in data)))
    sec, nanosec = values.get('chunk_stamp_sec'), values.get('chunk_stamp_nanosec')
    remaining = values.get('remaining_s')
    if sec is None or nanosec is None or remaining is None or not math.isfinite(remaining):
        return None
    stamp_ns = from_float_pair(sec, nanosec)
    if stamp_ns is None:
        return None
    out = dict(values)
    out['chunk_stamp_ns'] = stamp_ns
    for key in ('tick', 'adopted'):
        pair = values.get(f'{key}_sec'), values.get(f'{key}_nanosec')
        out[f'{key}_ns'] = None if None in pair else from_float_pair(*pair)
    speed = values.get('playback_speed', 1.0)
    out['playback_speed'] = speed if math.isfinite(speed) else 1.0
    return out


# ---------------------------------------------------------------- policy/inference_inputs
@dataclass
class InferenceInputs:
    """What one inference ran on, exactly: replay with ``--schedule recorded`` reruns it.

    ``frame_stamps_ns`` names the frame of every camera by its header stamp; ``state`` is
    the joint state in the contract's state order as the model got it (float64); the
    prefix is the executing chunk's targets (None: none was known) and the delay in steps.
    """

    chunk_stamp_ns: int
    frame_stamps_ns: Dict[str, int]
    state_stamp_ns: int
    state: np.ndarray
    prefix_targets: Optional[np.ndarray] = None
    prefix_delay_steps: int = 0


def _pair(stamp_ns: int) -> List[float]:
    sec, nanosec = split_ns(stamp_ns)
    return [float(sec), float(nanosec)]


def inference_inputs_segments(rec: InferenceInputs) -> List[Tuple[str, List[float]]]:
    """Return ``policy/inference_inputs`` as ``(label, values)`` segments, in order.

    Each segment becomes one ``layout.dim`` (label, size = its length) and its values are
    appended to ``data``: stamps as (sec, nanosec) pairs, the state, the prefix delay and
    the prefix targets row by row (the ``prefix_targets`` dim's stride is the joint count).
    """
    segs = [('chunk_stamp', _pair(rec.chunk_stamp_ns))]
    segs += [(f'frame_stamp:{cam}', _pair(ns)) for cam, ns in rec.frame_stamps_ns.items()]
    segs.append(('state_stamp', _pair(rec.state_stamp_ns)))
    segs.append(('state', [float(v) for v in np.asarray(rec.state, np.float64)]))
    segs.append(('prefix_delay_steps', [float(rec.prefix_delay_steps)]))
    targets = [] if rec.prefix_targets is None else \
        [float(v) for v in np.asarray(rec.prefix_targets, np.float64).ravel()]
    segs.append(('prefix_targets', targets))
    return segs


def prefix_joint_count(rec: InferenceInputs) -> int:
    """Return the stride of the ``prefix_targets`` segment (joints per row; 0 for none)."""
    return 0 if rec.prefix_targets is None else int(np.asarray(rec.prefix_targets).shape[1])


def parse_inference_inputs(dims: Sequence[Tuple[str, int, int]],
                           data: Sequence[float]) -> Optional[InferenceInputs]:
    """Read ``policy/inference_inputs`` from its ``(label, size, stride)`` dims and data.

    Returns None when the message is not a complete, well-formed record.
    """
    values = np.asarray(data, np.float64)
    if sum(size for _, size, _ in dims) != len(values):
        return None
    segs: Dict[str, np.ndarray] = {}
    strides: Dict[str, int] = {}
    at = 0
    for label, size, stride in dims:
        segs[label] = values[at:at + size]
        strides[label] = stride
        at += size

    def stamp(label: str) -> Optional[int]:
        seg = segs.get(label)
        return None if seg is None or len(seg) != 2 else from_float_pair(seg[0], seg[1])

    chunk, state_stamp = stamp('chunk_stamp'), stamp('state_stamp')
    frames = {label.split(':', 1)[1]: stamp(label) for label in segs
              if label.startswith('frame_stamp:')}
    state = segs.get('state')
    delay = segs.get('prefix_delay_steps')
    targets = segs.get('prefix_targets')
    if chunk is None or state_stamp is None or state is None or delay is None \
            or len(delay) != 1 or targets is None or any(v is None for v in frames.values()):
        return None
    prefix = None
    if len(targets):
        joints = strides.get('prefix_targets', 0)
        if joints <= 0 or len(targets) % joints:
            return None
        prefix = targets.reshape(-1, joints).copy()
    return InferenceInputs(chunk, frames, state_stamp, state.copy(), prefix, int(delay[0]))


# ---------------------------------------------------------------- safety/events
@dataclass(frozen=True)
class Event:
    """One ``safety/events`` DiagnosticStatus, as plain data (level 1 warn, 2 error)."""

    level: int
    name: str
    message: str
    values: Tuple[Tuple[str, str], ...]


def safety_event(reason: str, joint: str, requested: float, allowed: float,
                 chunk_stamp_ns: Optional[int], latched: bool, message: str = '') -> Event:
    """Build the event the safety controller publishes for one intervention or rejection."""
    return Event(
        level=2 if latched else 1, name=reason,
        message=message or f'{joint or "all"}: requested {requested:.6g}, allowed {allowed:.6g}',
        values=(('reason', reason), ('joint', joint), ('requested', f'{requested:.9g}'),
                ('allowed', f'{allowed:.9g}'), ('chunk_stamp_s', stamp_text(chunk_stamp_ns))))
