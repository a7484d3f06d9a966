"""Observation assembly: latest frames + the joint state nearest them, skew and age checks."""

import math

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from wam_runtime.core.observation import (
    FROM_FUTURE, NO_NEW_FRAME, NotReady, ObservationAssembler, s_to_ns as ns, SKEWED, STALE,
    WAITING_CAMERA, WAITING_STATE)


def _reason(asm, now):
    with pytest.raises(NotReady) as info:
        asm.take(ns(now))
    return info.value.reason


def _q(v):
    return np.full(2, v)


def test_waits_for_every_camera_and_the_state():
    asm = ObservationAssembler(['a', 'b'], max_age_s=0.5, max_skew_s=0.1)
    assert _reason(asm, 10.0) == WAITING_CAMERA
    asm.put_frame('a', ns(10.0), 'A0')
    assert _reason(asm, 10.0) == WAITING_CAMERA
    asm.put_frame('b', ns(10.0), 'B0')
    assert _reason(asm, 10.0) == WAITING_STATE
    asm.put_state(ns(10.0), _q(1))
    obs = asm.take(ns(10.01))
    assert obs.frames == {'a': 'A0', 'b': 'B0'} and obs.stamp_ns == ns(10.0)
    assert _reason(asm, 10.02) == NO_NEW_FRAME       # each observation is returned once
    asm.put_frame('b', ns(10.03), 'B1')                  # one new frame is enough
    assert asm.take(ns(10.04)).frames == {'a': 'A0', 'b': 'B1'}


def test_stamp_is_the_oldest_part_and_state_is_the_one_nearest_the_frames():
    asm = ObservationAssembler(['a', 'b'], max_age_s=0.5, max_skew_s=0.1)
    for i, t in enumerate(np.arange(9.90, 10.10, 0.01)):
        asm.put_state(ns(t), _q(i))
    asm.put_frame('a', ns(10.000), 'A', received_s=5.0)
    asm.put_frame('b', ns(10.031), 'B', received_s=5.2)
    obs = asm.take(ns(10.1))
    # Nearest to the newest frame (10.031) is the state stamped 10.03, not the latest (10.09).
    assert obs.state_stamp_s == pytest.approx(10.03)
    np.testing.assert_array_equal(obs.state, _q(13))
    assert obs.stamp_ns == ns(10.0) and obs.newest_ns == ns(10.031)
    assert obs.skew_s == pytest.approx(0.031)
    assert obs.received_s == 5.2


def test_skewed_parts_are_rejected_until_the_lagging_camera_catches_up():
    asm = ObservationAssembler(['a', 'b'], max_age_s=1.0, max_skew_s=0.05)
    asm.put_state(ns(10.0), _q(0))
    asm.put_frame('a', ns(10.0), 'A')
    asm.put_frame('b', ns(9.9), 'B')              # 100 ms behind camera a
    assert _reason(asm, 10.01) == SKEWED
    asm.put_frame('b', ns(9.98), 'B1')
    assert asm.take(ns(10.01)).frames['b'] == 'B1'


def test_state_far_from_the_frames_is_skew():
    asm = ObservationAssembler(['a'], max_age_s=1.0, max_skew_s=0.05)
    asm.put_state(ns(10.0), _q(0))
    asm.put_frame('a', ns(10.2), 'A')
    assert _reason(asm, 10.25) == SKEWED
    asm.put_state(ns(10.19), _q(1))
    assert asm.take(ns(10.25)).state_stamp_ns == ns(10.19)


def test_old_and_future_observations_are_rejected():
    asm = ObservationAssembler(['a'], max_age_s=0.5, max_skew_s=0.1)
    asm.put_state(ns(10.0), _q(0))
    asm.put_frame('a', ns(10.0), 'A')
    assert _reason(asm, 10.51) == STALE
    asm.put_frame('a', ns(10.6), 'A')
    asm.put_state(ns(10.6), _q(0))
    assert _reason(asm, 10.0) == FROM_FUTURE
    assert asm.take(ns(10.6)).stamp_ns == ns(10.6)


def test_state_history_restarts_when_time_goes_back():
    asm = ObservationAssembler(['a'], max_age_s=0.5, max_skew_s=0.1)
    asm.put_state(ns(100.0), _q(0))
    asm.put_state(ns(0.5), _q(1))                 # a simulator reset
    asm.put_frame('a', ns(0.5), 'A')
    obs = asm.take(ns(0.55))
    assert obs.state_stamp_ns == ns(0.5) and obs.state[0] == 1


def test_without_a_skew_limit_everything_recent_is_used():
    asm = ObservationAssembler(['a', 'b'], max_age_s=0.5)
    assert math.isinf(asm.max_skew_s)
    asm.put_state(ns(10.0), _q(0))
    asm.put_frame('a', ns(10.0), 'A')
    asm.put_frame('b', ns(9.6), 'B')
    assert asm.take(ns(10.0)).stamp_ns == ns(9.6)


@pytest.mark.parametrize('kwargs,field', [({'max_age_s': 0.0}, 'max_age_s'),
                                          ({'max_age_s': 1.0, 'max_skew_s': -1.0},
                                           'max_skew_s')])
def test_bad_limits_are_refused(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ObservationAssembler(['a'], **kwargs)


def test_replace_item_swaps_only_the_frame_it_was_made_from():
    asm = ObservationAssembler(['a'], max_age_s=0.5)
    assert asm.latest_item('a') is None
    raw1, raw2 = object(), object()
    asm.put_frame('a', ns(10.0), raw1, received_s=1.0)
    asm.put_state(ns(10.0), _q(0.0))
    assert asm.replace_item('a', raw1, 'tensor1')
    assert asm.latest_item('a') == 'tensor1'
    asm.put_frame('a', ns(10.03), raw2, received_s=2.0)
    assert not asm.replace_item('a', raw1, 'late tensor')   # a newer frame came meanwhile
    assert not asm.replace_item('b', raw1, 'x')
    obs = asm.take(ns(10.05))
    assert obs.frames == {'a': raw2} and obs.stamp_ns == ns(10.0) and obs.received_s == 2.0
    # Same frame, new form: stamps and receive time are kept, it is not "new" again.
    assert asm.replace_item('a', raw2, 'tensor2')
    assert _reason(asm, 10.05) == NO_NEW_FRAME


def test_a_synchronised_pair_after_a_pause_waits_for_the_lagging_camera():
    # Both cameras silent for longer than max_age, then left at T and right 10 ms later.
    asm = ObservationAssembler(['left', 'right'], max_age_s=0.5, max_skew_s=0.1)
    asm.put_state(ns(9.0), _q(0))
    asm.put_frame('left', ns(9.0), 'L0')
    asm.put_frame('right', ns(9.0), 'R0')
    asm.take(ns(9.0))
    asm.put_state(ns(12.0), _q(1))
    asm.put_frame('left', ns(12.0), 'L1')
    with pytest.raises(NotReady) as info:
        asm.take(ns(12.001))
    # Judged against the other camera's old frame: stale, but worth waiting for.
    assert info.value.reason == STALE and info.value.waitable
    assert "camera 'right'" in str(info.value)
    asm.put_frame('right', ns(12.01), 'R1')
    obs = asm.take(ns(12.011))
    assert obs.frames == {'left': 'L1', 'right': 'R1'} and obs.stamp_ns == ns(12.0)


def test_everything_old_is_stale_and_not_worth_waiting_for():
    asm = ObservationAssembler(['a', 'b'], max_age_s=0.5, max_skew_s=0.1)
    asm.put_state(ns(10.0), _q(0))
    asm.put_frame('a', ns(10.0), 'A')
    asm.put_frame('b', ns(10.0), 'B')
    with pytest.raises(NotReady) as info:
        asm.take(ns(11.0))
    assert info.value.reason == STALE and not info.value.waitable
    asm.put_frame('b', ns(9.8), 'B')
    with pytest.raises(NotReady) as info:
        asm.take(ns(10.0))
    assert info.value.reason == SKEWED and info.value.waitable


def test_float_stamps_are_refused():
    asm = ObservationAssembler(['a'], max_age_s=0.5)
    with pytest.raises(TypeError, match='integer nanoseconds'):
        asm.put_frame('a', 10.0, 'A')
    with pytest.raises(TypeError, match='integer nanoseconds'):
        asm.put_state(10.0, _q(0))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**62), st.lists(st.integers(0, 50_000_000), min_size=3, max_size=3))
def test_the_observation_stamp_is_exactly_the_oldest_part(base, offsets):
    # Stamps far from zero lose nanoseconds through float seconds; integers never do.
    asm = ObservationAssembler(['a', 'b'], max_age_s=0.5, max_skew_s=0.1)
    a, b, s = (base + o for o in offsets)
    asm.put_frame('a', a, 'A')
    asm.put_frame('b', b, 'B')
    asm.put_state(s, _q(0))
    obs = asm.take(max(a, b, s))
    assert obs.stamp_ns == min(a, b, s) and obs.newest_ns == max(a, b, s)
    assert obs.state_stamp_ns == s and type(obs.stamp_ns) is int
