"""Parity of an exported model with its torch policy: the inputs compared and the report.

``random_inputs`` draws one input per graph input in the range the runtime's preprocessing
produces; :class:`ParityReport` holds what ``wam_runtime.export.export_policy`` measured.
"""

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List

import numpy as np

from wam_runtime.core.contract import DEPTH_ENCODINGS, ModelContract


@dataclass
class ParityReport:
    """ONNX Runtime against torch on the same inputs."""

    onnx_path: str
    contract_name: str
    opset: int
    exporter: str
    tolerance: float
    max_abs_diff: float
    max_abs_diff_by_output: Dict[str, float]
    max_abs_diff_by_kind: Dict[str, float]
    samples: Dict[str, int]
    output_shapes: Dict[str, List[int]]
    parameters: int
    onnx_ms_p50: float
    torch_ms_p50: float
    export_s: float
    passed: bool
    warnings: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)

    def summary(self) -> str:
        """Return a few human-readable lines."""
        verdict = 'PASS' if self.passed else 'FAIL'
        per = ', '.join(f'{k} {v:.3g}' for k, v in self.max_abs_diff_by_output.items())
        lines = [
            f'exported  {self.onnx_path} (contract {self.contract_name!r}, opset {self.opset}, '
            f'{self.parameters:,} parameters, {self.export_s:.1f} s)',
            f'outputs   {self.output_shapes}',
            f'parity    {verdict}: max abs diff {self.max_abs_diff:.3g} (tolerance '
            f'{self.tolerance:g}) over {sum(self.samples.values())} samples {self.samples}; '
            f'per output: {per}',
            f'timing    onnxruntime p50 {self.onnx_ms_p50:.2f} ms, torch p50 '
            f'{self.torch_ms_p50:.2f} ms (CPU, this machine)',
        ]
        lines += [f'warning   {w}' for w in self.warnings]
        return '\n'.join(lines)


def random_inputs(contract: ModelContract, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Return one random input per graph input, in the range the runtime feeds.

    Camera tensors come from random frames through the contract's scale, mean and std (depth
    from 0 to 5 m); the state is normal around zero (it is fed normalised); the prefix
    actions are normal and the delay a step count within the horizon.
    """
    feeds: Dict[str, np.ndarray] = {}
    for cam in contract.cameras:
        shape = cam.tensor_shape()
        chan_axis = 1 if cam.layout == 'NCHW' else 3
        if cam.dtype == 'uint8':
            feeds[cam.input] = rng.integers(0, 256, size=shape, dtype=np.uint8)
            continue
        if cam.encoding in DEPTH_ENCODINGS:
            raw = rng.uniform(0.0, 5.0, size=shape) / (cam.depth_scale if
                                                       cam.encoding != '32FC1' else 1.0)
        else:
            raw = rng.integers(0, 256, size=shape).astype(np.float64)
        bshape = [1, 1, 1, 1]
        bshape[chan_axis] = cam.channels
        mean = np.asarray(cam.mean).reshape(bshape)
        std = np.asarray(cam.std).reshape(bshape)
        feeds[cam.input] = ((raw * cam.scale - mean) / std).astype(cam.dtype)
    n = len(contract.state.joint_names)
    feeds[contract.state.input] = rng.normal(0.0, 1.0, size=(1, n)).astype(np.float32)
    pre = contract.prefix
    if pre is not None:
        act = contract.action
        feeds[pre.actions_input] = rng.normal(
            0.0, 1.0, size=(1, act.horizon, len(act.joint_names))).astype(np.float32)
        feeds[pre.delay_input] = np.array([rng.integers(0, act.horizon)], np.int64)
    return feeds
