"""A model's measured inference time against the policy and safety timing parameters.

``check-config`` times the model with the policy node's own ONNX Runtime setup and warns
where a chunk would arrive stale, end before it arrives, or leave a gap to the next one.
"""

from dataclasses import dataclass
from typing import Any, List, Mapping

from wam_runtime.core.params import is_set, SAFETY_PARAMS
from wam_runtime.core.policy_config import build_policy_config
from wam_runtime.tools.params_check import Finding


@dataclass(frozen=True)
class InferenceTiming:
    """Measured inference time of a model on this machine (after warm-up runs)."""

    p50_s: float
    max_s: float
    runs: int
    provider: str
    threads: int

    def __str__(self) -> str:
        return (f'inference p50 {self.p50_s * 1e3:.1f} ms, max {self.max_s * 1e3:.1f} ms '
                f'({self.runs} runs after warm-up, {self.provider}, intra_op_num_threads '
                f'{self.threads or "default"}; preprocessing not included)')


def measure_inference(model_path: str, policy_params: Mapping[str, Any],
                      runs: int = 5) -> InferenceTiming:
    """Time ``runs`` inferences on random inputs with the policy node's ONNX Runtime setup.

    Uses ``providers``, the thread counts and ``io_binding`` of ``policy_params`` (the
    node's defaults where absent) and the runtime's own loader, so the figure is what the
    node will see on this machine. Raises ModelLoadError or ContractError like the node.
    """
    import numpy as np
    from wam_runtime.core.inference import OnnxPolicy
    from wam_runtime.parity import random_inputs

    p = build_policy_config(dict(policy_params, model_path=model_path)).params
    policy = OnnxPolicy(model_path, providers=list(p['providers']),
                        intra_op_num_threads=p['intra_op_num_threads'],
                        inter_op_num_threads=p['inter_op_num_threads'],
                        io_binding=p['io_binding'], warmup_runs=2, log=lambda _m: None)
    contract = policy.contract
    rng = np.random.default_rng(0)
    times = []
    for _ in range(max(1, runs)):
        feeds = random_inputs(contract, rng)
        images = {c.name: feeds[c.input] for c in contract.cameras}
        state = rng.normal(0.0, 0.1, len(contract.state.joint_names))
        times.append(policy.run(images, state).inference_s)
    return InferenceTiming(float(np.median(times)), float(np.max(times)), len(times),
                           policy.providers[0], p['intra_op_num_threads'])


def timing_findings(timing: InferenceTiming, horizon: int, dt_s: float,
                    policy_params: Mapping[str, Any],
                    safety_params: Mapping[str, Any]) -> List[Finding]:
    """Return warnings where the measured inference time cannot meet the timing budget.

    A chunk reaches the safety controller at least one inference after its observation's
    stamp: it must be younger than ``max_chunk_age_s``, and its coverage (``horizon *
    dt_s``) must outlast the wait for the next chunk, one inference period (the longer of
    ``1 / inference_rate_hz`` and the inference itself) plus that chunk's inference; past
    the coverage the arm stops, and ``command_timeout_s`` later it is a command_timeout.
    The median decides "cannot", the maximum "sometimes".
    """
    policy = build_policy_config(dict(policy_params, model_path='-'))
    sp = {p.name: p.default for p in SAFETY_PARAMS}
    sp.update({k: v for k, v in safety_params.items() if is_set(v)})   # [] is not set
    coverage = horizon * dt_s
    period = policy.period_s
    findings = []
    figures = (f'p50 {timing.p50_s * 1e3:.1f} ms / max {timing.max_s * 1e3:.1f} ms on '
               f'{timing.provider}')
    where = 'model timing'

    def add(message: str) -> None:
        findings.append(Finding('warning', where, message))

    age = sp['max_chunk_age_s']
    for t, what in ((timing.p50_s, 'every chunk'), (timing.max_s, 'some chunks')):
        if t >= age:
            add(f'inference {figures} is longer than safety_controller.max_chunk_age_s '
                f'{age:g} s: {what} would arrive stale and be rejected (chunk_stale)')
            break
    for t, what in ((timing.p50_s, 'every chunk'), (timing.max_s, 'some chunks')):
        if t >= coverage:
            add(f'inference {figures} is longer than the chunk coverage {coverage:g} s '
                f'(horizon {horizon} x dt_s {dt_s:g}): {what} would be over before it '
                'arrives')
            break
    for label, t in (('p50', timing.p50_s), ('max', timing.max_s)):
        gap = max(period, t) + t - coverage
        if gap > 0:
            stop = ('a command_timeout stop every chunk' if gap > sp['command_timeout_s']
                    else 'a stop between chunks (chunk_exhausted)')
            add(f'inference {figures} at inference_rate_hz {policy.inference_rate_hz:g}: the '
                f'next chunk arrives {max(period, t) + t:.3g} s after an observation '
                f'(with the {label} time), the chunk covers {coverage:g} s: a gap of '
                f'{gap:.3g} s, {stop} (command_timeout_s {sp["command_timeout_s"]:g} s)')
            break
    return findings
