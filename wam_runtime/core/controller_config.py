"""The safety controller's vocabulary: its configuration, tick result, stop and mode codes."""

from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Union

import numpy as np

from wam_runtime.core.gate import Intervention
from wam_runtime.core.limits import JointLimits
from wam_runtime.core.scheduler import SchedulerConfig

# Watchdogs, stops and faults.
COMMAND_TIMEOUT = 'command_timeout'
CHUNK_EXHAUSTED = 'chunk_exhausted'
EXECUTION_LATE = 'execution_late'
STATE_TIMEOUT = 'state_timeout'
ESTOP = 'estop'
ESTOP_HEARTBEAT = 'estop_heartbeat_lost'
STANDSTILL = 'standstill_drift'
ESCALATION = 'intervention_escalation'
DISABLING = 'disabling'
SURPRISE_STOP = 'surprise_stop'
CLOCK_JUMP_BACK = 'clock_jump_backward'
FOLLOWING_ERROR = 'following_error'

MODE_DISABLED = 'disabled'
MODE_WAITING = 'waiting_for_state'
MODE_TRACKING = 'tracking'
MODE_STOPPING = 'stopping'
MODE_HOLDING = 'holding'
MODE_FAULT = 'fault'

LATCHING = (ESTOP, ESTOP_HEARTBEAT, STANDSTILL, ESCALATION, FOLLOWING_ERROR)


@dataclass
class ControllerConfig:
    """Everything the safety controller needs besides its inputs."""

    limits: JointLimits
    control_period_s: float = 0.01
    command_timeout_s: float = 0.5
    state_timeout_s: float = 0.5
    max_chunk_age_s: float = 1.0
    max_chunk_points: int = 1000
    max_chunk_duration_s: float = 10.0
    position_margin_rad: Union[float, np.ndarray] = 0.0    # scalar or one per joint
    scaling: str = 'uniform'
    # Per joint in the joint's unit (rad, or m for prismatic joints), or one for all.
    max_start_distance_rad: Union[float, np.ndarray] = float('inf')
    chunk_limit_policy: str = 'reject'          # or 'clamp'
    standstill_tolerance_rad: Union[float, np.ndarray] = float('inf')
    standstill_settle_s: float = 0.5
    escalation_max_interventions: int = 0       # 0 = never escalate
    escalation_window_s: float = 1.0
    estop_timeout_s: float = 0.0                # > 0: heartbeat mode
    # Following error (core.following): per joint in the joint's unit, inf = off.
    max_following_error_rad: Union[float, np.ndarray] = float('inf')
    following_error_timeout_s: float = 0.1
    following_error_delay_s: float = 0.0
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    # Optional Cartesian guard for the gate (a WorkspaceGuard, or a predicate
    # ok(candidate, previous, dt)) and a per-point check for chunks.
    workspace_ok: Optional[Any] = None
    point_in_workspace: Optional[Callable[[np.ndarray], bool]] = None


@dataclass
class TickResult:
    """What one control tick decided."""

    command: Optional[np.ndarray]
    mode: str
    interventions: List[Intervention] = field(default_factory=list)
    chunk_latency_s: Optional[float] = None   # set on the first tick that uses a new chunk
    chunk_stamp_s: Optional[float] = None
    chunk_stamp_ns: Optional[int] = None      # the same stamp, exact
