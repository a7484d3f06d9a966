"""ONNX Runtime inference behind the model contract.

Execution providers are tried in the configured priority order. A provider that this
onnxruntime build does not have, or that fails to initialise (no GPU, missing CUDA or
TensorRT libraries), is skipped, and the fallback is logged once, in one line, with the
reason. Inputs are bound without copies through IO binding where the provider allows it,
float16 inputs and outputs are supported, and a ``model_sha256`` pin refuses any other file.
"""

from dataclasses import dataclass, field
import hashlib
import logging
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import onnxruntime as ort

from wam_runtime.core.contract import (
    apply_overrides, ContractError, METADATA_KEY, ModelContract, parse_contract,
    validate_against_io)
from wam_runtime.core.policy_config import provider_names_problem, SHA256_PIN as _SHA256
from wam_runtime.core.stats import RollingStats

CPU = 'CPUExecutionProvider'
CUDA = 'CUDAExecutionProvider'
TENSORRT = 'TensorrtExecutionProvider'
# Providers whose inputs live in CUDA memory (IO binding copies into a persistent buffer).
CUDA_PROVIDERS = (CUDA, TENSORRT)
_NUMPY_TYPES = {'tensor(float)': np.float32, 'tensor(float16)': np.float16,
                'tensor(uint8)': np.uint8}


class ModelLoadError(RuntimeError):
    """The model cannot be used; the message is one line naming the problem."""


@dataclass
class PolicyOutput:
    """One inference: absolute joint targets per step plus optional embeddings."""

    actions: np.ndarray            # (horizon, joints) absolute positions, float64
    embedding: Optional[np.ndarray]
    predicted_embedding: Optional[np.ndarray]
    inference_s: float


@dataclass(frozen=True)
class ProviderConfig:
    """Execution-provider settings beyond the priority list."""

    cuda_device_id: int = 0
    tensorrt_fp16: bool = False
    tensorrt_engine_cache_path: str = ''   # empty: no engine cache
    extra: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def options_for(self, provider: str) -> Dict[str, Any]:
        """Return the onnxruntime provider options of ``provider``."""
        opts: Dict[str, Any] = {}
        if provider == CUDA:
            opts['device_id'] = self.cuda_device_id
        elif provider == TENSORRT:
            opts['device_id'] = self.cuda_device_id
            opts['trt_fp16_enable'] = self.tensorrt_fp16
            if self.tensorrt_engine_cache_path:
                opts['trt_engine_cache_enable'] = True
                opts['trt_engine_cache_path'] = self.tensorrt_engine_cache_path
        opts.update(self.extra.get(provider, {}))
        return opts


def select_providers(requested: Sequence[str],
                     available: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Keep the requested providers that are available, in priority order.

    Returns (chosen, skipped). CPU is appended as the last resort if nothing is left, so a
    GPU-first configuration still runs on a CPU-only machine.
    """
    chosen = [p for p in requested if p in available]
    skipped = [p for p in requested if p not in available]
    if not chosen and CPU in available:
        chosen = [CPU]
    return chosen, skipped


def fallback_message(requested: Sequence[str], active: Sequence[str],
                     reasons: Mapping[str, str]) -> Optional[str]:
    """Return the one-line fallback report, or None when the first choice is running.

    Providers that failed for the same reason are named together, in priority order.
    """
    if not requested or (active and active[0] == requested[0]):
        return None
    groups: Dict[str, List[str]] = {}
    for p in requested:
        if p not in active:
            groups.setdefault(reasons.get(p, 'not used by the session'), []).append(p)
    parts = [f'{", ".join(names)}: {why}' for why, names in groups.items()]
    return (f'execution provider fallback to {active[0] if active else "nothing"}: '
            f'{"; ".join(parts)}')


def file_sha256(path: str) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def check_sha256(path: str, expected: str) -> str:
    """Return the file's SHA-256; raise ModelLoadError unless it equals ``expected``.

    ``expected`` may be empty (no pin) or 64 hex digits, optionally prefixed ``sha256:``.
    """
    match = _SHA256.match(expected.strip()) if expected else None
    if expected and match is None:
        raise ModelLoadError(f'model_sha256: expected 64 hex digits, got {expected!r}')
    actual = file_sha256(path)
    if match is not None and actual != match.group(2).lower():
        raise ModelLoadError(f'model_sha256: {path!r} has sha256 {actual}, the configuration '
                             f'pins {match.group(2).lower()}; refusing to load it')
    return actual


def read_contract(session: ort.InferenceSession) -> ModelContract:
    """Parse the contract stored in a session's model metadata."""
    meta = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in meta:
        raise ContractError('contract', f'the model has no {METADATA_KEY!r} metadata entry '
                                        '(export it with the contract; see doc/model_contract.md)')
    return parse_contract(meta[METADATA_KEY])


def session_io(session: ort.InferenceSession) -> Tuple[Dict, Dict]:
    """Return ``({name: (shape, type)}, {name: (shape, type)})`` for inputs and outputs."""
    ins = {i.name: (list(i.shape), i.type) for i in session.get_inputs()}
    outs = {o.name: (list(o.shape), o.type) for o in session.get_outputs()}
    return ins, outs


class _Binding:
    """IO binding of one session: inputs bound in place, outputs into buffers we own."""

    def __init__(self, session: ort.InferenceSession, outputs: Sequence[str],
                 device: str, device_id: int) -> None:
        self.session = session
        self.io = session.io_binding()
        self.device = device
        self.device_id = device_id
        self._device_inputs: Dict[str, Any] = {}
        shapes = {o.name: (o.shape, o.type) for o in session.get_outputs()}
        self.out_arrays: List[np.ndarray] = []
        self._out_values: List[Any] = []
        if all(all(isinstance(d, int) for d in shapes[n][0]) for n in outputs):
            for name in outputs:
                shape, typ = shapes[name]
                arr = np.zeros(shape, _NUMPY_TYPES.get(typ, np.float32))
                # On CPU the OrtValue shares the numpy buffer: results land there directly.
                value = ort.OrtValue.ortvalue_from_numpy(arr)
                self.io.bind_ortvalue_output(name, value)
                self.out_arrays.append(arr)
                self._out_values.append(value)
        else:
            for name in outputs:
                self.io.bind_output(name, 'cpu')

    def run(self, feeds: Mapping[str, np.ndarray]) -> List[np.ndarray]:
        for name, arr in feeds.items():
            if self.device == 'cpu':
                self.io.bind_cpu_input(name, arr)
                continue
            value = self._device_inputs.get(name)
            if value is None or value.shape() != list(arr.shape):
                value = ort.OrtValue.ortvalue_from_numpy(arr, self.device, self.device_id)
                self._device_inputs[name] = value
                self.io.bind_ortvalue_input(name, value)
            else:
                value.update_inplace(arr)       # host -> persistent device buffer
        self.session.run_with_iobinding(self.io)
        if self.out_arrays:
            return self.out_arrays
        return self.io.copy_outputs_to_cpu()


class OnnxPolicy:
    """A loaded, validated, warmed-up model: tensors in, absolute joint targets out."""

    def __init__(self, model_path: str,
                 providers: Sequence[str] = (CPU,),
                 intra_op_num_threads: int = 0,
                 contract_overrides: Optional[Mapping] = None,
                 warmup_runs: int = 2,
                 log: Callable[[str], None] = logging.getLogger(__name__).info,
                 inter_op_num_threads: int = 0,
                 provider_config: Optional[ProviderConfig] = None,
                 model_sha256: str = '',
                 io_binding: bool = True,
                 warn: Optional[Callable[[str], None]] = None) -> None:
        """Load ``model_path``; raise ModelLoadError or ContractError with one clear line.

        ``log`` receives information lines, ``warn`` (default: ``log``) the provider
        fallback and a disabled IO binding.
        """
        warn = warn or log
        if not os.path.isfile(model_path):
            raise ModelLoadError(f'model_path: no such file {model_path!r}')
        providers = list(providers)
        problem = provider_names_problem(providers)     # build_policy_config's own check
        if problem:
            raise ModelLoadError(problem)
        if not providers:
            raise ModelLoadError(f'providers: empty list (for example [{CPU}])')
        for key, value in (('intra_op_num_threads', intra_op_num_threads),
                           ('inter_op_num_threads', inter_op_num_threads)):
            if value < 0:
                raise ModelLoadError(f'{key}: must be >= 0 (0 = library default), got {value}')
        self.sha256 = check_sha256(model_path, model_sha256)
        available = ort.get_available_providers()
        chosen, skipped = select_providers(providers, available)
        if not chosen:
            raise ModelLoadError(f'providers: none of {providers} is available '
                                 f'(available: {available})')
        reasons = {p: f'not in this onnxruntime build (it has {", ".join(available)})'
                   for p in skipped}
        cfg = provider_config or ProviderConfig()
        opts = ort.SessionOptions()
        if intra_op_num_threads > 0:
            opts.intra_op_num_threads = intra_op_num_threads
        if inter_op_num_threads > 0:
            opts.inter_op_num_threads = inter_op_num_threads
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                model_path, sess_options=opts, providers=chosen,
                provider_options=[cfg.options_for(p) for p in chosen])
        except Exception as exc:  # onnxruntime raises several unrelated types here
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f'model_path: {model_path!r} is not a loadable ONNX model '
                                 f'({first})') from None
        self.providers = self.session.get_providers()
        for p in chosen:
            if p not in self.providers:
                reasons[p] = ('failed to initialise (no usable device or missing libraries; '
                              "onnxruntime's own error log has the details)")
        self.fallback = fallback_message(providers, self.providers, reasons)
        if self.fallback:
            warn(self.fallback)
        log(f'model {os.path.basename(model_path)} (sha256 {self.sha256[:16]}...) on '
            f'{self.providers[0]}')
        contract = read_contract(self.session)
        if contract_overrides:
            contract, changes = apply_overrides(contract, contract_overrides)
            for line in changes:
                log(f'contract override {line}')
        inputs, outputs = session_io(self.session)
        validate_against_io(contract, inputs, outputs)
        self.contract = contract
        self.model_path = model_path
        act = contract.action
        st = contract.state
        self._state_dtype = _NUMPY_TYPES[inputs[st.input][1]]
        self._state_mean = np.asarray(st.mean, np.float32)
        self._state_std = np.asarray(st.std, np.float32)
        self._act_mean = np.asarray(act.mean, np.float64)
        self._act_std = np.asarray(act.std, np.float64)
        # For delta actions: which state entry each action joint is relative to.
        self._delta_index = [st.joint_names.index(n) for n in act.joint_names] \
            if act.mode == 'delta' else None
        # Where each action joint sits in the state (None if some action joint is not there).
        self._act_state_index = [st.joint_names.index(n) for n in act.joint_names] \
            if set(act.joint_names) <= set(st.joint_names) else None
        self._outputs = [act.output]
        # A symbolic dimension (horizon, joints) is only known once the model has run: every
        # run checks the real output shape, so the first inference catches a mismatch.
        self._action_shape = (1, act.horizon, len(act.joint_names))
        self._declared_action_shape = list(outputs[act.output][0])
        wm = contract.world_model
        if wm is not None:
            self._outputs += [wm.embedding_output, wm.predicted_embedding_output]
        self.timing = RollingStats(1000)
        self._binding: Optional[_Binding] = None
        if io_binding:
            device = 'cuda' if self.providers[0] in CUDA_PROVIDERS else 'cpu'
            try:
                self._binding = _Binding(self.session, self._outputs, device,
                                         cfg.cuda_device_id)
                self.run(self.zero_inputs(), np.zeros(len(st.joint_names)), record=False)
            except ContractError:
                raise
            except Exception as exc:  # noqa: B902 - any binding failure: plain run() instead
                self._binding = None
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                warn(f'io binding disabled on {self.providers[0]} ({first})')
        self.io_binding = self._binding is not None
        for _ in range(max(0, warmup_runs)):
            self.run(self.zero_inputs(), np.zeros(len(st.joint_names)), record=False)

    def zero_inputs(self) -> Dict[str, np.ndarray]:
        """Camera tensors of the right shape and dtype, all zero (for warm-up and tests)."""
        return {c.name: np.zeros(c.tensor_shape(), np.dtype(c.dtype))
                for c in self.contract.cameras}

    def prefix_feeds(self, prefix_actions: Optional[np.ndarray], delay_steps: int,
                     state: np.ndarray) -> Dict[str, np.ndarray]:
        """Build the real-time-chunking inputs from absolute targets (or None: none known).

        ``prefix_actions`` (horizon, joints) are absolute targets due at this observation's
        steps; they are mapped into the model's action space (normalised, minus the state
        for delta actions). Without them the current state is repeated, with delay 0.
        """
        pre, act = self.contract.prefix, self.contract.action
        q = np.asarray(state, np.float64)
        base = q[self._act_state_index] if self._act_state_index is not None else None
        if prefix_actions is None:
            if base is None:
                raise ValueError('prefix: no previous chunk and no state for the action joints')
            prefix_actions = np.repeat(base[None], act.horizon, axis=0)
            delay_steps = 0
        a = np.asarray(prefix_actions, np.float64)
        if self._delta_index is not None:
            a = a - q[self._delta_index]
        a = (a - self._act_mean) / self._act_std
        in_types = {i.name: i.type for i in self.session.get_inputs()}
        dtype = np.float16 if in_types[pre.actions_input] == 'tensor(float16)' else np.float32
        dtypes = {'tensor(int64)': np.int64, 'tensor(int32)': np.int32,
                  'tensor(float16)': np.float16, 'tensor(float)': np.float32}
        shape = [d if isinstance(d, int) else 1 for d in
                 next(i.shape for i in self.session.get_inputs() if i.name == pre.delay_input)]
        delay = np.full(shape, int(delay_steps), dtypes[in_types[pre.delay_input]])
        return {pre.actions_input: a[None].astype(dtype), pre.delay_input: delay}

    def run(self, images: Mapping[str, np.ndarray], state: np.ndarray,
            record: bool = True, prefix: Optional[Mapping[str, np.ndarray]] = None
            ) -> PolicyOutput:
        """Infer one chunk from preprocessed camera tensors (by camera name) and joint state.

        ``state`` is in the order of ``contract.state.joint_names``. The returned actions are
        absolute targets in the order of ``contract.action.joint_names``; the embeddings are
        float64 copies, safe to keep.
        """
        feeds = {c.input: images[c.name] for c in self.contract.cameras}
        q = np.asarray(state, np.float64)
        if self.contract.prefix is not None:
            feeds.update(prefix if prefix is not None else self.prefix_feeds(None, 0, q))
        feeds[self.contract.state.input] = \
            ((q.astype(np.float32) - self._state_mean) / self._state_std)[None].astype(
                self._state_dtype, copy=False)
        t0 = time.perf_counter()
        if self._binding is not None:
            results = self._binding.run(feeds)
        else:
            results = self.session.run(self._outputs, feeds)
        dt = time.perf_counter() - t0
        if record:
            self.timing.add(dt)
        if results[0].shape != self._action_shape:
            self._refuse_action_shape(results[0].shape)
        actions = results[0][0].astype(np.float64) * self._act_std + self._act_mean
        if self._delta_index is not None:
            actions = actions + q[self._delta_index]
        emb = pred = None
        if len(results) == 3:
            emb = results[1][0].astype(np.float64)
            pred = results[2][0].astype(np.float64)
        return PolicyOutput(actions, emb, pred, dt)

    def _refuse_action_shape(self, shape: Tuple[int, ...]) -> None:
        """Raise ContractError naming the contract field the real action output contradicts."""
        expected = self._action_shape
        fields = ('output', 'horizon', 'joint_names')
        axis = next((i for i, (a, e) in enumerate(zip(shape, expected)) if a != e), 0)
        field_name = fields[axis] if len(shape) == len(expected) else 'output'
        raise ContractError(
            f'contract.action.{field_name}',
            f'output {self.contract.action.output!r} returned shape {list(shape)} at '
            f'inference, the contract implies {list(expected)} (axis {axis}; the graph '
            f'declares {self._declared_action_shape}); no chunk is produced')
