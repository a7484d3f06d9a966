"""Describe a model: its contract, its real inputs and outputs, and whether they agree.

Uses the same contract parser and validation as ``policy_node`` (``core.contract``), so a
model ``wam-runtime inspect`` accepts loads in the node, and one it refuses fails there with
the same field path.
"""

from dataclasses import dataclass, field
import os
from typing import Any, Dict, List, Optional, Tuple

from wam_runtime.core.contract import (
    ContractError, METADATA_KEY, ModelContract, validate_against_io)
from wam_runtime.core.inference import file_sha256, ModelLoadError, read_contract, session_io


@dataclass
class ModelReport:
    """What ``inspect`` found; ``error`` is None when the model is usable."""

    path: str
    size_bytes: int = 0
    sha256: str = ''
    producer: str = ''
    opset: Optional[int] = None
    inputs: Dict[str, Tuple[List[Any], str]] = field(default_factory=dict)
    outputs: Dict[str, Tuple[List[Any], str]] = field(default_factory=dict)
    metadata_keys: List[str] = field(default_factory=list)
    contract: Optional[ModelContract] = None
    error: Optional[str] = None


def inspect_model(path: str) -> ModelReport:
    """Open ``path`` with ONNX Runtime (CPU), read and validate its contract."""
    import onnxruntime as ort
    report = ModelReport(path)
    if not os.path.isfile(path):
        report.error = f'model_path: no such file {path!r}'
        return report
    report.size_bytes = os.path.getsize(path)
    report.sha256 = file_sha256(path)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(path, sess_options=opts,
                                       providers=['CPUExecutionProvider'])
    except Exception as exc:  # noqa: B902 - onnxruntime raises several unrelated types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        report.error = f'model_path: {path!r} is not a loadable ONNX model ({first})'
        return report
    meta = session.get_modelmeta()
    report.producer = meta.producer_name
    report.metadata_keys = sorted(meta.custom_metadata_map)
    report.opset = _opset(path)
    report.inputs, report.outputs = session_io(session)
    try:
        report.contract = read_contract(session)
        validate_against_io(report.contract, report.inputs, report.outputs)
    except (ContractError, ModelLoadError) as exc:
        report.error = str(exc)
    return report


def _opset(path: str) -> Optional[int]:
    try:
        import onnx
        model = onnx.load(path, load_external_data=False)
    except Exception:  # noqa: B902 - the opset is informative only
        return None
    return next((o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')), None)


def _shape(shape: List[Any]) -> str:
    return '[' + ', '.join(str(d) for d in shape) + ']'


def _nums(values) -> str:
    return '[' + ', '.join(f'{v:.4g}' for v in values) + ']'


def format_report(r: ModelReport) -> str:
    """Render a report as the text ``wam-runtime inspect`` prints."""
    lines = [f'model     {r.path}']
    if r.sha256:
        lines.append(f'size      {r.size_bytes} bytes, sha256 {r.sha256}')
        lines.append(f'producer  {r.producer or "?"}, opset {r.opset or "?"}, metadata keys '
                     f'{r.metadata_keys}')
    if r.inputs:
        lines.append('inputs')
        lines += [f'  {n:<28}{_shape(s):<22}{t}' for n, (s, t) in r.inputs.items()]
        lines.append('outputs')
        lines += [f'  {n:<28}{_shape(s):<22}{t}' for n, (s, t) in r.outputs.items()]
    c = r.contract
    if c is not None:
        lines.append(f'contract  {METADATA_KEY} format {c.format_version}, name {c.name!r}')
        for cam in c.cameras:
            crop = f', crop {list(cam.crop)}' if cam.crop else ''
            lines.append(f'  camera {cam.name!r} <- input {cam.input!r}: {cam.width}x'
                         f'{cam.height} {cam.encoding} {cam.layout} {cam.dtype}, resize '
                         f'{cam.resize}{crop}, scale {cam.scale:.6g}, mean {_nums(cam.mean)}, '
                         f'std {_nums(cam.std)}; topic camera/{cam.name}/image_raw')
        st = c.state
        lines.append(f'  state  <- input {st.input!r}: {list(st.joint_names)}, mean '
                     f'{_nums(st.mean)}, std {_nums(st.std)}')
        a = c.action
        lines.append(f'  action -> output {a.output!r}: {a.horizon} steps x {a.dt_s:g} s = '
                     f'{a.horizon * a.dt_s:g} s, {a.mode}, joints {list(a.joint_names)}')
        if c.world_model is not None:
            wm = c.world_model
            lines.append(f'  world model -> {wm.embedding_output!r}, '
                         f'{wm.predicted_embedding_output!r} (prediction '
                         f'{wm.prediction_dt_s:g} s ahead): policy/surprise is published')
        if c.prefix is not None:
            lines.append(f'  real-time chunking prefix <- {c.prefix.actions_input!r}, '
                         f'{c.prefix.delay_input!r}')
    if r.error:
        lines.append(f'INVALID   {r.error}')
    else:
        lines.append("valid     the contract matches the model's inputs and outputs")
    return '\n'.join(lines)
