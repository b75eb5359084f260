"""In-process counters of the API node, rendered in the Prometheus text format (0.0.4).

Counts requests by endpoint (the route name, ``unknown`` for unrouted paths),
method and status, their total duration, and publish outcomes. The MQTT
worker's counters belong to other processes: ``render`` adds the ones live
workers last published with their lease, as ``tidemq_worker_<name>{worker}``. Label values
come from a closed set (route names, methods, status codes, outcomes), so the
series count stays bounded whatever clients send.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

_NAME = re.compile(r"[^a-zA-Z0-9_]")
_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"})


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.outcomes: Counter[tuple[str, str]] = Counter()

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "OTHER"
        self.requests[(endpoint, method, status)] += 1
        self.seconds[endpoint] += seconds

    def outcome(self, endpoint: str, result: str) -> None:
        self.outcomes[(endpoint, result)] += 1

    def render(self, workers: dict[str, dict[str, int]] | None = None,
               inbox_depths: dict[str, int] | None = None) -> str:
        lines = [
            "# HELP tidemq_api_requests_total Admin API requests by endpoint, method and status.",
            "# TYPE tidemq_api_requests_total counter",
        ]
        for (ep, method, status), n in sorted(self.requests.items()):
            lines.append(f'tidemq_api_requests_total{{endpoint="{_label(ep)}",method="{method}",'
                         f'status="{status}"}} {n}')
        lines += [
            "# HELP tidemq_api_request_seconds_total Time spent serving admin API requests, by endpoint.",
            "# TYPE tidemq_api_request_seconds_total counter",
        ]
        for ep, s in sorted(self.seconds.items()):
            lines.append(f'tidemq_api_request_seconds_total{{endpoint="{_label(ep)}"}} {s:.6f}')
        lines += [
            "# HELP tidemq_api_results_total Business outcomes of admin API calls (OK, NO_MATCH, RETAINED, ...).",
            "# TYPE tidemq_api_results_total counter",
        ]
        for (ep, result), n in sorted(self.outcomes.items()):
            lines.append(f'tidemq_api_results_total{{endpoint="{_label(ep)}",result="{_label(result)}"}} {n}')
        by_name: dict[str, list[tuple[str, int]]] = {}
        for worker, stats in sorted((workers or {}).items()):
            for name, value in stats.items():
                by_name.setdefault(_NAME.sub("_", name), []).append((worker, value))
        for name, series in sorted(by_name.items()):
            lines.append(f"# HELP tidemq_worker_{name} Worker counter {name}, as last published by each live worker.")
            lines.append(f"# TYPE tidemq_worker_{name} gauge")
            for worker, value in series:
                lines.append(f'tidemq_worker_{name}{{worker="{_label(worker)}"}} {value}')
        if inbox_depths:
            lines += [
                "# HELP tidemq_inbox_depth Messages queued in persistent-session inboxes, per tenant.",
                "# TYPE tidemq_inbox_depth gauge",
            ]
            for tenant, n in sorted(inbox_depths.items()):
                lines.append(f'tidemq_inbox_depth{{tenant="{_label(tenant)}"}} {n}')
        return "\n".join(lines) + "\n"
