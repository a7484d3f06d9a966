"""The model I/O contract: what each graph input and output is, as frozen dataclasses.

A contract says which graph input is which camera, how a frame is turned into a tensor,
which input carries the joint state and how it is normalised, and how the action output
is laid out in time. Every error names the offending field with a dotted path, for
example ``contract.cameras[0].height``.
"""

from dataclasses import asdict, dataclass, field
import json
from typing import Any, Dict, List, Mapping, Optional, Tuple

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

    @property
    def output_names(self) -> List[str]:
        """Every graph output the contract reads: the action, then the world-model outputs."""
        names = [self.action.output]
        if self.world_model is not None:
            names += [self.world_model.embedding_output,
                      self.world_model.predicted_embedding_output]
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
