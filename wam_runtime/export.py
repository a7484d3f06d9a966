"""Export your own torch policy to ONNX with its model contract, and prove parity.

Python API::

    from wam_runtime.export import export_policy
    report = export_policy(policy, contract, 'my_policy.onnx', tolerance=1e-4)
    print(report.max_abs_diff, report.passed)

Command line (``wam-runtime export`` does the same)::

    python -m wam_runtime.export --policy my_pkg.policies:make_policy
        --checkpoint ckpt.pt --contract contract.json --out my_policy.onnx
        [--samples samples.npz] [--tolerance 1e-4] [--report parity.json]

The policy is an ``nn.Module`` whose ``forward`` takes the graph inputs in contract order
(every camera tensor in ``contract.cameras`` order, then the normalised joint state, then the
real-time-chunking inputs if the contract has ``prefix``) and returns the action chunk
``[1, horizon, joints]`` (in the contract's normalised action space), followed by the
world-model embeddings if the contract declares them. The contract (a dict, JSON file or
:class:`~wam_runtime.core.contract.ModelContract`) is validated, stored in the ONNX metadata
under ``wam_runtime.contract`` exactly as the runtime reads it, and checked against the
exported graph with the runtime's own loader (``OnnxPolicy``: input and output names,
shapes, types, and the real output shape of a first inference).

Parity: the ONNX Runtime outputs are compared with torch on random inputs in the range the
runtime's preprocessing produces (pixels 0..255 through ``scale``/``mean``/``std``, joint
states around zero) and on the user's samples (``samples`` in the API, an ``.npz`` with one
array per graph input name and a leading sample axis on the command line). The report
(max abs diff overall, per output and per sample kind, timings) is returned, written as
JSON with ``report_path`` and printed by the command line. Exit codes: 0 exported and within
tolerance, 1 parity above tolerance (the ONNX file is still written, so it can be
inspected), 2 bad arguments, contract, policy or export failure.

Uses torch's TorchScript-based exporter (``dynamo=False``): it needs no ``onnxscript`` and
works offline. The runtime itself never imports torch; only this module does.
"""

import argparse
import importlib
import importlib.util
import json
import os
import sys
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union
import warnings

import numpy as np

from wam_runtime.core.contract import (
    ContractError, ModelContract, parse_contract, write_contract)
from wam_runtime.parity import ParityReport, random_inputs

EXIT_OK, EXIT_PARITY, EXIT_INVALID = 0, 1, 2
DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The policy cannot be exported as asked; the message says why in one line."""


def _contract_dict(contract: Union[ModelContract, Mapping[str, Any], str]) -> Dict[str, Any]:
    """Return the contract as a JSON-ready dict (validated), from any accepted form."""
    if isinstance(contract, ModelContract):
        return contract.to_dict()
    if isinstance(contract, str):
        if os.path.isfile(contract):
            with open(contract, encoding='utf-8') as f:
                text = f.read()
        else:
            text = contract
        try:
            contract = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ContractError('contract', f'not valid JSON ({exc})') from None
    d = json.loads(json.dumps(dict(contract)))   # a deep, JSON-clean copy
    parse_contract(d)
    return d


def _as_tuple(out: Any) -> tuple:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _count_parameters(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def export_policy(policy: Any, contract: Union[ModelContract, Mapping[str, Any], str],
                  path: str, samples: Sequence[Mapping[str, np.ndarray]] = (),
                  random_samples: int = 4, tolerance: float = DEFAULT_TOLERANCE,
                  opset: int = DEFAULT_OPSET, seed: int = 0,
                  report_path: Optional[str] = None,
                  dynamic_axes: Optional[Mapping[str, Mapping[int, str]]] = None,
                  check_with_runtime: bool = True) -> ParityReport:
    """Export ``policy`` (a torch ``nn.Module``) to ``path`` with ``contract``; check parity.

    ``samples`` are extra inputs, one dict ``{graph input name: array}`` per sample, shaped
    as the graph takes them (batch 1). ``random_samples`` random inputs are compared too.
    ``dynamic_axes`` is passed to ``torch.onnx.export`` (for example to leave the horizon
    symbolic). With ``check_with_runtime`` the file is finally loaded with the runtime's
    ``OnnxPolicy``, which validates the contract against the graph and runs it once.

    Returns the ParityReport (``passed`` is False above ``tolerance``: the file is written
    anyway). Raises ContractError for a bad contract, ExportError when torch cannot export
    the policy or the graph does not match the contract.
    """
    import torch

    d = _contract_dict(contract)
    spec = parse_contract(d)
    if not tolerance >= 0:
        raise ExportError(f'tolerance: must be >= 0, got {tolerance}')
    if random_samples < 0:
        raise ExportError(f'random_samples: must be >= 0, got {random_samples}')
    inputs = spec.input_names
    outputs = spec.output_names
    for i, sample in enumerate(samples):
        missing = [n for n in inputs if n not in sample]
        extra = sorted(set(sample) - set(inputs))
        if missing or extra:
            raise ExportError(f'samples[{i}]: needs exactly the graph inputs {inputs} '
                              f'(missing {missing}, unknown {extra})')
    rng = np.random.default_rng(seed)
    example = random_inputs(spec, rng)
    policy = policy.eval()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp_path = f'{path}.tmp-{os.getpid()}'
    t0 = time.perf_counter()
    # nn.TransformerEncoderLayer and MultiheadAttention take a fused "fast path" in eval
    # mode whose kernels have no ONNX export; the plain path computes the same function.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # torch >= 2.9 warns that the TorchScript exporter is legacy; it needs no
            # onnxscript and works offline, which the dynamo exporter does not.
            warnings.simplefilter('ignore', DeprecationWarning)
            warnings.simplefilter('ignore', UserWarning)
            torch.onnx.export(
                policy, tuple(torch.from_numpy(example[n]) for n in inputs), tmp_path,
                dynamo=False, opset_version=opset, input_names=inputs,
                output_names=outputs, do_constant_folding=True,
                dynamic_axes=dict(dynamic_axes) if dynamic_axes else None)
    except Exception as exc:  # noqa: B902 - torch raises many unrelated types here
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f'torch.onnx.export failed: {first}') from exc
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    export_s = time.perf_counter() - t0
    _write_with_contract(tmp_path, path, d)

    import onnxruntime as ort
    from wam_runtime.core.contract import validate_against_io
    from wam_runtime.core.inference import session_io
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    sess_in, sess_out = session_io(session)
    try:
        validate_against_io(spec, sess_in, sess_out)
    except ContractError as exc:
        raise ExportError(f'the exported graph does not match the contract: {exc}') from None
    cases = [('random', random_inputs(spec, rng)) for _ in range(random_samples)]
    cases += [('user', {n: np.ascontiguousarray(s[n]) for n in inputs}) for s in samples]
    if not cases:
        cases = [('random', example)]
    by_output = dict.fromkeys(outputs, 0.0)
    by_kind: Dict[str, float] = {}
    ort_times, torch_times = [], []
    shapes: Dict[str, List[int]] = {}
    for kind, feeds in cases:
        t1 = time.perf_counter()
        ort_out = session.run(outputs, feeds)
        ort_times.append(time.perf_counter() - t1)
        with torch.no_grad():
            t1 = time.perf_counter()
            torch_out = _as_tuple(policy(*(torch.from_numpy(feeds[n]) for n in inputs)))
            torch_times.append(time.perf_counter() - t1)
        if len(torch_out) != len(outputs):
            raise ExportError(f'the policy returns {len(torch_out)} tensors, the contract '
                              f'reads {len(outputs)} outputs {outputs}')
        for name, a, b in zip(outputs, ort_out, torch_out):
            b = b.detach().cpu().numpy()
            shapes[name] = list(a.shape)
            if a.shape != b.shape:
                raise ExportError(f'output {name!r}: onnxruntime returns {list(a.shape)}, '
                                  f'torch {list(b.shape)}')
            diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) \
                if a.size else 0.0
            if not np.isfinite(diff):
                diff = float('inf')
            by_output[name] = max(by_output[name], diff)
            by_kind[kind] = max(by_kind.get(kind, 0.0), diff)
    max_diff = max(by_output.values())
    act_shape = shapes.get(spec.action.output)
    expected = [1, spec.action.horizon, len(spec.action.joint_names)]
    if act_shape is not None and act_shape != expected:
        raise ExportError(f'contract.action.horizon/joint_names: output '
                          f'{spec.action.output!r} is {act_shape}, the contract implies '
                          f'{expected}')
    notes = [] if samples else ['compared on random inputs only: pass real observations '
                                '(samples / --samples) to check parity where it matters']
    if check_with_runtime:
        from wam_runtime.core.inference import ModelLoadError, OnnxPolicy
        try:
            OnnxPolicy(path, warmup_runs=1, log=lambda _msg: None)
        except (ContractError, ModelLoadError) as exc:
            raise ExportError(f'the runtime refuses the exported model: {exc}') from None
    report = ParityReport(
        onnx_path=os.path.abspath(path), contract_name=spec.name, opset=opset,
        exporter=f'torch.onnx.export (TorchScript, torch {torch.__version__})',
        tolerance=float(tolerance), max_abs_diff=max_diff,
        max_abs_diff_by_output=by_output, max_abs_diff_by_kind=by_kind,
        samples={k: sum(1 for c, _ in cases if c == k) for k in ('random', 'user')},
        output_shapes=shapes, parameters=_count_parameters(policy),
        onnx_ms_p50=float(np.median(ort_times) * 1e3),
        torch_ms_p50=float(np.median(torch_times) * 1e3), export_s=export_s,
        passed=bool(max_diff <= tolerance), warnings=notes)
    if report_path:
        with open(report_path, 'w', encoding='utf-8') as f:
            json.dump(report.to_dict(), f, indent=2, sort_keys=True)
            f.write('\n')
    return report


def _write_with_contract(tmp_path: str, path: str, contract: Mapping[str, Any]) -> None:
    """Add the contract to the exported file's metadata and move it to ``path``."""
    import onnx
    model = onnx.load(tmp_path)
    write_contract(model, contract)
    model.producer_name = 'wam_runtime.export'
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f'the exported graph is not valid ONNX: {exc}') from None
    onnx.save(model, path)
    os.remove(tmp_path)


# --------------------------------------------------------------------------- command line

def load_policy(spec: str, checkpoint: Optional[str] = None) -> Any:
    """Return the nn.Module named by ``module:attr`` or ``file.py:attr``.

    ``attr`` is an ``nn.Module`` or a callable returning one (called without arguments).
    ``checkpoint`` is a state dict file loaded with ``torch.load(weights_only=True)``
    (optionally under a ``state_dict`` or ``model`` key).
    """
    import torch
    where, sep, attr = spec.rpartition(':')
    if not sep or not where or not attr:
        raise ExportError(f'--policy: expected MODULE:ATTR or FILE.py:ATTR, got {spec!r}')
    try:
        if where.endswith('.py'):
            mod_spec = importlib.util.spec_from_file_location('_wam_export_policy', where)
            if mod_spec is None or not os.path.isfile(where):
                raise ExportError(f'--policy: no such file {where!r}')
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except ImportError as exc:
        raise ExportError(f'--policy: cannot import {where!r} ({exc})') from None
    obj = getattr(module, attr, None)
    if obj is None:
        raise ExportError(f'--policy: {where!r} has no attribute {attr!r}')
    policy = obj if isinstance(obj, torch.nn.Module) else obj()
    if not isinstance(policy, torch.nn.Module):
        raise ExportError(f'--policy: {spec!r} gave {type(policy).__name__}, not an '
                          'nn.Module')
    if checkpoint:
        try:
            state = torch.load(checkpoint, map_location='cpu', weights_only=True)
        except Exception as exc:  # noqa: B902 - OSError, pickle and torch errors alike
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise ExportError(f'--checkpoint: cannot load {checkpoint!r} ({first})') from None
        for key in ('state_dict', 'model'):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        try:
            policy.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise ExportError(f'--checkpoint: does not fit the policy ({first})') from None
    return policy


def load_samples(path: str) -> List[Dict[str, np.ndarray]]:
    """Read an ``.npz`` of graph inputs with a leading sample axis; return one dict each."""
    try:
        data = np.load(path)
    except (OSError, ValueError) as exc:
        raise ExportError(f'--samples: cannot read {path!r} ({exc})') from None
    arrays = {k: data[k] for k in data.files}
    counts = {k: len(v) for k, v in arrays.items()}
    if not arrays or len(set(counts.values())) != 1:
        raise ExportError(f'--samples: every array needs the same leading sample axis, got '
                          f'{counts}')
    n = next(iter(counts.values()))
    return [{k: v[i] for k, v in arrays.items()} for i in range(n)]


def build_parser(prog: str = 'wam-runtime export') -> argparse.ArgumentParser:
    """Return the argument parser of the export command."""
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split('\n')[0])
    add_arguments(ap)
    return ap


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """Add the export command's arguments to ``ap`` (shared with ``wam-runtime export``)."""
    ap.add_argument('--policy', required=True,
                    help='MODULE:ATTR or FILE.py:ATTR: an nn.Module or a function returning '
                         'one')
    ap.add_argument('--contract', required=True, help='contract JSON file')
    ap.add_argument('--out', required=True, help='ONNX file to write')
    ap.add_argument('--checkpoint', help='state dict to load into the policy')
    ap.add_argument('--samples', help='.npz of graph inputs with a leading sample axis')
    ap.add_argument('--random-samples', type=int, default=4,
                    help='random inputs compared besides --samples (default 4)')
    ap.add_argument('--tolerance', type=float, default=DEFAULT_TOLERANCE,
                    help=f'largest accepted abs difference (default {DEFAULT_TOLERANCE:g})')
    ap.add_argument('--opset', type=int, default=DEFAULT_OPSET)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--report', help='write the parity report here as JSON')


def run(args: argparse.Namespace) -> int:
    """Run an export from parsed arguments; print the report; return the exit code."""
    try:
        policy = load_policy(args.policy, args.checkpoint)
        samples = load_samples(args.samples) if args.samples else []
        report = export_policy(policy, args.contract, args.out, samples=samples,
                               random_samples=args.random_samples, tolerance=args.tolerance,
                               opset=args.opset, seed=args.seed, report_path=args.report)
    except (ExportError, ContractError) as exc:
        print(f'[wam_runtime] export failed: {exc}', file=sys.stderr)
        return EXIT_INVALID
    print(report.summary())
    if args.report:
        print(f'report    {args.report}')
    return EXIT_OK if report.passed else EXIT_PARITY


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point: ``python -m wam_runtime.export``."""
    return run(build_parser().parse_args(argv))


if __name__ == '__main__':
    raise SystemExit(main())
