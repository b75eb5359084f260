"""Two small mechanisms shared by everything that counts or reports trouble per tenant or per source.

``TenantCounters``: named counters kept per tenant in one process (inbox drops, fan-out cuts), summed
for the worker's stats or read for one tenant. ``LogThrottle``: at most one log line per key every so
many seconds, with a bounded memory of keys (a flood of distinct keys forgets, it never grows).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence


class TenantCounters:
    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.by_tenant: Counter[tuple[str, str]] = Counter()  # (tenant, counter name) -> count

    def add(self, tenant: str, name: str, n: int = 1) -> None:
        self.by_tenant[(tenant, name)] += n

    def totals(self) -> dict[str, int]:
        """Every counter summed over tenants (zeros included, so the series always exist)."""
        out = dict.fromkeys(self.names, 0)
        for (_tenant, name), n in self.by_tenant.items():
            out[name] += n
        return out

    def tenant(self, tenant: str) -> dict[str, int]:
        """One tenant's counters."""
        return {name: self.by_tenant[(tenant, name)] for name in self.names}


class LogThrottle:
    def __init__(self, every: float, max_keys: int) -> None:
        self.every = every
        self.max_keys = max_keys
        self._last: dict[Hashable, float] = {}

    def allow(self, key: Hashable, now: float) -> bool:
        """True (and remembered) when ``key`` was not logged within ``every`` seconds of ``now``."""
        if now - self._last.get(key, -self.every) < self.every:
            return False
        if len(self._last) > self.max_keys:
            self._last.clear()
        self._last[key] = now
        return True
