"""The replay's configuration: the nodes' parameter file, validated as the nodes validate it.

``load_config`` reads the ``policy_node`` and ``safety_controller`` sections of a ROS
parameter file (the one reader, ``core.param_files``: rcl's value types and key matching)
with ``--param`` overrides; ``setup`` validates them with the nodes' own builders
(``core.policy_config.build_policy_config``, ``core.safety_config.build_safety``), so a
value the nodes refuse is refused here with the same message.
"""

import os
from typing import Any, Dict, Optional, Sequence, Tuple

from wam_runtime.core.contract import ContractError
from wam_runtime.core.inference import CPU, file_sha256, ModelLoadError, OnnxPolicy
from wam_runtime.core.limits import LimitsError
from wam_runtime.core.param_files import file_parameters, parse_value
from wam_runtime.core.params import ConfigError
from wam_runtime.core.policy_config import build_policy_config, PolicyConfig
from wam_runtime.core.safety_config import build_safety, SafetySetup
from wam_runtime.processes import share_dir

EXIT_OK, EXIT_DRIFT, EXIT_CONFIG, EXIT_INPUT, EXIT_DATA_LOST, EXIT_INTERRUPTED = \
    0, 1, 2, 3, 4, 130
CONFIG_ERRORS = (ConfigError, ContractError, LimitsError, ModelLoadError)
# policy_node parameters a replay cannot apply: it runs the model deterministically on the
# CPU with one thread and preprocesses on one thread (the summary lists the values given).
NOT_APPLIED = ('providers', 'cuda_device_id', 'tensorrt_fp16', 'tensorrt_engine_cache_path',
               'intra_op_num_threads', 'inter_op_num_threads', 'preprocess_threads',
               'diagnostics_period_s')


class UsageError(ValueError):
    """Bad command line or configuration file; exit code 2."""


def load_config(path: str, overrides: Sequence[str]) -> Tuple[Dict, Dict]:
    """Return (policy_node, safety_controller) parameters from a ROS parameter file.

    The file is read as rcl reads it (``core.param_files``: rcl's scalar types, its key
    matching); ``overrides`` are ``node.name=value`` strings, the value read as rcl reads
    ``-p name:=value``. Raises UsageError (``--config: ...``, ``--param ...``).
    """
    try:
        params = file_parameters(path, ('policy_node', 'safety_controller'))
    except ConfigError as exc:
        raise UsageError(f'--config: {exc}') from None
    for item in overrides:
        key, sep, value = item.partition('=')
        node, dot, name = key.partition('.')
        if not sep or not dot or node not in params:
            raise UsageError(f'--param {item!r}: expected policy_node.NAME=VALUE or '
                             'safety_controller.NAME=VALUE')
        try:
            params[node][name] = parse_value(value)
        except ConfigError as exc:
            raise UsageError(f'--param {item!r}: {exc}') from None
    return params['policy_node'], params['safety_controller']


def default_model() -> Optional[str]:
    """Return the bundled reference model (the fallback without --model), if installed."""
    path = os.path.join(share_dir(), 'models', 'reference_reach.onnx')
    return path if os.path.isfile(path) else None


def resolve_urdf(safety: Dict[str, Any], config: str, urdf: Optional[str]) -> Optional[str]:
    """Set and return ``urdf_path`` of the safety parameters.

    Taken from --urdf, else the config's own (relative to the config), else the URDF named
    like the config next to it when the config gives no position limits.
    """
    here = os.path.dirname(os.path.abspath(config))
    if urdf:
        safety['urdf_path'] = urdf
    elif safety.get('urdf_path'):
        p = safety['urdf_path']
        if not os.path.isabs(p) and not os.path.exists(p) and \
                os.path.exists(os.path.join(here, p)):
            safety['urdf_path'] = os.path.join(here, p)
    elif not safety.get('lower_limits_rad'):
        guess = os.path.splitext(os.path.abspath(config))[0] + '.urdf'
        if os.path.isfile(guess):
            safety['urdf_path'] = guess
    return safety.get('urdf_path') or None


def setup(args) -> Tuple[PolicyConfig, SafetySetup, str, Dict[str, Any]]:
    """Load and validate config, URDF and model path.

    Returns (policy config, safety setup, model path, the inputs' identity for the
    summary).
    """
    policy_values, safety_values = load_config(args.config, args.param)
    urdf = resolve_urdf(safety_values, args.config, args.urdf)
    if args.model:
        policy_values['model_path'] = args.model
    if not policy_values.get('model_path'):
        bundled = default_model()
        if bundled is None:
            raise UsageError('--model: no model given and the config has no '
                             'policy_node.model_path')
        policy_values['model_path'] = bundled
    config = build_policy_config(policy_values)
    safety = build_safety(safety_values)
    model = config.params['model_path']
    inputs: Dict[str, Any] = {
        'bag': os.path.basename(os.path.normpath(args.bag)),
        'config': os.path.basename(args.config), 'config_sha256': file_sha256(args.config),
        'params': list(args.param),
        'model': os.path.basename(model),
        'model_sha256': file_sha256(model) if os.path.isfile(model) else None,
        'urdf': os.path.basename(urdf) if urdf else None,
        'urdf_sha256': file_sha256(urdf) if urdf and os.path.isfile(urdf) else None,
        'inference_delay_s': args.inference_delay_s,
    }
    not_applied = {k: policy_values[k] for k in NOT_APPLIED if k in policy_values}
    if not_applied:
        inputs['not_applied'] = not_applied
    return config, safety, model, inputs


def load_policy(model: str, config: PolicyConfig) -> OnnxPolicy:
    """Load the model for a deterministic replay: CPU, one thread."""
    return OnnxPolicy(model, providers=[CPU], intra_op_num_threads=1, inter_op_num_threads=1,
                      model_sha256=config.params['model_sha256'],
                      io_binding=config.params['io_binding'],
                      log=lambda line: None)
