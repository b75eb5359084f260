"""The worker's counters, and the one place a refusal is counted and logged.

Every limit a client hits (a CONNECT refused, a PUBLISH or SUBSCRIBE denied,
a quota) goes through ``WorkerMetrics.refuse``: counted as ``refused_<reason>``
and logged as a structured ``refused`` event (tenant, reason, code; never a
payload). The counters are published with the worker's lease for the API's
``/metrics``.
"""

from __future__ import annotations

import logging
from collections import Counter

log = logging.getLogger("tidemq.worker")


class WorkerMetrics:
    __slots__ = ("counters",)

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()

    def inc(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def refuse(self, reason: str, tenant: str, code: int) -> int:
        """Count and log a refusal; returns ``code`` so callers can answer with it."""
        self.counters[f"refused_{reason}"] += 1
        log.warning("refused tenant=%s reason=%s code=0x%02x", tenant, reason, code,
                    extra={"event": "refused", "tenant": tenant, "reason": reason, "code": code})
        return code
