"""Real-time playback: a bag's input topics over DDS at the recorded rate, with ``/clock``.

Like ``ros2 bag play --clock``: every message of the played topics is published (the CDR
bytes as recorded) when its log time comes round, and ``/clock`` carries the bag time every
5 ms, so nodes started with ``use_sim_time:=true`` see the recorded time base. Played by
default: every topic that is not an output of the pipeline (chunks, commands, safety
events and execution, surprise), not ``/clock``, ``/diagnostics``, ``/rosout`` or an
episode outcome. Meanwhile what the running nodes publish on those output topics is
recorded. DIR receives ``realtime/`` (MCAP: the bag's messages plus the live outputs under
``/<namespace>``, on the bag clock), ``summary.json`` (the same sections as the offline
replay; live, so not deterministic) and the figures.

``--launch`` starts ``policy_node`` and ``safety_controller`` (autostart) with the config,
model and URDF, ``use_sim_time:=true``, on a fresh loopback-only DDS domain, and stops them
afterwards; without it the nodes under test must already run on this ROS_DOMAIN_ID.
"""

import importlib
import os
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from wam_runtime.bag import BagError, BagWriter, open_bag, storage_file, typestore
from wam_runtime.core.inference import file_sha256
from wam_runtime.core.interfaces import FLOAT64_ARRAY, JOINT_STATE, STATUS, TRAJECTORY
from wam_runtime.core.observation import JointMapper
from wam_runtime.core.params import ConfigError
from wam_runtime.core.safety_config import build_safety
from wam_runtime.core.stamps import split_ns
from wam_runtime.replay import report
from wam_runtime.replay.config import CONFIG_ERRORS, default_model, EXIT_CONFIG, EXIT_INPUT, \
    EXIT_OK, load_config, resolve_urdf, UsageError
from wam_runtime.replay.outputs import check_expect, data_loss, error_summary, prepare_out
from wam_runtime.replay.rundata import RunData
from wam_runtime.replay.topics import chunk_positions, command_positions, match_topic, \
    OUTPUT_TOPICS

BAG_NAME = 'realtime'
NOT_PLAYED = OUTPUT_TOPICS + ('clock', 'diagnostics', 'rosout', 'parameter_events',
                              'sim/episode_outcome')
CLOCK_PERIOD_S = 0.005
LATENCY_NOTE = ('on the bag clock: chunk stamp -> first gated command received after the '
                'chunk (live nodes over DDS)')


def message_class(msgtype: str):
    """Return the rclpy message class of ``pkg/msg/Name`` (None if not installed)."""
    pkg, _, name = msgtype.partition('/msg/')
    try:
        return getattr(importlib.import_module(f'{pkg}.msg'), name)
    except (ImportError, AttributeError):
        return None


def played_topics(topics: Dict[str, Any], wanted: Optional[List[str]], ns: str) -> List[str]:
    """Return the bag topics to publish.

    These are ``wanted`` (matched like the pipeline's inputs), or else every topic that is
    not an output of the pipeline.
    """
    if wanted:
        out = []
        for w in wanted:
            t = match_topic(list(topics), w)
            if t is None:
                raise UsageError(f'--play-topics: {w!r} is not a topic of the bag '
                                 f'({sorted(topics)})')
            out.append(t)
        return out
    out = []
    for t in sorted(topics):
        name = t.strip('/')
        if ns and name.startswith(ns + '/'):
            continue
        if any(name == o or name.endswith('/' + o) for o in NOT_PLAYED):
            continue
        out.append(t)
    return out


class _Bridge:
    """The player's node: publishers of the bag topics and /clock, raw output recorders."""

    def __init__(self, context, topics: Dict[str, str], bag_time_ns) -> None:
        from rclpy.node import Node
        from rclpy.qos import QoSProfile
        from rosgraph_msgs.msg import Clock
        self.node = Node('wam_replay_player', context=context)
        self.clock_cls = Clock
        self.clock_pub = self.node.create_publisher(Clock, '/clock', 10)
        self.pubs: Dict[str, Any] = {}
        self.skipped: Dict[str, int] = {}
        for topic, msgtype in topics.items():
            cls = message_class(msgtype)
            if cls is None:
                self.skipped[f'no_python_type:{msgtype}'] = 0
                continue
            self.pubs[topic] = self.node.create_publisher(cls, topic, QoSProfile(depth=100))
        self.bag_time_ns = bag_time_ns
        self.recorded: List[Tuple[int, str, str, bytes]] = []
        self._lock = threading.Lock()
        self._subs = []
        for rel, msgtype in (('policy/action_chunk', TRAJECTORY),
                             ('policy/surprise', 'std_msgs/msg/Float32'),
                             ('commands', FLOAT64_ARRAY), ('joint_trajectory', TRAJECTORY),
                             ('safety/events', STATUS), ('safety/execution', FLOAT64_ARRAY)):
            cls = message_class(msgtype)
            self._subs.append(self.node.create_subscription(
                cls, rel, lambda raw, r=rel, m=msgtype: self._on_output(r, m, raw),
                QoSProfile(depth=1000), raw=True))

    def _on_output(self, topic: str, msgtype: str, raw: bytes) -> None:
        with self._lock:
            self.recorded.append((self.bag_time_ns(), topic, msgtype, bytes(raw)))

    def publish_clock(self, t_ns: int) -> None:
        from builtin_interfaces.msg import Time
        sec, nanosec = split_ns(t_ns)
        self.clock_pub.publish(self.clock_cls(clock=Time(sec=sec, nanosec=nanosec)))


def _launch(args, env, pp_model: str, urdf: Optional[str], out: str) -> List:
    from wam_runtime.processes import NodeProcess
    extra = {'policy_node': [], 'safety_controller': []}
    for item in args.param:
        key, _, value = item.partition('=')
        node, _, name = key.partition('.')
        extra.setdefault(node, []).extend(['-p', f'{name}:={value}'])
    logs = os.path.join(out, 'logs')
    os.makedirs(logs, exist_ok=True)
    safety_args = ['-p', 'use_sim_time:=true', '-p', 'autostart:=true']
    if urdf:
        safety_args += ['-p', f'urdf_path:={urdf}']
    return [
        NodeProcess('wam_runtime.ros.policy_node', env, 'policy_node', args.config,
                    ['-p', f'model_path:={pp_model}', '-p', 'use_sim_time:=true',
                     *extra['policy_node']], log_dir=logs),
        NodeProcess('wam_runtime.ros.safety_controller', env, 'safety_controller',
                    args.config, safety_args + extra['safety_controller'], log_dir=logs),
    ]


def main(args) -> int:
    """Play the bag in real time; record the nodes' outputs; return the exit code."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from wam_runtime.processes import random_domain_id, ros_env, wait_for
    out = args.out
    ns = args.namespace.strip('/')
    inputs: Dict[str, Any] = {'bag': os.path.basename(os.path.normpath(args.bag)),
                              'mode': 'realtime', 'rate': args.rate}
    try:
        if not args.rate > 0:
            raise UsageError(f'--rate: must be > 0, got {args.rate}')
        prepare_out(out, args.force)
        policy_values, safety_values = load_config(args.config, args.param)
        urdf = resolve_urdf(safety_values, args.config, args.urdf)
        safety = build_safety(safety_values)
        model = args.model or policy_values.get('model_path') or default_model()
        if args.launch and not model:
            raise UsageError('--launch: no model given and the config has no '
                             'policy_node.model_path')
        inputs.update({'config': os.path.basename(args.config),
                       'config_sha256': file_sha256(args.config),
                       'model': os.path.basename(model) if model else None,
                       'urdf': os.path.basename(urdf) if urdf else None})
    except (UsageError, OSError, ConfigError) + CONFIG_ERRORS as exc:
        print(f'[wam_runtime] replay --realtime: {exc}', file=sys.stderr)
        return EXIT_CONFIG
    try:
        bag = open_bag(args.bag)
    except BagError as exc:
        print(f'[wam_runtime] replay --realtime: {exc}', file=sys.stderr)
        error_summary(out, 'error', str(exc), inputs)
        return EXIT_INPUT
    joint_names = list(safety.config.limits.joint_names)
    run = RunData(joint_names, safety.config.limits.lower.copy(),
                  safety.config.limits.upper.copy())
    status, error, code = 'ok', None, EXIT_OK
    with bag:
        try:
            play = played_topics(dict(bag.topics), args.play_topics, ns)
        except UsageError as exc:
            print(f'[wam_runtime] replay --realtime: {exc}', file=sys.stderr)
            return EXIT_CONFIG
        inputs['played_topics'] = play
        domain = random_domain_id() if args.launch else int(os.environ.get('ROS_DOMAIN_ID', 0))
        env = ros_env(domain)
        if args.launch:
            # Our own participant joins the launched nodes on this machine only.
            for key in ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'RMW_IMPLEMENTATION',
                        'FASTDDS_DEFAULT_PROFILES_FILE'):
                os.environ[key] = env[key]
        procs = _launch(args, env, model, urdf, out) if args.launch else []
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain)
        start = bag.start_ns or 0
        clock = {'wall0': None}

        def bag_time_ns() -> int:
            if clock['wall0'] is None:
                return start
            return start + int((time.monotonic() - clock['wall0']) * args.rate * 1e9)

        bridge = _Bridge(context, {t: bag.topics[t].msgtype for t in play}, bag_time_ns)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(bridge.node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        entries: List[Tuple[int, str, str, bytes]] = []
        try:
            js = match_topic(play, 'joint_states')
            if args.launch and js in bridge.pubs and not wait_for(
                    lambda: bridge.pubs[js].get_subscription_count() >= 2, 60.0):
                raise RuntimeError('the launched nodes did not subscribe to joint_states '
                                   f'within 60 s (logs in {out}/logs)')
            bridge.publish_clock(start)
            time.sleep(0.5 if args.launch else 0.2)   # let the nodes take the first /clock
            clock['wall0'] = time.monotonic()
            next_clock = 0.0
            mapper = JointMapper(joint_names)
            for rec in bag.messages():
                entries.append((rec.t_ns, rec.topic, rec.msgtype, rec.data))
                due = clock['wall0'] + (rec.t_ns - start) * 1e-9 / args.rate
                while True:
                    now = time.monotonic()
                    if now >= next_clock:
                        bridge.publish_clock(bag_time_ns())
                        next_clock = now + CLOCK_PERIOD_S
                    if now >= due:
                        break
                    time.sleep(max(0.0, min(due, next_clock) - now))
                _note_input(run, rec, bag, play, bridge, joint_names, mapper)
            end = time.monotonic() + args.settle_s
            while time.monotonic() < end:
                bridge.publish_clock(bag_time_ns())
                time.sleep(CLOCK_PERIOD_S)
        except BagError as exc:
            status, error, code = 'error', str(exc), EXIT_INPUT
        except RuntimeError as exc:
            status, error, code = 'error', str(exc), EXIT_CONFIG
        except KeyboardInterrupt:
            status, error, code = 'interrupted', 'interrupted', 130
        finally:
            executor.shutdown()
            bridge.node.destroy_node()
            rclpy.try_shutdown(context=context)
            exit_codes = {p.name: p.stop() for p in procs}
        warnings = list(bag.warnings)
        status, code = data_loss(bag, status, code, warnings, 'replay --realtime')
        lost = dict(bag.lost)
    if error:
        print(f'[wam_runtime] replay --realtime: {error}', file=sys.stderr)
    for t_ns, topic, msgtype, data in bridge.recorded:
        _note_output(run, t_ns, topic, msgtype, data, joint_names)
    _latencies(run)
    bag_path = os.path.join(out, BAG_NAME)
    writer = BagWriter(bag_path, 'mcap')
    live = [(t, f'/{ns}/{topic}' if ns else f'/{topic}', m, d)
            for t, topic, m, d in bridge.recorded]
    for t_ns, topic, msgtype, data in sorted(entries + live, key=lambda e: e[0]):
        info = bag.topics.get(topic)
        if not writer.write(t_ns, topic, msgtype, data, info.msgdef if info else '',
                            info.digest if info else ''):
            run.skip(f'unknown_type:{msgtype}')
    writer.close()
    if entries:
        run.first_ns, run.last_ns = entries[0][0], entries[-1][0]
    run.skipped.update(bridge.skipped)
    summary = report.build_summary(run, safety.config.control_period_s, inputs, status, error,
                                   warnings, writer.counts, LATENCY_NOTE, lost=lost)
    mcap = storage_file(bag_path)
    summary['outputs'] = {'bag': BAG_NAME, 'bag_sha256': file_sha256(mcap) if mcap else None,
                          'node_exit_codes': exit_codes}
    report.write_json(os.path.join(out, 'summary.json'), summary)
    if not args.no_plots and run.first_ns is not None:
        report.plot(run, os.path.join(out, 'joints.png'), os.path.join(out, 'interventions.png'))
    if not args.quiet:
        iv = ', '.join(f'{k}={v}' for k, v in summary['safety']['interventions'].items())
        print(f'played {summary["replayed_s"]:.2f} s of bag at {args.rate}x: '
              f'{len(run.chunks)} chunks, {len(run.commands)} gated commands received; '
              f'interventions: {iv or "none"}; wrote {out}/summary.json and {out}/{BAG_NAME}/')
    if code == EXIT_OK and args.expect:
        code = check_expect(args.expect, summary, args)
    return code


def _note_input(run: RunData, rec, bag, play, bridge, joint_names, mapper) -> None:
    """Publish a played message; keep what the report needs from the bag."""
    ts = typestore()
    if rec.topic in bridge.pubs:
        bridge.pubs[rec.topic].publish(rec.data)
        run.read[rec.topic] = run.read.get(rec.topic, 0) + 1
        if rec.msgtype == JOINT_STATE:
            try:
                msg = ts.deserialize_cdr(rec.data, rec.msgtype)
                run.measured.append((rec.t_ns * 1e-9, mapper(msg.name, msg.position)))
            except Exception:  # noqa: B902 - corrupt bytes: played anyway, not plotted
                run.skip(f'deserialize_error:{rec.topic}')
        return
    if rec.topic not in play:
        name = rec.topic.strip('/')
        try:
            if name.endswith(('commands', 'joint_trajectory')):
                q = command_positions(rec.msgtype, ts.deserialize_cdr(rec.data, rec.msgtype),
                                      joint_names)
                if q is not None:
                    run.recorded_commands.append((rec.t_ns * 1e-9, q))
            elif name.endswith('policy/action_chunk') and rec.msgtype == TRAJECTORY:
                chunk = chunk_positions(ts.deserialize_cdr(rec.data, rec.msgtype), joint_names)
                if chunk is not None:
                    run.recorded_chunks[chunk[0]] = chunk[1]
            elif name.endswith('safety/events') and rec.msgtype == STATUS:
                run.recorded_events.append(
                    (rec.t_ns * 1e-9, ts.deserialize_cdr(rec.data, rec.msgtype).name))
        except Exception:  # noqa: B902 - corrupt recorded reference: counted
            run.skip(f'deserialize_error:{rec.topic}')


def _note_output(run: RunData, t_ns: int, topic: str, msgtype: str, data: bytes,
                 joint_names) -> None:
    ts = typestore()
    t = t_ns * 1e-9
    try:
        msg = ts.deserialize_cdr(data, msgtype)
    except Exception:  # noqa: B902 - count, go on
        run.skip(f'deserialize_error:{topic}')
        return
    if topic in ('commands', 'joint_trajectory'):
        q = command_positions(msgtype, msg, joint_names)
        if q is not None:
            run.commands.append((t, q))
    elif topic == 'policy/action_chunk':
        chunk = chunk_positions(msg, joint_names)
        if chunk is not None:
            run.chunks.append((t, chunk[0], chunk[1]))
            run.inferences += 1
            pts = msg.points
            if len(pts) > 1:
                run.dt_s = (pts[1].time_from_start.sec - pts[0].time_from_start.sec) + \
                    (pts[1].time_from_start.nanosec - pts[0].time_from_start.nanosec) * 1e-9
    elif topic == 'safety/events':
        joint = next((kv.value for kv in msg.values if kv.key == 'joint'), '')
        run.events.append((t, msg.name, joint))


def _latencies(run: RunData) -> None:
    """Chunk stamp -> first gated command received after the chunk (bag clock)."""
    if not run.commands:
        return
    cmd_t = np.array([t for t, _ in run.commands])
    for t_recv, stamp_ns, _ in run.chunks:
        i = int(np.searchsorted(cmd_t, t_recv, side='right'))
        if i < cmd_t.size:
            run.latencies_s.append(float(cmd_t[i] - stamp_ns * 1e-9))
