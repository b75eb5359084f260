"""The clock, passed in: monotonic seconds for timers and limits, wall-clock milliseconds for Redis.

Everything in the worker that reads the time takes a ``Clock`` so timer behaviour (keep alive,
CONNECT timeout, will delay, expiry) is unit-tested with ``FakeClock`` instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (timers, rate limits)."""
        ...

    def wall_ms(self) -> int:
        """Unix time in milliseconds (what Redis stores: expiry deadlines, creation times)."""
        ...


class SystemClock:
    """The real clock."""

    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    def wall_ms(self) -> int:
        return int(time.time() * 1000)


class FakeClock:
    """A clock that moves only when told (tests)."""

    def __init__(self, wall_ms: int = 1_700_000_000_000, monotonic: float = 1000.0) -> None:
        self._wall_ms = wall_ms
        self._mono = monotonic

    def monotonic(self) -> float:
        return self._mono

    def wall_ms(self) -> int:
        return self._wall_ms

    def advance(self, seconds: float) -> None:
        self._mono += seconds
        self._wall_ms += int(seconds * 1000)


SYSTEM_CLOCK = SystemClock()
