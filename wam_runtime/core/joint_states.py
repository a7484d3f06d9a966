"""Merge joint states from several publishers, per joint, with a per-joint age limit.

A robot often has more than one joint_states source: one driver per arm, a separate
gripper driver, a joint_state_broadcaster that lists only some joints. Every message updates
the joints it names (latest value, receive time, header stamp and source per joint); a
message may name any subset. The merge is *complete* once every wanted joint has been heard
at least once and *fresh* while none is older than its age limit. Only a complete, fresh
merge yields a position vector, so a silent source (a dead gripper driver) holds back the
whole state instead of feeding a stale value.

Names a message carries that the caller neither wants nor tracks are counted per name
(``unknown``); joints the caller wants but nobody has published are reported by
``missing``, and which source gave which joints by ``sources``, so a log line can name the
joint and the publishers that were heard.
"""

from dataclasses import dataclass
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

MALFORMED = 'joint_state_malformed'
NON_FINITE = 'joint_state_non_finite'
MAX_TRACKED_NAMES = 1024   # names kept beyond the wanted ones (bounded memory)


class JointStateError(ValueError):
    """A joint_states message was rejected as a whole; ``reason`` is the counter code."""

    def __init__(self, reason: str, detail: str) -> None:
        """Record the reason code and a one-line detail."""
        super().__init__(f'{reason}: {detail}')
        self.reason = reason


@dataclass(frozen=True)
class MergedState:
    """A complete, fresh joint state in the wanted order.

    ``oldest_received_s`` is the receive time of the joint heard longest ago (the state is
    as old as its oldest part); ``stamp_ns`` the oldest header stamp among the joints.
    """

    positions: np.ndarray
    oldest_received_s: float
    stamp_ns: int


class JointStateMerge:
    """Latest position, receive time, stamp and source per joint, from any number of sources.

    Not thread-safe: call it from one thread or under the caller's lock.
    """

    def __init__(self, joint_names: Sequence[str],
                 max_age_s: Union[float, Sequence[float]] = math.inf,
                 tracked_names: Sequence[str] = ()) -> None:
        """Merge ``joint_names`` (the output order).

        ``max_age_s`` is one age limit for every joint or one per joint (s; inf = no
        limit). ``tracked_names`` are further joints whose latest values are kept for
        :meth:`values` (for example gripper fingers the controller does not command) without
        being required; any other name a message carries is counted in ``unknown``.
        """
        self.joint_names = tuple(joint_names)
        if len(set(self.joint_names)) != len(self.joint_names):
            raise ValueError(f'joint_names: duplicate names in {list(self.joint_names)}')
        n = len(self.joint_names)
        ages = np.broadcast_to(np.asarray(max_age_s, dtype=np.float64), (n,)) \
            if np.ndim(max_age_s) == 0 else np.asarray(max_age_s, dtype=np.float64)
        if ages.shape != (n,):
            raise ValueError(f'max_age_s: expected one value or {n}, got {len(ages)}')
        if not np.all(ages > 0):
            raise ValueError(f'max_age_s: every limit must be > 0, got {ages.tolist()}')
        self.max_age_s = ages.copy()
        self._index = {name: i for i, name in enumerate(self.joint_names)}
        self._tracked = set(tracked_names) - set(self.joint_names)
        self._q = np.zeros(n)
        self._received = np.full(n, -math.inf)
        self._stamp = np.zeros(n, dtype=np.int64)
        self._heard = np.zeros(n, dtype=bool)
        self._source: List[str] = [''] * n
        self._other: Dict[str, Tuple[float, float]] = {}   # tracked name -> (value, recv)
        self._plans: Dict[Tuple[str, ...], Tuple[np.ndarray, np.ndarray, List[Tuple[int, str]],
                                                 List[str]]] = {}
        self.unknown: Dict[str, int] = {}
        self.sources: Dict[str, Tuple[str, ...]] = {}     # source -> names it last sent
        self.messages = 0

    # ------------------------------------------------------------------ input
    def _plan(self, key: Tuple[str, ...]):
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        if len(set(key)) != len(key):
            dup = sorted({n for n in key if key.count(n) > 1})
            raise JointStateError(MALFORMED, f'duplicate joint names {dup}')
        src = [i for i, name in enumerate(key) if name in self._index]
        dst = [self._index[key[i]] for i in src]
        other = [(i, name) for i, name in enumerate(key)
                 if name not in self._index and name in self._tracked]
        unknown = [name for name in key if name not in self._index and name not in
                   self._tracked]
        plan = (np.array(src, dtype=np.intp), np.array(dst, dtype=np.intp), other, unknown)
        if len(self._plans) < 64:
            self._plans[key] = plan
        return plan

    def update(self, names: Sequence[str], positions: Sequence[float], now_s: float,
               stamp_ns: int = 0, source: str = '') -> int:
        """Take one message (any subset of joints); return how many wanted joints it set.

        The message is rejected as a whole (JointStateError, nothing stored) when names and
        positions differ in length, a name repeats or a wanted or tracked value is not
        finite. ``source`` names the publisher (topic, node or GID) for reports.
        """
        key = tuple(names)
        pos = np.asarray(positions, dtype=np.float64).reshape(-1)
        if pos.size != len(key):
            raise JointStateError(MALFORMED, f'{len(key)} names but {pos.size} positions')
        src, dst, other, unknown = self._plan(key)
        values = pos[src]
        if not np.isfinite(values).all():
            bad = [key[i] for i in src[~np.isfinite(values)]]
            raise JointStateError(NON_FINITE, f'non-finite position for {bad}')
        for i, name in other:
            if not math.isfinite(pos[i]):
                raise JointStateError(NON_FINITE, f'non-finite position for {[name]}')
        self._q[dst] = values
        self._received[dst] = now_s
        self._stamp[dst] = int(stamp_ns)
        self._heard[dst] = True
        for j in dst:
            self._source[j] = source
        for i, name in other:
            if name in self._other or len(self._other) < MAX_TRACKED_NAMES:
                self._other[name] = (float(pos[i]), now_s)
        for name in unknown:
            if name in self.unknown or len(self.unknown) < MAX_TRACKED_NAMES:
                self.unknown[name] = self.unknown.get(name, 0) + 1
        if source in self.sources or len(self.sources) < MAX_TRACKED_NAMES:
            self.sources[source] = key
        self.messages += 1
        return int(dst.size)

    # ------------------------------------------------------------------ output
    def ages(self, now_s: float) -> np.ndarray:
        """Return the age of every wanted joint (s; inf before it is heard, never < 0)."""
        return np.maximum(now_s - self._received, 0.0)

    def missing(self) -> List[str]:
        """Return the wanted joints nobody has published yet."""
        return [n for n, heard in zip(self.joint_names, self._heard) if not heard]

    def stale(self, now_s: float) -> List[str]:
        """Return the wanted joints heard before but older than their age limit now."""
        old = self._heard & (self.ages(now_s) > self.max_age_s)
        return [n for n, o in zip(self.joint_names, old) if o]

    def complete(self) -> bool:
        """Whether every wanted joint has been heard at least once."""
        return bool(self._heard.all())

    def merged(self, now_s: float) -> Optional[MergedState]:
        """Return the full state if every wanted joint is known and fresh, else None."""
        if not self._heard.all() or np.any(self.ages(now_s) > self.max_age_s):
            return None
        return MergedState(self._q.copy(), float(self._received.min()),
                           int(self._stamp.min()) if self._stamp.size else 0)

    def values(self, names: Sequence[str]) -> Dict[str, float]:
        """Return the latest measured value of each of ``names`` that has been heard.

        Works for wanted and tracked joints alike (for example to hold gripper fingers at
        their measured opening in forward kinematics).
        """
        out: Dict[str, float] = {}
        for name in names:
            i = self._index.get(name)
            if i is not None:
                if self._heard[i]:
                    out[name] = float(self._q[i])
            elif name in self._other:
                out[name] = self._other[name][0]
        return out

    def source_of(self, name: str) -> Optional[str]:
        """Return the source that last set wanted joint ``name`` (None if never heard)."""
        i = self._index[name]
        return self._source[i] if self._heard[i] else None

    def diagnostics(self, now_s: float) -> Dict[str, Any]:
        """Return the /diagnostics values: missing, stale and unknown names, sources heard."""
        return {'joint_states_missing': ','.join(self.missing()) or 'none',
                'joint_states_stale': ','.join(self.stale(now_s)) or 'none',
                'joint_states_sources': len(self.sources),
                'joint_states_unknown_names': ','.join(sorted(self.unknown)) or 'none'}

    def report(self, now_s: float, describe: Callable[[str], str] = str) -> str:
        """One line: missing and stale joints and what every source sends (for logs).

        ``describe`` turns a source id into the name printed (for example the node).
        """
        parts = []
        missing = self.missing()
        if missing:
            parts.append(f'no value yet for {missing}')
        stale = self.stale(now_s)
        if stale:
            ages = self.ages(now_s)
            parts.append('stale: ' + ', '.join(
                f'{n} ({ages[self._index[n]]:.2f} s > {self.max_age_s[self._index[n]]:g} s, '
                f'from {describe(self._source[self._index[n]])})' for n in stale))
        if self.sources:
            heard = '; '.join(f'{describe(src)}: {list(names)}'
                              for src, names in sorted(self.sources.items()))
            parts.append(f'heard from {heard}')
        else:
            parts.append('no joint_states message received')
        return '; '.join(parts)
