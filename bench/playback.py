"""Playback slack: a slow model's late chunks against chunks that arrive in time, over DDS.

The safety controller runs as its own process at 100 Hz; this process plays the robot
(joint_states = the last command) and the policy. Slow regime (issue 16): a chunk every
100 ms whose steps are due 50-150 ms after a stamp 120 ms before it is sent, so each chunk
brings only 30 ms of future. In-time regime, the baseline: the same rate, stamped 10 ms
before sending, steps 50-450 ms. Then the transition back from slow to in time. Reported:
the share of command ticks standing still, ``chunk_exhausted`` stops, the lag and speed
``safety/execution`` reports, and gate interventions by reason.
"""

import math
import os
import tempfile
import time
from typing import Dict

from bench.estop import _Rig, JOINTS, PARAMS
import numpy as np

from wam_runtime.processes import NodeProcess, random_domain_id, ros_env, wait_for, \
    write_params

HOME = np.array([0.0, -0.25, 2.0, 1.5, 0.0, -0.1])
REGIMES = {'slow': (0.12, 0.05, 0.15), 'in_time': (0.01, 0.05, 0.45)}   # delay, first, last
_T0 = [0.0]          # the reference motion starts at HOME when the first stream starts


def _reference(t: float) -> np.ndarray:
    q = HOME.copy()
    q[0] += 0.4 * math.sin(1.5 * (t - _T0[0]))
    q[1] += 0.2 * math.sin(1.1 * (t - _T0[0]))
    return q


def _send(rig: _Rig, delay: float, first: float, last: float) -> None:
    from builtin_interfaces.msg import Time
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
    from wam_runtime.ros.conversions import s_to_duration
    ns = rig.node.get_clock().now().nanoseconds - int(delay * 1e9)
    stamp = ns * 1e-9
    msg = JointTrajectory(joint_names=JOINTS)
    msg.header.stamp = Time(sec=ns // 10 ** 9, nanosec=ns % 10 ** 9)
    for t in np.arange(first, last + 1e-9, 0.01):
        msg.points.append(JointTrajectoryPoint(positions=_reference(stamp + t).tolist(),
                                               time_from_start=s_to_duration(float(t))))
    rig.chunk_pub.publish(msg)


def _run(rig: _Rig, plan, warm_up_s: float = 0.5) -> Dict[str, Dict]:
    """Send a chunk every 100 ms, regime by regime without a break; summarise each.

    ``plan`` is a list of (name, regime, duration_s). The first ``warm_up_s`` of each
    stretch are left out of its summary (the lag and the estimates settle).
    """
    windows = []
    _T0[0] = rig.node.get_clock().now().nanoseconds * 1e-9
    next_t = time.monotonic()
    for name, regime, duration_s in plan:
        delay, first, last = REGIMES[regime]
        start = time.monotonic()
        while time.monotonic() < start + duration_s:
            _send(rig, delay, first, last)
            next_t += 0.1
            time.sleep(max(0.0, next_t - time.monotonic()))
        windows.append((name, start, time.monotonic()))
    time.sleep(0.05)
    return {name: _summary(rig, start + (0.0 if name.endswith('transition') else warm_up_s),
                           end, start)
            for name, start, end in windows}


def _summary(rig: _Rig, t0: float, t1: float, start: float) -> Dict:
    with rig.lock:
        cmds = [q for t, q in rig.commands if t0 <= t <= t1]
    steps = np.abs(np.diff(np.asarray(cmds), axis=0)).max(axis=1)
    rows = [(t, e) for t, e in list(rig.execution) if t0 <= t <= t1]
    times = np.array([t for t, _ in rows])
    lags = np.array([e['lag_s'] for _, e in rows])
    speeds = np.array([e['playback_speed'] for _, e in rows])
    small = np.flatnonzero(lags < 1e-3)
    events: Dict[str, int] = {}
    for t, name in list(rig.events):
        if t0 <= t <= t1:
            events[name] = events.get(name, 0) + 1
    return {
        'commands': int(len(cmds)),
        'standing_still_share': float(np.mean(steps < 1e-9)) if steps.size else float('nan'),
        'chunk_exhausted': events.get('chunk_exhausted', 0),
        'lag_ms_first': float(lags[0] * 1e3) if lags.size else float('nan'),
        'lag_ms_p50': float(np.median(lags) * 1e3) if lags.size else float('nan'),
        'lag_ms_max': float(lags.max() * 1e3) if lags.size else float('nan'),
        'lag_below_1ms_after_s': float(times[small[0]] - start) if small.size else None,
        'speed_p50': float(np.median(speeds)) if speeds.size else float('nan'),
        'speed_min': float(speeds.min()) if speeds.size else float('nan'),
        'speed_max': float(speeds.max()) if speeds.size else float('nan'),
        'events': events,
    }


def bench_playback_slack(args) -> Dict:
    """Slow-model chunks vs chunks in time through the safety controller over DDS."""
    duration = max(3.0, min(float(getattr(args, 'duration_s', 15.0)), 6.0))
    out_dir = tempfile.mkdtemp(prefix='wam_bench_playback_')
    domain = random_domain_id()
    params = dict(PARAMS, max_chunk_age_s=1.0, command_timeout_s=0.5)
    pf = write_params(os.path.join(out_dir, 'safety.yaml'), 'safety_controller', params)
    proc = NodeProcess('wam_runtime.ros.safety_controller', ros_env(domain),
                       'safety_controller', pf, log_dir=out_dir)
    rig = _Rig(domain)
    try:
        wait_for(lambda: len(rig.commands) > 50, 60.0)
        wait_for(lambda: rig.chunk_pub.get_subscription_count() > 0, 30.0)
        results = _run(rig, [('in_time_baseline', 'in_time', duration),
                             ('slow', 'slow', duration),
                             ('in_time_again_transition', 'in_time', 2.0)])
        alive = proc.alive()
    finally:
        rig.close()
        proc.stop()
    return {
        'what': 'safety_controller at 100 Hz over DDS, chunks every 100 ms; slow: steps '
                '50-150 ms after a stamp 120 ms old (30 ms of future per chunk); in time: '
                'stamp 10 ms old, steps 50-450 ms; the first 0.5 s of each stream is '
                'warm-up and left out, except in the transition (the first 2 s in time '
                'again, straight after the slow stretch)',
        **results,
        'ratio_standing_still_slow_vs_in_time':
            results['slow']['standing_still_share']
            / max(results['in_time_baseline']['standing_still_share'], 1e-3),
        'target': 'slow: no standing still and no chunk_exhausted; lag bounded by '
                  'max_chunk_age_s (1 s); back in time: the lag worked off without a jump',
        'node_alive_after': alive,
    }
