"""ONNX Runtime inference behind the model contract."""

from dataclasses import dataclass
import logging
import os
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import onnxruntime as ort

from wam_runtime.core.contract import (
    apply_overrides, ContractError, METADATA_KEY, ModelContract, parse_contract,
    validate_against_io)
from wam_runtime.core.stats import RollingStats


class ModelLoadError(RuntimeError):
    """The model cannot be used; the message is one line naming the problem."""


@dataclass
class PolicyOutput:
    """One inference: absolute joint targets per step plus optional embeddings."""

    actions: np.ndarray            # (horizon, joints) absolute positions, float64
    embedding: Optional[np.ndarray]
    predicted_embedding: Optional[np.ndarray]
    inference_s: float


def select_providers(requested: Sequence[str],
                     available: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Keep the requested providers that are available, in priority order.

    Returns (chosen, skipped). CPU is appended as the last resort if nothing is left, so a
    GPU-first configuration still runs on a CPU-only machine.
    """
    chosen = [p for p in requested if p in available]
    skipped = [p for p in requested if p not in available]
    if not chosen and 'CPUExecutionProvider' in available:
        chosen = ['CPUExecutionProvider']
    return chosen, skipped


def read_contract(session: ort.InferenceSession) -> ModelContract:
    """Parse the contract stored in a session's model metadata."""
    meta = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in meta:
        raise ContractError('contract', f'the model has no {METADATA_KEY!r} metadata entry '
                                        '(export it with the contract; see README)')
    return parse_contract(meta[METADATA_KEY])


def session_io(session: ort.InferenceSession) -> Tuple[Dict, Dict]:
    """Return ``({name: (shape, type)}, {name: (shape, type)})`` for inputs and outputs."""
    ins = {i.name: (list(i.shape), i.type) for i in session.get_inputs()}
    outs = {o.name: (list(o.shape), o.type) for o in session.get_outputs()}
    return ins, outs


class OnnxPolicy:
    """A loaded, validated, warmed-up model: tensors in, absolute joint targets out."""

    def __init__(self, model_path: str,
                 providers: Sequence[str] = ('CPUExecutionProvider',),
                 intra_op_num_threads: int = 0,
                 contract_overrides: Optional[Mapping] = None,
                 warmup_runs: int = 2,
                 log: Callable[[str], None] = logging.getLogger(__name__).info) -> None:
        """Load ``model_path``; raise ModelLoadError or ContractError with one clear line."""
        if not os.path.isfile(model_path):
            raise ModelLoadError(f'model_path: no such file {model_path!r}')
        available = ort.get_available_providers()
        unknown = [p for p in providers if not p.endswith('ExecutionProvider')]
        if unknown:
            raise ModelLoadError(f'providers: {unknown} are not ONNX Runtime provider names '
                                 f'(for example CPUExecutionProvider)')
        chosen, skipped = select_providers(providers, available)
        if not chosen:
            raise ModelLoadError(f'providers: none of {list(providers)} is available '
                                 f'(available: {available})')
        if skipped:
            log(f'execution providers {skipped} not available here; using {chosen}')
        opts = ort.SessionOptions()
        if intra_op_num_threads > 0:
            opts.intra_op_num_threads = intra_op_num_threads
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(model_path, sess_options=opts, providers=chosen)
        except Exception as exc:  # onnxruntime raises several unrelated types here
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f'model_path: {model_path!r} is not a loadable ONNX model '
                                 f'({first})') from None
        self.providers = self.session.get_providers()
        log(f'model {os.path.basename(model_path)} on {self.providers[0]}')
        contract = read_contract(self.session)
        if contract_overrides:
            contract, changes = apply_overrides(contract, contract_overrides)
            for line in changes:
                log(f'contract override {line}')
        validate_against_io(contract, *session_io(self.session))
        self.contract = contract
        self.model_path = model_path
        act = contract.action
        st = contract.state
        self._state_mean = np.asarray(st.mean, np.float32)
        self._state_std = np.asarray(st.std, np.float32)
        self._act_mean = np.asarray(act.mean, np.float64)
        self._act_std = np.asarray(act.std, np.float64)
        # For delta actions: which state entry each action joint is relative to.
        self._delta_index = [st.joint_names.index(n) for n in act.joint_names] \
            if act.mode == 'delta' else None
        self._outputs = [act.output]
        wm = contract.world_model
        if wm is not None:
            self._outputs += [wm.embedding_output, wm.predicted_embedding_output]
        self.timing = RollingStats(1000)
        for _ in range(max(0, warmup_runs)):
            self.run(self.zero_inputs(), np.zeros(len(st.joint_names)), record=False)

    def zero_inputs(self) -> Dict[str, np.ndarray]:
        """Camera tensors of the right shape and dtype, all zero (for warm-up and tests)."""
        return {c.name: np.zeros(c.tensor_shape(), np.dtype(c.dtype))
                for c in self.contract.cameras}

    def run(self, images: Mapping[str, np.ndarray], state: np.ndarray,
            record: bool = True) -> PolicyOutput:
        """Infer one chunk from preprocessed camera tensors (by camera name) and joint state.

        ``state`` is in the order of ``contract.state.joint_names``. The returned actions are
        absolute targets in the order of ``contract.action.joint_names``.
        """
        feeds = {c.input: images[c.name] for c in self.contract.cameras}
        q = np.asarray(state, np.float64)
        feeds[self.contract.state.input] = \
            ((q.astype(np.float32) - self._state_mean) / self._state_std)[None]
        t0 = time.perf_counter()
        results = self.session.run(self._outputs, feeds)
        dt = time.perf_counter() - t0
        if record:
            self.timing.add(dt)
        actions = results[0][0].astype(np.float64) * self._act_std + self._act_mean
        if self._delta_index is not None:
            actions = actions + q[self._delta_index]
        emb = pred = None
        if len(results) == 3:
            emb, pred = results[1][0], results[2][0]
        return PolicyOutput(actions, emb, pred, dt)
