"""What a replay produced and what the bag recorded, for the report."""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

import numpy as np


@dataclass
class RunData:
    """What a run produced and what the bag recorded (times in s, stamps in ns)."""

    joint_names: List[str]
    lower: np.ndarray
    upper: np.ndarray
    commands: List[Tuple[float, np.ndarray]] = field(default_factory=list)
    chunks: List[Tuple[float, int, np.ndarray]] = field(default_factory=list)  # t, stamp ns, pts
    events: List[Tuple[float, str, str]] = field(default_factory=list)           # t, reason, joint
    latencies_s: List[float] = field(default_factory=list)
    measured: List[Tuple[float, np.ndarray]] = field(default_factory=list)
    recorded_commands: List[Tuple[float, np.ndarray]] = field(default_factory=list)
    recorded_chunks: Dict[int, np.ndarray] = field(default_factory=dict)         # stamp ns
    recorded_events: List[Tuple[float, str]] = field(default_factory=list)
    recorded_executed: Set[int] = field(default_factory=set)   # chunk stamps the robot ran
    policy_counters: Dict[str, int] = field(default_factory=dict)
    safety_counters: Dict[str, int] = field(default_factory=dict)
    skipped: Dict[str, int] = field(default_factory=dict)
    read: Dict[str, int] = field(default_factory=dict)
    inferences: int = 0
    reran: int = 0                  # inferences rerun on recorded inputs
    first_ns: Optional[int] = None
    last_ns: Optional[int] = None
    dt_s: float = 0.0

    def skip(self, reason: str) -> None:
        """Count one skipped message."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
