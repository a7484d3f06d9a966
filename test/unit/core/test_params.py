"""Parameter schemas and the safety configuration builder shared by nodes and tools."""

import os

import pytest
import yaml

from wam_runtime.core.limits import LimitsError
from wam_runtime.core.param_files import node_parameters
from wam_runtime.core.params import ConfigError, POLICY_PARAMS, resolve, SAFETY_PARAMS
from wam_runtime.core.safety_config import build_safety
from wam_runtime.processes import REPO_ROOT


def _yaml(name):
    with open(os.path.join(REPO_ROOT, 'config', name), encoding='utf-8') as f:
        return yaml.safe_load(f)


def test_every_shipped_yaml_parameter_is_declared():
    for name in ('reference_arm.yaml', 'slice.yaml'):
        cfg = _yaml(name)
        resolve(SAFETY_PARAMS, node_parameters(cfg, 'safety_controller'))
        resolve(POLICY_PARAMS, dict(node_parameters(cfg, 'policy_node'), model_path='m'))


def test_unknown_and_missing_parameters_are_named():
    with pytest.raises(ConfigError, match=r"\['max_speed'\] are not parameters"):
        resolve(SAFETY_PARAMS, {'joint_names': ['a'], 'max_speed': 1.0})
    with pytest.raises(ConfigError, match="'model_path' is required"):
        resolve(POLICY_PARAMS, {})


def test_reference_config_builds_with_urdf_workspace_and_governor():
    p = dict(node_parameters(_yaml('reference_arm.yaml'), 'safety_controller'),
             urdf_path=os.path.join(REPO_ROOT, 'config', 'reference_arm.urdf'))
    setup = build_safety(p)
    assert setup.config.limits.upper[0] == 2.75
    assert setup.config.workspace_ok is not None and setup.governor is not None
    assert 'urdf <safety_controller soft_upper_limit>' in setup.limits_table
    assert setup.config.scheduler.blend == 'temporal_ensemble'


@pytest.mark.parametrize('change,error,message', [
    ({'blend': 'average'}, ConfigError, "blend: 'average' is not one of"),
    ({'control_rate_hz': 0.0}, ConfigError, 'control_rate_hz: must be > 0'),
    ({'urdf_path': '/nonexistent.urdf'}, ConfigError, 'urdf_path: cannot read'),
    ({'max_velocity_rad_s': [9.0] * 6}, LimitsError, "max_velocity_rad_s: joint 'joint_1'"),
    ({'surprise_stop_threshold': 1e-6}, ConfigError, 'surprise_stop_threshold'),
    ({'incident_min_interval_s': 0.0}, ConfigError, 'incident_min_interval_s: must be > 0'),
    ({'incident_max_total_mb': -1.0}, ConfigError, 'incident_max_total_mb: must be >= 0'),
])
def test_bad_values_name_the_parameter(change, error, message):
    p = dict(node_parameters(_yaml('reference_arm.yaml'), 'safety_controller'),
             urdf_path=os.path.join(REPO_ROOT, 'config', 'reference_arm.urdf'))
    p.update(change)
    with pytest.raises(error, match=message):
        build_safety(p)


# rclpy's message for a value of the wrong type, word for word (InvalidParameterTypeException).
@pytest.mark.parametrize('name,value,got,want', [
    ('inference_rate_hz', 10, 'INTEGER', 'DOUBLE'),
    ('inference_rate_hz', True, 'BOOL', 'DOUBLE'),
    ('inference_rate_hz', '10.0', 'STRING', 'DOUBLE'),
    ('preprocess_threads', 1.5, 'DOUBLE', 'INTEGER'),
    ('preprocess_threads', False, 'BOOL', 'INTEGER'),
    ('io_binding', 1, 'INTEGER', 'BOOL'),
    ('model_sha256', 5, 'INTEGER', 'STRING'),
    ('providers', 'CPUExecutionProvider', 'STRING', 'STRING_ARRAY'),
    ('providers', [1, 2], 'INTEGER_ARRAY', 'STRING_ARRAY'),
    ('compressed_cameras', [True], 'BOOL_ARRAY', 'STRING_ARRAY'),
])
def test_types_are_checked_with_rclpys_message(name, value, got, want):
    values = {'model_path': 'm', name: value}
    message = (f"Trying to set parameter '{name}' to '{value}' of type '{got}', expecting "
               f"type '{want}': {name}")
    with pytest.raises(ConfigError) as info:
        resolve(POLICY_PARAMS, values)
    assert str(info.value) == message


def test_double_arrays_take_doubles_only_and_mixed_arrays_are_refused():
    base = {'joint_names': ['a'], 'upper_limits_rad': [1.0]}
    with pytest.raises(ConfigError, match=r"'lower_limits_rad' to '\[-1\]' of type "
                                          r"'INTEGER_ARRAY', expecting type 'DOUBLE_ARRAY'"):
        resolve(SAFETY_PARAMS, dict(base, lower_limits_rad=[-1]))
    with pytest.raises(ConfigError, match='lower_limits_rad: .* must all have one type'):
        resolve(SAFETY_PARAMS, dict(base, lower_limits_rad=[-1.0, 1]))
    # What rclpy hands a node: array.array for numbers, numpy from code; -inf for an endless
    # joint is a double like any other.
    import array
    import numpy as np
    p = resolve(SAFETY_PARAMS, dict(base, lower_limits_rad=array.array('d', [-np.inf]),
                                    max_velocity_rad_s=np.array([1.0])))
    assert list(p['lower_limits_rad']) == [-np.inf]


def test_an_empty_array_reads_as_not_set():
    p = resolve(POLICY_PARAMS, {'model_path': 'm', 'providers': [], 'joint_names': []})
    assert p['providers'] == ['CPUExecutionProvider'] and p['joint_names'] is None
    with pytest.raises(ConfigError, match="parameter 'joint_names' is required"):
        resolve(SAFETY_PARAMS, {'joint_names': []})


def test_types_are_checked_before_a_missing_parameter_is_named():
    # rclpy declares every parameter (refusing a wrong type) before the node reads any.
    with pytest.raises(ConfigError, match="'control_rate_hz' to '100'"):
        resolve(SAFETY_PARAMS, {'control_rate_hz': 100})


@pytest.mark.parametrize('change,message', [
    ({'control_rate_hz': float('inf')}, 'control_rate_hz: must be a finite number, got inf'),
    ({'position_margin_rad': float('nan')}, 'position_margin_rad: must be a finite number'),
    ({'diagnostics_period_s': 0.0}, 'diagnostics_period_s: must be > 0'),
    ({'surprise_slow_threshold': -1.0}, 'surprise_slow_threshold: must be >= 0'),
    ({'extra_joint_state_topics': ['a b']}, 'extra_joint_state_topics: .* not a valid ROS'),
])
def test_more_values_the_safety_builder_refuses(change, message):
    p = dict(node_parameters(_yaml('reference_arm.yaml'), 'safety_controller'),
             urdf_path=os.path.join(REPO_ROOT, 'config', 'reference_arm.urdf'))
    p.update(change)
    with pytest.raises(ConfigError, match=message):
        build_safety(p)


@pytest.mark.parametrize('change,message', [
    ({'providers': ['CPU']}, r"providers: \['CPU'\] are not ONNX Runtime provider names"),
    ({'model_sha256': 'abc'}, "model_sha256: expected 64 hex digits, got 'abc'"),
    ({'inference_rate_hz': float('inf')}, 'inference_rate_hz: must be a finite number'),
    ({'extra_joint_state_topics': ['/a//b']}, 'extra_joint_state_topics:'),
])
def test_values_the_policy_builder_refuses(change, message):
    from wam_runtime.core.policy_config import build_policy_config
    with pytest.raises(ConfigError, match=message):
        build_policy_config(dict({'model_path': 'm'}, **change))
    ok = build_policy_config({'model_path': 'm', 'model_sha256': 'sha256:' + 'aB' * 32})
    assert ok.params['model_sha256'].endswith('aB')
