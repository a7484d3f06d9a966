"""Smoke test of the model pipeline: demonstrations -> a few seconds of training -> ONNX."""

import importlib.util
import json
import os

import numpy as np
import onnxruntime as ort
import pytest

os.environ.setdefault('MUJOCO_GL', 'egl')

HAVE_TORCH = importlib.util.find_spec('torch') is not None


@pytest.mark.skipif(not HAVE_TORCH, reason='torch is not installed (CI installs torch==2.13.0; '
                                           'the runtime itself never needs it)')
def test_generate_train_export(tmp_path):
    from wam_runtime.sim import dataset, evaluate, train
    from wam_runtime.sim.world import JOINT_NAMES, ReachWorld

    data = dataset.generate(3, seed_start=0)
    n = len(data['joint_positions'])
    assert n > 30
    assert data['images'].shape == (n + 3, 64, 64, 3) and data['images'].dtype == np.uint8
    assert data['actions_delta'].shape == (n, 16, 6)
    assert np.all(data['next_image_index'] == data['image_index'] + 1)
    assert bool(np.all(data['episode_reached']))

    policy, norm, stats = train.train(data, seconds=3.0, batch_size=32, verbose=False)
    assert stats['steps'] > 0
    assert np.isfinite(stats['val']['action_mse_norm'])
    path = str(tmp_path / 'smoke.onnx')
    pick = np.arange(4)
    check = train.export_onnx(policy, norm, path,
                              check_images=data['images'][data['image_index'][pick]],
                              check_joints=data['joint_positions'][pick])
    assert check['max_abs_diff'] < 1e-5

    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    meta = session.get_modelmeta().custom_metadata_map
    contract = json.loads(meta['wam_runtime.contract'])
    assert contract['format_version'] == 1
    assert contract['name'] == 'reference_reach'
    (camera,) = contract['cameras']
    assert camera == {
        'name': 'scene', 'input': 'image_scene', 'height': 64, 'width': 64,
        'encoding': 'rgb8', 'layout': 'NCHW', 'dtype': 'float32', 'resize': 'stretch',
        'scale': 1.0 / 255.0, 'mean': [0.0, 0.0, 0.0], 'std': [1.0, 1.0, 1.0]}
    assert contract['state'] == {'input': 'joint_positions', 'joint_names': list(JOINT_NAMES),
                                 'mean': [0.0] * 6, 'std': [1.0] * 6}
    action = contract['action']
    assert action['output'] == 'actions' and action['horizon'] == 16
    assert action['dt_s'] == 0.05 and action['mode'] == 'absolute'
    assert action['joint_names'] == list(JOINT_NAMES)
    assert action['mean'] == [0.0] * 6 and action['std'] == [1.0] * 6
    assert contract['world_model'] == {
        'embedding_output': 'embedding', 'predicted_embedding_output': 'predicted_next_embedding',
        'prediction_dt_s': 0.05}

    inputs = {i.name: (i.shape, i.type) for i in session.get_inputs()}
    outputs = {o.name: (o.shape, o.type) for o in session.get_outputs()}
    assert inputs == {'image_scene': ([1, 3, 64, 64], 'tensor(float)'),
                      'joint_positions': ([1, 6], 'tensor(float)')}
    assert outputs['actions'] == ([1, 16, 6], 'tensor(float)')
    dim = outputs['embedding'][0][1]
    assert outputs['embedding'] == ([1, dim], 'tensor(float)')
    assert outputs['predicted_next_embedding'] == ([1, dim], 'tensor(float)')

    # The runtime's own contract parser and session check accept the exported model.
    from wam_runtime.core import contract as core_contract
    parsed = core_contract.parse_contract(meta[core_contract.METADATA_KEY])
    core_contract.validate_against_io(parsed, inputs, outputs)
    assert parsed.action.horizon == 16 and parsed.cameras[0].input == 'image_scene'

    # Absolute targets: the graph adds the current joint positions to its deltas.
    q = data['joint_positions'][:1]
    image = data['images'][data['image_index'][:1]].astype(np.float32) / 255.0
    actions, embedding, predicted = session.run(
        None, {'image_scene': image.transpose(0, 3, 1, 2).copy(), 'joint_positions': q})
    assert actions.shape == (1, 16, 6) and embedding.shape == (1, dim)
    assert predicted.shape == (1, dim)
    assert np.all(np.isfinite(actions))
    assert np.max(np.abs(actions[0] - q[0])) < 1.0

    # The in-process evaluator runs the exported model in closed loop.
    evaluator = evaluate.SimEvaluator(path)
    with ReachWorld() as world:
        result = evaluate.run_episode(world, evaluator, 100000, timeout_s=0.3,
                                      stop_on_success=False)
    assert result['seed'] == 100000 and np.isfinite(result['final_distance_m'])
    assert result['inferences'] > 0
