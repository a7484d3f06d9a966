"""Stamps: integer nanoseconds everywhere, converted to and from the forms that carry them.

A header stamp (``sec`` + ``nanosec``), a chunk stamp in ``safety/execution`` (two float64
fields, exact for any stamp this century) and a stamp in a report (exact decimal seconds)
are the same integer number of nanoseconds; only intervals and times of day become float
seconds, and only through these functions.
"""

import math
import operator
from typing import Optional, Tuple

NS_PER_S = 1_000_000_000


def to_ns(sec: int, nanosec: int) -> int:
    """Return a ``(sec, nanosec)`` stamp as integer nanoseconds."""
    return int(sec) * NS_PER_S + int(nanosec)


def split_ns(stamp_ns: int) -> Tuple[int, int]:
    """Return integer nanoseconds as ``(sec, nanosec)`` with ``0 <= nanosec < 1e9``."""
    return divmod(operator.index(stamp_ns), NS_PER_S)


def s_to_ns(t_s: float) -> int:
    """Return float seconds as the nearest integer nanoseconds."""
    return int(round(t_s * 1e9))


def ns_to_s(stamp_ns: int) -> float:
    """Return integer nanoseconds as float seconds (for intervals and times of day)."""
    return stamp_ns * 1e-9


def stamp_text(stamp_ns: Optional[int]) -> str:
    """Return an integer-nanosecond stamp as exact decimal seconds ('' for None)."""
    if stamp_ns is None:
        return ''
    sec, nanosec = split_ns(int(stamp_ns))
    return f'{sec}.{nanosec:09d}'


def from_float_pair(sec: float, nanosec: float) -> Optional[int]:
    """Return a stamp carried as two float64 fields, or None if they are not a stamp."""
    if not (math.isfinite(sec) and math.isfinite(nanosec)) or sec != int(sec) \
            or nanosec != int(nanosec) or not 0 <= nanosec < NS_PER_S:
        return None
    return to_ns(int(sec), int(nanosec))
