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
