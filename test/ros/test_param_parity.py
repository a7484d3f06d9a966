"""Parameter parity: the nodes, the offline replay and check-config agree on every value.

One YAML file per case holds a ``policy_node`` and a ``safety_controller`` section; the same
file goes to the real node (constructed in this process with ``--ros-args --params-file``,
as a launch file passes it), to ``wam-runtime replay`` (in process, on a tiny bag) and to
``wam-runtime check-config``. A bad value must be refused by all three, the replay with the
node's own message (exit 2, ``summary.json`` 'error'); a good non-default value must be
accepted by all three, and the replay must run on the parameters the node validated (a
parameter the replay does not apply is listed under ``inputs.not_applied``). Every
parameter of ``POLICY_PARAMS`` and ``SAFETY_PARAMS`` has at least one case, so a new
parameter fails ``test_every_parameter_has_a_case`` until it gets one.

A known disagreement is an ``xfail(strict=True)`` mark on the path that disagrees, with the
reason: the suite documents it and fails once it is fixed, so that the mark goes too.
"""

import contextlib
from dataclasses import dataclass, field, replace
import importlib
import io
import json
import os
import re
import shutil
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pytest
import yaml

from wam_runtime.bag import BagWriter, typestore
from wam_runtime.cli import COMMANDS
from wam_runtime.core.inference import file_sha256
from wam_runtime.core.params import POLICY_PARAMS, SAFETY_PARAMS
from wam_runtime.replay import cli as replay_cli
from wam_runtime.replay.config import NOT_APPLIED, setup as replay_setup
from wam_runtime.testing.model_gen import write_model

POLICY, SAFETY = 'policy_node', 'safety_controller'
JOINTS = [f'joint_{i}' for i in range(1, 7)]
REVOLUTE = JOINTS[:5]               # joint_6 is prismatic in the test URDF
REMOVE = '<remove>'                 # a case value that deletes the base configuration's value

# Placeholders in case values, replaced by the paths of this module's files.
MODEL, MODEL_COPY, SHA, URDF, TMP = '@MODEL', '@MODEL_COPY', '@SHA', '@URDF', '@TMP'

BASE_POLICY = {'model_path': MODEL, 'joint_names': JOINTS, 'intra_op_num_threads': 1}
BASE_SAFETY = {'joint_names': JOINTS, 'lower_limits_rad': [-2.0] * 6,
               'upper_limits_rad': [2.0] * 6, 'max_velocity_rad_s': [1.5] * 6,
               'autostart': True}
BASE_SAFETY_URDF = {'joint_names': JOINTS, 'urdf_path': URDF,
                    'max_acceleration_rad_s2': [10.0] * 5, 'max_acceleration_m_s2': [2.0],
                    'autostart': True}


def _joint(name: str, typ: str, parent: str, child: str, xyz: str = '0 0 0.1',
           axis: str = '0 0 1', limit: str = '', extra: str = '') -> str:
    return (f'<link name="{child}"/><joint name="{name}" type="{typ}"><parent link="{parent}"/>'
            f'<child link="{child}"/><origin xyz="{xyz}" rpy="0 0 0"/><axis xyz="{axis}"/>'
            f'{limit}{extra}</joint>')


def _test_urdf() -> str:
    """Five revolute joints, a prismatic joint_6, a held finger with a mimic, a tool tip."""
    parts, parent = [], 'base_link'
    for i in range(1, 6):
        axis = '0 0 1' if i % 2 else '0 1 0'
        soft = ('<safety_controller soft_lower_limit="-2.4" soft_upper_limit="2.4" '
                'k_position="10" k_velocity="1"/>' if i == 1 else '')
        parts.append(_joint(f'joint_{i}', 'revolute', parent, f'link_{i}', axis=axis,
                            limit='<limit lower="-2.5" upper="2.5" effort="10" velocity="2.0"/>',
                            extra=soft))
        parent = f'link_{i}'
    parts.append(_joint('joint_6', 'prismatic', parent, 'link_6', axis='1 0 0',
                        limit='<limit lower="-0.3" upper="0.3" effort="10" velocity="0.5"/>'))
    finger = '<limit lower="0.0" upper="0.04" effort="5" velocity="0.1"/>'
    parts.append(_joint('finger_joint', 'prismatic', 'link_6', 'finger', '0 0 0.05', '0 1 0',
                        finger))
    parts.append(_joint('finger_mimic_joint', 'prismatic', 'link_6', 'finger_mirror',
                        '0 0 0.05', '0 -1 0', finger, '<mimic joint="finger_joint"/>'))
    parts.append(_joint('tool_joint', 'fixed', 'link_6', 'tool_tip', '0 0 0.1'))
    return f'<robot name="parity_arm"><link name="base_link"/>{"".join(parts)}</robot>'


@dataclass(frozen=True)
class Case:
    """One row of a table: parameters of one node over its base configuration.

    ``param``: the parameter a bad value's error must name. ``urdf``: start from the
    URDF-based safety configuration. ``xfail``: path ('node', 'replay', 'check') -> the
    known disagreement on that path.
    """

    node: str
    values: Mapping[str, Any]
    param: str = ''
    urdf: bool = False
    xfail: Mapping[str, str] = field(default_factory=dict)
    label: str = ''
    kind: str = ''          # 'bad' or 'good': the table

    @property
    def target(self) -> str:
        """Return the parameter the case is about."""
        return self.param or next(iter(self.values))

    @property
    def name(self) -> str:
        """Return the test id: node, parameter, label (default: the value, if short)."""
        label = self.label
        value = self.values.get(self.target)
        if not label and isinstance(value, (str, int, float)) and len(str(value)) <= 24 \
                and re.fullmatch(r'[\w.+-]+', str(value)):
            label = str(value)
        short = 'policy' if self.node == POLICY else 'safety_urdf' if self.urdf else 'safety'
        return '-'.join(x for x in (short, self.target, label) if x)


def P(values, param='', label='', **kw):   # noqa: N802 - short table rows
    return Case(POLICY, values, param, label=label, **kw)


def S(values, param='', label='', **kw):   # noqa: N802 - short table rows
    return Case(SAFETY, values, param, label=label, **kw)


def U(values, param='', label='', **kw):   # noqa: N802 - short table rows
    return Case(SAFETY, values, param, urdf=True, label=label, **kw)


SURPRISE_ON = {'surprise_slow_threshold': 1.0, 'surprise_stop_threshold': 2.0}

# Bad values: every check of build_policy_config, check_against_contract, OnnxPolicy's
# parameter checks and build_safety (with limits, URDF, held joints, workspace, surprise).
BAD = [
    P({'model_path': '/nonexistent/model.onnx'}),
    P({'model_sha256': 'abc123'}),
    P({'model_sha256': '0' * 64}, label='mismatch'),
    P({'providers': ['NotAProvider']}),
    P({'cuda_device_id': -1}),
    P({'intra_op_num_threads': -1}),
    P({'inter_op_num_threads': -1}),
    P({'preprocess_threads': -1}),
    P({'inference_rate_hz': 0.0}),
    P({'inference_rate_hz': -10.0}, label='negative'),
    P({'max_observation_age_s': 0.0}),
    P({'max_observation_skew_s': -0.1}),
    P({'trigger_remaining_s': -0.1}),
    P({'diagnostics_period_s': 0.0}),
    P({'inference_trigger': 'bogus'}),
    P({'preprocess_on': 'bogus'}),
    P({'surprise_metric': 'bogus'}),
    P({'compressed_cameras': ['nope']}),
    P({'joint_names': JOINTS[:5]}),
    P({'extra_joint_state_topics': ['bad topic']}),
    P({'extra_joint_state_topics': ['gripper//joint_states']}, label='double_slash'),
    P({'extra_joint_state_topics': ['gripper/joint_states/']}, label='trailing_slash'),
    P({'extra_joint_state_topics': ['gripper/2/joint_states']}, label='digit_token'),
    P({'extra_joint_state_topics': ['~joint_states']}, label='tilde'),
    P({'extra_joint_state_topics': ['{robot}/joint_states']}, label='substitution'),
    P({'inference_rate_hz': float('inf')}, label='inf'),
    P({'compressed_cameras': [1]}, label='type'),
    P({'io_binding': 1}, label='type'),
    P({'inference_rate_hz': 10}, label='type'),
    P({'preprocess_threads': 1.5}, label='type'),

    S({'control_rate_hz': 0.0}),
    S({'command_timeout_s': 0.0}),
    S({'state_timeout_s': 0.0}),
    S({'max_chunk_age_s': 0.0}),
    S({'max_chunk_points': 0}),
    S({'max_chunk_duration_s': 0.0}),
    S({'incident_window_s': 0.0}),
    S({'incident_min_interval_s': 0.0}),
    S({'escalation_window_s': 0.0}),
    S({'position_margin_rad': -0.1}),
    S({'position_margin_rad': 2.5}, label='no_range'),
    S({'position_margin_m': -0.1}),
    S({'max_start_distance_rad': -0.1}),
    S({'max_start_distance_m': -0.1}),
    S({'standstill_tolerance_rad': -0.1}),
    S({'standstill_tolerance_m': -0.1}),
    S({'estop_timeout_s': -1.0}),
    S({'max_ee_speed_m_s': -1.0}),
    S({'max_following_error_rad': -0.1}),
    S({'max_following_error_m': -0.1}),
    S({'following_error_timeout_s': -0.1}),
    S({'following_error_timeout_s': float('inf')}, label='inf'),
    S({'following_error_delay_s': -0.1}),
    S({'following_error_delay_s': 1.5}, label='above_1'),
    S({'escalation_max_interventions': -1}),
    S({'incident_max_total_mb': -1.0}),
    S({'scaling': 'bogus'}),
    S({'chunk_limit_policy': 'bogus'}),
    S({'output_mode': 'bogus'}),
    S({'blend': 'bogus'}),
    S({'interpolation': 'bogus'}),
    S({'min_playback_speed': 0.0}),
    S({'min_playback_speed': 1.5}, label='above_1'),
    S({'max_playback_speed': 1.0}),
    S({'max_playback_speed': 2.5}, label='above_max'),
    S({'ensemble_decay': -0.1}),
    S({'crossfade_s': -0.1}),
    S({'urdf_path': '/nonexistent/robot.urdf'}),
    S({'joint_names': ['joint_1'] * 6}, label='duplicates'),
    S({'joint_names': []}, label='empty'),
    S({'lower_limits_rad': REMOVE}, label='missing'),
    S({'lower_limits_rad': [-2.0] * 5}, label='length'),
    S({'upper_limits_rad': REMOVE}, label='missing'),
    S({'upper_limits_rad': [-3.0] * 6}, label='below_lower'),
    S({'max_velocity_rad_s': REMOVE}, label='missing'),
    S({'max_velocity_rad_s': [0.0] * 6}, label='zero'),
    S({'max_acceleration_rad_s2': [10.0] * 5}, label='length'),
    S({'max_jerk_rad_s3': [-1.0] * 6}, label='negative'),
    S({'position_margins_rad': [0.01] * 5}, label='length'),
    S({'workspace_frames': ['tool_tip']}, label='no_urdf'),
    S({'lower_limits_m': [-0.1]}, label='no_urdf'),
    S({'upper_limits_m': [0.1]}, label='no_urdf'),
    S({'max_velocity_m_s': [0.1]}, label='no_urdf'),
    S({'max_acceleration_m_s2': [1.0]}, label='no_urdf'),
    S({'max_jerk_m_s3': [1.0]}, label='no_urdf'),
    S({'position_margins_m': [0.01]}, label='no_urdf'),
    S({'held_joint_names': ['finger_joint'], 'held_joint_positions': [0.0]},
      'held_joint_names', label='no_urdf'),
    S({'held_joint_positions': [0.0]}, label='no_urdf'),
    S({'surprise_slow_threshold': -1.0, 'surprise_stop_threshold': 1.0},
      'surprise_slow_threshold'),
    S({'surprise_slow_threshold': 2.0, 'surprise_stop_threshold': 1.0},
      'surprise_stop_threshold'),
    S({**SURPRISE_ON, 'surprise_min_scale': 1.5}, 'surprise_min_scale'),
    S({**SURPRISE_ON, 'surprise_recovery_s': -1.0}, 'surprise_recovery_s'),
    S({**SURPRISE_ON, 'surprise_timeout_s': -1.0}, 'surprise_timeout_s'),
    S({'extra_joint_state_topics': ['bad topic']}),
    S({'diagnostics_period_s': -1.0}),
    S({'max_chunk_points': 100.0}, label='type'),
    S({'control_rate_hz': 100}, label='type'),
    S({'control_rate_hz': float('inf')}, label='inf'),
    S({'position_margin_rad': float('nan')}, label='nan'),
    S({'lower_limits_rad': [-2] * 6}, label='type'),
    S({'joint_names': 'joint_1'}, label='type'),
    S({'autostart': 'true'}, label='type'),
    S({'surprise_slow_threshold': -1.0}, label='stop_off'),
    S({'extra_joint_state_topics': ['/gripper//joint_states']}, label='double_slash'),

    U({'joint_names': ['joint_1', 'joint_2', 'joint_3', 'joint_4', 'joint_5', 'nope']},
      label='not_in_urdf'),
    U({'joint_names': JOINTS[:5] + ['finger_mimic_joint']}, label='mimic'),
    U({'lower_limits_rad': [-3.0] * 5}, label='looser'),
    U({'upper_limits_rad': [1.0, 1.0, 1.0, 1.0]}, label='length'),
    U({'max_velocity_rad_s': [5.0] * 5}, label='looser'),
    U({'max_acceleration_rad_s2': REMOVE}, label='required'),
    U({'max_acceleration_m_s2': REMOVE}, label='required'),
    U({'max_jerk_rad_s3': [0.0] * 5}, label='zero'),
    U({'lower_limits_m': [-1.0]}, label='looser'),
    U({'upper_limits_m': [1.0]}, label='looser'),
    U({'max_velocity_m_s': [0.0]}, label='zero'),
    U({'max_acceleration_m_s2': [2.0, 2.0]}, label='length'),
    U({'max_jerk_m_s3': [1.0, 2.0]}, label='length'),
    U({'position_margin_m': 0.4}, label='no_range'),
    U({'position_margins_m': [0.5]}, label='no_range'),
    U({'position_margins_rad': [0.01] * 6}, label='length'),
    U({'held_joint_names': ['nope'], 'held_joint_positions': [0.0]}, 'held_joint_names',
      label='unknown'),
    U({'held_joint_names': ['joint_1'], 'held_joint_positions': [0.0]}, 'held_joint_names',
      label='commanded'),
    U({'held_joint_names': ['finger_mimic_joint'], 'held_joint_positions': [0.0]},
      'held_joint_names', label='mimic'),
    U({'held_joint_names': ['finger_joint'], 'held_joint_positions': [0.1]},
      'held_joint_positions', label='outside'),
    U({'held_joint_names': ['finger_joint']}, 'held_joint_positions', label='length'),
    U({'workspace_frames': ['nope'], 'workspace_box_m': [-5.0, -5.0, -5.0, 5.0, 5.0, 5.0]},
      'workspace_frames'),
    U({'workspace_frames': ['tool_tip'], 'workspace_box_m': [-1.0, -1.0, -1.0, 1.0, 1.0]},
      'workspace_box_m', label='length'),
    U({'workspace_frames': ['tool_tip'], 'workspace_box_m': [1.0, -1.0, -1.0, -1.0, 1.0, 1.0]},
      'workspace_box_m', label='min_above_max'),
    U({'workspace_frames': ['tool_tip'], 'keep_out_boxes_m': [1.0] * 7}, 'keep_out_boxes_m',
      label='length'),
    U({'workspace_frames': ['tool_tip'], 'keep_out_spheres_m': [0.0, 0.0, 0.0, -1.0]},
      'keep_out_spheres_m', label='radius'),
    U({'workspace_frames': ['tool_tip'], 'keep_out_spheres_m': [0.0, 0.0, 0.0]},
      'keep_out_spheres_m', label='length'),
    U({'ee_frame': 'nope', 'max_ee_speed_m_s': 1.0}, 'ee_frame'),
]

# Good non-default values, one or more per parameter.
GOOD = [
    P({'model_path': MODEL_COPY}),
    P({'model_sha256': SHA}),
    P({'providers': ['CUDAExecutionProvider', 'CPUExecutionProvider']}),
    P({'providers': []}, label='empty_is_unset'),
    P({'cuda_device_id': 1}),
    P({'tensorrt_fp16': True}),
    P({'tensorrt_engine_cache_path': TMP}),
    P({'intra_op_num_threads': 2}),
    P({'inter_op_num_threads': 2}),
    P({'io_binding': False}),
    P({'inference_rate_hz': 5.0}),
    P({'max_observation_age_s': 1.0}),
    P({'max_observation_skew_s': 0.0}, label='zero'),
    P({'max_observation_skew_s': 0.05}),
    P({'compressed_cameras': ['scene']}),
    P({'preprocess_threads': 2}),
    P({'preprocess_on': 'arrival'}),
    P({'preprocess_on': 'inference'}),
    P({'fast_jpeg_decode': True, 'compressed_cameras': ['scene']}, 'fast_jpeg_decode'),
    P({'surprise_metric': 'relative'}),
    P({'surprise_metric': 'cosine'}),
    P({'joint_names': JOINTS[::-1]}, label='reordered'),
    P({'joint_names': REMOVE}, label='unset'),
    P({'extra_joint_state_topics': ['gripper/joint_states']}),
    P({'extra_joint_state_topics': ['/gripper/joint_states']}, label='absolute'),
    P({'compressed_cameras': []}, label='empty_is_unset'),
    P({'inference_trigger': 'remaining'}),
    P({'inference_trigger': 'remaining', 'trigger_remaining_s': 0.2}, 'trigger_remaining_s'),
    P({'diagnostics_period_s': 0.5}),

    S({'joint_names': JOINTS[::-1]}, label='reordered'),
    S({'lower_limits_rad': [-1.9] * 6}),
    S({'upper_limits_rad': [1.9] * 6}),
    S({'max_velocity_rad_s': [1.0] * 6}),
    S({'max_acceleration_rad_s2': [20.0] * 6}),
    S({'max_jerk_rad_s3': [1000.0] * 6}),
    S({'position_margin_rad': 0.05}),
    S({'position_margins_rad': [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]}),
    S({'scaling': 'per_joint'}),
    S({'control_rate_hz': 50.0}),
    S({'command_timeout_s': 0.3}),
    S({'state_timeout_s': 0.3}),
    S({'extra_joint_state_topics': ['gripper/joint_states']}),
    S({'max_chunk_age_s': 0.8}),
    S({'max_chunk_points': 500}),
    S({'max_chunk_duration_s': 5.0}),
    S({'max_start_distance_rad': 0.5}),
    S({'chunk_limit_policy': 'clamp'}),
    S({'standstill_tolerance_rad': 0.1}),
    S({'standstill_settle_s': 1.0}),
    S({'max_following_error_rad': 0.5}),
    S({'following_error_timeout_s': 0.2}),
    S({'following_error_delay_s': 1.0}, label='max'),
    S({'escalation_max_interventions': 100}),
    S({'escalation_window_s': 2.0}),
    S({'estop_timeout_s': 1.0}),
    S({'blend': 'temporal_ensemble', 'ensemble_decay': 0.2}, 'ensemble_decay'),
    S({'blend': 'crossfade', 'crossfade_s': 0.05}, 'crossfade_s'),
    S({'blend': 'temporal_ensemble'}),
    S({'blend': 'crossfade'}),
    S({'interpolation': 'linear'}),
    S({'min_playback_speed': 1.0}, label='max'),
    S({'min_playback_speed': 0.8}),
    S({'max_playback_speed': 2.0}, label='max'),
    S({'max_playback_speed': 1.5}),
    S({'surprise_slow_threshold': 1.0, 'surprise_stop_threshold': 2.0},
      'surprise_slow_threshold'),
    S({'surprise_stop_threshold': 2.0}),
    S({'surprise_slow_threshold': 1.0}, label='stop_off'),
    S({**SURPRISE_ON, 'surprise_min_scale': 0.5}, 'surprise_min_scale'),
    S({**SURPRISE_ON, 'surprise_recovery_s': 1.0}, 'surprise_recovery_s'),
    S({**SURPRISE_ON, 'surprise_timeout_s': 5.0}, 'surprise_timeout_s'),
    S({'output_mode': 'joint_trajectory'}),
    S({'autostart': False}),
    S({'incident_dir': TMP, 'incident_window_s': 5.0}, 'incident_dir'),
    S({'incident_dir': TMP, 'incident_window_s': 5.0}, 'incident_window_s'),
    S({'incident_dir': TMP, 'incident_min_interval_s': 1.0}, 'incident_min_interval_s'),
    S({'incident_dir': TMP, 'incident_max_total_mb': 10.0}, 'incident_max_total_mb'),
    S({'incident_max_total_mb': 0.0}, label='no_limit'),
    S({'diagnostics_period_s': 0.5}),

    U({'urdf_path': URDF}),
    U({'lower_limits_rad': [-2.0] * 5}),
    U({'upper_limits_rad': [2.0] * 5}),
    U({'max_velocity_rad_s': [1.0] * 5}),
    U({'max_jerk_rad_s3': [500.0] * 5}),
    U({'lower_limits_m': [-0.2]}),
    U({'upper_limits_m': [0.2]}),
    U({'max_velocity_m_s': [0.4]}),
    U({'max_acceleration_m_s2': [3.0]}),
    U({'max_jerk_m_s3': [100.0]}),
    U({'position_margin_m': 0.01}),
    U({'position_margins_m': [0.02]}),
    U({'position_margins_rad': [0.01] * 5}),
    U({'held_joint_names': ['finger_joint'], 'held_joint_positions': [0.02]},
      'held_joint_names'),
    U({'held_joint_names': ['finger_joint'], 'held_joint_positions': [0.04]},
      'held_joint_positions'),
    U({'max_start_distance_m': 0.1}),
    U({'standstill_tolerance_m': 0.01}),
    U({'max_following_error_m': 0.05}),
    U({'workspace_frames': ['tool_tip', 'link_3'],
       'workspace_box_m': [-5.0, -5.0, -5.0, 5.0, 5.0, 5.0]}, 'workspace_frames'),
    U({'workspace_frames': ['tool_tip'], 'workspace_box_m': [-5.0, -5.0, -5.0, 5.0, 5.0, 5.0]},
      'workspace_box_m'),
    U({'workspace_frames': ['tool_tip'], 'keep_out_boxes_m': [3.0, 3.0, 3.0, 4.0, 4.0, 4.0]},
      'keep_out_boxes_m'),
    U({'workspace_frames': ['tool_tip'], 'keep_out_spheres_m': [-3.0, -3.0, -3.0, 0.5]},
      'keep_out_spheres_m'),
    U({'ee_frame': 'tool_tip', 'max_ee_speed_m_s': 5.0}, 'ee_frame'),
    U({'ee_frame': 'tool_tip', 'max_ee_speed_m_s': 5.0}, 'max_ee_speed_m_s'),
]


BAD = [replace(c, kind='bad') for c in BAD]
GOOD = [replace(c, kind='good') for c in GOOD]


def _params(table: Sequence[Case], path: str) -> List[Any]:
    """Return the table as pytest params, with the xfail marks of ``path``."""
    out = []
    for case in table:
        marks = [pytest.mark.xfail(strict=True, reason=case.xfail[path])] \
            if path in case.xfail else []
        out.append(pytest.param(case, id=case.name, marks=marks))
    return out


# ---------------------------------------------------------------------- the inputs
@dataclass
class World:
    """This module's files: model, URDF, bag, and where the case configurations go."""

    root: str
    paths: Dict[str, str]
    bag: str

    def substitute(self, value: Any) -> Any:
        if isinstance(value, str):
            for token in (MODEL_COPY, MODEL, SHA, URDF, TMP):   # MODEL_COPY before MODEL
                value = value.replace(token, self.paths[token])
            return value
        if isinstance(value, list):
            return [self.substitute(v) for v in value]
        return value

    def sections(self, case: Case) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """Return the (policy_node, safety_controller) parameters of a case."""
        policy = dict(BASE_POLICY)
        safety = dict(BASE_SAFETY_URDF if case.urdf else BASE_SAFETY)
        target = policy if case.node == POLICY else safety
        for key, value in case.values.items():
            if value == REMOVE:
                target.pop(key, None)
            else:
                target[key] = value
        return ({k: self.substitute(v) for k, v in policy.items()},
                {k: self.substitute(v) for k, v in safety.items()})

    def config(self, case: Case) -> str:
        """Write the case's parameter file (both sections); return its path."""
        policy, safety = self.sections(case)
        path = os.path.join(self.root, case.kind,
                            re.sub(r'[^\w.-]', '_', case.name) + '.yaml')
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w', encoding='utf-8') as f:
            yaml.safe_dump({f'/**/{POLICY}': {'ros__parameters': policy},
                            f'/**/{SAFETY}': {'ros__parameters': safety}}, f,
                           sort_keys=False)
        return path


def _write_bag(path: str, seconds: float = 0.6) -> str:
    """Camera 'scene' raw and JPEG (30 Hz), joint_states (100 Hz), gripper/joint_states."""
    import cv2
    ts = typestore()
    types = ts.types
    t0 = 1_700_000_000_000_000_000

    def header(t):
        return types['std_msgs/msg/Header'](stamp=types['builtin_interfaces/msg/Time'](
            sec=t // 10**9, nanosec=t % 10**9), frame_id='')

    def joints(t, names, q):
        msg = types['sensor_msgs/msg/JointState'](
            header=header(t), name=names, position=np.asarray(q, np.float64),
            velocity=np.zeros(len(names)), effort=np.zeros(0))
        return bytes(ts.serialize_cdr(msg, 'sensor_msgs/msg/JointState'))

    entries = []
    js = 'sensor_msgs/msg/JointState'
    for k in range(int(seconds * 100)):
        t = t0 + k * 10_000_000
        q = np.full(6, 0.05 * np.sin(k / 20))
        entries.append((t + 1_000_000, '/joint_states', js, joints(t, JOINTS, q)))
        entries.append((t + 1_500_000, '/gripper/joint_states', js,
                        joints(t, ['joint_6'], q[5:])))
    for k in range(int(seconds * 30)):
        t = t0 + k * 33_333_333
        pixels = np.full((64, 64, 3), (k * 7) % 256, np.uint8)
        raw = types['sensor_msgs/msg/Image'](
            header=header(t), height=64, width=64, encoding='rgb8', is_bigendian=0, step=192,
            data=pixels.ravel())
        entries.append((t + 2_000_000, '/camera/scene/image_raw', 'sensor_msgs/msg/Image',
                        bytes(ts.serialize_cdr(raw, 'sensor_msgs/msg/Image'))))
        jpeg = types['sensor_msgs/msg/CompressedImage'](
            header=header(t), format='rgb8; jpeg compressed bgr8',
            data=cv2.imencode('.jpg', pixels)[1].ravel())
        entries.append((t + 2_500_000, '/camera/scene/image_raw/compressed',
                        'sensor_msgs/msg/CompressedImage',
                        bytes(ts.serialize_cdr(jpeg, 'sensor_msgs/msg/CompressedImage'))))
    writer = BagWriter(path, 'mcap')
    for t, topic, msgtype, data in sorted(entries, key=lambda e: (e[0], e[1])):
        writer.write(t, topic, msgtype, data, '', '')
    writer.close()
    return path


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('param_parity'))
    model = write_model(os.path.join(root, 'model.onnx'))
    copy = os.path.join(root, 'copy', 'model.onnx')
    os.makedirs(os.path.dirname(copy))
    shutil.copyfile(model, copy)
    urdf = os.path.join(root, 'parity_arm.urdf')
    with open(urdf, 'w', encoding='utf-8') as f:
        f.write(_test_urdf())
    tmp = os.path.join(root, 'scratch')
    os.makedirs(tmp)
    paths = {MODEL: model, MODEL_COPY: copy, SHA: file_sha256(model), URDF: urdf, TMP: tmp}
    return World(root, paths, _write_bag(os.path.join(root, 'bag')))


# ---------------------------------------------------------------------- the three paths
@dataclass
class NodeOutcome:
    """What constructing the node did: its error, or what it validated and its state."""

    error: Optional[str] = None
    error_type: str = ''
    params: Optional[Dict[str, Any]] = None
    limits_table: Optional[str] = None
    state: str = ''


_NODE_OUTCOMES: Dict[Tuple[str, str], NodeOutcome] = {}


def _plain(value: Any) -> Any:
    """Return a parameter value comparable across rclpy (arrays) and YAML (lists)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return [_plain(v) for v in value]


def _plain_params(params: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: _plain(v) for k, v in params.items() if k != 'use_sim_time'}


def run_node(world: World, case: Case) -> NodeOutcome:
    """Construct the case's node in process from its parameter file (once per case)."""
    key = (case.kind, case.name)
    if key in _NODE_OUTCOMES:
        return _NODE_OUTCOMES[key]
    import rclpy
    from wam_runtime.ros.common import lifecycle_state
    from wam_runtime.ros.policy_node import PolicyNode
    from wam_runtime.ros.safety_controller import SafetyControllerNode
    # The node classes build on the default context; a fresh one per case carries the file
    # (on conftest's ROS_DOMAIN_ID, loopback only; these nodes talk to nobody anyway).
    assert not rclpy.ok(), 'the default rclpy context is in use by another test'
    rclpy.init(args=['--ros-args', '--params-file', world.config(case)])
    node = None
    out = NodeOutcome()
    try:
        try:
            node = PolicyNode() if case.node == POLICY else SafetyControllerNode()
        except Exception as exc:  # noqa: B902 - any refusal is the outcome under test
            out.error, out.error_type = str(exc), type(exc).__name__
        else:
            if case.node == POLICY:
                out.params = _plain_params(node.runtime.config.params)
                out.state = 'running'
            else:
                out.params = _plain_params(node.params)
                out.state = lifecycle_state(node)
                if node.runtime is not None:
                    out.limits_table = node.runtime.setup.limits_table
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    _NODE_OUTCOMES[key] = out
    return out


def _replay_args(world: World, case: Case, out_dir: str) -> List[str]:
    return [world.bag, '--config', world.config(case), '--out', out_dir, '--quiet',
            '--no-plots']


def run_replay(world: World, case: Case, out_dir: str) -> Tuple[Any, Optional[Dict]]:
    """Run ``wam-runtime replay`` in process; return (exit code or what escaped, summary)."""
    try:
        code = replay_cli.main(_replay_args(world, case, out_dir))
    except Exception as exc:  # noqa: B902 - an escaping error is a finding, reported
        code = f'raised {type(exc).__name__}: {exc}'
    summary = None
    path = os.path.join(out_dir, 'summary.json')
    if os.path.exists(path):
        with open(path, encoding='utf-8') as f:
            summary = json.load(f)
    return code, summary


def run_check_config(world: World, case: Case) -> Tuple[Any, List[str]]:
    """Run ``wam-runtime check-config`` in process; return (exit code, its INVALID lines)."""
    main = importlib.import_module(COMMANDS['check-config'].module).main
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            code = main([world.config(case)])
        except Exception as exc:  # noqa: B902 - an escaping error is a finding, reported
            code = f'raised {type(exc).__name__}: {exc}'
    return code, [line for line in buf.getvalue().splitlines() if line.startswith('INVALID')]


def _names(message: str, param: str) -> bool:
    return re.search(rf'(?<![\w]){re.escape(param)}(?![\w])', message) is not None


# ---------------------------------------------------------------------- bad values
@pytest.mark.ros
@pytest.mark.parametrize('case', _params(BAD, 'node'))
def test_node_refuses(world, case):
    out = run_node(world, case)
    assert out.error is not None, \
        f'{case.node} accepted {dict(case.values)} and is {out.state}'
    assert _names(out.error, case.target), \
        f'{out.error_type}: {out.error}'


@pytest.mark.ros
@pytest.mark.parametrize('case', _params(BAD, 'replay'))
def test_replay_refuses_with_the_node_message(world, case, tmp_path):
    node = run_node(world, case)
    code, summary = run_replay(world, case, str(tmp_path / 'out'))
    assert code == 2, (code, summary and summary.get('error'), f'node: {node.error}')
    assert summary is not None and summary['status'] == 'error'
    assert summary['error'] == node.error, f'node: {node.error}'


@pytest.mark.parametrize('case', _params(BAD, 'check'))
def test_check_config_refuses(world, case):
    code, invalid = run_check_config(world, case)
    assert code == 2, (code, invalid)
    param = case.target
    assert any(_names(line, param) for line in invalid), invalid


# ---------------------------------------------------------------------- good values
@pytest.mark.ros
@pytest.mark.parametrize('case', _params(GOOD, 'node'))
def test_node_accepts(world, case):
    out = run_node(world, case)
    assert out.error is None, f'{out.error_type}: {out.error}'
    autostart = world.sections(case)[1].get('autostart', False)
    want = 'running' if case.node == POLICY else 'active' if autostart else 'unconfigured'
    assert out.state == want


@pytest.mark.ros
@pytest.mark.parametrize('case', _params(GOOD, 'replay'))
def test_replay_accepts_and_runs_on_what_the_node_validated(world, case, tmp_path):
    node = run_node(world, case)
    code, summary = run_replay(world, case, str(tmp_path / 'out'))
    assert code == 0, (code, summary and summary.get('error'))
    assert summary['status'] == 'ok' and summary['policy']['inferences'] > 0, summary
    # What the replay applies is what the node validated from the same file.
    args = replay_cli.build_parser().parse_args(_replay_args(world, case,
                                                             str(tmp_path / 'setup')))
    config, safety, _, _ = replay_setup(args)
    if case.node == POLICY:
        assert _plain_params(config.params) == node.params
    else:
        assert _plain_params(safety.params) == node.params
        if node.limits_table is not None:
            assert safety.limits_table == node.limits_table
    # A policy parameter the replay does not apply is listed with its value.
    not_applied = summary['inputs'].get('not_applied', {})
    policy = world.sections(case)[0]
    assert set(not_applied) == {k for k in NOT_APPLIED if k in policy}
    for key in set(case.values) & set(NOT_APPLIED) if case.node == POLICY else ():
        assert not_applied[key] == _plain(world.substitute(case.values[key]))


@pytest.mark.parametrize('case', _params(GOOD, 'check'))
def test_check_config_accepts(world, case):
    code, invalid = run_check_config(world, case)
    assert code == 0, invalid


# ---------------------------------------------------------------------- coverage
def test_every_parameter_has_a_case():
    for table in (BAD, GOOD):
        seen = [c.name for c in table]
        assert len(seen) == len(set(seen)), [i for i in seen if seen.count(i) > 1]
    for node, schema in ((POLICY, POLICY_PARAMS), (SAFETY, SAFETY_PARAMS)):
        covered = {k for c in BAD + GOOD if c.node == node for k in c.values}
        missing = [p.name for p in schema if p.name not in covered]
        assert not missing, f'{node}: parameters without a parity case: {missing}'
        unknown = covered - {p.name for p in schema}
        assert not unknown, f'{node}: cases for unknown parameters: {unknown}'
        good = {k for c in GOOD if c.node == node for k in c.values}
        assert not [p.name for p in schema if p.name not in good], \
            f'{node}: parameters without a good non-default value'
    for case in BAD:
        assert case.param or len(case.values) == 1, case
    # Every parameter the replay does not apply has a good case that checks the listing.
    assert set(NOT_APPLIED) <= {k for c in GOOD if c.node == POLICY for k in c.values}
