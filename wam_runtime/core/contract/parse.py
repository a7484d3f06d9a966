"""Contract JSON to :class:`ModelContract`, and configuration overrides of a contract.

Every error names the field that is wrong with a dotted path.
"""

import json
import math
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from wam_runtime.core.contract.spec import (
    ACTION_MODES, ActionSpec, CameraSpec, COLOUR_ENCODINGS, ContractError, DEPTH_ENCODINGS,
    FORMAT_VERSION, IMAGE_ENCODINGS, INTERPOLATIONS, LAYOUTS, ModelContract, PrefixSpec,
    RESIZE_MODES, StateSpec, TENSOR_DTYPES, WorldModelSpec)


# --------------------------------------------------------------------------- field readers

def _get(d: Mapping[str, Any], key: str, path: str, default: Any = ...) -> Any:
    if key not in d:
        if default is ...:
            raise ContractError(f'{path}.{key}', 'missing required field')
        return default
    return d[key]


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ContractError(path, f'expected an object, got {type(value).__name__}')
    return value


def _str(value: Any, path: str, choices: Optional[Sequence[str]] = None) -> str:
    if not isinstance(value, str) or not value:
        raise ContractError(path, f'expected a non-empty string, got {value!r}')
    if choices is not None and value not in choices:
        raise ContractError(path, f'{value!r} is not one of {list(choices)}')
    return value


def _pos_int(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ContractError(path, f'expected a positive integer, got {value!r}')
    return value


def _pos_float(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise ContractError(path, f'expected a positive finite number, got {value!r}')
    return float(value)


def _floats(value: Any, path: str, length: int, positive: bool = False) -> Tuple[float, ...]:
    if not isinstance(value, (list, tuple)):
        raise ContractError(path, f'expected a list of {length} numbers, got {value!r}')
    if len(value) != length:
        raise ContractError(path, f'expected {length} values, got {len(value)}')
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ContractError(f'{path}[{i}]', f'expected a finite number, got {v!r}')
        if positive and v <= 0:
            raise ContractError(f'{path}[{i}]', f'expected a positive number, got {v!r}')
        out.append(float(v))
    return tuple(out)


def _names(value: Any, path: str) -> Tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ContractError(path, f'expected a non-empty list of names, got {value!r}')
    names = tuple(_str(v, f'{path}[{i}]') for i, v in enumerate(value))
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ContractError(path, f'duplicate joint names {dup}')
    return names


# --------------------------------------------------------------------------- parsing

def _crop(value: Any, path: str) -> Optional[Tuple[int, int, int, int]]:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise ContractError(path, f'expected [x, y, width, height], got {value!r}')
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int) or v < (1 if i >= 2 else 0):
            raise ContractError(f'{path}[{i}]', f'expected an integer >= {1 if i >= 2 else 0}, '
                                                f'got {v!r}')
        out.append(v)
    return tuple(out)


def _parse_camera(d: Any, path: str) -> CameraSpec:
    d = _mapping(d, path)
    encoding = _str(_get(d, 'encoding', path, 'rgb8'), f'{path}.encoding', IMAGE_ENCODINGS)
    channels = 3 if encoding in COLOUR_ENCODINGS else 1
    depth = encoding in DEPTH_ENCODINGS
    dtype = _str(_get(d, 'dtype', path, 'float32'), f'{path}.dtype', TENSOR_DTYPES)
    if depth and dtype == 'uint8':
        raise ContractError(f'{path}.dtype', f'a depth camera ({encoding}) needs a float '
                                             'tensor (float32 or float16)')
    return CameraSpec(
        name=_str(_get(d, 'name', path), f'{path}.name'),
        input=_str(_get(d, 'input', path), f'{path}.input'),
        height=_pos_int(_get(d, 'height', path), f'{path}.height'),
        width=_pos_int(_get(d, 'width', path), f'{path}.width'),
        encoding=encoding,
        layout=_str(_get(d, 'layout', path, 'NCHW'), f'{path}.layout', LAYOUTS),
        dtype=dtype,
        resize=_str(_get(d, 'resize', path, 'stretch'), f'{path}.resize', RESIZE_MODES),
        scale=_pos_float(_get(d, 'scale', path, 1.0 if depth else 1.0 / 255.0),
                         f'{path}.scale'),
        mean=_floats(_get(d, 'mean', path, [0.0] * channels), f'{path}.mean', channels),
        std=_floats(_get(d, 'std', path, [1.0] * channels), f'{path}.std', channels, True),
        crop=_crop(_get(d, 'crop', path, None), f'{path}.crop'),
        interpolation=_str(_get(d, 'interpolation', path, 'auto'), f'{path}.interpolation',
                           INTERPOLATIONS),
        depth_scale=_pos_float(_get(d, 'depth_scale', path, 0.001), f'{path}.depth_scale'),
    )


def _parse_state(d: Any, path: str) -> StateSpec:
    d = _mapping(d, path)
    names = _names(_get(d, 'joint_names', path), f'{path}.joint_names')
    n = len(names)
    return StateSpec(
        input=_str(_get(d, 'input', path), f'{path}.input'),
        joint_names=names,
        mean=_floats(_get(d, 'mean', path, [0.0] * n), f'{path}.mean', n),
        std=_floats(_get(d, 'std', path, [1.0] * n), f'{path}.std', n, True),
    )


def _parse_action(d: Any, path: str) -> ActionSpec:
    d = _mapping(d, path)
    names = _names(_get(d, 'joint_names', path), f'{path}.joint_names')
    n = len(names)
    mean = _get(d, 'mean', path, None)
    std = _get(d, 'std', path, None)
    return ActionSpec(
        output=_str(_get(d, 'output', path), f'{path}.output'),
        horizon=_pos_int(_get(d, 'horizon', path), f'{path}.horizon'),
        dt_s=_pos_float(_get(d, 'dt_s', path), f'{path}.dt_s'),
        joint_names=names,
        mode=_str(_get(d, 'mode', path, 'absolute'), f'{path}.mode', ACTION_MODES),
        mean=_floats([0.0] * n if mean is None else mean, f'{path}.mean', n),
        std=_floats([1.0] * n if std is None else std, f'{path}.std', n, True),
    )


def _parse_world_model(d: Any, path: str) -> WorldModelSpec:
    d = _mapping(d, path)
    return WorldModelSpec(
        embedding_output=_str(_get(d, 'embedding_output', path), f'{path}.embedding_output'),
        predicted_embedding_output=_str(_get(d, 'predicted_embedding_output', path),
                                        f'{path}.predicted_embedding_output'),
        prediction_dt_s=_pos_float(_get(d, 'prediction_dt_s', path),
                                   f'{path}.prediction_dt_s'),
    )


def _parse_prefix(d: Any, path: str) -> PrefixSpec:
    d = _mapping(d, path)
    return PrefixSpec(
        actions_input=_str(_get(d, 'actions_input', path), f'{path}.actions_input'),
        delay_input=_str(_get(d, 'delay_input', path), f'{path}.delay_input'))


def parse_contract(data: Any) -> ModelContract:
    """Parse a contract from its JSON text or decoded object; raise ContractError."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ContractError('contract', f'not valid JSON ({exc})') from None
    path = 'contract'
    d = _mapping(data, path)
    version = _get(d, 'format_version', path)
    if version != FORMAT_VERSION:
        raise ContractError(f'{path}.format_version',
                            f'unsupported version {version!r} (this runtime reads '
                            f'{FORMAT_VERSION})')
    cams_raw = _get(d, 'cameras', path)
    if not isinstance(cams_raw, list) or not cams_raw:
        raise ContractError(f'{path}.cameras', 'expected a non-empty list of cameras')
    cameras = tuple(_parse_camera(c, f'{path}.cameras[{i}]') for i, c in enumerate(cams_raw))
    cam_names = [c.name for c in cameras]
    if len(set(cam_names)) != len(cam_names):
        raise ContractError(f'{path}.cameras', f'duplicate camera names {cam_names}')
    wm = d.get('world_model')
    contract = ModelContract(
        name=_str(_get(d, 'name', path), f'{path}.name'),
        cameras=cameras,
        state=_parse_state(_get(d, 'state', path), f'{path}.state'),
        action=_parse_action(_get(d, 'action', path), f'{path}.action'),
        world_model=None if wm is None else _parse_world_model(wm, f'{path}.world_model'),
        prefix=(None if d.get('prefix') is None
                else _parse_prefix(d['prefix'], f'{path}.prefix')),
        format_version=version,
        extra={k: v for k, v in d.items() if k not in (
            'format_version', 'name', 'cameras', 'state', 'action', 'world_model',
            'prefix')},
    )
    inputs = contract.input_names
    if len(set(inputs)) != len(inputs):
        raise ContractError(path, f'two fields name the same graph input: {inputs}')
    if contract.action.mode == 'delta' \
            and set(contract.action.joint_names) - set(contract.state.joint_names):
        raise ContractError(f'{path}.action.joint_names',
                            'delta actions need every action joint in state.joint_names')
    return contract


# --------------------------------------------------------------------------- overrides

_OVERRIDABLE = {
    'action': ('dt_s', 'mode', 'mean', 'std'),
    'state': ('mean', 'std'),
    'camera': ('encoding', 'resize', 'scale', 'mean', 'std', 'crop', 'interpolation',
               'depth_scale'),
}


def apply_overrides(contract: ModelContract,
                    overrides: Mapping[str, Any]) -> Tuple[ModelContract, List[str]]:
    """Apply config overrides; return the new contract and one line per changed field.

    ``overrides`` mirrors the contract: ``{'action': {'dt_s': 0.1}, 'cameras': {'scene':
    {'scale': 1.0}}}``. Fields that fix tensor shapes or graph names cannot be overridden;
    trying to is an error naming the field.
    """
    changes: List[str] = []
    d = contract.to_dict()
    for section, values in overrides.items():
        path = f'overrides.{section}'
        values = _mapping(values, path)
        if section in ('action', 'state'):
            targets = [(d[section], values, path, _OVERRIDABLE[section])]
        elif section == 'cameras':
            targets = []
            for cam_name, cam_values in values.items():
                cams = [c for c in d['cameras'] if c['name'] == cam_name]
                if not cams:
                    raise ContractError(f'{path}.{cam_name}',
                                        f'the model has no camera {cam_name!r}')
                targets.append((cams[0], _mapping(cam_values, f'{path}.{cam_name}'),
                                f'{path}.{cam_name}', _OVERRIDABLE['camera']))
        else:
            raise ContractError(path, 'only action, state and cameras can be overridden')
        for target, vals, vpath, allowed in targets:
            for key, value in vals.items():
                if key not in allowed:
                    raise ContractError(f'{vpath}.{key}',
                                        f'cannot be overridden (allowed: {list(allowed)})')
                old = target.get(key)
                if old != value:
                    changes.append(f'{vpath}.{key}: {old!r} -> {value!r}')
                    target[key] = value
    return parse_contract(d), changes
