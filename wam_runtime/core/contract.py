"""The model I/O contract carried in ONNX metadata (key ``wam_runtime.contract``).

A contract says which graph input is which camera, how a frame is turned into a tensor,
which input carries the joint state and how it is normalised, and how the action output
is laid out in time. Every error names the offending field with a dotted path, for
example ``contract.cameras[0].height``.
"""

from dataclasses import asdict, dataclass, field
import json
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

METADATA_KEY = 'wam_runtime.contract'
FORMAT_VERSION = 1

COLOUR_ENCODINGS = ('rgb8', 'bgr8')
# Depth: 16UC1 and mono16 hold raw units (``depth_scale`` metres each), 32FC1 holds metres.
DEPTH_ENCODINGS = ('16UC1', 'mono16', '32FC1')
IMAGE_ENCODINGS = COLOUR_ENCODINGS + ('mono8',) + DEPTH_ENCODINGS
LAYOUTS = ('NCHW', 'NHWC')
TENSOR_DTYPES = ('float32', 'float16', 'uint8')
RESIZE_MODES = ('stretch', 'pad')
# auto: INTER_AREA when shrinking, INTER_LINEAR when enlarging; nearest for depth.
INTERPOLATIONS = ('auto', 'nearest', 'linear', 'area')
ACTION_MODES = ('absolute', 'delta')

# ONNX Runtime type strings for the tensor dtypes a contract may declare.
ORT_TYPES = {'float32': 'tensor(float)', 'float16': 'tensor(float16)', 'uint8': 'tensor(uint8)'}
# Float tensors the runtime reads and writes (state input, action and world-model outputs).
FLOAT_TYPES = ('tensor(float)', 'tensor(float16)')


class ContractError(ValueError):
    """A contract is malformed or disagrees with the model; the message names the field."""

    def __init__(self, field_path: str, problem: str) -> None:
        super().__init__(f'{field_path}: {problem}')
        self.field_path = field_path
        self.problem = problem


@dataclass(frozen=True)
class CameraSpec:
    """One camera input: how a frame becomes the tensor the model expects.

    ``encoding`` is what the model was trained on: a colour order (rgb8, bgr8), luma (mono8)
    or depth (16UC1 / mono16 in units of ``depth_scale`` metres, 32FC1 in metres). ``crop``
    is ``(x, y, width, height)`` in source pixels, applied before resizing.
    """

    name: str
    input: str  # noqa: A003 - the contract field name
    height: int
    width: int
    encoding: str = 'rgb8'
    layout: str = 'NCHW'
    dtype: str = 'float32'
    resize: str = 'stretch'
    scale: float = 1.0 / 255.0
    mean: Tuple[float, ...] = (0.0, 0.0, 0.0)
    std: Tuple[float, ...] = (1.0, 1.0, 1.0)
    crop: Optional[Tuple[int, int, int, int]] = None
    interpolation: str = 'auto'
    depth_scale: float = 0.001

    @property
    def is_depth(self) -> bool:
        """True for a depth camera (16UC1, mono16 or 32FC1)."""
        return self.encoding in DEPTH_ENCODINGS

    @property
    def channels(self) -> int:
        """Channels of the model input (1 for mono8 and depth, else 3)."""
        return 3 if self.encoding in COLOUR_ENCODINGS else 1

    def tensor_shape(self) -> Tuple[int, int, int, int]:
        """Shape of the batched input tensor."""
        if self.layout == 'NCHW':
            return (1, self.channels, self.height, self.width)
        return (1, self.height, self.width, self.channels)


@dataclass(frozen=True)
class StateSpec:
    """The joint-state input and its normalisation ``(q - mean) / std``."""

    input: str  # noqa: A003 - the contract field name
    joint_names: Tuple[str, ...]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]


@dataclass(frozen=True)
class ActionSpec:
    """The action-chunk output: ``horizon`` steps, step ``k`` due at ``(k + 1) * dt_s``."""

    output: str
    horizon: int
    dt_s: float
    joint_names: Tuple[str, ...]
    mode: str = 'absolute'
    mean: Tuple[float, ...] = ()
    std: Tuple[float, ...] = ()


@dataclass(frozen=True)
class WorldModelSpec:
    """Optional world-model outputs: current and predicted next-observation embeddings."""

    embedding_output: str
    predicted_embedding_output: str
    prediction_dt_s: float


@dataclass(frozen=True)
class PrefixSpec:
    """Optional real-time-chunking inputs, fed from the chunk being executed.

    ``actions_input`` [1, horizon, joints]: the previous chunk's targets due at this
    observation's steps (row k at ``stamp + (k + 1) * dt_s``), in the model's action space,
    its last row repeated past its end; ``delay_input`` [1] (int64 or float): the expected
    inference delay in action steps, i.e. how many leading rows will be executed before
    the new chunk can take over.
    """

    actions_input: str
    delay_input: str


@dataclass(frozen=True)
class ModelContract:
    """The whole contract of one model."""

    name: str
    cameras: Tuple[CameraSpec, ...]
    state: StateSpec
    action: ActionSpec
    world_model: Optional[WorldModelSpec] = None
    prefix: Optional[PrefixSpec] = None
    format_version: int = FORMAT_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def input_names(self) -> List[str]:
        """Every graph input the contract feeds."""
        names = [c.input for c in self.cameras] + [self.state.input]
        if self.prefix is not None:
            names += [self.prefix.actions_input, self.prefix.delay_input]
        return names

    def camera(self, name: str) -> CameraSpec:
        """Return the camera spec called ``name``."""
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise KeyError(name)

    def to_dict(self) -> Dict[str, Any]:
        """Plain-JSON form, the inverse of :func:`parse_contract`."""
        out = {
            'format_version': self.format_version,
            'name': self.name,
            'cameras': [_listify(asdict(c)) for c in self.cameras],
            'state': _listify(asdict(self.state)),
            'action': _listify(asdict(self.action)),
        }
        if self.world_model is not None:
            out['world_model'] = asdict(self.world_model)
        if self.prefix is not None:
            out['prefix'] = asdict(self.prefix)
        return out

    def to_json(self) -> str:
        """Serialise for the ONNX metadata."""
        return json.dumps(self.to_dict(), sort_keys=True)


def _listify(d: Dict[str, Any]) -> Dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


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


# --------------------------------------------------------------------------- session check

def _check_shape(actual: Sequence[Any], expected: Sequence[int], path: str, what: str,
                 axis_paths: Optional[Sequence[str]] = None) -> None:
    """Compare an ONNX shape (ints, symbolic strings or None) with the expected one.

    ``axis_paths`` names the contract field behind each axis; the error names the first
    axis that disagrees (``path`` for the rank and unnamed axes).
    """
    if len(actual) != len(expected):
        raise ContractError(path, f'{what} has rank {len(actual)} {list(actual)}, the contract '
                                  f'implies {list(expected)}')
    for axis, (a, e) in enumerate(zip(actual, expected)):
        if isinstance(a, int) and a != e:
            where = axis_paths[axis] if axis_paths else path
            raise ContractError(where, f'{what} has shape {list(actual)}, the contract implies '
                                       f'{list(expected)} (axis {axis})')


def _camera_axis_fields(cam: CameraSpec) -> Tuple[str, ...]:
    """Return the contract field that fixes each axis of a camera's input tensor."""
    if cam.layout == 'NCHW':
        return ('input', 'encoding', 'height', 'width')
    return ('input', 'height', 'width', 'encoding')


def _check_camera_shape(actual: Sequence[Any], cam: CameraSpec, path: str) -> None:
    """Compare a camera input's shape with the contract; name the one field that disagrees.

    The channel axis is fixed by ``encoding`` (3 for colour, 1 for mono8 and depth), the
    batch axis must be 1; a shape that matches the other layout names ``layout``.
    """
    expected = cam.tensor_shape()
    what = f'input {cam.input!r}'
    if len(actual) != len(expected):
        raise ContractError(f'{path}.layout', f'{what} has rank {len(actual)} '
                                              f'{list(actual)}, the contract implies '
                                              f'{list(expected)} ({cam.layout})')

    def wrong(shape: Sequence[int]) -> List[int]:
        return [axis for axis, (a, e) in enumerate(zip(actual, shape))
                if isinstance(a, int) and a != e]

    bad = wrong(expected)
    if not bad:
        return
    other = 'NHWC' if cam.layout == 'NCHW' else 'NCHW'
    swapped = CameraSpec(**{**asdict(cam), 'layout': other}).tensor_shape()
    if not wrong(swapped):
        raise ContractError(f'{path}.layout', f'{what} has shape {list(actual)}, the '
                                              f'contract implies {list(expected)} '
                                              f'({cam.layout}); the model is {other}')
    fields = _camera_axis_fields(cam)
    axis = bad[0]
    name = fields[axis]
    if name == 'input':
        problem = f'{what} has batch size {actual[0]}, the runtime feeds 1'
    else:
        problem = (f'{what} has shape {list(actual)}, the contract implies {list(expected)} '
                   f'(axis {axis})')
        if name == 'encoding':
            problem += (f': {cam.encoding} gives {cam.channels} channel'
                        f'{"s" if cam.channels > 1 else ""}')
        others = [fields[a] for a in bad[1:]]
        if others:
            problem += f'; {", ".join(others)} differ{"s" if len(others) == 1 else ""} too'
    raise ContractError(f'{path}.{name}', problem)


def validate_against_io(contract: ModelContract,
                        inputs: Mapping[str, Tuple[Sequence[Any], str]],
                        outputs: Mapping[str, Tuple[Sequence[Any], str]]) -> None:
    """Check the contract against a session's real ``{name: (shape, type)}`` inputs/outputs."""
    fed = set()
    for i, cam in enumerate(contract.cameras):
        path = f'contract.cameras[{i}]'
        if cam.input not in inputs:
            raise ContractError(f'{path}.input', f'the model has no input {cam.input!r} '
                                                 f'(inputs: {sorted(inputs)})')
        shape, typ = inputs[cam.input]
        if typ != ORT_TYPES[cam.dtype]:
            raise ContractError(f'{path}.dtype', f'input {cam.input!r} is {typ}, the contract '
                                                 f'says {cam.dtype}')
        _check_camera_shape(shape, cam, path)
        fed.add(cam.input)
    st = contract.state
    if st.input not in inputs:
        raise ContractError('contract.state.input', f'the model has no input {st.input!r} '
                                                    f'(inputs: {sorted(inputs)})')
    shape, typ = inputs[st.input]
    if typ not in FLOAT_TYPES:
        raise ContractError('contract.state.input', f'input {st.input!r} is {typ}, expected '
                                                    'tensor(float) or tensor(float16)')
    _check_shape(shape, (1, len(st.joint_names)), 'contract.state.joint_names',
                 f'input {st.input!r}')
    fed.add(st.input)
    pre = contract.prefix
    if pre is not None:
        act = contract.action
        for key, expected, types in (
                ('actions_input', (1, act.horizon, len(act.joint_names)), FLOAT_TYPES),
                ('delay_input', None, FLOAT_TYPES + ('tensor(int64)', 'tensor(int32)'))):
            name = getattr(pre, key)
            if name not in inputs:
                raise ContractError(f'contract.prefix.{key}', f'the model has no input '
                                                              f'{name!r} (inputs: '
                                                              f'{sorted(inputs)})')
            shape, typ = inputs[name]
            if typ not in types:
                raise ContractError(f'contract.prefix.{key}', f'input {name!r} is {typ}')
            if expected is not None:
                _check_shape(shape, expected, f'contract.prefix.{key}', f'input {name!r}')
            elif len(shape) not in (1, 2) or any(isinstance(x, int) and x != 1
                                                 for x in shape):
                raise ContractError(f'contract.prefix.{key}', f'input {name!r} has shape '
                                                              f'{list(shape)}, expected [1]')
            fed.add(name)
    extra = sorted(set(inputs) - fed)
    if extra:
        raise ContractError('contract', f'the model has inputs the contract does not feed: '
                                        f'{extra}')
    act = contract.action
    if act.output not in outputs:
        raise ContractError('contract.action.output', f'the model has no output {act.output!r} '
                                                      f'(outputs: {sorted(outputs)})')
    shape, typ = outputs[act.output]
    if typ not in FLOAT_TYPES:
        raise ContractError('contract.action.output', f'output {act.output!r} is {typ}, '
                                                      'expected tensor(float) or '
                                                      'tensor(float16)')
    expected = (1, act.horizon, len(act.joint_names))
    _check_shape(shape, expected, 'contract.action.horizon/joint_names',
                 f'output {act.output!r}')
    wm = contract.world_model
    if wm is not None:
        dims = []
        for key in ('embedding_output', 'predicted_embedding_output'):
            name = getattr(wm, key)
            if name not in outputs:
                raise ContractError(f'contract.world_model.{key}',
                                    f'the model has no output {name!r} '
                                    f'(outputs: {sorted(outputs)})')
            shape, typ = outputs[name]
            if typ not in FLOAT_TYPES:
                raise ContractError(f'contract.world_model.{key}',
                                    f'output {name!r} is {typ}, expected tensor(float) or '
                                    'tensor(float16)')
            if len(shape) != 2:
                raise ContractError(f'contract.world_model.{key}',
                                    f'output {name!r} has shape {list(shape)}, expected [1, E]')
            dims.append(shape[1])
        if all(isinstance(x, int) for x in dims) and dims[0] != dims[1]:
            raise ContractError('contract.world_model',
                                f'embedding sizes differ: {dims[0]} vs {dims[1]}')
