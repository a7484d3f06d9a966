"""OnnxPolicy with real ONNX Runtime: outputs, provider fallback, and refusal of bad models."""

import hashlib
import json

import numpy as np
import onnx
from onnx import helper, TensorProto
import pytest

from wam_runtime.core.contract import ContractError, METADATA_KEY
from wam_runtime.core.inference import (
    fallback_message, ModelLoadError, OnnxPolicy, ProviderConfig, select_providers)
from wam_runtime.testing.model_gen import build_model, expected_actions, make_contract_dict


def test_outputs_match_the_generated_function(generated_model):
    pol = OnnxPolicy(generated_model)
    q = np.linspace(-0.5, 0.5, 6)
    img = {'scene': np.full((1, 3, 64, 64), 0.8, np.float32)}
    out = pol.run(img, q)
    want = expected_actions(0.8, q, np.zeros(6), np.full(6, 0.3), 16, 0.1)
    np.testing.assert_allclose(out.actions, want, atol=1e-6)
    assert out.embedding is None and out.inference_s > 0
    assert pol.timing.total == 1     # warm-up runs are not recorded


def test_delta_actions_are_made_absolute(tmp_path):
    d = make_contract_dict()
    d['action']['mode'] = 'delta'
    d['action']['mean'] = [0.5] * 6
    d['action']['std'] = [2.0] * 6
    path = str(tmp_path / 'delta.onnx')
    onnx.save(build_model(contract=d, state_blend=0.0), path)
    pol = OnnxPolicy(path)
    q = np.arange(6) * 0.1
    out = pol.run({'scene': np.full((1, 3, 64, 64), 0.5, np.float32)}, q)
    # raw output is 0 at brightness 0.5 with a zero centre: action = q + (0 * 2 + 0.5)
    np.testing.assert_allclose(out.actions, np.repeat((q + 0.5)[None], 16, 0), atol=1e-6)


def test_world_model_outputs(tmp_path):
    path = str(tmp_path / 'wm.onnx')
    onnx.save(build_model(world_model=True), path)
    out = OnnxPolicy(path).run({'scene': np.full((1, 3, 64, 64), 0.25, np.float32)},
                               np.zeros(6))
    np.testing.assert_allclose(out.embedding, [0.25] * 3, atol=1e-6)
    np.testing.assert_allclose(out.predicted_embedding, out.embedding)


def test_gpu_first_provider_list_falls_back_to_cpu(generated_model):
    lines = []
    pol = OnnxPolicy(generated_model, providers=['TensorrtExecutionProvider',
                                                 'CUDAExecutionProvider',
                                                 'CPUExecutionProvider'], log=lines.append,
                     provider_config=ProviderConfig(tensorrt_fp16=True,
                                                    tensorrt_engine_cache_path='/tmp/trt'))
    assert pol.providers == ['CPUExecutionProvider']
    fallback = [line for line in lines if 'fallback' in line]
    assert len(fallback) == 1, lines          # logged once, in one line, with the reason
    assert fallback[0].startswith(
        'execution provider fallback to CPUExecutionProvider: TensorrtExecutionProvider, '
        'CUDAExecutionProvider: not in this onnxruntime build (it has ')
    assert pol.fallback == fallback[0]


def test_no_fallback_line_when_the_first_choice_runs(generated_model):
    lines = []
    pol = OnnxPolicy(generated_model, log=lines.append)
    assert pol.fallback is None and not any('fallback' in line for line in lines)


def test_fallback_message_reports_providers_that_failed_to_initialise():
    msg = fallback_message(['TensorrtExecutionProvider', 'CUDAExecutionProvider',
                            'CPUExecutionProvider'], ['CPUExecutionProvider'],
                           {'TensorrtExecutionProvider': 'not in this build',
                            'CUDAExecutionProvider': 'failed to initialise (no device)'})
    assert msg == ('execution provider fallback to CPUExecutionProvider: '
                   'TensorrtExecutionProvider: not in this build; CUDAExecutionProvider: '
                   'failed to initialise (no device)')
    assert fallback_message(['CPUExecutionProvider'], ['CPUExecutionProvider'], {}) is None


def test_provider_options():
    cfg = ProviderConfig(cuda_device_id=1, tensorrt_fp16=True,
                         tensorrt_engine_cache_path='/var/cache/trt')
    assert cfg.options_for('CUDAExecutionProvider') == {'device_id': 1}
    assert cfg.options_for('TensorrtExecutionProvider') == {
        'device_id': 1, 'trt_fp16_enable': True, 'trt_engine_cache_enable': True,
        'trt_engine_cache_path': '/var/cache/trt'}
    assert cfg.options_for('CPUExecutionProvider') == {}
    assert ProviderConfig().options_for('TensorrtExecutionProvider') == {
        'device_id': 0, 'trt_fp16_enable': False}


def test_io_binding_gives_the_same_outputs(tmp_path):
    path = str(tmp_path / 'wm.onnx')
    onnx.save(build_model(world_model=True, ramp_per_step=0.01), path)
    bound = OnnxPolicy(path, io_binding=True)
    plain = OnnxPolicy(path, io_binding=False)
    assert bound.io_binding and not plain.io_binding
    q = np.linspace(-0.3, 0.3, 6)
    for level in (0.1, 0.7):
        img = {'scene': np.full((1, 3, 64, 64), level, np.float32)}
        a, b = bound.run(img, q), plain.run(img, q)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.embedding, b.embedding)
    # Results are copies: a later run does not change an earlier output.
    first = bound.run({'scene': np.full((1, 3, 64, 64), 0.2, np.float32)}, q)
    keep = first.actions.copy(), first.embedding.copy()
    bound.run({'scene': np.full((1, 3, 64, 64), 0.9, np.float32)}, q)
    np.testing.assert_array_equal(first.actions, keep[0])
    np.testing.assert_array_equal(first.embedding, keep[1])


@pytest.mark.parametrize('io_binding', [True, False])
def test_float16_inputs_and_outputs(tmp_path, io_binding):
    path = str(tmp_path / 'fp16.onnx')
    onnx.save(build_model(world_model=True, float16_io=True,
                          camera_overrides={'scene': {'dtype': 'float16'}}), path)
    pol = OnnxPolicy(path, io_binding=io_binding)
    assert pol.zero_inputs()['scene'].dtype == np.float16
    q = np.linspace(-0.5, 0.5, 6)
    out = pol.run({'scene': np.full((1, 3, 64, 64), 0.8, np.float16)}, q)
    want = expected_actions(0.8, q, np.zeros(6), np.full(6, 0.3), 16, 0.1)
    assert out.actions.dtype == np.float64
    np.testing.assert_allclose(out.actions, want, atol=2e-3)
    np.testing.assert_allclose(out.embedding, [0.8] * 3, atol=1e-3)


def test_model_sha256_pin(generated_model):
    digest = hashlib.sha256(open(generated_model, 'rb').read()).hexdigest()
    assert OnnxPolicy(generated_model, model_sha256=digest).sha256 == digest
    assert OnnxPolicy(generated_model, model_sha256='sha256:' + digest.upper()).sha256 == digest
    wrong = ('0' if digest[0] != '0' else '1') + digest[1:]
    with pytest.raises(ModelLoadError) as info:
        OnnxPolicy(generated_model, model_sha256=wrong)
    msg = str(info.value)
    assert msg.startswith('model_sha256: ') and digest in msg and wrong in msg
    assert '\n' not in msg
    with pytest.raises(ModelLoadError, match='model_sha256: expected 64 hex digits'):
        OnnxPolicy(generated_model, model_sha256='abc')


def test_negative_thread_counts_are_refused(generated_model):
    with pytest.raises(ModelLoadError, match='inter_op_num_threads'):
        OnnxPolicy(generated_model, inter_op_num_threads=-1)


def test_select_providers_keeps_priority_order():
    assert select_providers(['B', 'A', 'C'], ['A', 'B', 'CPUExecutionProvider']) == \
        (['B', 'A'], ['C'])
    assert select_providers(['X'], ['CPUExecutionProvider']) == (['CPUExecutionProvider'],
                                                                 ['X'])


def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match='model_path: no such file'):
        OnnxPolicy(str(tmp_path / 'nope.onnx'))


def test_corrupt_file(tmp_path):
    path = tmp_path / 'corrupt.onnx'
    path.write_bytes(b'\x08\x07garbage' * 100)
    with pytest.raises(ModelLoadError, match='not a loadable ONNX model'):
        OnnxPolicy(str(path))


def test_bad_provider_name(generated_model):
    with pytest.raises(ModelLoadError, match='providers'):
        OnnxPolicy(generated_model, providers=['cuda'])


def test_model_without_contract(tmp_path):
    model = build_model()
    del model.metadata_props[:]
    path = str(tmp_path / 'plain.onnx')
    onnx.save(model, path)
    with pytest.raises(ContractError, match=METADATA_KEY):
        OnnxPolicy(path)


def test_contract_session_mismatch_names_field(tmp_path):
    d = make_contract_dict()
    d['action']['horizon'] = 10
    path = str(tmp_path / 'mismatch.onnx')
    onnx.save(build_model(contract=d), path)
    with pytest.raises(ContractError) as info:
        OnnxPolicy(path)
    assert info.value.field_path == 'contract.action.horizon/joint_names'


def test_overrides_are_applied_and_logged(generated_model):
    lines = []
    pol = OnnxPolicy(generated_model, contract_overrides={'action': {'dt_s': 0.1}},
                     log=lines.append)
    assert pol.contract.action.dt_s == 0.1
    assert any('overrides.action.dt_s' in line for line in lines)


def test_wrong_output_type_refused(tmp_path):
    """An int64 action output cannot be a chunk of joint positions."""
    d = make_contract_dict(horizon=1, cameras=('scene',))
    inp = [helper.make_tensor_value_info('image_scene', TensorProto.FLOAT, [1, 3, 64, 64]),
           helper.make_tensor_value_info('joint_positions', TensorProto.FLOAT, [1, 6])]
    out = [helper.make_tensor_value_info('actions', TensorProto.INT64, [1, 1, 6])]
    nodes = [helper.make_node('Reshape', ['joint_positions', 'shape'], ['r']),
             helper.make_node('Cast', ['r'], ['actions'], to=TensorProto.INT64)]
    init = [onnx.numpy_helper.from_array(np.array([1, 1, 6], np.int64), 'shape')]
    model = helper.make_model(helper.make_graph(nodes, 'g', inp, out, init),
                              opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: json.dumps(d)})
    path = str(tmp_path / 'int.onnx')
    onnx.save(model, path)
    with pytest.raises(ContractError, match='contract.action.output'):
        OnnxPolicy(path)


def test_ramp_makes_chunks_that_move(tmp_path):
    path = str(tmp_path / 'ramp.onnx')
    onnx.save(build_model(ramp_per_step=0.02), path)
    q = np.full(6, 0.1)
    out = OnnxPolicy(path).run({'scene': np.full((1, 3, 64, 64), 0.875, np.float32)}, q)
    want = expected_actions(0.875, q, np.zeros(6), np.full(6, 0.3), 16, 0.1, ramp=0.02)
    np.testing.assert_allclose(out.actions, want, atol=1e-6)
    assert out.actions[-1, 0] - out.actions[0, 0] == pytest.approx(0.9 * 15 * 0.02 * 0.75, 1e-5)


def test_a_failing_io_binding_falls_back_to_plain_run(generated_model, monkeypatch):
    from wam_runtime.core import inference

    def broken(self, feeds):
        raise RuntimeError('device copy failed\nsecond line')

    monkeypatch.setattr(inference._Binding, 'run', broken)
    lines = []
    pol = OnnxPolicy(generated_model, log=lines.append)
    assert not pol.io_binding
    assert [x for x in lines if 'io binding' in x] == [
        'io binding disabled on CPUExecutionProvider (device copy failed)']
    out = pol.run({'scene': np.full((1, 3, 64, 64), 0.8, np.float32)}, np.zeros(6))
    assert out.actions.shape == (16, 6)


def test_slow_model_output_stays_finite(tmp_path):
    """The artificial load of a slow generated model must never overflow into the actions."""
    path = str(tmp_path / 'slow.onnx')
    onnx.save(build_model(delay_matmuls=30, delay_size=64), path)
    for level in (0.0, 0.5, 1.0):
        out = OnnxPolicy(path).run({'scene': np.full((1, 3, 64, 64), level, np.float32)},
                                   np.zeros(6))
        assert np.isfinite(out.actions).all()
