"""Fault injection over real DDS against a running safety_controller process.

A test node plays the policy (chunks), the robot (joint_states echoing the last command),
the e-stop and, for clock tests, /clock. For every fault: no command outside the limits,
the right reason on /diagnostics and safety/events, and the node still alive.
"""

import os
import threading
import time

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from wam_runtime.core.urdf import resolve_limits
from wam_runtime.processes import call_service, NodeProcess, REPO_ROOT, wait_for, write_params

pytestmark = [pytest.mark.ros, pytest.mark.slow]

URDF_PATH = os.path.join(REPO_ROOT, 'config', 'reference_arm.urdf')
JOINTS = [f'joint_{i}' for i in range(1, 7)]
PARAMS = {
    'autostart': True, 'joint_names': JOINTS, 'urdf_path': URDF_PATH,
    'max_acceleration_rad_s2': [15.0] * 6, 'max_jerk_rad_s3': [1500.0] * 6,
    'position_margin_rad': 0.01, 'control_rate_hz': 100.0, 'command_timeout_s': 0.4,
    'state_timeout_s': 0.3, 'max_chunk_age_s': 0.5, 'chunk_limit_policy': 'reject',
    'workspace_frames': ['ee_link', 'link_4'],
    'workspace_box_m': [-0.9, -0.9, 0.015, 0.9, 0.9, 1.3],
    'diagnostics_period_s': 0.2,
}
with open(URDF_PATH, encoding='utf-8') as _f:
    LIMITS, _ = resolve_limits(_f.read(), JOINTS, PARAMS)
HOME = np.array([0.0, -0.25, 2.0, 1.5, 0.0, -0.1])
PERIOD = 0.01


class Harness:
    """Policy, robot, e-stop and clock stand-ins plus recorders, in the test process."""

    def __init__(self, add_node, use_sim_time=False):
        import rclpy
        from rclpy.parameter import Parameter
        from rclpy.qos import qos_profile_sensor_data, QoSProfile
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool, Float64MultiArray
        from trajectory_msgs.msg import JointTrajectory
        self.node = add_node(rclpy.create_node('fault_harness', context=add_node.context))
        if use_sim_time:
            self.node.set_parameters([Parameter('use_sim_time', Parameter.Type.BOOL, True)])
        self._lock = threading.Lock()
        self.q = HOME.copy()
        self.commands, self.events, self.diag = [], [], {}
        self.publish_state = True
        self.chunk_pub = self.node.create_publisher(JointTrajectory, 'policy/action_chunk',
                                                    QoSProfile(depth=1000))
        self.estop_pub = self.node.create_publisher(Bool, 'safety/estop', 10)
        self.js_pub = self.node.create_publisher(JointState, 'joint_states',
                                                 qos_profile_sensor_data)
        self.clock_pub = self.node.create_publisher(Clock, '/clock', 10)
        self.node.create_subscription(Float64MultiArray, 'commands', self._on_cmd, 100)
        self.node.create_subscription(DiagnosticStatus, 'safety/events',
                                      lambda m: self.events.append(m), 1000)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)
        self.node.create_timer(PERIOD, self._robot)
        self.JointState, self.Bool = JointState, Bool

    def _on_cmd(self, msg):
        cmd = np.asarray(msg.data, dtype=np.float64)
        with self._lock:
            self.commands.append(cmd)
            self.q = cmd

    def _on_diag(self, msg):
        for st in msg.status:
            if st.name.endswith(': safety'):
                self.diag = {kv.key: kv.value for kv in st.values}

    def _robot(self):
        if self.publish_state:
            with self._lock:
                q = self.q.copy()
            msg = self.JointState(name=JOINTS, position=q.tolist())
            msg.header.stamp = self.node.get_clock().now().to_msg()
            self.js_pub.publish(msg)

    def wait_matched(self, timeout_s=30.0):
        """Wait until the controller subscribes to everything this harness publishes."""
        return wait_for(lambda: all(p.get_subscription_count() > 0 for p in (
            self.chunk_pub, self.estop_pub, self.js_pub)), timeout_s)

    def now(self):
        return self.node.get_clock().now().nanoseconds * 1e-9

    def chunk(self, positions, names=JOINTS, stamp=None, dt=0.05, times=None):
        from builtin_interfaces.msg import Time
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
        from wam_runtime.ros.conversions import s_to_duration
        stamp = self.now() if stamp is None else stamp
        msg = JointTrajectory(joint_names=list(names))
        ns = int(stamp * 1e9)
        msg.header.stamp = Time(sec=ns // 10 ** 9, nanosec=ns % 10 ** 9)
        times = times or [dt * (k + 1) for k in range(len(positions))]
        msg.points = [JointTrajectoryPoint(positions=[float(x) for x in p],
                                           time_from_start=s_to_duration(t))
                      for p, t in zip(positions, times)]
        self.chunk_pub.publish(msg)

    def motion_chunk(self, offset=0.3, n=16):
        """Return a chunk moving joint_1 from the current command by ``offset`` (rad)."""
        with self._lock:
            q0 = self.q.copy()
        pts = []
        for k in range(n):
            p = q0.copy()
            p[0] += offset * (k + 1) / n
            pts.append(p)
        return pts

    def count(self, reason):
        return int(self.diag.get(f'count_{reason}', 0))

    def event_reasons(self):
        return {e.name for e in list(self.events)}

    def assert_commands_in_limits(self):
        cmds = np.array(self.commands)
        assert cmds.size and np.isfinite(cmds).all()
        assert np.all(cmds >= LIMITS.lower + 0.01 - 1e-9)
        assert np.all(cmds <= LIMITS.upper - 0.01 + 1e-9)
        steps = np.abs(np.diff(cmds, axis=0))
        assert np.all(steps <= LIMITS.max_velocity * PERIOD + 1e-9), steps.max(axis=0)


@pytest.fixture
def safety(proc_env, tmp_path, request):
    extra = getattr(request, 'param', {})
    params = dict(PARAMS, incident_dir=str(tmp_path / 'incidents'), **extra)
    pf = write_params(str(tmp_path / 'safety.yaml'), 'safety_controller', params)
    proc = NodeProcess('wam_runtime.ros.safety_controller', proc_env, 'safety_controller',
                       pf, log_dir=str(tmp_path))
    yield proc
    proc.stop()


@pytest.fixture
def harness(ros_context, safety):
    h = Harness(ros_context)
    assert wait_for(lambda: len(h.commands) > 20, 40.0), safety.output()[-3000:]
    assert h.wait_matched()
    return h


def _tracking(h, offset=0.3):
    h.chunk(h.motion_chunk(offset))
    return wait_for(lambda: h.diag.get('mode') == 'tracking', 10.0)


@pytest.mark.parametrize('value,reason', [
    (float('nan'), 'chunk_non_finite'), (float('inf'), 'chunk_non_finite'),
    (-float('inf'), 'chunk_non_finite'), (1e308, 'chunk_outside_limits')])
def test_non_finite_and_huge_values_are_rejected(harness, safety, value, reason):
    pts = harness.motion_chunk()
    pts[3][2] = value
    harness.chunk(pts)
    assert wait_for(lambda: harness.count(reason) >= 1, 5.0), harness.diag
    assert wait_for(lambda: reason in harness.event_reasons(), 2.0)
    time.sleep(0.3)
    harness.assert_commands_in_limits()
    assert safety.alive()


def test_wrong_missing_and_reordered_joints(harness, safety):
    pts = harness.motion_chunk()
    harness.chunk(pts, names=JOINTS[:5] + ['elbow'])
    harness.chunk([p[:5] for p in pts], names=JOINTS[:5])
    assert wait_for(lambda: harness.count('chunk_joint_mismatch') >= 2, 5.0), harness.diag
    # Reordered by name is accepted and executed in controller order.
    order = JOINTS[::-1]
    harness.chunk([p[::-1] for p in harness.motion_chunk(0.2)], names=order)
    assert wait_for(lambda: harness.diag.get('mode') == 'tracking', 5.0), harness.diag
    start = harness.commands[-1][0]
    assert wait_for(lambda: harness.commands[-1][0] > start + 0.05, 5.0)
    harness.assert_commands_in_limits()
    assert safety.alive()


def test_burst_of_1000_chunks(harness, safety):
    n_before = len(harness.commands)
    for _ in range(1000):
        harness.chunk(harness.motion_chunk(0.1))
    time.sleep(1.5)
    assert len(harness.commands) - n_before > 80     # the command stream kept flowing
    harness.assert_commands_in_limits()
    assert safety.alive()


def test_out_of_order_stale_and_future_stamps(harness, safety):
    now = harness.now()
    harness.chunk(harness.motion_chunk(), stamp=now)
    harness.chunk(harness.motion_chunk(), stamp=now - 0.2)     # older than the current one
    harness.chunk(harness.motion_chunk(), stamp=now - 5.0)     # stale
    harness.chunk(harness.motion_chunk(), stamp=now + 5.0)     # future
    assert wait_for(lambda: harness.count('chunk_stale') >= 2
                    and harness.count('chunk_future_stamp') >= 1, 5.0), harness.diag
    assert {'chunk_stale', 'chunk_future_stamp'} <= harness.event_reasons()
    harness.assert_commands_in_limits()
    assert safety.alive()


def test_policy_silent_mid_chunk_decelerates_and_holds(harness, safety, tmp_path):
    for _ in range(5):       # keep feeding a fast motion, then fall silent
        harness.chunk(harness.motion_chunk(0.6))
        time.sleep(0.1)
    moving = np.abs(np.diff(np.array(harness.commands[-5:]), axis=0)).max()
    assert moving > 1e-3
    assert wait_for(lambda: harness.diag.get('mode') == 'holding', 5.0), harness.diag
    assert harness.count('command_timeout') >= 1 or harness.count('chunk_exhausted') >= 1
    time.sleep(0.3)
    tail = np.array(harness.commands[-20:])
    assert np.all(tail == tail[-1])
    harness.assert_commands_in_limits()
    # The stop wrote an incident bag, named after it, that the rosbags library reads. (An
    # earlier incident, say a stall of this harness's joint_states on a loaded machine,
    # defers this bag by up to two seconds but never loses it.)
    incidents = tmp_path / 'incidents'

    def stop_bags():
        names = sorted(os.listdir(incidents)) if os.path.isdir(incidents) else []
        return [n for n in names if n.endswith(('_command_timeout', '_chunk_exhausted'))]
    assert wait_for(stop_bags, 8.0), os.listdir(incidents) if incidents.exists() else None
    bag = incidents / stop_bags()[0]
    assert wait_for(lambda: any(f.endswith('.mcap') for f in os.listdir(bag))
                    and (bag / 'metadata.yaml').exists(), 5.0)
    with AnyReader([bag]) as reader:
        topics = {c.topic for c in reader.connections}
        assert {'commands', 'joint_states', 'policy/action_chunk'} <= topics
        n = sum(1 for _ in reader.messages())
        for conn, _, raw in reader.messages():
            reader.deserialize(raw, conn.msgtype)
    assert n > 50
    assert safety.alive()


def test_joint_states_stopping_stops(harness, safety):
    assert _tracking(harness)
    harness.publish_state = False
    assert wait_for(lambda: harness.count('state_timeout') >= 1, 10.0), harness.diag
    # The event travels on its own topic: it may arrive after the /diagnostics that counted.
    assert wait_for(lambda: 'state_timeout' in harness.event_reasons(), 5.0), \
        harness.event_reasons()
    assert wait_for(lambda: harness.diag.get('mode') in ('holding', 'stopping'), 10.0)
    harness.assert_commands_in_limits()
    assert safety.alive()


def test_estop_latches_until_released_and_reset(harness, safety, ros_context):
    from std_srvs.srv import Trigger
    assert _tracking(harness, 0.6)
    harness.estop_pub.publish(harness.Bool(data=True))
    assert wait_for(lambda: harness.diag.get('fault') == 'estop', 5.0), harness.diag
    assert 'estop' in harness.event_reasons()
    harness.chunk(harness.motion_chunk())          # ignored while latched
    time.sleep(0.5)
    tail = np.array(harness.commands[-10:])
    assert np.all(tail == tail[-1])
    client = harness.node.create_client(Trigger, 'safety/reset')
    assert client.wait_for_service(timeout_sec=5.0)
    res = _call(client, Trigger.Request())
    assert not res.success and 'still pressed' in res.message
    harness.estop_pub.publish(harness.Bool(data=False))
    time.sleep(0.3)
    res = _call(client, Trigger.Request())
    assert res.success, res.message
    assert wait_for(lambda: harness.diag.get('fault') == '', 3.0)
    assert _tracking(harness)
    harness.assert_commands_in_limits()


@pytest.mark.parametrize('safety', [{'estop_timeout_s': 0.3}], indirect=True)
def test_dying_estop_publisher_counts_as_pressed(ros_context, safety):
    from std_srvs.srv import Trigger
    h = Harness(ros_context)
    stop_beat = threading.Event()

    def beat():
        while not stop_beat.is_set():
            h.estop_pub.publish(h.Bool(data=False))
            time.sleep(0.05)

    assert h.wait_matched()
    threading.Thread(target=beat, daemon=True).start()
    client = h.node.create_client(Trigger, 'safety/reset')
    assert client.wait_for_service(timeout_sec=30.0)
    assert wait_for(lambda: _call(client, Trigger.Request()).success and h.diag.get('fault') == ''
                    and len(h.commands) > 10, 20.0, period_s=0.3), h.diag
    assert _tracking(h)
    stop_beat.set()                                  # the e-stop publisher dies
    assert wait_for(lambda: h.diag.get('fault') == 'estop_heartbeat_lost', 5.0), h.diag
    assert 'estop_heartbeat_lost' in h.event_reasons()
    h.assert_commands_in_limits()
    assert safety.alive()


@pytest.mark.parametrize('safety', [{'use_sim_time': True}], indirect=True)
def test_clock_jumps(ros_context, safety):
    from rosgraph_msgs.msg import Clock
    h = Harness(ros_context, use_sim_time=True)
    sim_t = [1000.0]
    running = threading.Event()
    running.set()

    def clock():
        from builtin_interfaces.msg import Time
        while running.is_set():
            sim_t[0] += 0.005
            ns = int(sim_t[0] * 1e9)
            h.clock_pub.publish(Clock(clock=Time(sec=ns // 10 ** 9, nanosec=ns % 10 ** 9)))
            time.sleep(0.005)

    threading.Thread(target=clock, daemon=True).start()
    try:
        assert wait_for(lambda: len(h.commands) > 20, 40.0), safety.output()[-2000:]
        assert h.wait_matched()
        assert _tracking(h, 0.5)
        sim_t[0] += 30.0                             # forward jump
        time.sleep(0.5)
        sim_t[0] -= 60.0                             # backward jump
        time.sleep(0.5)
        assert wait_for(lambda: 'clock_jump_backward' in h.event_reasons(), 5.0)
        assert _tracking(h, 0.3)                     # chunks on the new time base are taken
        h.assert_commands_in_limits()
        assert safety.alive()
    finally:
        running.clear()


def _call(client, request, tries=3):
    """Call a service; see wam_runtime.processes.call_service."""
    return call_service(client, request, tries=tries)


def test_incident_bag_survives_killing_the_node(harness, safety, tmp_path):
    assert _tracking(harness, 0.5)
    harness.estop_pub.publish(harness.Bool(data=True))
    assert wait_for(lambda: int(harness.diag.get('incidents_written', 0)) >= 1, 10.0), \
        harness.diag
    safety.kill()                                   # SIGKILL right after the incident
    incidents = tmp_path / 'incidents'
    bags = sorted(p for p in incidents.iterdir() if 'estop' in p.name)
    assert bags, list(incidents.iterdir())
    with AnyReader([bags[0]]) as reader:
        by_topic = {}
        for conn, _, raw in reader.messages():
            by_topic.setdefault(conn.topic, []).append(reader.deserialize(raw, conn.msgtype))
    assert len(by_topic['joint_states']) > 20
    assert by_topic['safety/estop'][-1].data is True
    assert len(by_topic['commands']) > 20


@pytest.mark.parametrize('safety', [{'surprise_slow_threshold': 0.1,
                                     'surprise_stop_threshold': 0.5,
                                     'surprise_recovery_s': 0.2,
                                     'command_timeout_s': 5.0}], indirect=True)
def test_world_model_surprise_slows_then_stops(ros_context, safety):
    from std_msgs.msg import Float32
    h = Harness(ros_context)
    pub = h.node.create_publisher(Float32, 'policy/surprise', 10)
    assert wait_for(lambda: len(h.commands) > 20, 40.0)
    assert h.wait_matched() and wait_for(lambda: pub.get_subscription_count() > 0, 10.0)
    h.chunk(h.motion_chunk(0.6, n=40))
    assert wait_for(lambda: h.diag.get('mode') == 'tracking', 10.0)
    pub.publish(Float32(data=0.3))                    # surprised: slow down
    assert wait_for(lambda: float(h.diag.get('playback_speed', 1)) < 0.8, 5.0), h.diag
    assert 'surprise_slow' in h.event_reasons()
    pub.publish(Float32(data=2.0))                    # very surprised: controlled stop
    assert wait_for(lambda: h.diag.get('mode') == 'holding', 5.0), h.diag
    assert {'surprise_stop'} <= h.event_reasons()
    h.assert_commands_in_limits()
    pub.publish(Float32(data=0.0))                    # calm again: tracking resumes
    assert wait_for(lambda: h.diag.get('mode') == 'tracking', 5.0), h.diag
    assert safety.alive()
