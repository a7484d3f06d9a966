"""Model contract: parsing, field-naming errors, overrides, validation, the metadata entry."""

import copy
import json

from onnx import helper
import onnxruntime as ort
import pytest

from wam_runtime.core.contract import (
    apply_overrides, ContractError, METADATA_KEY, parse_contract, validate_against_io,
    write_contract)
from wam_runtime.core.inference import session_io
from wam_runtime.testing.model_gen import build_model, make_contract_dict


def test_round_trip_through_json():
    d = make_contract_dict(cameras=('scene', 'wrist'), world_model=True)
    c = parse_contract(json.dumps(d))
    assert [cam.name for cam in c.cameras] == ['scene', 'wrist']
    assert c.action.horizon == 16 and c.action.dt_s == 0.05
    assert c.world_model.prediction_dt_s == 0.05
    assert parse_contract(c.to_json()) == c


def _mutated(path, value):
    d = make_contract_dict()
    target = d
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return d


@pytest.mark.parametrize('path,value,field', [
    (('cameras', 0, 'height'), -3, 'contract.cameras[0].height'),
    (('cameras', 0, 'width'), 'wide', 'contract.cameras[0].width'),
    (('cameras', 0, 'encoding'), 'yuv422', 'contract.cameras[0].encoding'),
    (('cameras', 0, 'layout'), 'CHW', 'contract.cameras[0].layout'),
    (('cameras', 0, 'std'), [1.0, 0.0, 1.0], 'contract.cameras[0].std[1]'),
    (('cameras', 0, 'mean'), [0.0, 0.0], 'contract.cameras[0].mean'),
    (('cameras', 0, 'input'), KeyError, 'contract.cameras[0].input'),
    (('state', 'joint_names'), ['a', 'a'], 'contract.state.joint_names'),
    (('state', 'std'), [1.0] * 5, 'contract.state.std'),
    (('action', 'horizon'), 0, 'contract.action.horizon'),
    (('action', 'dt_s'), float('nan'), 'contract.action.dt_s'),
    (('action', 'mode'), 'relative', 'contract.action.mode'),
    (('action', 'output'), KeyError, 'contract.action.output'),
    (('format_version',), 7, 'contract.format_version'),
    (('cameras',), [], 'contract.cameras'),
])
def test_errors_name_the_field(path, value, field):
    with pytest.raises(ContractError) as info:
        parse_contract(_mutated(path, value))
    assert info.value.field_path == field
    assert str(info.value).startswith(field + ':')


def test_not_json_is_reported():
    with pytest.raises(ContractError, match='not valid JSON'):
        parse_contract('{"format_version": 1,')


def _io(**kwargs):
    model = build_model(**kwargs)
    sess = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    return session_io(sess)


def test_validate_accepts_matching_session():
    validate_against_io(parse_contract(make_contract_dict(world_model=True)),
                        *_io(world_model=True))


@pytest.mark.parametrize('change,field', [
    (lambda d: d['cameras'][0].update(height=32), 'contract.cameras[0].height'),
    (lambda d: d['cameras'][0].update(width=48), 'contract.cameras[0].width'),
    (lambda d: d['cameras'][0].update(encoding='mono8', mean=[0], std=[1]),
     'contract.cameras[0].encoding'),
    (lambda d: d['cameras'][0].update(input='rgb'), 'contract.cameras[0].input'),
    (lambda d: d['cameras'][0].update(dtype='uint8'), 'contract.cameras[0].dtype'),
    (lambda d: d['cameras'][0].update(layout='NHWC'), 'contract.cameras[0].layout'),
    (lambda d: d['state'].update(joint_names=['a', 'b', 'c'], mean=[0] * 3, std=[1] * 3),
     'contract.state.joint_names'),
    (lambda d: d['action'].update(horizon=8), 'contract.action.horizon/joint_names'),
    (lambda d: d['action'].update(output='chunk'), 'contract.action.output'),
    (lambda d: d.update(world_model={'embedding_output': 'emb',
                                     'predicted_embedding_output': 'p',
                                     'prediction_dt_s': 0.1}),
     'contract.world_model.embedding_output'),
])
def test_validate_names_the_mismatching_field(change, field):
    d = make_contract_dict()
    change(d)
    with pytest.raises(ContractError) as info:
        validate_against_io(parse_contract(d), *_io())
    assert info.value.field_path == field


def test_a_height_mismatch_names_height_as_the_readme_shows():
    d = make_contract_dict()
    d['cameras'][0]['height'] = 96
    with pytest.raises(ContractError) as info:
        validate_against_io(parse_contract(d), *_io())
    assert str(info.value) == ("contract.cameras[0].height: input 'image_scene' has shape "
                               '[1, 3, 64, 64], the contract implies [1, 3, 96, 64] (axis 2)')


def test_a_camera_shape_that_differs_in_two_fields_names_the_first_and_lists_the_other():
    d = make_contract_dict()
    d['cameras'][0].update(height=32, width=48)
    with pytest.raises(ContractError) as info:
        validate_against_io(parse_contract(d), *_io())
    assert info.value.field_path == 'contract.cameras[0].height'
    assert str(info.value).endswith('(axis 2); width differs too')


def test_unfed_model_input_is_refused():
    inputs, outputs = _io(cameras=('scene', 'wrist'))
    with pytest.raises(ContractError, match='does not feed'):
        validate_against_io(parse_contract(make_contract_dict(cameras=('scene',))),
                            inputs, outputs)


def test_overrides_change_only_allowed_fields_and_report_them():
    c = parse_contract(make_contract_dict())
    new, changes = apply_overrides(c, {'action': {'dt_s': 0.1},
                                       'cameras': {'scene': {'scale': 1.0}}})
    assert new.action.dt_s == 0.1 and new.cameras[0].scale == 1.0
    assert changes == ['overrides.action.dt_s: 0.05 -> 0.1',
                       'overrides.cameras.scene.scale: 0.00392156862745098 -> 1.0']
    assert c.action.dt_s == 0.05  # the original is untouched
    with pytest.raises(ContractError) as info:
        apply_overrides(c, {'action': {'horizon': 8}})
    assert info.value.field_path == 'overrides.action.horizon'
    with pytest.raises(ContractError, match="no camera 'wrist'"):
        apply_overrides(c, {'cameras': {'wrist': {'scale': 1.0}}})
    with pytest.raises(ContractError) as info:
        apply_overrides(c, {'action': {'dt_s': -1.0}})
    assert info.value.field_path == 'contract.action.dt_s'


def test_contract_is_immutable_input():
    d = make_contract_dict()
    before = copy.deepcopy(d)
    parse_contract(d)
    assert d == before


# --------------------------------------------------------------------------- cameras

def test_old_contract_json_still_parses_with_new_defaults():
    old = make_contract_dict()
    for key in ('crop', 'interpolation', 'depth_scale'):
        assert key not in old['cameras'][0]
    cam = parse_contract(json.dumps(old)).cameras[0]
    assert cam.crop is None and cam.interpolation == 'auto' and cam.depth_scale == 0.001
    assert cam.channels == 3 and not cam.is_depth


def test_depth_and_crop_fields_round_trip():
    d = make_contract_dict(cameras=('scene', 'depth'), camera_overrides={
        'depth': {'encoding': '16UC1', 'crop': [10, 20, 300, 200], 'depth_scale': 0.0001,
                  'interpolation': 'nearest'}})
    c = parse_contract(d)
    depth = c.camera('depth')
    assert depth.is_depth and depth.channels == 1 and depth.tensor_shape() == (1, 1, 64, 64)
    assert depth.crop == (10, 20, 300, 200) and depth.depth_scale == 0.0001
    assert depth.scale == 1.0 and depth.mean == (0.0,)
    assert parse_contract(c.to_json()) == c


@pytest.mark.parametrize('change,field', [
    ({'crop': [0, 0, 10]}, 'contract.cameras[0].crop'),
    ({'crop': [0, -1, 10, 10]}, 'contract.cameras[0].crop[1]'),
    ({'crop': [0, 0, 0, 10]}, 'contract.cameras[0].crop[2]'),
    ({'crop': [0, 0, 10, 1.5]}, 'contract.cameras[0].crop[3]'),
    ({'interpolation': 'cubic'}, 'contract.cameras[0].interpolation'),
    ({'encoding': '32FC1', 'mean': [0.0], 'std': [1.0], 'depth_scale': 0},
     'contract.cameras[0].depth_scale'),
    ({'encoding': '16UC1', 'mean': [0.0], 'std': [1.0], 'dtype': 'uint8'},
     'contract.cameras[0].dtype'),
    ({'encoding': '16UC1'}, 'contract.cameras[0].mean'),
    ({'encoding': 'rgba8'}, 'contract.cameras[0].encoding'),
])
def test_camera_errors_name_the_field(change, field):
    d = make_contract_dict()
    d['cameras'][0].update(change)
    with pytest.raises(ContractError) as info:
        parse_contract(d)
    assert info.value.field_path == field


def test_crop_and_depth_scale_can_be_overridden():
    c = parse_contract(make_contract_dict())
    new, changes = apply_overrides(c, {'cameras': {'scene': {'crop': [0, 0, 320, 240]}}})
    assert new.cameras[0].crop == (0, 0, 320, 240)
    assert changes == ['overrides.cameras.scene.crop: None -> [0, 0, 320, 240]']


def test_float16_state_and_outputs_are_accepted():
    model = build_model(world_model=True, float16_io=True,
                        camera_overrides={'scene': {'dtype': 'float16'}})
    sess = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    ins, outs = session_io(sess)
    assert ins['joint_positions'][1] == 'tensor(float16)'
    assert outs['actions'][1] == 'tensor(float16)'
    contract = parse_contract(json.loads(
        sess.get_modelmeta().custom_metadata_map['wam_runtime.contract']))
    validate_against_io(contract, ins, outs)


def test_integer_world_model_output_is_refused():
    inputs, outputs = _io(world_model=True)
    outputs['embedding'] = (outputs['embedding'][0], 'tensor(int64)')
    with pytest.raises(ContractError) as info:
        validate_against_io(parse_contract(make_contract_dict(world_model=True)), inputs,
                            outputs)
    assert info.value.field_path == 'contract.world_model.embedding_output'


def test_output_names_are_the_action_then_the_world_model_outputs():
    assert parse_contract(make_contract_dict()).output_names == ['actions']
    c = parse_contract(make_contract_dict(world_model=True))
    assert c.output_names == ['actions', 'embedding', 'predicted_next_embedding']


def test_write_contract_replaces_only_the_contract_entry():
    model = build_model()
    helper.set_model_props(model, {'author': 'me', METADATA_KEY: '{"stale": true}'})
    d = make_contract_dict(horizon=8)
    text = write_contract(model, d)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta == {'author': 'me', METADATA_KEY: text}
    assert [p.key for p in model.metadata_props].count(METADATA_KEY) == 1
    assert json.loads(text) == d and text == json.dumps(d, sort_keys=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    assert parse_contract(sess.get_modelmeta().custom_metadata_map[METADATA_KEY]).action \
        .horizon == 8


def test_write_contract_takes_a_parsed_contract_in_canonical_form():
    model = build_model()
    c = parse_contract(make_contract_dict())
    assert write_contract(model, c) == c.to_json()
    assert parse_contract(model.metadata_props[-1].value) == c


def test_write_contract_does_not_validate_a_mapping():
    model = build_model()
    write_contract(model, {'format_version': 99})    # mismatch tests write broken contracts
    with pytest.raises(ContractError, match='format_version'):
        parse_contract(model.metadata_props[-1].value)
