"""Assemble observations (latest frame per camera + joint state) for one inference.

An observation is the latest frame of every camera plus the joint state closest in time to
the newest of those frames, with every part within ``max_skew_s`` of the others and none
older than ``max_age_s``. Otherwise ``take`` raises NotReady with a reason code that the
node counts on /diagnostics. The observation's stamp is its oldest part's stamp.

Stamps are integer nanoseconds (ROS ``Time`` as ``sec * 10**9 + nanosec``) from the message
header to the chunk header, so a chunk carries exactly the stamp of the frame it came from;
float seconds are used only for ages and intervals.

A part that lags behind the others (a camera whose next frame has not arrived yet, after a
pause longer than ``max_age_s`` as well as in steady state) makes the observation
``waitable``: the caller waits a little for the lagging part's next message before it
counts the rejection, so a synchronised set of frames arriving one after the other is
never judged against an old frame of the camera that has not caught up yet.
"""

import bisect
from collections import deque
from dataclasses import dataclass, field
import math
import operator
import threading
from typing import Any, Deque, Dict, Optional, Sequence, Tuple

import numpy as np

from wam_runtime.core.stamps import s_to_ns

WAITING_CAMERA = 'waiting_for_camera'
WAITING_STATE = 'waiting_for_state'
STALE = 'observation_stale'
SKEWED = 'observation_skewed'
FROM_FUTURE = 'observation_from_future'
NO_NEW_FRAME = 'no_new_frame'


class NotReady(Exception):
    """No observation this time; ``reason`` is the counter code.

    ``waitable`` is True when a part lags behind the newest one, so the lagging part's next
    message may complete the observation (worth a short wait before counting ``reason``).
    """

    def __init__(self, reason: str, detail: str = '', waitable: bool = False) -> None:
        super().__init__(f'{reason}: {detail}' if detail else reason)
        self.reason = reason
        self.waitable = waitable


@dataclass
class Observation:
    """Frames (opaque items, by camera name), joint state and the stamps (integer ns)."""

    frames: Dict[str, Any]
    state: np.ndarray
    stamp_ns: int                       # the oldest stamp among the parts
    newest_ns: int                      # the newest stamp among the parts
    state_stamp_ns: int
    received_s: Optional[float] = None  # receive time of the newest frame (caller's clock)
    frame_stamps_ns: Dict[str, int] = field(default_factory=dict)   # each camera's frame

    @property
    def stamp_s(self) -> float:
        """Return the oldest stamp in float seconds (for arithmetic on ages only)."""
        return self.stamp_ns * 1e-9

    @property
    def newest_s(self) -> float:
        """Return the newest stamp in float seconds."""
        return self.newest_ns * 1e-9

    @property
    def state_stamp_s(self) -> float:
        """Return the joint state's stamp in float seconds."""
        return self.state_stamp_ns * 1e-9

    @property
    def skew_s(self) -> float:
        """Return the spread of the parts' stamps (s)."""
        return (self.newest_ns - self.stamp_ns) * 1e-9


def _ns(value: Any, what: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f'{what}: stamps are integer nanoseconds, got '
                        f'{type(value).__name__} {value!r}') from None


class ObservationAssembler:
    """Thread-safe latest-value store; ``take`` returns each new observation once.

    Joint states are kept for a short history so that the state paired with the frames is
    the one measured closest to them, not merely the latest.
    """

    def __init__(self, camera_names: Sequence[str], max_age_s: float,
                 max_skew_s: float = math.inf, state_history: int = 256) -> None:
        """Track ``camera_names``; refuse observations older or more spread than allowed."""
        if not max_age_s > 0:
            raise ValueError(f'max_age_s: must be > 0, got {max_age_s!r}')
        if not max_skew_s >= 0:
            raise ValueError(f'max_skew_s: must be >= 0, got {max_skew_s!r}')
        self.camera_names = tuple(camera_names)
        self.max_age_s = max_age_s
        self.max_skew_s = max_skew_s
        self._max_age_ns = s_to_ns(max_age_s)
        self._max_skew_ns = s_to_ns(max_skew_s) if math.isfinite(max_skew_s) else math.inf
        self._lock = threading.Lock()
        self._frames: Dict[str, Tuple[int, Any, Optional[float]]] = {}
        self._state_t: Deque[int] = deque(maxlen=max(1, state_history))
        self._state_q: Deque[np.ndarray] = deque(maxlen=max(1, state_history))
        self._last_used: Dict[str, int] = {}

    def put_frame(self, camera: str, stamp_ns: int, item: Any,
                  received_s: Optional[float] = None) -> None:
        """Store the latest frame of ``camera`` (``received_s``: when it arrived)."""
        stamp_ns = _ns(stamp_ns, 'put_frame')
        with self._lock:
            self._frames[camera] = (stamp_ns, item, received_s)

    def latest_item(self, camera: str) -> Any:
        """Return the item of the latest frame of ``camera`` (None before the first)."""
        with self._lock:
            entry = self._frames.get(camera)
        return None if entry is None else entry[1]

    def replace_item(self, camera: str, old: Any, new: Any) -> bool:
        """Swap the latest frame's item for ``new`` if it is still ``old``; return whether.

        Stamps and receive times stay: this is the same frame in another form (for example
        its model tensor, made while waiting for the next inference).
        """
        with self._lock:
            entry = self._frames.get(camera)
            if entry is None or entry[1] is not old:
                return False
            self._frames[camera] = (entry[0], new, entry[2])
            return True

    def put_state(self, stamp_ns: int, q: np.ndarray) -> None:
        """Store a joint state; a stamp older than the last one restarts the history."""
        stamp_ns = _ns(stamp_ns, 'put_state')
        with self._lock:
            if self._state_t and stamp_ns < self._state_t[-1]:
                self._state_t.clear()
                self._state_q.clear()
            self._state_t.append(stamp_ns)
            self._state_q.append(q)

    def _state_near(self, t: int) -> Tuple[int, np.ndarray]:
        stamps = self._state_t
        i = bisect.bisect_left(stamps, t)
        if i == len(stamps):
            i -= 1
        elif i > 0 and t - stamps[i - 1] < stamps[i] - t:
            i -= 1
        return stamps[i], self._state_q[i]

    def take(self, now_ns: int) -> Observation:
        """Return the newest complete observation or raise NotReady with a reason.

        A part older than ``max_age_s`` while the newest part is recent, or parts more than
        ``max_skew_s`` apart, raise a ``waitable`` NotReady: the lagging part's next message
        may complete the observation.
        """
        now_ns = _ns(now_ns, 'take')
        with self._lock:
            missing = [c for c in self.camera_names if c not in self._frames]
            if missing:
                raise NotReady(WAITING_CAMERA, ', '.join(missing))
            if not self._state_t:
                raise NotReady(WAITING_STATE)
            frames = {c: self._frames[c] for c in self.camera_names}
            if all(self._last_used.get(c) == frames[c][0] for c in self.camera_names):
                raise NotReady(NO_NEW_FRAME)
            cam_stamps = [s for s, _, _ in frames.values()]
            state_stamp, q = self._state_near(max(cam_stamps))
        oldest = min(min(cam_stamps), state_stamp)
        newest = max(max(cam_stamps), state_stamp)
        if newest - now_ns > self._max_age_ns:
            raise NotReady(FROM_FUTURE, f'{(newest - now_ns) * 1e-9:.3f} s ahead of this clock')
        if now_ns - oldest > self._max_age_ns:
            # Waitable when something is recent: the stale part may be about to catch up.
            lagging = now_ns - newest <= self._max_age_ns
            raise NotReady(STALE, f'{(now_ns - oldest) * 1e-9:.3f} s old'
                           + (f' ({self._lagging(frames, state_stamp, oldest)} lags behind)'
                              if lagging else ''), waitable=lagging)
        if newest - oldest > self._max_skew_ns:
            raise NotReady(SKEWED, f'parts {(newest - oldest) * 1e-9:.3f} s apart '
                           f'({self._lagging(frames, state_stamp, oldest)} lags behind)',
                           waitable=True)
        for c in self.camera_names:
            self._last_used[c] = frames[c][0]
        received = [r for _, _, r in frames.values() if r is not None]
        return Observation({c: item for c, (_, item, _) in frames.items()}, q, oldest,
                           newest, state_stamp, max(received) if received else None,
                           {c: stamp for c, (stamp, _, _) in frames.items()})

    @staticmethod
    def _lagging(frames: Dict[str, Tuple[int, Any, Optional[float]]], state_stamp: int,
                 oldest: int) -> str:
        names = [f'camera {c!r}' for c, (s, _, _) in frames.items() if s == oldest]
        if state_stamp == oldest:
            names.append('joint_states')
        return ', '.join(names)


class JointMapper:
    """Pick named joints out of (names, positions), caching the index map per name list."""

    def __init__(self, joint_names: Sequence[str]) -> None:
        """Map to ``joint_names`` order."""
        self.joint_names = tuple(joint_names)
        self._cache: Dict[Tuple[str, ...], np.ndarray] = {}

    def __call__(self, names: Sequence[str], position: Sequence[float]) -> np.ndarray:
        """Return positions in ``joint_names`` order; raise ValueError on bad input."""
        key = tuple(names)
        idx = self._cache.get(key)
        if idx is None:
            missing = [n for n in self.joint_names if n not in key]
            if missing or len(set(key)) != len(key):
                raise ValueError(f'joint_states lacks {missing}' if missing
                                 else 'joint_states has duplicate names')
            idx = np.array([key.index(n) for n in self.joint_names])
            if len(self._cache) < 16:
                self._cache[key] = idx
        pos = np.asarray(position, dtype=np.float64)
        if pos.size != len(key):
            raise ValueError(f'joint_states has {len(key)} names but {pos.size} positions')
        q = pos[idx]
        if not np.isfinite(q).all():
            raise ValueError('joint_states has non-finite positions')
        return q
