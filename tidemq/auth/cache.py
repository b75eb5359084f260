"""A bounded least-recently-used cache whose entries expire after a TTL (clock injectable).

Used for auth decisions (webhook answers, verified passwords, ACL verdicts).
Invariants: never more than ``maxsize`` entries (the least recently used one
goes first); an entry older than ``ttl`` seconds is never returned; a TTL of
0 (or less) or a size of 0 disables the cache. Not thread-safe (one event loop).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

MISSING: Any = object()


class TTLCache:
    __slots__ = ("_data", "clock", "hits", "maxsize", "misses", "ttl")

    def __init__(self, maxsize: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.maxsize = maxsize
        self.ttl = ttl
        self.clock = clock
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()

    def get(self, key: Hashable, default: Any = MISSING) -> Any:
        """The cached value, or ``default`` (``MISSING``) when absent or expired."""
        entry = self._data.get(key)
        if entry is None:
            self.misses += 1
            return default
        if entry[0] <= self.clock():
            del self._data[key]
            self.misses += 1
            return default
        self._data.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, key: Hashable, value: Any) -> None:
        if self.ttl <= 0 or self.maxsize <= 0:
            return
        self._data[key] = (self.clock() + self.ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
