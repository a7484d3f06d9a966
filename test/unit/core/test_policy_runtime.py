"""PolicyRuntime: when it infers, what it waits for, and reruns on recorded inputs.

Driven on a synthetic clock (integer ns) with a generated model, as the replay and the
simulator evaluator drive it: no ROS, no wall clock.
"""

import numpy as np
import pytest

from wam_runtime.core.image import RawFrame
from wam_runtime.core.inference import OnnxPolicy
from wam_runtime.core.interfaces import execution_data, EXECUTION_LABELS
from wam_runtime.core.joint_states import JointStateError
from wam_runtime.core.params import ConfigError
from wam_runtime.core.policy_config import build_policy_config
from wam_runtime.core.policy_runtime import CHUNK, EARLY, IDLE, PolicyRuntime, REJECTED, WAIT
from wam_runtime.testing import DEFAULT_JOINTS
from wam_runtime.testing.model_gen import write_model

MS = 1_000_000


def _frame(value: int, size: int = 64) -> RawFrame:
    data = np.full((size, size, 3), value, np.uint8).tobytes()
    return RawFrame(data, size, size, 'rgb8', size * 3, False)


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('models')
    return {'plain': write_model(str(tmp / 'plain.onnx')),
            'prefix': write_model(str(tmp / 'prefix.onnx'), prefix=True, world_model=True),
            'two': write_model(str(tmp / 'two.onnx'), cameras=('left', 'right'))}


def _runtime(path, **params):
    config = build_policy_config({'model_path': path, **params})
    policy = OnnxPolicy(path, intra_op_num_threads=1, inter_op_num_threads=1,
                        log=lambda line: None)
    return PolicyRuntime(config, policy)


def _state(rt, t_ns, q=None):
    q = np.zeros(len(DEFAULT_JOINTS)) if q is None else q
    rt.on_joint_state(list(DEFAULT_JOINTS), q, t_ns, t_ns)


def test_rate_window_then_first_new_frame_infers(models):
    rt = _runtime(models['plain'], inference_rate_hz=10.0)
    assert rt.poll(0).outcome == IDLE                     # nothing arrived
    _state(rt, 0)
    rt.on_frame('scene', 0, _frame(100), 0)
    first = rt.poll(1 * MS)
    assert first.outcome == CHUNK and first.chunk.stamp_ns == 0
    assert first.chunk.actions.shape == (16, len(DEFAULT_JOINTS))
    rt.on_published(first.chunk, 5 * MS)
    # Inside 0.9 / rate of the first inference: too early, and that frame is used up.
    _state(rt, 33 * MS)
    rt.on_frame('scene', 33 * MS, _frame(110), 33 * MS)
    assert rt.poll(34 * MS).outcome == EARLY
    assert rt.poll(95 * MS).outcome == IDLE               # no new frame since
    _state(rt, 100 * MS)
    rt.on_frame('scene', 100 * MS, _frame(120), 100 * MS)
    later = rt.poll(100 * MS)
    assert later.outcome == CHUNK and later.chunk.stamp_ns == 100 * MS
    assert later.chunk.inputs.frame_stamps_ns == {'scene': 100 * MS}
    rt.close()


def test_a_lagging_camera_is_waited_for_then_counted(models):
    rt = _runtime(models['two'], max_observation_skew_s=0.02, inference_rate_hz=10.0)
    _state(rt, 0)
    rt.on_frame('left', 0, _frame(90), 0)
    rt.on_frame('right', 0, _frame(90), 0)
    assert rt.poll(0).outcome == CHUNK
    _state(rt, 200 * MS)
    rt.on_frame('left', 200 * MS, _frame(90), 200 * MS)     # right still at 0: skewed
    step = rt.poll(200 * MS)
    assert step.outcome == WAIT and step.wait_until_ns == 220 * MS
    rt.on_frame('right', 205 * MS, _frame(90), 205 * MS)    # it comes within the wait
    step = rt.poll(205 * MS)
    assert step.outcome == CHUNK and step.chunk.skew_s == pytest.approx(0.005)
    _state(rt, 400 * MS)
    rt.on_frame('left', 400 * MS, _frame(90), 400 * MS)
    assert rt.poll(400 * MS).outcome == WAIT
    step = rt.poll(421 * MS)                                # the wait is over: counted
    assert step.outcome == REJECTED and step.reason == 'observation_skewed'
    assert rt.snapshot_counters() == {'observation_skewed': 1}
    # A rejection never uses up the rate window: the next complete observation infers.
    _state(rt, 425 * MS)
    rt.on_frame('right', 425 * MS, _frame(90), 425 * MS)
    rt.on_frame('left', 425 * MS, _frame(90), 425 * MS)
    assert rt.poll(426 * MS).outcome == CHUNK
    rt.close()


def test_remaining_trigger_infers_early_when_the_chunk_runs_out(models):
    rt = _runtime(models['plain'], inference_rate_hz=1.0, inference_trigger='remaining',
                  trigger_remaining_s=0.3)
    _state(rt, 0)
    rt.on_frame('scene', 0, _frame(100), 0)
    chunk = rt.poll(0).chunk
    rt.on_published(chunk, 10 * MS)
    rt.on_frame('scene', 100 * MS, _frame(100), 100 * MS)
    _state(rt, 100 * MS)
    plenty = execution_data(chunk.stamp_ns, 2, 0.7, 1.0, 0.0, 100 * MS)
    assert rt.on_execution(EXECUTION_LABELS, plenty, 100 * MS)
    assert rt.poll(100 * MS).outcome == EARLY              # 1 Hz window, 0.7 s left
    rt.on_frame('scene', 150 * MS, _frame(100), 150 * MS)
    _state(rt, 150 * MS)
    running_out = execution_data(chunk.stamp_ns, 12, 0.2, 1.0, 0.0, 150 * MS)
    assert rt.on_execution(EXECUTION_LABELS, running_out, 150 * MS)
    assert rt.poll(150 * MS).outcome == CHUNK              # runs out: go now
    assert not rt.on_execution(['chunk_stamp_sec'], [1.0], 160 * MS)
    assert rt.snapshot_counters()['execution_feedback_rejected'] == 1
    rt.close()


def test_rerun_on_recorded_inputs_is_bit_for_bit(models):
    """What a live run inferred on, rerun by another runtime, gives the same chunk."""
    live = _runtime(models['prefix'])
    chunks = []
    for k in range(4):
        t = k * 100 * MS
        _state(live, t, np.full(len(DEFAULT_JOINTS), 0.01 * k))
        live.on_frame('scene', t, _frame(60 + 30 * k), t)
        step = live.poll(t)
        assert step.outcome == CHUNK
        live.on_published(step.chunk, t + 20 * MS)
        live.on_execution(EXECUTION_LABELS, execution_data(step.chunk.stamp_ns, 1, 0.7, 1.0,
                                                           0.0, t + 25 * MS), t + 30 * MS)
        chunks.append(step.chunk)
    assert chunks[-1].inputs.prefix_targets is not None      # the prefix was in use
    for late_ms, differs in ((20, False), (250, True)):
        other = _runtime(models['prefix'])
        for k, recorded in enumerate(chunks):
            frames = {'scene': _frame(60 + 30 * k)}
            again = other.rerun(recorded.inputs, frames)
            assert np.array_equal(again.actions, recorded.actions)
            assert again.surprise == recorded.surprise
            other.on_published(again, recorded.stamp_ns + late_ms * MS)
        # Published later than the live run did, its own prefix would differ: it says so,
        # and still reproduces the recorded chunks.
        assert ('prefix_differs' in other.snapshot_counters()) == differs
        other.close()
    live.close()


def test_bad_joint_state_is_counted_and_raises(models):
    rt = _runtime(models['plain'])
    with pytest.raises(JointStateError):
        rt.on_joint_state(list(DEFAULT_JOINTS), [np.nan] * len(DEFAULT_JOINTS), 0, 0)
    assert rt.snapshot_counters() == {'joint_state_rejected': 1}
    assert not rt.on_joint_state(list(DEFAULT_JOINTS[:2]), [0.0, 0.0], 0, 0)
    assert rt.incomplete_for_s(2_000 * MS) == pytest.approx(2.0)
    rt.close()


@pytest.mark.parametrize('params, field', [
    ({'compressed_cameras': ['nope']}, 'compressed_cameras'),
    ({'joint_names': ['a', 'b']}, 'joint_names'),
])
def test_parameters_that_do_not_fit_the_model_are_refused(models, params, field):
    with pytest.raises(ConfigError, match=field):
        _runtime(models['plain'], **params)
