"""sim_node: a MuJoCo world on ROS 2 (parameter ``world``, see :mod:`wam_runtime.sim.worlds`).

``world:=reference`` (default): the 6-DoF reaching arm, camera ``scene``, joints
``joint_1``..``joint_6``. ``world:=aloha_transfer_cube``: gym-aloha's bimanual transfer-cube
task, camera ``top`` (wrist cameras ``left_wrist``, ``right_wrist`` through
``camera_names``), the 14 joints ``left_waist``..``right_gripper`` in the package's action
units (grippers normalised, 0 closed .. 1 open), stepped in 0.02 s control steps.

Publishes ``camera/<camera>/image_raw`` (rgb8) per camera in ``camera_names``,
``joint_states`` (each time the world has advanced) and, under ``use_sim_time``,
``/clock``; takes ``commands`` (Float64MultiArray in joint order, the
forward_command_controller interface) as position targets. ``sim/reset`` (std_srvs/Trigger)
starts an episode with the seed in parameter ``episode_seed`` (then advances it by one);
``sim/episode_outcome`` (std_msgs/String, JSON, transient local) reports each episode's
``seed``, ``success``, ``time_s`` (to success or timeout) and the world's own fields
(reference: ``min_distance_m``, ``final_distance_m``; ALOHA: ``reward``, ``best_reward``,
``max_reward``; see :mod:`wam_runtime.sim.worlds`).

Physics runs on its own thread, stepped to follow the wall clock (times
``real_time_factor``); rendering happens on the same thread at ``camera_rate_hz``.
"""

import json
import threading
import time
from typing import List, Optional

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy_impl
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, qos_profile_sensor_data, QoSProfile
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger

from wam_runtime.core.params import Kind, LIVE
from wam_runtime.core.stamps import s_to_ns
from wam_runtime.ros.common import (
    ConfigError, declare_params, ns_to_time, ParamSpec, run_node)
from wam_runtime.ros.conversions import image_msg
from wam_runtime.sim.world import validate_seed
from wam_runtime.sim.worlds import Episode, make_world, world_spec

PARAMS = (
    ParamSpec('world', 'reference',
              "The simulated world: 'reference' (the 6-DoF reaching arm and a red cube) or "
              "'aloha_transfer_cube' (gym-aloha's bimanual transfer-cube task, 14 joints)."),
    ParamSpec('camera_names', Kind('string_array'),
              "Cameras published on camera/<name>/image_raw; not set = the world's default "
              '(reference: scene; aloha_transfer_cube: top; it also has left_wrist, '
              'right_wrist).', optional=True),
    ParamSpec('camera_width', 0, "Rendered image width (px); 0 = the world's default "
                                 '(reference 128, aloha_transfer_cube 640).'),
    ParamSpec('camera_height', 0, "Rendered image height (px); 0 = the world's default "
                                  '(reference 128, aloha_transfer_cube 480).'),
    ParamSpec('camera_rate_hz', 30.0, 'Camera frame rate (Hz).'),
    ParamSpec('joint_state_rate_hz', 200.0,
              'Physics loop rate and the most joint_states per second (Hz); '
              'aloha_transfer_cube steps in 0.02 s control steps and publishes once per '
              'step (50 Hz).'),
    ParamSpec('real_time_factor', 1.0, 'Simulated seconds per wall-clock second.'),
    ParamSpec('episode_seed', 10000, 'Seed of the next episode started by sim/reset; '
                                     'must be >= 0. Training used seeds below 10000.',
              applied=LIVE),
    ParamSpec('episode_timeout_s', 8.0, 'An episode without success ends after this (s).'),
)


class SimNode(Node):
    """ROS wiring of a world: a physics thread, command input, reset, outcomes."""

    def __init__(self) -> None:
        super().__init__('sim_node')
        self._running = False
        self._thread: Optional[threading.Thread] = None
        p = declare_params(self, PARAMS)
        for key in ('camera_rate_hz', 'joint_state_rate_hz', 'real_time_factor',
                    'episode_timeout_s'):
            if p[key] <= 0:
                raise ConfigError(f'{key}: must be > 0, got {p[key]}')
        for key in ('camera_width', 'camera_height'):
            if p[key] < 0:
                raise ConfigError(f"{key}: must be >= 0 (0 = the world's default), "
                                  f'got {p[key]}')
        try:
            self.spec = world_spec(p['world'])
            validate_seed(p['episode_seed'])
            self.world = make_world(p['world'], p['camera_width'], p['camera_height'],
                                    p['camera_names'], p['episode_seed'])
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.p = p
        self.sim_time = self.get_parameter('use_sim_time').value
        self._lock = threading.Lock()
        self._pending_cmd: Optional[np.ndarray] = None
        self._pending_reset: Optional[int] = None
        self.rejected = {'wrong_length': 0, 'non_finite': 0}
        self._episode: Optional[Episode] = None
        self._published_s: Optional[float] = None   # sim time of the last joint_states
        # Under use_sim_time sim time 0 maps to this epoch; stamps are summed in integer ns
        # (in float seconds an epoch keeps only ~0.25 us, so 20 ms steps came out uneven).
        self._clock_offset_ns = time.time_ns()

        self.add_on_set_parameters_callback(self._on_params)
        self.cameras = list(p['camera_names'] or self.spec.camera_names)
        self.img_pubs = {cam: self.create_publisher(Image, f'camera/{cam}/image_raw',
                                                    qos_profile_sensor_data)
                         for cam in self.cameras}
        self.js_pub = self.create_publisher(JointState, 'joint_states', qos_profile_sensor_data)
        self.clock_pub = self.create_publisher(Clock, '/clock', 10) if self.sim_time else None
        latched = QoSProfile(depth=20, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.outcome_pub = self.create_publisher(String, 'sim/episode_outcome', latched)
        self.create_subscription(Float64MultiArray, 'commands', self._on_command,
                                 QoSProfile(depth=10))
        self.create_service(Trigger, 'sim/reset', self._on_reset)
        self._running = True
        self._thread = threading.Thread(target=self._loop, name='physics', daemon=True)
        self._thread.start()
        width, height = self.world.camera_size
        self.get_logger().info(f'{p["world"]} world: cameras {self.cameras} {width}x{height} '
                               f'at {p["camera_rate_hz"]} Hz, joints '
                               f'{list(self.world.joint_names)}')

    # ------------------------------------------------------------------ inputs
    def _on_params(self, params) -> SetParametersResult:
        for param in params:
            if param.name == 'episode_seed':
                try:
                    validate_seed(param.value)
                except ValueError as exc:
                    self.get_logger().warning(f'episode_seed rejected: {exc}')
                    return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _on_command(self, msg: Float64MultiArray) -> None:
        cmd = np.asarray(msg.data, dtype=np.float64)
        reason = None
        if cmd.shape != (len(self.world.joint_names),):
            reason = 'wrong_length'
        elif not np.isfinite(cmd).all():
            reason = 'non_finite'
        if reason is not None:
            with self._lock:
                self.rejected[reason] += 1
                n = self.rejected[reason]
            if n == 1 or n % 100 == 0:   # every reason is logged, a flood is not
                self.get_logger().warning(f'command rejected ({reason}, {n} so far): '
                                          f'{cmd.tolist()[:8]}')
            return
        with self._lock:
            self._pending_cmd = cmd

    def _on_reset(self, request, response):
        seed = self.get_parameter('episode_seed').value
        with self._lock:
            self._pending_reset = seed
        self.set_parameters([Parameter('episode_seed', Parameter.Type.INTEGER, seed + 1)])
        response.success = True
        response.message = f'episode seed {seed}'
        return response

    # ------------------------------------------------------------------ physics thread
    def _stamp(self):
        if self.sim_time:
            return ns_to_time(self._clock_offset_ns + s_to_ns(self.world.time_s))
        return self.get_clock().now().to_msg()

    def _loop(self) -> None:
        self._t0 = (time.monotonic(), self.world.time_s)   # wall and sim time of the anchor
        self._next_frame = 0.0
        period = 1.0 / self.p['joint_state_rate_hz']
        while self._running and self.context.ok():
            try:
                self._step_once()
            except _rclpy_impl.RCLError:
                if self.context.ok():
                    raise
                break   # rclpy shut down between the check and a publish
            time.sleep(max(0.0, period - ((time.monotonic() - self._t0[0]) % period)))
        self.world.close()   # the GL context belongs to this thread

    def _step_once(self) -> None:
        world = self.world
        with self._lock:
            cmd, self._pending_cmd = self._pending_cmd, None
            reset, self._pending_reset = self._pending_reset, None
        if reset is not None:
            world.reset(reset)
            self._t0 = (time.monotonic(), world.time_s)
            self._next_frame = world.time_s
            self._published_s = None
            self._episode = Episode(world, reset, self.p['episode_timeout_s'], self.spec.score)
        if cmd is not None:
            world.set_command(cmd)
        wall0, sim0 = self._t0
        target = sim0 + (time.monotonic() - wall0) * self.p['real_time_factor']
        if target > world.time_s:
            world.step(target - world.time_s)
        if self._published_s == world.time_s:
            return   # the world has not advanced (it steps in whole control steps)
        self._published_s = world.time_s
        stamp = self._stamp()
        if self.clock_pub is not None:
            self.clock_pub.publish(Clock(clock=stamp))
        js = JointState(name=list(world.joint_names), position=world.joint_positions().tolist(),
                        velocity=world.joint_velocities().tolist())
        js.header.stamp = stamp
        self.js_pub.publish(js)
        self._track_episode()
        if world.time_s >= self._next_frame:
            self._next_frame = max(self._next_frame + 1.0 / self.p['camera_rate_hz'],
                                   world.time_s)
            for cam, pub in self.img_pubs.items():
                pub.publish(image_msg(world.render(cam), 'rgb8', stamp, cam))

    def _track_episode(self) -> None:
        if self._episode is None:
            return
        outcome = self._episode.update()
        if outcome is not None:
            self._episode = None
            self.outcome_pub.publish(String(data=json.dumps(outcome)))
            self.get_logger().info(f'episode {outcome}')

    def destroy_node(self) -> None:
        """Stop the physics thread (it frees the renderer), then the node."""
        self._running = False
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=2.0)
        super().destroy_node()


def main(args: Optional[List[str]] = None) -> int:
    """Entry point (console script ``sim_node``)."""
    return run_node(lambda a: SimNode(), args)


if __name__ == '__main__':
    raise SystemExit(main())
