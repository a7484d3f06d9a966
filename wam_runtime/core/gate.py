"""The safety gate: a pure function from a requested command to an allowed one.

Every outgoing command passes ``gate_step``. For each joint it computes the interval the
next position may take given the previous outputs (position, velocity, acceleration) and
the limits, in priority order: position limits (with margin) > braking distance to the
position limits > velocity > acceleration > jerk. Then:

- a request with any non-finite value is not a request: every joint holds (NaN fails every
  comparison, so a min/max clamp would let it through; we test for it first);
- ``uniform`` scaling (default) moves from the natural continuation of the current motion
  towards the request as far as every joint's interval allows, so the direction of motion
  in joint space is kept; ``per_joint`` clamps each joint on its own;
- ``dt`` is capped at the nominal control period, so a late tick or a clock jump never
  widens a window, and ``dt <= 0``, NaN or below 1 ns (ROS time's resolution) repeats the
  previous output with the motion state unchanged;
- a stop (``stop``, or a request equal to the current position: the controller's
  controlled stop) brakes every joint to a standstill with the time-optimal jerk-limited
  stop of ``wam_runtime.core.braking``: velocity and acceleration reach 0 together, within
  ceil(T_stop / dt) + 2 ticks of the analytic minimum, without passing the stopping point.

An optional workspace guard (``wam_runtime.core.workspace``) then checks Cartesian frames.
A command is admissible when the monitored frames are inside the workspace both at the
command and along the path the arm would take if it braked from there (every joint making
the gate's own stop, ``braking_path``), and the end effector is within its speed limit. So
the arm slows down approaching a wall and its stop fits the acceleration limits. A command
that is not admissible is replaced by the farthest admissible point on the way from the
braking step (the stop's first) to the command; when even that braking step is not
admissible (the arm was already closer than its stopping distance) the braking step is
taken if it is inside the workspace (``workspace_brake``), else the arm holds
(``workspace_hold``, the last resort: position wins over acceleration).
"""

from dataclasses import dataclass, field
import math
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from wam_runtime.core.braking import (  # noqa: F401 (braking_speed, FAR, MIN_DT: public here)
    braking_speed, FAR, MIN_DT, ramp_down_cap, stop_acceleration, travel_bound)
from wam_runtime.core.limits import JointLimits

NON_FINITE = 'non_finite'
POSITION_LIMIT = 'position_limit'
BRAKING_LIMIT = 'braking_distance'
VELOCITY_LIMIT = 'velocity_limit'
ACCELERATION_LIMIT = 'acceleration_limit'
JERK_LIMIT = 'jerk_limit'
WORKSPACE_LIMIT = 'workspace'
WORKSPACE_BRAKE = 'workspace_brake'
WORKSPACE_HOLD = 'workspace_hold'
EE_SPEED_LIMIT = 'ee_speed_limit'
# Workspace check outcomes (``check`` of a guard).
OUTSIDE = 'outside'          # the command itself leaves the workspace
BRAKING = 'braking'          # its braking path leaves the workspace
EE_SPEED = 'ee_speed'        # the end effector would be too fast

SCALING_MODES = ('uniform', 'per_joint')
# Workspace: braking paths are simulated for at most this many ticks; the admissible
# point between braking and the request is found to 1/2**BISECTIONS of the step.
BRAKE_STEPS_MAX = 1000
BISECTIONS = 7


@dataclass(frozen=True)
class GateState:
    """The motion the gate has commanded so far: last position, velocity, acceleration."""

    position: np.ndarray
    velocity: np.ndarray
    acceleration: np.ndarray

    @classmethod
    def at_rest(cls, position: Sequence[float]) -> 'GateState':
        """Return a state holding still at ``position``."""
        p = np.asarray(position, dtype=np.float64).copy()
        return cls(p, np.zeros_like(p), np.zeros_like(p))

    def advance(self, position: np.ndarray, dt: float) -> 'GateState':
        """Return the state after commanding ``position`` ``dt`` seconds after this one."""
        v = (position - self.position) / dt
        return GateState(position.copy(), v, (v - self.velocity) / dt)


@dataclass(frozen=True)
class Intervention:
    """One change the gate made: reason code, joint or frame, requested and allowed value."""

    reason: str
    joint: str
    requested: float
    allowed: float


@dataclass
class GateResult:
    """The allowed command, the interventions that produced it and the new state."""

    command: np.ndarray
    interventions: List[Intervention] = field(default_factory=list)
    state: Optional[GateState] = None


def next_position_bounds(state: GateState, limits: JointLimits, dt: float,
                         margin_rad: float = 0.0, stop: bool = False
                         ) -> Tuple[np.ndarray, np.ndarray, dict]:
    """Return (lo, hi, named) bounds of the next position for every joint.

    ``named`` holds what ``_binding_reason`` needs to tell which constraint bound a
    clamped joint (computed only then). With ``stop`` the window is the single next
    position (lo == hi) of the jerk-limited stop (``braking.stop_acceleration``), clamped
    into the position and speed windows: the stop itself keeps the acceleration and jerk
    limits and never lets the velocity pass 0, so the ramp-down caps (which keep room to
    turn before the opposite speed limit) do not apply to it.
    """
    p, v, a = state.position, state.velocity, state.acceleration
    amax, jmax, vmax = limits.max_acceleration, limits.max_jerk, limits.max_velocity
    pos_lo = limits.lower + margin_rad
    pos_hi = limits.upper - margin_rad
    # Speed ceilings: the velocity limit, and the speed from which the joint can still stop
    # before its position limit.
    vb_up = braking_speed(pos_hi - p, dt, amax, limits.brake_ramp_s)
    vb_dn = braking_speed(p - pos_lo, dt, amax, limits.brake_ramp_s)
    ceil_up = np.minimum(vmax, vb_up)
    ceil_dn = np.minimum(vmax, vb_dn)
    a_lo = np.maximum(a - jmax * dt, -amax)
    a_hi = np.minimum(a + jmax * dt, amax)
    stuck = a_lo > a_hi                      # |a| beyond amax (after a position clamp)
    if stop:
        # Such a state has broken the jerk limit already: the stop takes the best
        # acceleration within the acceleration limit (held at -amax it would ring).
        a_lo = np.where(stuck, -amax, a_lo)
        a_hi = np.where(stuck, amax, a_hi)
        a_stop = stop_acceleration(v, a_lo, a_hi, dt, limits._stop_jerk,
                                   limits._stop_inv_jerk)
        dyn_stop = v + a_stop * dt
    else:
        a_lo = np.where(stuck, np.minimum(np.maximum(a, -amax), amax), a_lo)   # nearest
        a_hi = np.where(stuck, a_lo, a_hi)
        # Under a jerk limit the acceleration must be small enough to be ramped down before
        # the velocity reaches its ceiling (the same idea as braking, one derivative up).
        a_cap_up = ramp_down_cap(ceil_up - v, dt, jmax)
        a_cap_dn = ramp_down_cap(ceil_dn + v, dt, jmax)
        a_hi = np.maximum(np.minimum(a_hi, a_cap_up), a_lo)
        a_lo = np.minimum(np.maximum(a_lo, -a_cap_dn), a_hi)
    dyn_lo, dyn_hi = v + a_lo * dt, v + a_hi * dt          # reachable velocities
    v_lo = np.maximum(dyn_lo, -ceil_dn)
    v_hi = np.minimum(dyn_hi, ceil_up)
    over = v_lo > v_hi                       # too fast: brake as hard as allowed
    v_lo = np.where(over, np.where(dyn_lo > ceil_up, dyn_lo, dyn_hi), v_lo)
    v_hi = np.where(over, v_lo, v_hi)
    if stop:
        v_lo = v_hi = np.minimum(np.maximum(dyn_stop, v_lo), v_hi)
    # np.minimum/np.maximum: np.clip costs several microseconds more per call here.
    lo = np.minimum(np.maximum(p + v_lo * dt, pos_lo), pos_hi)
    hi = np.minimum(np.maximum(p + v_hi * dt, pos_lo), pos_hi)
    lo = np.minimum(lo, hi)
    named = {'p': p, 'v': v, 'a': a, 'dt': dt, 'pos': (pos_lo, pos_hi),
             'brake': (p - vb_dn * dt, p + vb_up * dt)}
    return lo, hi, named


def _binding_reason(j: int, requested: float, allowed: float, named: dict,
                    limits: JointLimits) -> str:
    """Return the constraint whose bound on the clamped side is tightest."""
    p, v, a, dt = named['p'][j], named['v'][j], named['a'][j], named['dt']
    vmax = limits.max_velocity[j]
    amax, jmax = limits.max_acceleration[j], limits.max_jerk[j]
    boxes = (
        (POSITION_LIMIT, named['pos'][0][j], named['pos'][1][j]),
        (BRAKING_LIMIT, named['brake'][0][j], named['brake'][1][j]),
        (VELOCITY_LIMIT, p - vmax * dt, p + vmax * dt),
        (ACCELERATION_LIMIT, p + (v - amax * dt) * dt, p + (v + amax * dt) * dt),
        (JERK_LIMIT, p + (v + (a - jmax * dt) * dt) * dt, p + (v + (a + jmax * dt) * dt) * dt),
    )
    upper = requested > allowed
    best, best_bound = VELOCITY_LIMIT, None
    for reason, lo, hi in boxes:
        bound = hi if upper else lo
        if best_bound is None or (bound < best_bound - 1e-12 if upper
                                  else bound > best_bound + 1e-12):
            best, best_bound = reason, bound
    return best


def gate_step(requested: Sequence[float], state: GateState, limits: JointLimits,
              dt_s: float, nominal_dt_s: float, margin_rad: float = 0.0,
              scaling: str = 'uniform', workspace_ok: Optional[Any] = None,
              stop: Optional[bool] = None) -> GateResult:
    """Return the command closest to ``requested`` that the limits allow after ``state``.

    ``stop`` brakes to a standstill as fast as the limits allow, wherever that ends
    (``requested`` is then ignored): the jerk-limited stop of ``braking.stop_acceleration``,
    every joint on its own, never reversing past its stopping point, with the position
    limits and braking distances still first. ``None`` (default): stop when ``requested``
    equals the current position in every joint ("stay where you are" while moving means
    stop, not go back), which is what the controller's controlled stop and the hold on a
    non-finite request ask for; at rest both readings are the same.

    ``workspace_ok`` (optional) is a guard with ``check(q, previous, dt, path, speed,
    reach)`` returning None, OUTSIDE, BRAKING or EE_SPEED
    (``wam_runtime.core.workspace.WorkspaceGuard``), or a plain predicate
    ``ok(q, previous, dt) -> bool`` (position only, no braking path).
    """
    req = np.asarray(requested, dtype=np.float64)
    p = state.position
    names = limits.joint_names
    if req.shape != p.shape:
        raise ValueError(f'requested has shape {req.shape}, state {p.shape}')
    dt = float(dt_s)
    # NaN, -0.0, negative dt and dt below ROS time's resolution (MIN_DT) all mean "no time
    # has passed": repeat the last output.
    # Windows use dt capped at the nominal period; the motion state is estimated over the
    # real elapsed time (bounded), so a late tick neither widens a window nor fakes a
    # velocity spike.
    elapsed = min(dt, 2.0 * float(nominal_dt_s)) if dt >= MIN_DT else 0.0
    dt = min(dt, float(nominal_dt_s)) if dt >= MIN_DT else 0.0
    bad = ~np.isfinite(req)
    if bad.any() or dt == 0.0:
        out = [Intervention(NON_FINITE, names[j], float(req[j]), float(p[j]))
               for j in np.flatnonzero(bad)]
        if dt > 0.0:
            # Hold by braking within the limits, not by stopping dead.
            result = gate_step(p, state, limits, dt, nominal_dt_s, margin_rad, 'per_joint',
                               workspace_ok, True)
            result.interventions[:0] = out
            return result
        return GateResult(p.copy(), out, state)
    if stop is None:
        stop = bool((req == p).all())
    lo, hi, named = next_position_bounds(state, limits, dt, margin_rad, stop)
    inside = (req >= lo) & (req <= hi)
    base = np.minimum(np.maximum(p + state.velocity * dt, lo), hi)   # natural continuation
    if inside.all():
        cmd = req.copy()
    elif scaling == 'per_joint':
        cmd = np.minimum(np.maximum(req, lo), hi)
    else:
        step = req - base
        room = np.full(step.shape, np.inf)
        up, dn = step > 1e-12, step < -1e-12      # a negligible step constrains nothing
        room[up] = (hi[up] - base[up]) / step[up]
        room[dn] = (lo[dn] - base[dn]) / step[dn]
        s = min(1.0, max(0.0, float(room.min())))
        cmd = np.minimum(np.maximum(base + s * step, lo), hi)
    out = [Intervention(_binding_reason(j, req[j], cmd[j], named, limits), names[j],
                        float(req[j]), float(cmd[j])) for j in np.flatnonzero(~inside)]
    if workspace_ok is not None:
        cmd, reason = _workspace_step(cmd, state, lo if stop else None, limits, dt,
                                      margin_rad, workspace_ok)
        if reason is not None:
            out.append(Intervention(reason, '', float('nan'), float('nan')))
    return GateResult(cmd, out, state.advance(cmd, elapsed))


def braking_reach(state: GateState, limits: JointLimits, dt: float) -> np.ndarray:
    """Return, per joint, a bound on how far it travels braking from ``state``.

    Each joint on its own, as ``braking_path`` brakes it, in either direction: while its
    acceleration (whichever sign) is ramped away under the jerk limit the speed changes by
    at most a^2 / 2j, then the ramp to full deceleration, then v^2 / 2a, plus two steps,
    with a 25% allowance for the discrete steps. Without an acceleration limit: two steps
    at the current speed.
    """
    return travel_bound(state.velocity, state.acceleration, dt, limits._inv_jerk,
                        limits._acc_or_0, limits._half_inv_acc, limits._finite_acc)


def braking_path(state: GateState, limits: JointLimits, dt: float,
                 margin_rad: float = 0.0,
                 max_steps: Optional[int] = None) -> Optional[np.ndarray]:
    """Return the positions the gate would command braking from ``state``, until rest.

    None when the arm is not at rest after ``max_steps`` steps (by default four times what a
    jerk-limited stop takes, at most BRAKE_STEPS_MAX): such a path is not checked, the
    command is treated as not admissible.

    Every joint makes the gate's own stop (``gate_step`` with ``stop``: the jerk-limited
    stop of ``braking.stop_acceleration`` within the gate's bounds, tick by tick, so the
    braking distance to the position limits is included). This is exactly the path of the
    fallback braking step, so a state whose braking path is inside the workspace has a
    successor whose braking path is too (the rest of the same).
    """
    if max_steps is None and not limits._finite_acc.all():
        max_steps = BRAKE_STEPS_MAX        # jerk-limited only: no simple stop time
    elif max_steps is None:
        v = np.minimum(np.abs(state.velocity), FAR)
        a = np.minimum(np.abs(state.acceleration), FAR)
        peak = v + 0.5 * a * a * limits._inv_jerk
        t_stop = 2.0 * peak * limits._half_inv_acc + (a + limits._acc_or_0) * limits._inv_jerk
        t_max = float(t_stop.max()) if t_stop.size else 0.0
        max_steps = int(min(BRAKE_STEPS_MAX, 4.0 * t_max / max(dt, MIN_DT) + 50))
    out = []
    for _ in range(max_steps + 1):
        # At rest to within 1e-6 rad/s and 1e-3 rad/s^2: what is left to travel is below
        # a nanoradian (the jerk-limited gate otherwise creeps towards exact zero).
        if not np.any(np.abs(state.velocity) > 1e-6) and \
                not np.any(np.abs(state.acceleration) > 1e-3):
            return np.array(out).reshape(-1, len(state.position))
        x = next_position_bounds(state, limits, dt, margin_rad, True)[0]
        state = state.advance(x, dt)
        out.append(x)
    return None


def _workspace_step(cmd: np.ndarray, state: GateState, brake: Optional[np.ndarray],
                    limits: JointLimits, dt: float, margin_rad: Any, guard: Any
                    ) -> Tuple[np.ndarray, Optional[str]]:
    """Return the admissible command nearest ``cmd`` on the way from braking, and why.

    ``brake`` is the gate's stop step from ``state`` (computed here when None).
    """
    p = state.position
    if hasattr(guard, 'check'):
        def check(x: np.ndarray) -> Optional[str]:
            nxt = state.advance(x, dt)
            return guard.check(x, p, dt, lambda: braking_path(nxt, limits, dt, margin_rad),
                               reach=braking_reach(nxt, limits, dt))
    else:                       # a plain predicate: the position only
        def check(x: np.ndarray) -> Optional[str]:
            return None if guard(x, p, dt) else OUTSIDE
    why = check(cmd)
    if why is None:
        return cmd, None
    # The braking step: the first step of the gate's stop (the first of braking_path).
    if brake is None:
        brake = next_position_bounds(state, limits, dt, margin_rad, True)[0]
    reason = EE_SPEED_LIMIT if why == EE_SPEED else WORKSPACE_LIMIT
    braking_why = check(brake)
    if braking_why is not None:
        # Already closer to a wall than the stopping distance (only when the arm started
        # there), or faster than the end-effector limit: brake as hard as the joint limits
        # allow, unless that step itself leaves the workspace.
        if braking_why != OUTSIDE:
            return brake, EE_SPEED_LIMIT if braking_why == EE_SPEED else WORKSPACE_BRAKE
        return p.copy(), WORKSPACE_HOLD
    lo_s, hi_s = 0.0, 1.0
    for _ in range(BISECTIONS):
        mid = 0.5 * (lo_s + hi_s)
        if check(brake + mid * (cmd - brake)) is None:
            lo_s = mid
        else:
            hi_s = mid
    return brake + lo_s * (cmd - brake), reason


def gate_command(requested: Sequence[float], previous: Sequence[float], limits: JointLimits,
                 dt_s: float, nominal_dt_s: float, margin_rad: float = 0.0) -> GateResult:
    """Gate one command after a previous one at rest (position and velocity limits only).

    Shorthand for ``gate_step`` with ``GateState.at_rest(previous)``; with finite
    acceleration limits use ``gate_step`` and carry the state.
    """
    return gate_step(requested, GateState.at_rest(previous), limits, dt_s, nominal_dt_s,
                     margin_rad)


def wrap_angle(x: np.ndarray) -> np.ndarray:
    """Return angles wrapped into [-pi, pi)."""
    return (np.asarray(x, dtype=np.float64) + math.pi) % (2.0 * math.pi) - math.pi


def unwrap_near(measured: np.ndarray, reference: np.ndarray,
                continuous: np.ndarray) -> np.ndarray:
    """Shift the continuous joints of ``measured`` by whole turns to lie nearest ``reference``.

    A continuous joint is commanded unwrapped (it may turn past +-pi); drivers report it
    wrapped. Other joints are returned unchanged.
    """
    out = np.asarray(measured, dtype=np.float64).copy()
    if continuous.any():
        c = continuous
        out[c] = reference[c] + wrap_angle(out[c] - reference[c])
    return out
