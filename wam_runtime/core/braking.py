"""Braking math for the safety gate: stopping speeds, ramp caps and the jerk-limited stop.

Pure numpy, per joint (vectorised over joints), no knowledge of the gate's state types.

The gate's motion model is the one its tests check: the commanded positions ``p_k`` at the
control period ``dt`` and their backward differences ``v_k = (p_k - p_{k-1}) / dt``,
``a_k = (v_k - v_{k-1}) / dt``, ``j_k = (a_k - a_{k-1}) / dt``. One tick chooses the next
acceleration ``a'`` within ``[a - J dt, a + J dt]`` and ``[-A, A]``; then
``v' = v + a' dt`` and ``p' = p + v' dt``.

The stop (``stop_acceleration``) is the time-optimal law of that discrete system for
bringing ``(v, a)`` to ``(0, 0)``: the acceleration is pushed as hard as the limits allow
towards the one value from which ramping the acceleration back to zero at the full jerk
limit ends exactly at zero velocity, and follows that value once reached. So the velocity
never passes zero unless the initial state makes it unavoidable (the stop then approaches
from the other side), and the stop ends within ``ceil(stop_time / dt) + 2`` ticks of the
continuous-time minimum (``stop_time``); see test/unit/core/test_braking.py.
"""

import numpy as np

# Distances are capped here in the braking formulas (rad; far beyond any joint): they stay
# finite and never overflow, whatever the limits (1e308 or inf distances included).
FAR = 1e150
# A step shorter than ROS time's resolution (s) is no step: the gate holds.
MIN_DT = 1e-9
# Jerk limits below this (rad/s^3) are treated as this in the stop law's switching value
# only (never in the limits themselves): it keeps the arithmetic in range.
MIN_JERK = 1e-100


def braking_speed(distance: np.ndarray, dt: float, max_acc: np.ndarray,
                  ramp_s: np.ndarray) -> np.ndarray:
    """Return the highest speed from which the joint can stop within ``distance``.

    Conservative for discrete steps of ``dt``: one more step at that speed, then a
    deceleration ramp of ``ramp_s`` to turn the acceleration around under the jerk limit,
    then ``max_acc``: v * (dt + ramp) + v^2 / (2 a) <= d, solved in a numerically stable
    form. Unlimited acceleration gives no braking bound.
    """
    d = np.maximum(distance, 0.0)
    np.minimum(d, FAR, out=d)
    lead = max(dt, MIN_DT) + ramp_s
    v = 2.0 * d / (lead + np.sqrt(lead * lead + 2.0 * d / max_acc))
    # Unlimited deceleration: the position clamp alone is the bound (no rounding twice).
    return np.where(np.isfinite(max_acc), v, np.inf)


def ramp_down_cap(margin: np.ndarray, dt: float, max_jerk: np.ndarray) -> np.ndarray:
    """Return the largest acceleration a jerk-limited ramp brings to 0 within ``margin``.

    Conservative for steps of ``dt``: a * 2dt + a^2 / (2 j) <= margin.
    """
    m = np.maximum(margin, 0.0)
    np.minimum(m, FAR, out=m)
    dt = max(dt, MIN_DT)
    cap = 2.0 * m / (2.0 * dt + np.sqrt(4.0 * dt * dt + 2.0 * m / max_jerk))
    return np.where(np.isfinite(max_jerk), cap, np.inf)   # without a jerk limit: no cap


def stop_jerk_terms(max_jerk: np.ndarray) -> tuple:
    """Return (jerk, inverse jerk) for ``stop_acceleration``: 0 and 0 where unlimited."""
    finite = np.isfinite(max_jerk)
    jerk = np.where(finite, np.maximum(max_jerk, MIN_JERK), 0.0)
    inv = np.where(finite, 1.0 / np.where(finite, jerk, 1.0), 0.0)
    return jerk, inv


def stop_acceleration(v: np.ndarray, a_lo: np.ndarray, a_hi: np.ndarray, dt: float,
                      jerk: np.ndarray, inv_jerk: np.ndarray) -> np.ndarray:
    """Return the next acceleration of the fastest stop from velocity ``v``.

    ``[a_lo, a_hi]`` is the acceleration window of this tick (jerk and acceleration
    limits, ``a_lo <= a_hi``); ``jerk`` and ``inv_jerk`` come from ``stop_jerk_terms``.

    The switching value ``-s alpha`` (s the sign of v) is the acceleration from which the
    ramp back to 0 at the full jerk step ``u = J dt`` per tick (``alpha - u``,
    ``alpha - 2u``, ... , 0) brings the velocity exactly to 0:
    ``|v| / dt = alpha + sum_i max(0, alpha - i u)``. With ``alpha = (m + f) u``
    (``m`` whole) that sum is ``(m + 1) (alpha - m u / 2)``, so ``m`` is the largest whole
    number with ``m (m + 1) / 2 <= |v| / (u dt)``. Without a jerk limit ``alpha = |v| / dt``.
    The result is the switching value clamped into the window: harder braking is not
    allowed, softer would waste time, and beyond it the velocity would pass 0.
    """
    w = np.minimum(np.abs(v), FAR) / dt
    steps = w * inv_jerk / dt                 # |v| / (u dt); 0 without a jerk limit
    m = np.floor(0.5 * (np.sqrt(8.0 * steps + 1.0) - 1.0))
    alpha = w / (m + 1.0) + (0.5 * dt) * m * jerk
    return np.minimum(np.maximum(-np.copysign(alpha, v), a_lo), a_hi)


def travel_bound(v: np.ndarray, a: np.ndarray, dt: float, inv_jerk: np.ndarray,
                 acc_or_0: np.ndarray, half_inv_acc: np.ndarray,
                 finite_acc: np.ndarray) -> np.ndarray:
    """Return a bound on each joint's travel braking from ``(v, a)`` (see braking_reach).

    ``inv_jerk``, ``acc_or_0`` and ``half_inv_acc`` are 1/J, A and 1/2A, 0 where unlimited.
    """
    v = np.minimum(np.abs(v), FAR)
    a = np.minimum(np.abs(a), FAR)   # either way: it may turn the joint
    peak = v + 0.5 * a * a * inv_jerk
    travel = peak * ((a + acc_or_0) * inv_jerk + 2.0 * dt) + peak * peak * half_inv_acc
    if not finite_acc.all():
        # No acceleration limit: with a jerk limit the speed still needs a triangle of
        # acceleration, 2 sqrt(v / j) long, to reach 0; with neither, one step.
        jerk_only = peak * (a * inv_jerk + 2.0 * np.sqrt(peak * inv_jerk) + 2.0 * dt)
        travel = np.where(finite_acc, travel, np.where(inv_jerk > 0, jerk_only, v * dt))
    return np.minimum(1.25 * travel + v * dt, FAR)


def stop_time(v0: np.ndarray, a0: np.ndarray, max_acc: np.ndarray,
              max_jerk: np.ndarray) -> np.ndarray:
    """Return the continuous-time minimum time to stop (v = a = 0) from ``(v0, a0)``.

    Under |a| <= A and |j| <= J (inf = unlimited), for a state whose stop keeps within the
    velocity limit (then that limit never binds). With ``sigma = v0 + a0 |a0| / 2J`` (the
    velocity left after ramping the acceleration straight to 0) and ``s = sign(sigma)``,
    in the frame ``v = s v0``, ``a = s a0``: the jerk is ``-J`` down to the peak
    deceleration ``a_p = sqrt(J v + a^2 / 2)``, then ``+J`` back to 0, so
    ``T = (a + 2 a_p) / J``; when ``a_p > A`` it holds ``-A`` in between:
    ``T = (a + A) / J + v / A + a^2 / (2 J A)``. Without a jerk limit ``T = |v0| / A``.
    """
    v0, a0 = np.asarray(v0, dtype=np.float64), np.asarray(a0, dtype=np.float64)
    fj, fa = np.isfinite(max_jerk), np.isfinite(max_acc)
    j = np.where(fj, max_jerk, 1.0)
    acc = np.where(fa, max_acc, 1.0)
    sigma = v0 + np.where(fj, a0 * np.abs(a0) / (2.0 * j), 0.0)
    s = np.where(sigma < 0.0, -1.0, 1.0)
    v, a = s * v0, s * a0
    a_p = np.sqrt(np.maximum(j * v + 0.5 * a * a, 0.0))
    t_peak = (a + 2.0 * a_p) / j
    t_hold = (a + acc) / j + v / acc + a * a / (2.0 * j * acc)
    t_jerk = np.where(fa & (a_p > acc), t_hold, t_peak)
    t_acc = np.where(fa, np.abs(v0) / acc, 0.0)
    return np.where(fj, t_jerk, t_acc)
