"""Assemble observations (latest frame per camera + joint state) for one inference."""

from dataclasses import dataclass
import threading
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

WAITING_CAMERA = 'waiting_for_camera'
WAITING_STATE = 'waiting_for_state'
STALE = 'observation_stale'
NO_NEW_FRAME = 'no_new_frame'


class NotReady(Exception):
    """No observation this time; ``reason`` is the counter code."""

    def __init__(self, reason: str, detail: str = '') -> None:
        super().__init__(f'{reason}: {detail}' if detail else reason)
        self.reason = reason


@dataclass
class Observation:
    """Frames (opaque items, by camera name), joint state and the observation stamp."""

    frames: Dict[str, Any]
    state: np.ndarray
    stamp_s: float          # the oldest stamp among the parts


class ObservationAssembler:
    """Thread-safe latest-value store; ``take`` returns each new observation once."""

    def __init__(self, camera_names: Sequence[str], max_age_s: float) -> None:
        """Track ``camera_names``; refuse observations older than ``max_age_s``."""
        self.camera_names = tuple(camera_names)
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._frames: Dict[str, Tuple[float, Any]] = {}
        self._state: Optional[Tuple[float, np.ndarray]] = None
        self._last_used: Dict[str, float] = {}

    def put_frame(self, camera: str, stamp_s: float, item: Any) -> None:
        """Store the latest frame of ``camera``."""
        with self._lock:
            self._frames[camera] = (stamp_s, item)

    def put_state(self, stamp_s: float, q: np.ndarray) -> None:
        """Store the latest joint state."""
        with self._lock:
            self._state = (stamp_s, q)

    def take(self, now_s: float) -> Observation:
        """Return the newest complete observation or raise NotReady with a reason."""
        with self._lock:
            missing = [c for c in self.camera_names if c not in self._frames]
            if missing:
                raise NotReady(WAITING_CAMERA, ', '.join(missing))
            if self._state is None:
                raise NotReady(WAITING_STATE)
            frames = {c: self._frames[c] for c in self.camera_names}
            state_stamp, q = self._state
        if all(self._last_used.get(c) == frames[c][0] for c in self.camera_names):
            raise NotReady(NO_NEW_FRAME)
        stamps = [s for s, _ in frames.values()] + [state_stamp]
        oldest = min(stamps)
        if now_s - oldest > self.max_age_s:
            raise NotReady(STALE, f'{now_s - oldest:.3f} s old')
        for c in self.camera_names:
            self._last_used[c] = frames[c][0]
        return Observation({c: item for c, (_, item) in frames.items()}, q, oldest)
