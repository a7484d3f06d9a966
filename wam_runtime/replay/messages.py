"""The replay's output messages, built and serialized with the rosbags type store.

The same messages the nodes publish (``core.interfaces`` layouts, ``core.stamps`` stamps),
without rclpy: chunks and single-point commands (JointTrajectory), ``safety/execution``
and ``policy/inference_inputs`` (Float64MultiArray), surprise, and ``safety/events``.
"""

from typing import Sequence

import numpy as np

from wam_runtime.bag import typestore
from wam_runtime.core.interfaces import Event, FLOAT32, FLOAT64_ARRAY, \
    inference_inputs_segments, InferenceInputs, prefix_joint_count, STATUS, TRAJECTORY
from wam_runtime.core.stamps import split_ns


class Messages:
    """Serialize the replay's outputs to CDR bytes."""

    def __init__(self) -> None:
        self.store = typestore()
        self._t = self.store.types

    def _header(self, stamp_ns: int, frame_id: str = ''):
        sec, nanosec = split_ns(stamp_ns)
        return self._t['std_msgs/msg/Header'](
            stamp=self._t['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec),
            frame_id=frame_id)

    def _duration(self, ns: int):
        sec, nanosec = split_ns(ns)
        return self._t['builtin_interfaces/msg/Duration'](sec=sec, nanosec=nanosec)

    def _ser(self, msg, msgtype: str) -> bytes:
        return bytes(self.store.serialize_cdr(msg, msgtype))

    def trajectory(self, joint_names: Sequence[str], stamp_ns: int,
                   times_ns: Sequence[int], positions: np.ndarray) -> bytes:
        """Return a JointTrajectory (a chunk, or a single-point command)."""
        t = self._t
        empty = np.zeros(0, np.float64)
        points = [t['trajectory_msgs/msg/JointTrajectoryPoint'](
            positions=np.asarray(row, np.float64), velocities=empty, accelerations=empty,
            effort=empty, time_from_start=self._duration(int(tn)))
            for tn, row in zip(times_ns, np.atleast_2d(positions))]
        msg = t[TRAJECTORY](header=self._header(stamp_ns), joint_names=list(joint_names),
                            points=points)
        return self._ser(msg, TRAJECTORY)

    def float64_array(self, values: Sequence[float], labels: Sequence[str] = (),
                      sizes: Sequence[int] = (), strides: Sequence[int] = ()) -> bytes:
        """Return a Float64MultiArray (``layout.dim`` labels as the nodes publish them)."""
        t = self._t
        sizes = list(sizes) or [1] * len(labels)
        strides = list(strides) or [1] * len(labels)
        dims = [t['std_msgs/msg/MultiArrayDimension'](label=lab, size=size, stride=stride)
                for lab, size, stride in zip(labels, sizes, strides)]
        msg = t[FLOAT64_ARRAY](layout=t['std_msgs/msg/MultiArrayLayout'](
            dim=dims, data_offset=0), data=np.asarray(values, np.float64))
        return self._ser(msg, FLOAT64_ARRAY)

    def inference_inputs(self, inputs: InferenceInputs) -> bytes:
        """Return ``policy/inference_inputs`` as policy_node publishes it."""
        segs = inference_inputs_segments(inputs)
        joints = prefix_joint_count(inputs)
        return self.float64_array(
            [v for _, values in segs for v in values], [label for label, _ in segs],
            [len(values) for _, values in segs],
            [joints if label == 'prefix_targets' else 1 for label, _ in segs])

    def float32(self, value: float) -> bytes:
        """Return a std_msgs/Float32."""
        return self._ser(self._t[FLOAT32](data=float(value)), FLOAT32)

    def event(self, event: Event, hardware_id: str) -> bytes:
        """Return the DiagnosticStatus the safety controller publishes on safety/events."""
        t = self._t
        kv = t['diagnostic_msgs/msg/KeyValue']
        msg = t[STATUS](level=event.level, name=event.name, hardware_id=hardware_id,
                        message=event.message,
                        values=[kv(key=k, value=v) for k, v in event.values])
        return self._ser(msg, STATUS)
