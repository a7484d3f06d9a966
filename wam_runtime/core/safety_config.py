"""Safety controller configuration: node parameters -> validated core objects.

Shared by the ``safety_controller`` node and the offline tools (replay, check-config), so a
YAML file means the same thing everywhere and fails the same way.
"""

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from wam_runtime.core import controller as ctl
from wam_runtime.core.gate import SCALING_MODES
from wam_runtime.core.limits import (
    config_rows, format_limits_table, JointLimits, LIMIT_KEYS, LIMIT_KEYS_M, resolve_margins)
from wam_runtime.core.params import check_finite, ConfigError, resolve, SAFETY_PARAMS
from wam_runtime.core.scheduler import BLEND_MODES, INTERPOLATIONS, MAX_PLAYBACK_SPEED, \
    SchedulerConfig
from wam_runtime.core.surprise import SurpriseGovernor
from wam_runtime.core.topic_names import check_topic_names
from wam_runtime.core.urdf import held_rows, joint_units, resolve_held, resolve_limits
from wam_runtime.core.workspace import workspace_from_params, WorkspaceGuard

OUTPUT_MODES = ('forward_command', 'joint_trajectory')


@dataclass
class SafetySetup:
    """Everything the safety controller is built from."""

    config: ctl.ControllerConfig
    governor: Optional[SurpriseGovernor]
    limits_table: str        # effective limits, margins, held joints and their sources
    params: Mapping[str, Any]
    # The Cartesian guard (None without a workspace); feed it the measured positions of the
    # joints it holds (workspace.kin.held_names) with workspace.set_held.
    workspace: Optional[WorkspaceGuard] = None


def _positive(p: Mapping[str, Any], *keys: str) -> None:
    for key in keys:
        if not p[key] > 0:
            raise ConfigError(f'{key}: must be > 0, got {p[key]}')


def _per_unit(units: Sequence[str], rad: float, metres: float) -> np.ndarray:
    """Return one threshold per joint from its unit's parameter (0 = off = inf)."""
    return np.array([(metres if u == 'm' else rad) or np.inf for u in units])


def _choice(p: Mapping[str, Any], key: str, choices) -> None:
    if p[key] not in choices:
        raise ConfigError(f'{key}: {p[key]!r} is not one of {list(choices)}')


def build_safety(values: Mapping[str, Any]) -> SafetySetup:
    """Validate safety_controller parameters (defaults filled in) and build the core objects.

    Types are checked as rclpy checks them and an empty array reads as not set
    (``core.params.resolve``). Raises ConfigError, LimitsError or ContractError with a
    message naming the parameter.
    """
    p = resolve(SAFETY_PARAMS, values, 'safety_controller')
    check_finite(SAFETY_PARAMS, p)
    _positive(p, 'control_rate_hz', 'command_timeout_s', 'state_timeout_s',
              'max_chunk_age_s', 'max_chunk_points', 'max_chunk_duration_s',
              'incident_window_s', 'incident_min_interval_s',
              'escalation_window_s', 'diagnostics_period_s')
    for key in ('position_margin_rad', 'position_margin_m', 'max_start_distance_rad',
                'max_start_distance_m', 'standstill_tolerance_m',
                'standstill_tolerance_rad', 'estop_timeout_s', 'max_ee_speed_m_s',
                'max_following_error_rad', 'max_following_error_m',
                'following_error_timeout_s', 'following_error_delay_s',
                'escalation_max_interventions', 'incident_max_total_mb',
                'surprise_slow_threshold', 'surprise_stop_threshold'):
        if not p[key] >= 0:
            raise ConfigError(f'{key}: must be >= 0, got {p[key]}')
    if not 0.0 <= p['following_error_delay_s'] <= 1.0:
        raise ConfigError(f'following_error_delay_s: must be in [0, 1] s, got '
                          f'{p["following_error_delay_s"]}')
    _choice(p, 'scaling', SCALING_MODES)
    _choice(p, 'chunk_limit_policy', ('reject', 'clamp'))
    _choice(p, 'output_mode', OUTPUT_MODES)
    _choice(p, 'blend', BLEND_MODES)
    _choice(p, 'interpolation', INTERPOLATIONS)
    check_topic_names('extra_joint_state_topics', p['extra_joint_state_topics'])
    if not 0 < p['min_playback_speed'] <= 1:
        raise ConfigError(f'min_playback_speed: must be in (0, 1], got '
                          f'{p["min_playback_speed"]}')
    if not 1 < p['max_playback_speed'] <= MAX_PLAYBACK_SPEED:
        raise ConfigError(f'max_playback_speed: must be in (1, {MAX_PLAYBACK_SPEED:g}], got '
                          f'{p["max_playback_speed"]}')
    names = list(p['joint_names'])
    guard = None
    table = ''
    if p['urdf_path']:
        try:
            with open(p['urdf_path'], encoding='utf-8') as f:
                urdf = f.read()
        except OSError as exc:
            raise ConfigError(f'urdf_path: cannot read {p["urdf_path"]!r} '
                              f'({exc.strerror})') from None
        limits, rows = resolve_limits(urdf, names, {k: p[k] for k in LIMIT_KEYS + LIMIT_KEYS_M})
        units = joint_units(urdf, names)
        margins, margin_rows = resolve_margins(names, units, limits.lower,
                                               limits.upper, p)
        held = resolve_held(urdf, names, p['held_joint_names'], p['held_joint_positions'])
        table = format_limits_table(rows + margin_rows + held_rows(urdf, names, held))
        guard = workspace_from_params(urdf, names, p)
        if guard is not None:
            guard.set_held(held)        # validated above by resolve_held
    else:
        for key in ('lower_limits_rad', 'upper_limits_rad', 'max_velocity_rad_s'):
            if not p[key]:
                raise ConfigError(f'{key}: required when urdf_path is not set')
        if p['workspace_frames']:
            raise ConfigError('workspace_frames: a workspace needs urdf_path')
        units = ['rad'] * len(names)
        for key in LIMIT_KEYS_M + ('position_margin_m', 'position_margins_m',
                                   'held_joint_names', 'held_joint_positions',
                                   'max_start_distance_m', 'standstill_tolerance_m',
                                   'max_following_error_m'):
            if p[key]:
                raise ConfigError(f'{key}: needs urdf_path (joint types and the joints '
                                  'that are held come from the URDF)')
        limits = JointLimits.create(names, *(p[k] or None for k in LIMIT_KEYS))
        margins, margin_rows = resolve_margins(names, ['rad'] * len(names), limits.lower,
                                               limits.upper, p)
        table = format_limits_table(config_rows(limits, p) + margin_rows)
    try:    # its messages name the parameter; a plain ValueError would not be a startup error
        scheduler = SchedulerConfig(blend=p['blend'], interpolation=p['interpolation'],
                                    ensemble_decay=p['ensemble_decay'],
                                    crossfade_s=p['crossfade_s'],
                                    min_playback_speed=p['min_playback_speed'],
                                    max_playback_speed=p['max_playback_speed'])
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    config = ctl.ControllerConfig(
        limits=limits, control_period_s=1.0 / p['control_rate_hz'],
        command_timeout_s=p['command_timeout_s'], state_timeout_s=p['state_timeout_s'],
        max_chunk_age_s=p['max_chunk_age_s'], max_chunk_points=p['max_chunk_points'],
        max_chunk_duration_s=p['max_chunk_duration_s'], position_margin_rad=margins,
        scaling=p['scaling'],
        max_start_distance_rad=_per_unit(units, p['max_start_distance_rad'],
                                         p['max_start_distance_m']),
        chunk_limit_policy=p['chunk_limit_policy'],
        standstill_tolerance_rad=_per_unit(units, p['standstill_tolerance_rad'],
                                           p['standstill_tolerance_m']),
        standstill_settle_s=p['standstill_settle_s'],
        max_following_error_rad=_per_unit(units, p['max_following_error_rad'],
                                          p['max_following_error_m']),
        following_error_timeout_s=p['following_error_timeout_s'],
        following_error_delay_s=p['following_error_delay_s'],
        escalation_max_interventions=p['escalation_max_interventions'],
        escalation_window_s=p['escalation_window_s'],
        estop_timeout_s=p['estop_timeout_s'],
        scheduler=scheduler,
        workspace_ok=guard,
        point_in_workspace=guard.point_ok if guard else None)
    governor = None
    if p['surprise_slow_threshold'] > 0 or p['surprise_stop_threshold'] > 0:
        try:    # a threshold of 0 is off: slowing down without a stop is a configuration
            governor = SurpriseGovernor(
                p['surprise_slow_threshold'],
                p['surprise_stop_threshold'] or None, p['surprise_min_scale'],
                p['surprise_recovery_s'], p['surprise_timeout_s'] or None)
        except ValueError as exc:
            raise ConfigError(f'surprise_{exc}') from None
    return SafetySetup(config, governor, table, p, guard)
