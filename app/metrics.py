"""The API node's metrics and the cluster view, rendered by prometheus-client (text format 0.0.4).

Own metrics: requests by endpoint (the route name, ``unknown`` for unrouted paths), method and status
(``tidemq_api_requests_total``), their duration (``tidemq_api_request_duration_seconds``), business
outcomes (``tidemq_api_results_total``) and the process metrics. The cluster view: the stats every live
worker last published with its lease (``tidemq:wstats:<id>``) as ``tidemq_cluster_<family>{worker}``
(the same families and types a worker serves on its own ``/metrics``, through ``tidemq.stats``), the
number of live workers, and the inbox depth per tenant. Label values come from closed sets (route names,
methods, status codes, outcomes, worker ids) or are capped (at most ``DEPTH_TENANTS`` tenants, the rest
summed as ``tenant="_other"``), so the series count stays bounded whatever clients send.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from tidemq.stats import build_families

_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"})
DEPTH_TENANTS = 100
OTHER = "_other"


class _ClusterView(Collector):
    """What the live workers published, set just before each render (no await in between)."""

    def __init__(self) -> None:
        self.workers: dict[str, dict[str, int]] = {}
        self.depths: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        live = GaugeMetricFamily("tidemq_cluster_workers", "Workers with a live lease that published stats.")
        live.add_metric([], len(self.workers))
        yield live
        yield from build_families((({"worker": w}, s) for w, s in sorted(self.workers.items())),
                                  prefix="tidemq_cluster_")
        depth = GaugeMetricFamily("tidemq_inbox_depth", "Messages queued in persistent-session inboxes, per tenant "
                                  f"(the {DEPTH_TENANTS} deepest; the rest as {OTHER}).", labels=["tenant"])
        ranked = sorted(self.depths.items(), key=lambda kv: (-kv[1], kv[0]))
        for tenant, n in sorted(ranked[:DEPTH_TENANTS]):
            depth.add_metric([tenant], n)
        if len(ranked) > DEPTH_TENANTS:
            depth.add_metric([OTHER], sum(n for _t, n in ranked[DEPTH_TENANTS:]))
        yield depth


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        for make in (ProcessCollector, PlatformCollector, GCCollector):
            make(registry=self.registry)
        self.requests = Counter("tidemq_api_requests", "Admin API requests by endpoint, method and status.",
                                ["endpoint", "method", "status"], registry=self.registry)
        self.seconds = Histogram("tidemq_api_request_duration_seconds", "Time spent serving admin API requests.",
                                 ["endpoint"], registry=self.registry)
        self.outcomes = Counter("tidemq_api_results",
                                "Business outcomes of admin API calls (OK, NO_MATCH, RETAINED, ...).",
                                ["endpoint", "result"], registry=self.registry)
        self.cluster = _ClusterView()
        self.registry.register(self.cluster)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "OTHER"
        self.requests.labels(endpoint, method, str(status)).inc()
        self.seconds.labels(endpoint).observe(seconds)

    def outcome(self, endpoint: str, result: str) -> None:
        self.outcomes.labels(endpoint, result).inc()

    def render(self, workers: dict[str, dict[str, int]] | None = None,
               inbox_depths: dict[str, int] | None = None) -> str:
        self.cluster.workers, self.cluster.depths = workers or {}, inbox_depths or {}
        try:
            return generate_latest(self.registry).decode()
        finally:
            self.cluster.workers, self.cluster.depths = {}, {}
