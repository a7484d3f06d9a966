"""policy_node's configuration: its parameters validated once, for every driver.

``build_policy_config`` turns the parameter values (``core.params.POLICY_PARAMS``, from the
node's declared parameters, a YAML file read by replay or ``check-config``) into a
``PolicyConfig`` or raises ConfigError naming the parameter; ``check_against_contract``
adds the checks that need the model's contract. The node, the offline replay and
``check-config`` all call these, so a value is accepted or refused the same way everywhere.
"""

from dataclasses import dataclass
import re
from typing import Any, Mapping, Optional, Sequence, Tuple

from wam_runtime.core.contract import ModelContract
from wam_runtime.core.params import check_finite, ConfigError, POLICY_PARAMS, resolve
from wam_runtime.core.surprise import METRICS
from wam_runtime.core.topic_names import check_topic_names

TRIGGERS = ('rate', 'remaining')
PREPROCESS_ON = ('auto', 'arrival', 'inference')
# A model_sha256 pin: 64 hex digits, optionally prefixed 'sha256:' (core.inference checks the
# file against it when it loads the model).
SHA256_PIN = re.compile(r'^(sha256:)?([0-9a-fA-F]{64})$')
EXAMPLE_PROVIDER = 'CPUExecutionProvider'
# The rate window an inference uses up: the next starts at the first new frame after
# this fraction of 1 / inference_rate_hz (frames come at the rate, with jitter).
RATE_WINDOW = 0.9


@dataclass(frozen=True)
class PolicyConfig:
    """Validated policy_node parameters (``params`` keeps every value by name)."""

    params: Mapping[str, Any]
    inference_rate_hz: float
    max_observation_age_s: float
    max_observation_skew_s: float
    inference_trigger: str
    trigger_remaining_s: float
    preprocess_on: str
    surprise_metric: str
    compressed_cameras: Tuple[str, ...]
    joint_names: Optional[Tuple[str, ...]]

    @property
    def period_s(self) -> float:
        """Return the inference period ``1 / inference_rate_hz`` (s)."""
        return 1.0 / self.inference_rate_hz

    @property
    def skew_wait_s(self) -> float:
        """Return how long a lagging part of an observation is waited for (s)."""
        return min(self.max_observation_skew_s, self.period_s)


def _choice(p: Mapping[str, Any], key: str, choices: Sequence[str]) -> None:
    if p[key] not in choices:
        raise ConfigError(f'{key}: {p[key]!r} is not one of {list(choices)}')


def provider_names_problem(providers: Sequence[str]) -> Optional[str]:
    """Return why ``providers`` holds a name that is no ONNX Runtime provider, or None.

    Only the form is checked (``...ExecutionProvider``); whether this machine's onnxruntime
    has the provider is decided when the model loads (an unavailable one is skipped).
    """
    unknown = [p for p in providers if not str(p).endswith('ExecutionProvider')]
    if unknown:
        return (f'providers: {unknown} are not ONNX Runtime provider names (for example '
                f'{EXAMPLE_PROVIDER})')
    return None


def build_policy_config(values: Mapping[str, Any]) -> PolicyConfig:
    """Validate policy_node parameters (defaults filled in); raise ConfigError naming one.

    Types are checked as rclpy checks them and an empty array reads as not set
    (``core.params.resolve``); the model file is not read (``model_sha256`` is checked for
    its form here, against the file when the model loads).
    """
    p = resolve(POLICY_PARAMS, values, 'policy_node')
    check_finite(POLICY_PARAMS, p)
    pin = p['model_sha256']
    if pin and SHA256_PIN.match(pin.strip()) is None:
        raise ConfigError(f'model_sha256: expected 64 hex digits, got {pin!r}')
    problem = provider_names_problem(p['providers'])
    if problem:
        raise ConfigError(problem)
    for key in ('inference_rate_hz', 'max_observation_age_s', 'diagnostics_period_s'):
        if not p[key] > 0:
            raise ConfigError(f'{key}: must be > 0, got {p[key]}')
    for key in ('max_observation_skew_s', 'trigger_remaining_s'):
        if not p[key] >= 0:
            raise ConfigError(f'{key}: must be >= 0, got {p[key]}')
    for key in ('preprocess_threads', 'intra_op_num_threads', 'inter_op_num_threads',
                'cuda_device_id'):
        if p[key] < 0:
            raise ConfigError(f'{key}: must be >= 0 (0 = automatic), got {p[key]}')
    _choice(p, 'inference_trigger', TRIGGERS)
    _choice(p, 'preprocess_on', PREPROCESS_ON)
    _choice(p, 'surprise_metric', tuple(METRICS))
    check_topic_names('extra_joint_state_topics', p['extra_joint_state_topics'])
    names = p['joint_names']
    return PolicyConfig(
        params=dict(p), inference_rate_hz=float(p['inference_rate_hz']),
        max_observation_age_s=float(p['max_observation_age_s']),
        max_observation_skew_s=float(p['max_observation_skew_s']),
        inference_trigger=p['inference_trigger'],
        trigger_remaining_s=float(p['trigger_remaining_s']),
        preprocess_on=p['preprocess_on'], surprise_metric=p['surprise_metric'],
        compressed_cameras=tuple(p['compressed_cameras'] or ()),
        joint_names=None if names is None else tuple(names))


def check_against_contract(config: PolicyConfig, contract: ModelContract) -> None:
    """Raise ConfigError when a parameter does not fit the model's contract."""
    if config.joint_names is not None and \
            set(config.joint_names) != set(contract.action.joint_names):
        raise ConfigError(f'joint_names: the robot has {list(config.joint_names)} but the '
                          f'model acts on {list(contract.action.joint_names)}')
    cameras = [c.name for c in contract.cameras]
    unknown = sorted(set(config.compressed_cameras) - set(cameras))
    if unknown:
        raise ConfigError(f'compressed_cameras: {unknown} are not cameras of the model '
                          f'(cameras: {cameras})')
