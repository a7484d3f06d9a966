"""ExecutionTracker: inference trigger from execution feedback, and prefix construction."""

import numpy as np
import pytest

from wam_runtime.core.interfaces import execution_data, execution_fields, EXECUTION_LABELS
from wam_runtime.core.realtime import ExecutionTracker
from wam_runtime.core.stamps import s_to_ns as ns


def test_prefix_is_the_executing_chunk_at_the_new_step_times():
    tr = ExecutionTracker(dt_s=0.05, horizon=4)
    assert tr.prefix(ns(1.0)) == (None, 0)
    old = np.array([[0.1], [0.2], [0.3], [0.4]])          # due at 1.05 .. 1.20
    tr.on_published(ns(1.0), old)
    tr.on_delay(0.06)
    targets, delay = tr.prefix(ns(1.1))                     # new steps at 1.15 .. 1.30
    np.testing.assert_allclose(targets[:, 0], [0.3, 0.4, 0.4, 0.4])
    assert delay == 2                                        # 60 ms = 1.2 steps -> 2


def test_feedback_selects_the_chunk_and_drives_the_trigger():
    tr = ExecutionTracker(dt_s=0.05, horizon=16)
    tr.on_published(ns(1.0), np.zeros((16, 2)))
    tr.on_published(ns(1.1), np.ones((16, 2)))
    assert tr.should_infer(2.0, 0.2) is None               # no feedback: use the rate
    tr.on_feedback(ns(1.0), remaining_s=0.5, speed=1.0, received_s=2.0)
    assert tr.executing_chunk()[0] == ns(1.0)
    assert tr.should_infer(2.1, 0.2) is False             # 0.4 s left
    assert tr.should_infer(2.31, 0.2) is True             # 0.19 s left
    tr.on_feedback(ns(1.0), remaining_s=0.5, speed=0.5, received_s=2.0)
    assert tr.remaining_s(2.4) == pytest.approx(0.3)      # slowed playback lasts longer
    assert tr.remaining_s(2.6) is None                    # stale feedback


def test_automatic_threshold_is_delay_plus_one_step():
    tr = ExecutionTracker(dt_s=0.05, horizon=16)
    tr.on_delay(0.1)
    tr.on_feedback(0, remaining_s=0.2, speed=1.0, received_s=0.0)
    assert tr.should_infer(0.0, 0.0) is False
    assert tr.should_infer(0.06, 0.0) is True             # 0.14 s <= 0.1 + 0.05


def test_a_chunk_published_after_the_last_feedback_counts_as_executing():
    tr = ExecutionTracker(dt_s=0.05, horizon=16)
    tr.on_published(ns(1.0), np.zeros((16, 1)))
    tr.on_feedback(ns(1.0), remaining_s=0.1, speed=1.0, received_s=1.7)
    assert tr.should_infer(1.7, 0.2) is True
    tr.on_published(ns(1.65), np.ones((16, 1)), published_s=1.705)   # feedback hasn't seen it
    assert tr.executing_chunk()[0] == ns(1.65)
    assert tr.remaining_s(1.71) == pytest.approx(1.65 + 0.8 - 1.71)
    assert tr.should_infer(1.71, 0.2) is False      # no second inference right away
    targets, _ = tr.prefix(ns(1.7))
    np.testing.assert_allclose(targets[:, 0], 1.0)  # prefix from the newest chunk


def test_feedback_names_chunks_exactly_one_nanosecond_apart():
    # Wall-clock stamps: float seconds cannot tell these two chunks apart; integers can.
    t0 = 1_700_000_000 * 1_000_000_000 + 123_456_789
    assert t0 * 1e-9 == (t0 + 1) * 1e-9
    tr = ExecutionTracker(dt_s=0.05, horizon=4)
    tr.on_published(t0, np.zeros((4, 1)), published_s=0.0)
    tr.on_published(t0 + 1, np.ones((4, 1)), published_s=0.0)
    tr.on_feedback(t0, remaining_s=0.1, speed=1.0, received_s=0.5)   # the older one runs
    stamp, positions = tr.executing_chunk()
    assert stamp == t0 and positions[0, 0] == 0.0


def test_execution_feedback_is_read_by_label():
    sec, nanosec = 1_700_000_000, 123_456_789
    fields = execution_fields(EXECUTION_LABELS, [sec, nanosec, 3, 0.25, 0.8, 0.01, sec + 1, 5])
    assert fields['chunk_stamp_ns'] == sec * 1_000_000_000 + nanosec
    assert fields['remaining_s'] == 0.25 and fields['playback_speed'] == 0.8
    assert fields['tick_ns'] == (sec + 1) * 1_000_000_000 + 5
    data = execution_data(fields['chunk_stamp_ns'], 3, 0.25, 0.8, 0.01, fields['tick_ns'])
    assert data[:8] == [sec, nanosec, 3, 0.25, 0.8, 0.01, sec + 1, 5]
    assert fields['adopted_ns'] is None and execution_fields(EXECUTION_LABELS, data)[
        'adopted_ns'] is None                      # NaN: adoption time unknown
    data = execution_data(fields['chunk_stamp_ns'], 3, 0.25, 0.8, 0.01, 7, adopted_ns=6)
    assert execution_fields(EXECUTION_LABELS, data)['adopted_ns'] == 6
    # Feedback from before the tick time was sent: read, without it.
    assert execution_fields(EXECUTION_LABELS[:6], [sec, nanosec, 3, 0.25, 0.8, 0.01])[
        'tick_ns'] is None
    # Another field order (or an extra field) is read by the labels, not by position.
    labels = ['remaining_s', 'extra', 'chunk_stamp_nanosec', 'chunk_stamp_sec']
    fields = execution_fields(labels, [0.5, 7.0, nanosec, sec])
    assert fields['chunk_stamp_ns'] == sec * 1_000_000_000 + nanosec
    assert fields['remaining_s'] == 0.5 and fields['playback_speed'] == 1.0
    # Broken stamps are refused, not guessed.
    assert execution_fields(EXECUTION_LABELS, [sec, 1.5, 0, 0.2, 1, 0]) is None
    assert execution_fields(EXECUTION_LABELS, [sec, float('nan'), 0, 0.2, 1, 0]) is None
    assert execution_fields(EXECUTION_LABELS, [sec, 1e9, 0, 0.2, 1, 0]) is None
    assert execution_fields(['chunk_stamp_sec'], [sec]) is None
