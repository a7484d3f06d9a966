"""The contract against a model: its graph inputs and outputs, names, shapes and types."""

from dataclasses import asdict
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from wam_runtime.core.contract.spec import CameraSpec, ContractError, ModelContract

# ONNX Runtime type strings for the tensor dtypes a contract may declare.
ORT_TYPES = {'float32': 'tensor(float)', 'float16': 'tensor(float16)', 'uint8': 'tensor(uint8)'}
# Float tensors the runtime reads and writes (state input, action and world-model outputs).
FLOAT_TYPES = ('tensor(float)', 'tensor(float16)')


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
