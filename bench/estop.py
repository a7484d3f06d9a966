"""E-stop latency idle vs under a flood of 100k-point chunks, and playback lag per route.

A safety_controller process (reference arm, 100 Hz) tracks a constant-velocity chunk; this
process plays the robot (joint_states echo the commands), presses the e-stop and measures,
from the moment it publishes ``safety/estop``:

- ``event``: until the ``estop`` event arrives on ``safety/events`` (the e-stop callback ran);
- ``command``: until the first command that brakes arrives (one control period + transport
  at best).

Then the same while another process floods serialized 100k-point chunks (8.8 MB each,
every 10 ms). The
lag routes drive the controller through a pause, a state outage, an enable off/on cycle and
chunks arriving late; the figure is the ``lag_s`` that ``safety/execution`` reports for the
next chunk (0 = the playback clock is back on the chunks' time base).
"""

import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List

import numpy as np

from wam_runtime.processes import (
    call_service, NodeProcess, random_domain_id, REPO_ROOT, ros_env, wait_for, write_params)

JOINTS = [f'joint_{i}' for i in range(1, 7)]
HOME = np.array([0.0, -0.25, 2.0, 1.5, 0.0, -0.1])
PARAMS = {
    'autostart': True, 'joint_names': JOINTS,
    'urdf_path': os.path.join(REPO_ROOT, 'config', 'reference_arm.urdf'),
    'max_acceleration_rad_s2': [15.0] * 6, 'max_jerk_rad_s3': [1500.0] * 6,
    'control_rate_hz': 100.0, 'command_timeout_s': 0.4, 'state_timeout_s': 0.3,
    'max_chunk_age_s': 0.5, 'diagnostics_period_s': 0.2,
}
SPEED = 0.5          # rad/s of joint_1 in the tracked chunk
PERIOD = 0.01


class _Rig:
    """The robot, the policy and the e-stop, in this process."""

    def __init__(self, domain: int) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from diagnostic_msgs.msg import DiagnosticStatus
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool, Float64MultiArray
        from std_srvs.srv import SetBool, Trigger
        from trajectory_msgs.msg import JointTrajectory
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node('bench_estop', context=self.context)
        self.lock = threading.Lock()
        self.q = HOME.copy()
        self.commands: List = []
        self.events: List = []
        self.execution: List = []
        self.publish_state = True
        n = self.node
        self.chunk_pub = n.create_publisher(JointTrajectory, 'policy/action_chunk', 10)
        self.estop_pub = n.create_publisher(Bool, 'safety/estop', 10)
        self.js_pub = n.create_publisher(JointState, 'joint_states', qos_profile_sensor_data)
        n.create_subscription(Float64MultiArray, 'commands', self._on_cmd, 100)
        n.create_subscription(DiagnosticStatus, 'safety/events', self._on_event, 1000)
        n.create_subscription(Float64MultiArray, 'safety/execution', self._on_exec, 100)
        n.create_timer(PERIOD, self._robot)
        self.reset = n.create_client(Trigger, 'safety/reset')
        self.enable = n.create_client(SetBool, 'safety/enable')
        self.Bool, self.JointState, self.Trigger, self.SetBool = Bool, JointState, Trigger, \
            SetBool
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(n)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def close(self) -> None:
        import rclpy
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    def _on_cmd(self, msg) -> None:
        with self.lock:
            self.q = np.asarray(msg.data)
            self.commands.append((time.monotonic(), self.q.copy()))

    def _on_event(self, msg) -> None:
        self.events.append((time.monotonic(), msg.name))

    def _on_exec(self, msg) -> None:
        labels = [d.label for d in msg.layout.dim]
        self.execution.append((time.monotonic(), dict(zip(labels, msg.data))))

    def _robot(self) -> None:
        if self.publish_state:
            with self.lock:
                q = self.q.copy()
            msg = self.JointState(name=JOINTS, position=q.tolist())
            msg.header.stamp = self.node.get_clock().now().to_msg()
            self.js_pub.publish(msg)

    def chunk(self, speed: float = SPEED, duration_s: float = 3.0, dt: float = 0.05) -> int:
        """Publish a chunk moving joint_1 at ``speed`` from the last command; return stamp."""
        from builtin_interfaces.msg import Time
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
        from wam_runtime.ros.conversions import s_to_duration
        with self.lock:
            q0 = self.q.copy()
        if abs(q0[0] + speed * duration_s) > 1.5:       # stay well inside joint_1's limits
            speed = -math.copysign(abs(speed), q0[0])
        ns = self.node.get_clock().now().nanoseconds
        msg = JointTrajectory(joint_names=JOINTS)
        msg.header.stamp = Time(sec=ns // 10 ** 9, nanosec=ns % 10 ** 9)
        n = int(duration_s / dt)
        for k in range(n):
            p = q0.copy()
            p[0] += speed * dt * (k + 1)
            msg.points.append(JointTrajectoryPoint(positions=p.tolist(),
                                                   time_from_start=s_to_duration(dt * (k + 1))))
        self.chunk_pub.publish(msg)
        return ns

    def clear_fault(self) -> None:
        self.estop_pub.publish(self.Bool(data=False))
        time.sleep(0.05)
        call_service(self.reset, self.Trigger.Request())

    def lags_of(self, stamp_ns: int, count: int = 1) -> List[float]:
        """Return the lags reported for the chunk stamped ``stamp_ns`` (at least ``count``)."""
        def lags():
            return [e['lag_s'] for _, e in list(self.execution)
                    if int(e['chunk_stamp_sec']) * 10 ** 9 + int(e['chunk_stamp_nanosec'])
                    == stamp_ns]
        wait_for(lambda: len(lags()) >= count, 5.0)
        return lags()

    def stream(self, duration_s: float, every_s: float = 0.1) -> Dict[str, float]:
        """Send 0.4 s chunks every ``every_s``; return the lag before, on the first and last.

        ``lag_s_before``: the last lag reported before the stream (while the clock is held
        or slowed down); the first new chunk resynchronises it.
        """
        before = [e['lag_s'] for _, e in list(self.execution)[-1:]]
        first = self.chunk(duration_s=0.4)
        last = first
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            time.sleep(every_s)
            last = self.chunk(duration_s=0.4)
        lag_first = self.lags_of(first)
        lag_last = self.lags_of(last, 5)
        return {'lag_s_before': before[0] if before else float('nan'),
                'first_chunk_lag_s': lag_first[0] if lag_first else float('nan'),
                'lag_s_after_1s_of_stream': max(lag_last[:5]) if lag_last else float('nan')}


def _huge_chunk(points: int = 100_000) -> bytes:
    from builtin_interfaces.msg import Duration
    from rclpy.serialization import serialize_message
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
    msg = JointTrajectory(joint_names=JOINTS)
    msg.points = [JointTrajectoryPoint(positions=HOME.tolist(),
                                       time_from_start=Duration(nanosec=1))] * points
    return serialize_message(msg)


def _trial(rig: _Rig) -> Dict[str, float]:
    """Track, press the e-stop, return the two latencies (s)."""
    rig.clear_fault()
    rig.chunk()
    time.sleep(0.5)                   # constant velocity by now
    steady = SPEED * PERIOD
    n_events = len(rig.events)
    pressed = time.monotonic()
    rig.estop_pub.publish(rig.Bool(data=True))
    wait_for(lambda: any(name == 'estop' for _, name in rig.events[n_events:]), 5.0)
    event = next((t for t, name in rig.events[n_events:] if name == 'estop'), float('nan'))
    time.sleep(0.3)
    with rig.lock:
        cmds = [(t, q) for t, q in rig.commands if t >= pressed - 0.05]
    braking = float('nan')
    for (_, a), (t, b) in zip(cmds, cmds[1:]):
        if t > pressed and abs(b[0] - a[0]) < steady - 0.25 * 15.0 * PERIOD ** 2:
            braking = t
            break
    return {'event': event - pressed, 'command': braking - pressed}


def _pct(values: List[float]) -> Dict[str, float]:
    v = np.asarray([x for x in values if np.isfinite(x)]) * 1e3
    if not v.size:
        return {'n': 0}
    return {'n': int(v.size), 'p50_ms': float(np.percentile(v, 50)),
            'p99_ms': float(np.percentile(v, 99)), 'max_ms': float(v.max())}


def _lag_routes(rig: _Rig) -> Dict[str, Dict[str, float]]:
    """Lag on the first chunk after each slowdown route, and after 1 s of a 10 Hz stream."""
    out = {}
    rig.clear_fault()
    rig.stream(1.0)
    time.sleep(0.9)                                           # one long pause
    out['after_0.9s_pause'] = rig.stream(1.0)
    for _ in range(6):                                        # chunks arriving late
        rig.chunk(duration_s=0.2)
        time.sleep(0.3)
    out['after_falling_behind'] = rig.stream(1.0)
    rig.publish_state = False                                 # a 1 s state outage
    time.sleep(1.0)
    rig.publish_state = True
    time.sleep(0.1)
    out['after_1s_state_outage'] = rig.stream(1.0)
    call_service(rig.enable, rig.SetBool.Request(data=False))
    time.sleep(0.5)
    call_service(rig.enable, rig.SetBool.Request(data=True))
    time.sleep(0.1)
    out['after_enable_cycle'] = rig.stream(1.0)
    return out


def bench_estop_latency(args) -> Dict:
    """Measure e-stop -> event and -> braking command, idle vs under a chunk flood."""
    trials = max(5, int(getattr(args, 'estop_trials', 15)))
    out_dir = tempfile.mkdtemp(prefix='wam_bench_estop_')
    domain = random_domain_id()
    pf = write_params(os.path.join(out_dir, 'safety.yaml'), 'safety_controller', PARAMS)
    proc = NodeProcess('wam_runtime.ros.safety_controller', ros_env(domain),
                       'safety_controller', pf, log_dir=out_dir)
    rig = _Rig(domain)
    results: Dict[str, Dict] = {}
    try:
        wait_for(lambda: len(rig.commands) > 50, 60.0)
        wait_for(lambda: rig.reset.service_is_ready() and rig.chunk_pub
                 .get_subscription_count() > 0, 30.0)
        lags = _lag_routes(rig)
        idle = [_trial(rig) for _ in range(trials)]
        flood = subprocess.Popen([sys.executable, '-m', 'bench.chunk_flood'],
                                 env=ros_env(domain), cwd=REPO_ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_for(lambda: rig.node.count_publishers('policy/action_chunk') >= 2, 30.0)
            time.sleep(1.0)
            flooded = [_trial(rig) for _ in range(trials)]
        finally:
            flood.send_signal(signal.SIGINT)
            sent = flood.communicate(timeout=20)[0].strip().splitlines()[-1:]
        alive = proc.alive()
    finally:
        rig.close()
        proc.stop()
    for name, rows in (('idle', idle), ('flood', flooded)):
        results[name] = {'to_event': _pct([r['event'] for r in rows]),
                         'to_braking_command': _pct([r['command'] for r in rows])}

    def ratio(key, stat):
        a = results['flood'][key].get(stat, float('nan'))
        b = results['idle'][key].get(stat, float('nan'))
        return a / b if b else float('nan')

    return {
        'what': 'safety_controller at 100 Hz over DDS: e-stop published -> estop event '
                'received / -> first braking command received; flood = serialized '
                f'100k-point chunks every 10 ms from another process '
                f'({" ".join(sent)})',
        'idle_baseline': results['idle'], 'under_flood': results['flood'],
        'ratio_event_p50': ratio('to_event', 'p50_ms'),
        'ratio_event_p99': ratio('to_event', 'p99_ms'),
        'ratio_command_p50': ratio('to_braking_command', 'p50_ms'),
        'ratio_command_p99': ratio('to_braking_command', 'p99_ms'),
        'target_command_ms': 'one control period (10 ms) + transport',
        'lag_s_next_chunk': lags,
        'node_alive_after': alive,
    }
