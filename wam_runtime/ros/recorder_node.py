"""recorder_node: record episodes to rosbag2 (MCAP) for fine-tuning and replay.

Subscribes, with raw subscriptions (the CDR bytes exactly as on the wire), to what
``core.interfaces.RECORDED`` lists: the inputs (``joint_states``; the cameras,
``camera/<name>/image_raw`` or ``.../compressed`` for every camera in ``camera_names``), the
policy (``policy/action_chunk``, ``policy/inference_inputs``, ``policy/surprise``), the
safety controller (``commands``, ``joint_trajectory``, ``safety/events``,
``safety/execution``), ``safety/estop``, and the episode outcome (``sim/episode_outcome``,
std_msgs/String JSON; a real robot's task checker may publish the same). One bag per episode:
``<output_dir>/<episode_prefix>_NNNN/``, readable with ``rosbags`` and
``wam-runtime replay``.

An episode ends when an outcome arrives (``split_on_outcome``), when ``recorder/split``
(std_srvs/Trigger) is called, after ``max_episode_s``, or at shutdown; the next one starts
with the next message. On closing, the episode's outcome, message counts, interventions by
reason and e-stop presses go into the bag's metadata (``custom_data['wam_runtime.episode']``)
and as one JSON line into ``<output_dir>/episodes.jsonl``. Messages are written on a
separate thread, so callbacks never wait for the disk. ``/diagnostics`` (``<node>: recorder``)
reports episodes written, the queue, write errors and, per recorded topic, the publishers
its subscription has matched (``topics_without_publishers``): a recording started with
the nodes holds a topic only from the moment the recorder has discovered its publisher.
"""

from collections import deque
import json
import os
import threading
from typing import Any, Deque, Dict, List, Optional, Tuple

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger

from wam_runtime.bag import BagWriter, STORAGE_PLUGINS
from wam_runtime.core.interfaces import (
    camera_topic, COMPRESSED_IMAGE, DIAGNOSTIC_ARRAY, DIAGNOSTICS, Endpoint, EPISODE_OUTCOME,
    ESTOP, EVENTS, IMAGE, RECORDED, RELIABLE, SENSOR, SIM_CAMERA, STRING)
from wam_runtime.core.params import Kind
from wam_runtime.ros.common import ConfigError, declare_params, diagnostic_array, ParamSpec, \
    run_node
from wam_runtime.ros.interface_types import message_class, qos

PARAMS = (
    ParamSpec('output_dir', Kind('string'), 'Folder for the episode bags (created).'),
    ParamSpec('storage_id', 'mcap', "Bag storage: 'mcap' or 'sqlite3'."),
    ParamSpec('camera_names', [SIM_CAMERA], 'Cameras recorded from camera/<name>/image_raw.'),
    ParamSpec('compressed_cameras', Kind('string_array'),
              'Cameras recorded from camera/<name>/image_raw/compressed instead.',
              optional=True),
    ParamSpec('outcome_topic', EPISODE_OUTCOME,
              'std_msgs/String (JSON) that reports the end of an episode.'),
    ParamSpec('split_on_outcome', True, 'End the episode when an outcome arrives.'),
    ParamSpec('max_episode_s', 0.0, 'End an episode after this long (s; 0 = no limit).'),
    ParamSpec('episode_prefix', 'episode', 'Episode folder name prefix.'),
    ParamSpec('record_diagnostics', False, 'Also record /diagnostics.'),
    ParamSpec('diagnostics_period_s', 1.0,
              'Period of /diagnostics messages (s): episodes written, queue, errors and '
              'the publishers matched per recorded topic.'),
)

SPLIT = 'split'
CAMERA_DEPTH = 50           # frames queued per camera
REPORT_DEPTH = 100          # outcome and /diagnostics messages queued


def recorded_endpoints(camera_names: List[str], compressed: List[str], outcome_topic: str,
                       diagnostics: bool) -> List[Endpoint]:
    """Return what an episode records: the cameras, RECORDED, the outcome, /diagnostics."""
    cameras = [Endpoint(camera_topic(cam, cam in compressed),
                        COMPRESSED_IMAGE if cam in compressed else IMAGE, SENSOR, CAMERA_DEPTH)
               for cam in camera_names]
    reports = [Endpoint(outcome_topic, STRING, RELIABLE, REPORT_DEPTH)]
    if diagnostics:
        reports.append(Endpoint(DIAGNOSTICS, DIAGNOSTIC_ARRAY, RELIABLE, REPORT_DEPTH))
    return cameras + list(RECORDED) + reports


class _Episode:
    """The open bag of the current episode and what is counted for its index line."""

    def __init__(self, index: int, path: str, storage: str, start_ns: int) -> None:
        self.index = index
        self.path = path
        self.writer = BagWriter(path, storage)
        self.start_ns = start_ns
        self.end_ns = start_ns
        self.interventions: Dict[str, int] = {}
        self.estops = 0
        self.outcome: Optional[Dict[str, Any]] = None


class RecorderNode(Node):
    """Raw subscriptions -> a queue -> a writer thread -> one rosbag2 per episode."""

    def __init__(self) -> None:
        super().__init__('recorder_node')
        p = declare_params(self, PARAMS)
        if p['storage_id'] not in STORAGE_PLUGINS:
            raise ConfigError(f'storage_id: {p["storage_id"]!r} is not one of '
                              f'{sorted(STORAGE_PLUGINS)}')
        if p['max_episode_s'] < 0:
            raise ConfigError(f'max_episode_s: must be >= 0, got {p["max_episode_s"]}')
        if not p['diagnostics_period_s'] > 0:
            raise ConfigError('diagnostics_period_s: must be > 0, got '
                              f'{p["diagnostics_period_s"]}')
        compressed = list(p['compressed_cameras'] or [])
        unknown = sorted(set(compressed) - set(p['camera_names']))
        if unknown:
            raise ConfigError(f'compressed_cameras: {unknown} are not in camera_names')
        self.p = p
        self.output_dir = p['output_dir']
        try:
            os.makedirs(self.output_dir, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f'output_dir: cannot create {self.output_dir!r} '
                              f'({exc.strerror})') from None
        self._queue: Deque[Tuple] = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._running = True
        self._episode: Optional[_Episode] = None
        self._last_frames: Dict[str, Tuple[int, str, str, bytes]] = {}
        self._next_index = self._first_free_index()
        self.written: List[str] = []
        self.errors: List[str] = []
        endpoints = recorded_endpoints(p['camera_names'], compressed, p['outcome_topic'],
                                       p['record_diagnostics'])
        # absolute names, remaps applied: what the bag's topics are called
        self._roles = {self.resolve_topic_name(p['outcome_topic']): 'outcome',
                       self.resolve_topic_name(EVENTS): 'events',
                       self.resolve_topic_name(ESTOP): 'estop'}
        self._roles.update({self.resolve_topic_name(e.topic): 'camera' for e in endpoints
                            if e.msgtype in (IMAGE, COMPRESSED_IMAGE)})
        self._subs: Dict[str, Any] = {}
        for e in endpoints:
            name = self.resolve_topic_name(e.topic)
            self._subs[name] = self.create_subscription(
                message_class(e.msgtype), e.topic,
                lambda raw, n=name, m=e.msgtype: self._on_message(n, m, raw), qos(e),
                raw=True)
        self.create_service(Trigger, 'recorder/split', self._on_split)
        self._diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS, 10)
        self.create_timer(p['diagnostics_period_s'], self._publish_diagnostics)
        self._thread = threading.Thread(target=self._writer_loop, name='episode_writer',
                                        daemon=True)
        self._thread.start()
        self.get_logger().info(
            f'recording episodes ({p["storage_id"]}) to {self.output_dir}: '
            f'{[e.topic for e in endpoints]}')

    def matched_publishers(self) -> Dict[str, int]:
        """Return the publishers each recorded topic's subscription has matched."""
        return {topic: sub.get_publisher_count() for topic, sub in self._subs.items()}

    def _publish_diagnostics(self) -> None:
        matched = self.matched_publishers()
        silent = sorted(t for t, n in matched.items() if n == 0)
        values: Dict[str, Any] = {
            'episodes_written': len(self.written), 'queued': len(self._queue),
            'write_errors': len(self.errors), 'episode_open': self._episode is not None,
            # What a missing publisher (a node not yet discovered) would leave out of a bag.
            'topics_without_publishers': ' '.join(silent)}
        values.update({f'publishers {t}': n for t, n in sorted(matched.items())})
        level = DiagnosticStatus.WARN if self.errors else DiagnosticStatus.OK
        message = (f'{len(self.errors)} write errors' if self.errors else
                   f'{len(matched) - len(silent)} of {len(matched)} topics have publishers')
        self._diag_pub.publish(diagnostic_array(self, f'{self.get_name()}: recorder', level,
                                                message, values))

    def _first_free_index(self) -> int:
        prefix = self.p['episode_prefix'] + '_'
        taken = [int(n[len(prefix):]) for n in os.listdir(self.output_dir)
                 if n.startswith(prefix) and n[len(prefix):].isdigit()]
        return max(taken) + 1 if taken else 0

    # ------------------------------------------------------------------ callbacks
    def _on_message(self, topic: str, msgtype: str, raw: bytes) -> None:
        t_ns = self.get_clock().now().nanoseconds
        self._queue.append(('msg', t_ns, topic, msgtype, bytes(raw)))
        if self.p['split_on_outcome'] and self._roles.get(topic) == 'outcome':
            self._queue.append((SPLIT, t_ns, 'outcome'))
        self._wake.set()

    def _on_split(self, request, response):
        self._queue.append((SPLIT, self.get_clock().now().nanoseconds, 'manual'))
        self._wake.set()
        response.success = True
        response.message = 'episode closed; the next message starts a new one'
        return response

    # ------------------------------------------------------------------ writer thread
    def _writer_loop(self) -> None:
        while self._running or self._queue:
            self._wake.wait(timeout=0.2)
            self._wake.clear()
            while self._queue:
                item = self._queue.popleft()
                try:
                    if item[0] == SPLIT:
                        self._close(item[2])
                    else:
                        self._write(*item[1:])
                except Exception as exc:  # noqa: B902 - a disk error must not kill the node
                    self.errors.append(str(exc))
                    self.get_logger().error(f'recording failed: {exc}',
                                            throttle_duration_sec=5.0)
        self._close('shutdown')

    def _write(self, t_ns: int, topic: str, msgtype: str, data: bytes) -> None:
        ep = self._episode
        limit = self.p['max_episode_s']
        if ep is not None and limit > 0 and t_ns - ep.start_ns > limit * 1e9:
            self._close('max_duration')
            ep = None
        if ep is None:
            index = self._next_index
            self._next_index += 1
            path = os.path.join(self.output_dir, f'{self.p["episode_prefix"]}_{index:04d}')
            ep = self._episode = _Episode(index, path, self.p['storage_id'], t_ns)
            # The latest frame of every camera, at its own log time: the episode's first
            # inference may have used it, and a replay reruns it on exactly its frames.
            for last in self._last_frames.values():
                ep.writer.write(*last)
        ep.writer.write(t_ns, topic, msgtype, data)
        if self._roles.get(topic) == 'camera':
            self._last_frames[topic] = (t_ns, topic, msgtype, data)
        ep.end_ns = max(ep.end_ns, t_ns)
        role = self._roles.get(topic)
        if role == 'events':
            reason = deserialize_message(data, DiagnosticStatus).name
            ep.interventions[reason] = ep.interventions.get(reason, 0) + 1
        elif role == 'estop':
            ep.estops += int(deserialize_message(data, Bool).data)
        elif role == 'outcome':
            text = deserialize_message(data, String).data
            try:
                ep.outcome = json.loads(text)
            except ValueError:
                ep.outcome = {'text': text}

    def _close(self, reason: str) -> None:
        ep, self._episode = self._episode, None
        if ep is None:
            return
        outcome = ep.outcome or {}
        info = {
            'episode': ep.index, 'path': os.path.basename(ep.path), 'end_reason': reason,
            'seed': outcome.get('seed'), 'success': outcome.get('success'),
            'outcome': ep.outcome, 'start_ns': ep.start_ns, 'end_ns': ep.end_ns,
            'duration_s': round((ep.end_ns - ep.start_ns) * 1e-9, 6),
            'messages': dict(sorted(ep.writer.counts.items())),
            'interventions': dict(sorted(ep.interventions.items())),
            'estop_presses': ep.estops, 'storage': self.p['storage_id'],
        }
        ep.writer.set_custom_data('wam_runtime.episode', json.dumps(info, sort_keys=True))
        ep.writer.close()
        with open(os.path.join(self.output_dir, 'episodes.jsonl'), 'a', encoding='utf-8') as f:
            f.write(json.dumps(info, sort_keys=True) + '\n')
        self.written.append(ep.path)
        self.get_logger().info(
            f'episode {ep.index} written ({reason}): {ep.path}, {info["duration_s"]:.1f} s, '
            f'{sum(info["messages"].values())} messages, outcome {ep.outcome}')

    def destroy_node(self) -> None:
        """Close the open episode (its bag is complete afterwards), then the node."""
        self._running = False
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10.0)
        super().destroy_node()


def main(args: Optional[List[str]] = None) -> int:
    """Entry point (console script ``recorder_node``)."""
    return run_node(lambda a: RecorderNode(), args)


if __name__ == '__main__':
    raise SystemExit(main())
