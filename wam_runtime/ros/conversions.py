"""Message <-> numpy conversions. No copies of image data on the way in."""

import array
import sys
from typing import Dict, Mapping, Optional, Sequence, Tuple

from builtin_interfaces.msg import Duration, Time
import cv2
import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image, JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from wam_runtime.core.image import CompressedFrame, frame_view, PIXEL_FORMATS, RawFrame
from wam_runtime.core.joint_states import JointStateMerge
from wam_runtime.core.stamps import s_to_ns, split_ns
from wam_runtime.ros.common import stamp_to_ns


def s_to_time(t: float) -> Time:
    """Convert float seconds to builtin_interfaces/Time."""
    sec, nanosec = split_ns(s_to_ns(t))
    return Time(sec=sec, nanosec=nanosec)


def s_to_duration(t: float) -> Duration:
    """Convert float seconds to builtin_interfaces/Duration."""
    sec, nanosec = split_ns(s_to_ns(t))
    return Duration(sec=sec, nanosec=nanosec)


def duration_to_s(d: Duration) -> float:
    """Convert builtin_interfaces/Duration to float seconds."""
    return d.sec + d.nanosec * 1e-9


def image_view(msg: Image) -> np.ndarray:
    """Return a zero-copy (H, W, C) view of an Image message; raise FrameError."""
    return frame_view(msg.data, msg.height, msg.width, msg.encoding, msg.step,
                      bool(msg.is_bigendian))


def raw_frame(msg: Image) -> RawFrame:
    """Return the message's pixels as a RawFrame (references ``msg.data``, no copy)."""
    return RawFrame(msg.data, msg.height, msg.width, msg.encoding, msg.step,
                    bool(msg.is_bigendian))


def compressed_frame(msg: CompressedImage) -> CompressedFrame:
    """Return a CompressedImage as a CompressedFrame (references ``msg.data``, no copy)."""
    return CompressedFrame(msg.data, msg.format)


def image_msg(frame: np.ndarray, encoding: str, stamp: Time, frame_id: str = '') -> Image:
    """Build an Image from an (H, W[, C]) array (one copy, never element-wise).

    uint16 and float32 arrays keep their byte order (``is_bigendian`` says which).
    """
    h, w = frame.shape[:2]
    channels = 1 if frame.ndim == 2 else frame.shape[2]
    step = w * channels * frame.dtype.itemsize
    order = frame.dtype.byteorder
    big = int(order == '>' or (order == '=' and sys.byteorder == 'big'))
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=big, step=step)
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.data = array.array('B', np.ascontiguousarray(frame).tobytes())
    return msg


def compressed_image_msg(frame: np.ndarray, encoding: str, stamp: Time, fmt: str = 'jpeg',
                         quality: int = 90, frame_id: str = '') -> CompressedImage:
    """Compress a frame the way image_transport's compressed plugin does (tests, tools).

    Colour is stored in OpenCV's BGR order; ``format`` reads like ``rgb8; jpeg compressed
    bgr8``. ``fmt`` is 'jpeg' or 'png' (png keeps 16-bit depth).
    """
    order = PIXEL_FORMATS[encoding][2]
    img = np.ascontiguousarray(frame)
    if order in ('RGB', 'RGBA'):
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR if order == 'RGB' else cv2.COLOR_RGBA2BGRA)
    stored = {'RGB': 'bgr8', 'BGR': 'bgr8', 'RGBA': 'bgra8', 'BGRA': 'bgra8', 'L': 'mono8',
              'D': 'mono16'}[order]
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == 'jpeg' else []
    ok, data = cv2.imencode('.jpg' if fmt == 'jpeg' else '.png', img, params)
    if not ok:
        raise ValueError(f'cannot encode {encoding} as {fmt}')
    msg = CompressedImage(format=f'{encoding}; {fmt} compressed {stored}')
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.data = array.array('B', data.tobytes())
    return msg


def merge_joint_state(merge: JointStateMerge, msg: JointState, now_s: float,
                      source: str = '') -> int:
    """Feed one JointState into a per-joint merge; raise JointStateError on a bad message."""
    return merge.update(msg.name, msg.position, now_s, stamp_to_ns(msg.header.stamp), source)


class JointStateSources:
    """Identifies the publisher of each joint_states message and names it for reports.

    ``key`` is cheap (topic and publisher GID, for every message); ``describe`` names the
    publishing node from the ROS graph, once per publisher (a publisher whose node the
    graph does not know yet is named by its GID and looked up again next time).
    """

    def __init__(self, node: Node) -> None:
        """Look publishers up in ``node``'s view of the ROS graph."""
        self.node = node
        self._gids: Dict[str, Tuple[str, bytes]] = {}
        self._names: Dict[str, str] = {}

    def key(self, topic: str, info: Optional[Mapping]) -> str:
        """Return a stable id of the publisher that sent ``info`` on ``topic``."""
        gid = (info or {}).get('publisher_gid') or {}
        data = bytes(gid.get('data') or b'')
        source = f'{topic}#{data.hex()}'
        if source not in self._gids and len(self._gids) < 256:
            self._gids[source] = (topic, data)
        return source

    def describe(self, source: str) -> str:
        """Return ``'<node> on <topic>'`` for a ``key`` (the GID if the node is unknown)."""
        name = self._names.get(source)
        if name is not None:
            return name
        topic, data = self._gids.get(source, (source.partition('#')[0], b''))
        resolved = self.node.resolve_topic_name(topic)
        try:
            for pub in self.node.get_publishers_info_by_topic(resolved):
                theirs = bytes(pub.endpoint_gid)
                n = min(len(theirs), len(data))
                if n and theirs[:n] == data[:n] and '_UNKNOWN_' not in pub.node_name:
                    name = f'{pub.node_namespace.rstrip("/")}/{pub.node_name} on {resolved}'
                    self._names[source] = name
                    return name
        except Exception:  # noqa: B902 - a failed graph query only loses the name
            pass
        return f'publisher {data[:8].hex() or "?"} on {resolved}'


def trajectory_msg(joint_names: Sequence[str], stamp: Time, dt_s: float,
                   positions: np.ndarray) -> JointTrajectory:
    """Build an action chunk: point k at ``(k + 1) * dt_s`` after the observation stamp."""
    msg = JointTrajectory()
    msg.header.stamp = stamp
    msg.joint_names = list(joint_names)
    pts = []
    for k, row in enumerate(np.asarray(positions, dtype=np.float64)):
        pts.append(JointTrajectoryPoint(positions=row.tolist(),
                                        time_from_start=s_to_duration((k + 1) * dt_s)))
    msg.points = pts
    return msg


def trajectory_arrays(msg: JointTrajectory):
    """Return (joint_names, time_from_start_s, positions) of a JointTrajectory."""
    times = [duration_to_s(p.time_from_start) for p in msg.points]
    positions = [list(p.positions) for p in msg.points]
    return list(msg.joint_names), times, positions


def float_array(values: np.ndarray) -> array.array:
    """Return a numpy vector as array('d') for Float64MultiArray.data (fast path)."""
    return array.array('d', np.asarray(values, dtype=np.float64).tobytes())
