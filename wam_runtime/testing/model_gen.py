"""Generate small deterministic ONNX models that carry a contract (onnx helper API only).

The generated policy is a fixed, readable function: action step ``k`` (0-based) targets
``(1 - blend) * (centre + (amplitude + (k + 1) * ramp) * s) + blend * state`` with
``s = 2 * brightness - 1`` and ``brightness`` the mean of the first camera's tensor (or of
``brightness_camera``). A test can therefore predict its output exactly, and a synthetic
camera that modulates brightness makes the arm move.
Optional world-model outputs and an artificial compute load (``delay_matmuls``) make it
usable for the monitor and for slow-inference tests. The world model's embedding is the
per-channel mean of every camera tensor; its prediction of the next embedding is the same
vector clipped to ``world_model_range``, the range "seen in training", so surprise is 0 on a
static in-range scene, spikes when the picture changes and stays up while the scene is out
of range (a blanked or half-black frame). ``camera_overrides`` sets contract fields per
camera (encoding, size, crop, depth_scale, dtype, ...) and ``float16_io`` makes the state
input and every output float16.
"""

import argparse
import json
from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto

from wam_runtime.core.contract import (
    COLOUR_ENCODINGS, DEPTH_ENCODINGS, parse_contract, write_contract)
from wam_runtime.testing import DEFAULT_JOINTS


def make_contract_dict(joint_names: Sequence[str] = DEFAULT_JOINTS,
                       cameras: Sequence[str] = ('scene',), height: int = 64,
                       width: int = 64, horizon: int = 16, dt_s: float = 0.05,
                       world_model: bool = False,
                       camera_overrides: Optional[Mapping[str, Mapping]] = None) -> dict:
    """Return the contract (as a dict) of a generated model.

    ``camera_overrides`` maps a camera name to contract fields that replace the defaults,
    for example ``{'depth': {'encoding': '32FC1', 'mean': [0.0], 'std': [1.0]}}``.
    """
    d = {
        'format_version': 1,
        'name': 'generated_test_policy',
        'cameras': [{'name': c, 'input': f'image_{c}', 'height': height, 'width': width,
                     'encoding': 'rgb8', 'layout': 'NCHW', 'dtype': 'float32',
                     'resize': 'stretch', 'scale': 1.0 / 255.0, 'mean': [0.0] * 3,
                     'std': [1.0] * 3} for c in cameras],
        'state': {'input': 'joint_positions', 'joint_names': list(joint_names),
                  'mean': [0.0] * len(joint_names), 'std': [1.0] * len(joint_names)},
        'action': {'output': 'actions', 'horizon': horizon, 'dt_s': dt_s,
                   'joint_names': list(joint_names), 'mode': 'absolute'},
    }
    for cam in d['cameras']:
        over = dict((camera_overrides or {}).get(cam['name'], {}))
        encoding = over.get('encoding', cam['encoding'])
        if encoding not in COLOUR_ENCODINGS:
            cam['mean'], cam['std'] = [0.0], [1.0]
        if encoding in DEPTH_ENCODINGS:
            cam['scale'] = 1.0
        cam.update(over)
    if world_model:
        d['world_model'] = {'embedding_output': 'embedding',
                            'predicted_embedding_output': 'predicted_next_embedding',
                            'prediction_dt_s': dt_s}
    return d


def expected_actions(brightness: float, state: np.ndarray, centre: np.ndarray,
                     amplitude: np.ndarray, horizon: int, state_blend: float,
                     ramp: float = 0.0) -> np.ndarray:
    """Compute in numpy what a generated model returns (the test oracle)."""
    s = 2.0 * brightness - 1.0
    k = np.arange(1, horizon + 1)[:, None]
    target = centre + (amplitude + k * ramp) * s
    return (1.0 - state_blend) * target + state_blend * state


def build_model(joint_names: Sequence[str] = DEFAULT_JOINTS,
                cameras: Sequence[str] = ('scene',), height: int = 64, width: int = 64,
                horizon: int = 16, dt_s: float = 0.05,
                centre: Optional[Sequence[float]] = None,
                amplitude: Optional[Sequence[float]] = None, state_blend: float = 0.1,
                ramp_per_step: float = 0.0, world_model: bool = False,
                delay_matmuls: int = 0, delay_size: int = 256,
                contract: Optional[dict] = None,
                camera_overrides: Optional[Mapping[str, Mapping]] = None,
                world_model_range: Optional[Tuple[float, float]] = None,
                brightness_camera: Optional[str] = None,
                float16_io: bool = False, prefix: bool = False) -> onnx.ModelProto:
    """Build a generated model; ``contract`` replaces the metadata (for mismatch tests).

    Input shapes and types follow the contract the model is built for (``camera_overrides``
    included), so depth, mono, cropped, NHWC and float16 cameras all work. With ``prefix``
    the model takes real-time-chunking inputs ``prev_actions`` [1, H, J] and
    ``delay_steps`` [1] (int64) and returns ``prev_actions`` for the first ``delay_steps``
    rows: the chunk continues exactly what is being executed.
    """
    n = len(joint_names)
    centre = np.zeros(n) if centre is None else np.asarray(centre, float)
    amplitude = np.full(n, 0.3) if amplitude is None else np.asarray(amplitude, float)
    f32 = TensorProto.FLOAT
    io_type = TensorProto.FLOAT16 if float16_io else f32
    own_contract = make_contract_dict(joint_names, cameras, height, width, horizon, dt_s,
                                      world_model, camera_overrides)
    if prefix:
        own_contract['prefix'] = {'actions_input': 'prev_actions',
                                  'delay_input': 'delay_steps'}
    built_for = parse_contract(own_contract)
    onnx_types = {'float32': f32, 'float16': TensorProto.FLOAT16, 'uint8': TensorProto.UINT8}
    nodes: List[onnx.NodeProto] = []
    inputs = []
    for spec in built_for.cameras:
        inputs.append(helper.make_tensor_value_info(spec.input, onnx_types[spec.dtype],
                                                    list(spec.tensor_shape())))
        # Everything below works on float32 NCHW copies of the inputs.
        nodes.append(helper.make_node('Cast', [spec.input], [f'{spec.input}_f'], to=f32))
        if spec.layout == 'NHWC':
            nodes.append(helper.make_node('Transpose', [f'{spec.input}_f'],
                                          [f'{spec.input}_nchw'], perm=[0, 3, 1, 2]))
        else:
            nodes.append(helper.make_node('Identity', [f'{spec.input}_f'],
                                          [f'{spec.input}_nchw']))
    inputs.append(helper.make_tensor_value_info('joint_positions', io_type, [1, n]))
    nodes.append(helper.make_node('Cast', ['joint_positions'], ['joint_positions_f'], to=f32))
    outputs = [helper.make_tensor_value_info('actions', io_type, [1, horizon, n])]
    inits = [
        numpy_helper.from_array(np.array([2.0], np.float32), 'two'),
        numpy_helper.from_array(np.array([1.0], np.float32), 'one'),
        numpy_helper.from_array(((1 - state_blend) * amplitude).astype(np.float32)
                                .reshape(1, 1, n), 'amp'),
        numpy_helper.from_array(((1 - state_blend) * centre).astype(np.float32)
                                .reshape(1, 1, n), 'centre'),
        numpy_helper.from_array(np.array([state_blend], np.float32), 'blend'),
        numpy_helper.from_array(np.ones((1, horizon, 1), np.float32), 'ones_h'),
        numpy_helper.from_array(((1 - state_blend) * ramp_per_step * np.tile(
            np.arange(1, horizon + 1, dtype=np.float32)[:, None], (1, n)))
            .astype(np.float32)[None], 'ramp'),
        numpy_helper.from_array(np.array([1, 1, 1], np.int64), 'shape_111'),
        numpy_helper.from_array(np.array([1, 1, n], np.int64), 'shape_11n'),
    ]
    cam0 = f'image_{brightness_camera or cameras[0]}_nchw'
    nodes += [
        helper.make_node('ReduceMean', [cam0], ['bright4'], keepdims=1),
        helper.make_node('Reshape', ['bright4', 'shape_111'], ['bright']),
        helper.make_node('Mul', ['bright', 'two'], ['b2']),
        helper.make_node('Sub', ['b2', 'one'], ['signal']),
        helper.make_node('Mul', ['signal', 'amp'], ['offset']),
        helper.make_node('Add', ['offset', 'centre'], ['target']),
        helper.make_node('Reshape', ['joint_positions_f', 'shape_11n'], ['q3']),
        helper.make_node('Mul', ['q3', 'blend'], ['qb']),
        helper.make_node('Add', ['target', 'qb'], ['step']),
        helper.make_node('Mul', ['step', 'ones_h'], ['flat']),
        helper.make_node('Mul', ['signal', 'ramp'], ['ramp_s']),
        helper.make_node('Add', ['flat', 'ramp_s'], ['actions_raw']),
    ]
    last = 'actions_raw'
    if delay_matmuls > 0:
        # A data-dependent square matrix chain that constant folding cannot remove.
        inits.append(numpy_helper.from_array(np.array([delay_size, delay_size], np.int64),
                                             'delay_shape'))
        inits.append(numpy_helper.from_array(np.array([0.0], np.float32), 'zero'))
        nodes.append(helper.make_node('Expand', ['bright', 'delay_shape'], ['m0']))
        prev = 'm0'
        inits.append(numpy_helper.from_array(np.array([1.0 / delay_size], np.float32),
                                             'delay_norm'))
        for i in range(delay_matmuls):
            # Normalised so entries stay in [0, 1]: the load never overflows to Inf/NaN.
            nodes.append(helper.make_node('MatMul', [prev, prev], [f'mm{i + 1}']))
            nodes.append(helper.make_node('Mul', [f'mm{i + 1}', 'delay_norm'], [f'm{i + 1}']))
            prev = f'm{i + 1}'
        nodes += [helper.make_node('ReduceSum', [prev], ['msum'], keepdims=0),
                  helper.make_node('Mul', ['msum', 'zero'], ['mzero']),
                  helper.make_node('Add', [last, 'mzero'], ['actions_delayed'])]
        last = 'actions_delayed'
    if prefix:
        inputs += [helper.make_tensor_value_info('prev_actions', f32, [1, horizon, n]),
                   helper.make_tensor_value_info('delay_steps', TensorProto.INT64, [1])]
        inits += [numpy_helper.from_array(np.arange(horizon, dtype=np.int64)
                                          .reshape(1, horizon, 1), 'step_index'),
                  numpy_helper.from_array(np.array([1, 1, 1], np.int64), 'shape_delay')]
        nodes += [helper.make_node('Reshape', ['delay_steps', 'shape_delay'], ['delay3']),
                  helper.make_node('Less', ['step_index', 'delay3'], ['in_prefix']),
                  helper.make_node('Where', ['in_prefix', 'prev_actions', last],
                                   ['actions_prefixed'])]
        last = 'actions_prefixed'
    nodes.append(helper.make_node('Cast', [last], ['actions'], to=io_type))
    if world_model:
        # Embedding: per-camera channel means; prediction: the same, clipped to the range
        # seen in training (see the module docstring).
        embs = []
        for spec in built_for.cameras:
            c = spec.name
            nodes.append(helper.make_node('GlobalAveragePool', [f'{spec.input}_nchw'],
                                          [f'emb_{c}4']))
            inits.append(numpy_helper.from_array(np.array([1, spec.channels], np.int64),
                                                 f'shape_emb_{c}'))
            nodes.append(helper.make_node('Reshape', [f'emb_{c}4', f'shape_emb_{c}'],
                                          [f'emb_{c}']))
            embs.append(f'emb_{c}')
        nodes.append(helper.make_node('Concat', embs, ['embedding_f'], axis=1))
        if world_model_range is None:
            nodes.append(helper.make_node('Identity', ['embedding_f'], ['predicted_f']))
        else:
            inits += [numpy_helper.from_array(np.array(world_model_range[0], np.float32),
                                              'wm_lo'),
                      numpy_helper.from_array(np.array(world_model_range[1], np.float32),
                                              'wm_hi')]
            nodes.append(helper.make_node('Clip', ['embedding_f', 'wm_lo', 'wm_hi'],
                                          ['predicted_f']))
        nodes += [helper.make_node('Cast', ['embedding_f'], ['embedding'], to=io_type),
                  helper.make_node('Cast', ['predicted_f'], ['predicted_next_embedding'],
                                   to=io_type)]
        e = sum(spec.channels for spec in built_for.cameras)
        outputs += [helper.make_tensor_value_info('embedding', io_type, [1, e]),
                    helper.make_tensor_value_info('predicted_next_embedding', io_type,
                                                  [1, e])]
    graph = helper.make_graph(nodes, 'wam_generated', inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)],
                              producer_name='wam_runtime.model_gen')
    model.ir_version = 8
    write_contract(model, contract if contract is not None else own_contract)
    onnx.checker.check_model(model)
    return model


def write_model(path: str, **kwargs) -> str:
    """Build a generated model and save it to ``path``; return the path."""
    onnx.save(build_model(**kwargs), path)
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: write a generated model."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', required=True)
    ap.add_argument('--cameras', nargs='+', default=['scene'])
    ap.add_argument('--height', type=int, default=64)
    ap.add_argument('--width', type=int, default=64)
    ap.add_argument('--horizon', type=int, default=16)
    ap.add_argument('--dt-s', type=float, default=0.05)
    ap.add_argument('--world-model', action='store_true')
    ap.add_argument('--delay-matmuls', type=int, default=0)
    ap.add_argument('--ramp-per-step', type=float, default=0.0)
    ap.add_argument('--world-model-range', type=float, nargs=2, metavar=('LO', 'HI'),
                    help='clip the predicted embedding to [LO, HI] (implies --world-model)')
    ap.add_argument('--float16-io', action='store_true',
                    help='float16 camera and state inputs and outputs')
    ap.add_argument('--camera-overrides', type=json.loads, default=None,
                    help='JSON {camera: {contract field: value}}, e.g. '
                         '\'{"depth": {"encoding": "16UC1"}}\'')
    args = ap.parse_args(argv)
    overrides = dict(args.camera_overrides or {})
    if args.float16_io:
        for cam in args.cameras:
            overrides[cam] = {'dtype': 'float16', **overrides.get(cam, {})}
    write_model(args.out, cameras=args.cameras, height=args.height, width=args.width,
                horizon=args.horizon, dt_s=args.dt_s,
                world_model=args.world_model or args.world_model_range is not None,
                delay_matmuls=args.delay_matmuls, ramp_per_step=args.ramp_per_step,
                world_model_range=args.world_model_range, float16_io=args.float16_io,
                camera_overrides=overrides or None)
    print(args.out)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
