"""OnnxPolicy with real ONNX Runtime: outputs, provider fallback, and refusal of bad models."""

import json

import numpy as np
import onnx
from onnx import helper, TensorProto
import pytest

from wam_runtime.core.contract import ContractError, METADATA_KEY
from wam_runtime.core.inference import ModelLoadError, OnnxPolicy, select_providers
from wam_runtime.core.model_gen import build_model, expected_actions, make_contract_dict


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
                                                 'CPUExecutionProvider'], log=lines.append)
    assert pol.providers == ['CPUExecutionProvider']
    assert any('not available' in line and 'CUDAExecutionProvider' in line for line in lines)


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
