"""The worker's metrics (prometheus-client), its event bus, and the one place a refusal is counted and logged.

Every limit a client hits (a CONNECT refused, a PUBLISH or SUBSCRIBE denied,
a quota) goes through ``WorkerMetrics.refuse``: counted as ``refused_<reason>``,
logged as a structured ``refused`` event (tenant, reason, code; never a
payload) and emitted as a ``refusal`` event to the sinks (``tidemq/events.py``).

Counters stay plain integers on the hot path (``counters``, the per-tenant
``*_by``) and histograms are ``LoopHistogram``s (no lock: one thread); a
custom collector turns them, and the broker's stats, into typed families at
scrape time through the one table ``tidemq.stats``, in this worker's own
``CollectorRegistry`` with the process metrics, rendered on the health port's
``/metrics``. The flat stats are also published with the
lease for the API's cluster view.

Tenant labels are opt-in and bounded: ``TIDEMQ_METRICS_TENANT_TOP=N`` (``Settings``) adds
``tidemq_tenant_*`` families for the N busiest tenants (others summed as
``tenant="_other"``); at most ``MAX_TENANTS`` tenants are kept per process (the
once-a-second sweep merges the smallest into ``_other``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from tidemq.events import EventBus
from tidemq.publish import CUTS, DROPS
from tidemq.stats import LoopHistogram, build_families, histogram_family

from . import debug_events, sys_topics

if TYPE_CHECKING:
    from .services import WorkerServices

log = logging.getLogger("tidemq.worker")

MAX_TENANTS = 10000  # tenants tracked per process; more are counted under "_other"
OTHER = "_other"
DROP_SWEEP_S = 1.0
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RTT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
CONNECT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_OUT = ("messages_out_qos0", "messages_out_qos1", "messages_out_qos2")


class WorkerMetrics:
    def __init__(self, events: EventBus | None = None, tenant_top: int = 0) -> None:
        """``events``: the sinks (none by default); ``tenant_top``: ``Settings.metrics_tenant_top``."""
        self.counters: Counter[str] = Counter()
        self.out = [0, 0, 0]  # messages_out_qos0..2: counted once per copy sent, so a plain list (``counter_values``)
        # per-tenant totals for $SYS and the opt-in tenant labels (at most MAX_TENANTS keys each)
        self.received_by: Counter[str] = Counter()
        self.sent_by: Counter[str] = Counter()
        self.refused_by: Counter[str] = Counter()
        self.dropped_by: Counter[tuple[str, str]] = Counter()  # (tenant, "dropped_<reason>")
        self.events = EventBus() if events is None else events
        self.tenant_top = tenant_top
        self.started = time.time()
        self.latency = [LoopHistogram(LATENCY_BUCKETS) for _q in range(3)]
        self.connect_seconds = {"accepted": LoopHistogram(CONNECT_BUCKETS), "refused": LoopHistogram(CONNECT_BUCKETS)}
        self.redis_seconds = {op: LoopHistogram(RTT_BUCKETS) for op in ("command", "script", "pipeline")}
        self.stats: Callable[[], dict[str, int]] = self.counter_values
        self.lease_renewed_at: Callable[[], float] = lambda: 0.0
        self.worker_id = ""
        self.registry = CollectorRegistry(auto_describe=False)  # collectors are not run at registration
        for make in (ProcessCollector, PlatformCollector, GCCollector):
            make(registry=self.registry)
        self.registry.register(_StatsCollector(self))
        debug_events.install(self.events)

    # ------------------------------------------------------------ hot-path counting

    def counter_values(self) -> dict[str, int]:
        """Every counter by name (``messages_out_qos*`` included)."""
        values = dict(self.counters)
        values.update(zip(_OUT, self.out, strict=True))
        return values

    def inc(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def received(self, tenant: str) -> None:
        """A PUBLISH of ``tenant`` accepted (the QoS split is the dispatcher's ``stats_in``)."""
        self.received_by[tenant] += 1  # bounded by the sweep (``_fold``)

    def sent(self, tenant: str, qos: int, created_ms: int, now_ms: int, retain: bool) -> None:
        """A PUBLISH queued to a subscriber: counted, and its latency observed (not for replays or resends)."""
        self.out[qos] += 1
        self.sent_by[tenant] += 1  # bounded by the sweep (``_fold``)
        if created_ms and not retain and now_ms >= created_ms:
            self.latency[qos].observe((now_ms - created_ms) / 1000.0)

    def drop(self, reason: str, tenant: str, n: int = 1) -> None:
        """Messages dropped by this worker (``dropped_<reason>``); sweeps turn them into ``drop`` events."""
        self.counters[f"dropped_{reason}"] += n
        self.dropped_by[(tenant, f"dropped_{reason}")] += n

    def refuse(self, reason: str, tenant: str, code: int) -> int:
        """Count, log and emit a refusal; returns ``code`` so callers can answer with it."""
        self.counters[f"refused_{reason}"] += 1
        self.refused_by[tenant] += 1
        log.warning("refused tenant=%s reason=%s code=0x%02x", tenant, reason, code,
                    extra={"event": "refused", "tenant": tenant, "reason": reason, "code": code})
        self.events.emit("refusal", tenant, reason=reason, code=code)
        return code

    def event(self, kind: str, tenant: str, client: str = "", **fields: object) -> None:
        """One broker event to the sinks (connect, disconnect, kick, takeover, will)."""
        self.events.emit(kind, tenant, client, **fields)

    def connect_done(self, opened: float, now: float, accepted: bool) -> None:
        self.connect_seconds["accepted" if accepted else "refused"].observe(max(0.0, now - opened))

    # ------------------------------------------------------------ exposition

    def exposition(self) -> bytes:
        """This worker's ``/metrics`` (Prometheus text format 0.0.4)."""
        return generate_latest(self.registry)

    def tenant_totals(self, tenant: str) -> dict[str, int]:
        return {"received": self.received_by.get(tenant, 0), "sent": self.sent_by.get(tenant, 0),
                "refused": self.refused_by.get(tenant, 0)}

    # ------------------------------------------------------------ background: $SYS, drop events, sinks

    async def run(self, redis: Any, services: WorkerServices, stats: Callable[[], dict[str, int]],
                  lease_renewed_at: Callable[[], float]) -> None:
        """Bind the broker's views, start the sinks, then sweep drops into events and publish ``$SYS``."""
        self.stats, self.lease_renewed_at, self.worker_id = stats, lease_renewed_at, services.worker_id
        instrument_redis(redis, self.redis_seconds)
        await self.events.start(redis)
        publisher = sys_topics.SysPublisher(redis, services, self)
        seen = self._drop_snapshot()
        try:
            while True:
                await asyncio.sleep(DROP_SWEEP_S)
                seen = self._sweep_drops(seen)
                self._fold()
                with contextlib.suppress(Exception):
                    await publisher.maybe_publish()
        finally:
            await self.events.close()

    def _fold(self) -> None:
        """Keep at most ``MAX_TENANTS`` tenants per counter: the smallest are merged into ``_other``."""
        counters: tuple[Counter[Any], ...] = (self.received_by, self.sent_by, self.refused_by, self.dropped_by)
        for by in counters:
            if len(by) > MAX_TENANTS:
                keep = dict(by.most_common(MAX_TENANTS - 1))
                rest = sum(n for k, n in by.items() if k not in keep)
                by.clear()
                by.update(keep)
                other: Any = (OTHER, "dropped_other") if by is self.dropped_by else OTHER
                by[other] += rest

    def _drop_snapshot(self) -> Counter[tuple[str, str]]:
        out: Counter[tuple[str, str]] = Counter(self.dropped_by)
        for counters in (DROPS, CUTS):
            for (tenant, name), n in counters.by_tenant.items():
                out[(tenant, name)] += n
        return out

    def _sweep_drops(self, seen: Counter[tuple[str, str]]) -> Counter[tuple[str, str]]:
        if not self.events.sinks:
            return seen
        now = self._drop_snapshot()
        for (tenant, name), n in now.items():
            if n > seen.get((tenant, name), 0):
                reason = name.removeprefix("dropped_").removeprefix("refused_")
                self.events.emit("drop", tenant, reason=reason, count=n - seen.get((tenant, name), 0))
        return now


class _StatsCollector(Collector):
    """The broker's flat stats as typed families, the histograms, the lease age and the opt-in tenant families."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        stats = dict(m.stats())
        stats.update({f"events_{k}": v for k, v in m.events.counts.items()})
        stats.update({f"events_dropped_{k}": v for k, v in m.events.dropped().items()})
        yield from build_families([({}, stats)])
        yield histogram_family("tidemq_publish_deliver_latency_seconds",
                               "From PUBLISH received to the copy queued to a subscriber (retained replays and "
                               "resends excluded).", "qos", {str(q): h for q, h in enumerate(m.latency)})
        yield histogram_family("tidemq_connect_duration_seconds",
                               "From the transport accepted to its CONNECT decided (CONNACK or close).",
                               "outcome", m.connect_seconds)
        yield histogram_family("tidemq_redis_roundtrip_seconds",
                               "Redis round trips of this worker (blocking reads excluded), by kind.",
                               "op", m.redis_seconds)
        info = GaugeMetricFamily("tidemq_worker_info", "This worker (value 1).", labels=["worker"])
        info.add_metric([m.worker_id], 1)
        yield info
        renewed = m.lease_renewed_at()
        age = GaugeMetricFamily("tidemq_worker_lease_age_seconds",
                                "Seconds since this worker last renewed its lease (other workers reap it past 6 s).")
        age.add_metric([], time.monotonic() - renewed if renewed else 0.0)
        yield age
        up = GaugeMetricFamily("tidemq_worker_uptime_seconds", "Seconds since this worker started.")
        up.add_metric([], time.time() - m.started)
        yield up
        if m.tenant_top > 0:
            yield from _tenant_families(m, m.tenant_top)


def _tenant_families(m: WorkerMetrics, top: int) -> Iterable[Metric]:
    """``tidemq_tenant_*`` for the ``top`` busiest tenants; the others summed as ``tenant="_other"``."""
    busiest = m.received_by + m.sent_by
    keep = {t for t, _n in busiest.most_common(top)}
    dropped: Counter[str] = Counter()
    for (tenant, _name), n in m.dropped_by.items():
        dropped[tenant] += n
    for name, doc, by in (("tidemq_tenant_messages_received", "PUBLISH packets received", m.received_by),
                          ("tidemq_tenant_messages_sent", "PUBLISH packets sent", m.sent_by),
                          ("tidemq_tenant_refusals", "refusals", m.refused_by),
                          ("tidemq_tenant_drops", "messages this worker dropped", dropped)):
        fam = CounterMetricFamily(name, f"{doc}, per tenant (the {top} busiest; the rest as {OTHER}).",
                                  labels=["tenant"])
        folded: Counter[str] = Counter()
        for tenant, n in by.items():
            folded[tenant if tenant in keep else OTHER] += n
        for tenant, n in sorted(folded.items()):
            fam.add_metric([tenant], n)
        yield fam


# ------------------------------------------------------------ Redis round trips

_BLOCKING = frozenset({"XREAD", "XREADGROUP", "BLPOP", "BRPOP", "BLMOVE", "BZPOPMIN", "BZPOPMAX", "WAIT", "WAITAOF"})
_SCRIPTS = frozenset({"EVALSHA", "EVAL", "FCALL", "EVALSHA_RO", "EVAL_RO", "FCALL_RO"})


def instrument_redis(redis: Any, histograms: dict[str, LoopHistogram]) -> None:
    """Time every command and pipeline of this worker's client (its own instance, not the class).

    Single commands are ``op="script"`` (EVALSHA/EVAL/FCALL) or ``op="command"``; pipelines
    ``op="pipeline"``. Blocking reads (``XREAD ... BLOCK``) wait on purpose and are left out.
    """
    if getattr(redis, "_tidemq_timed", False):
        return
    command, script, pipeline = (histograms[op] for op in ("command", "script", "pipeline"))
    inner_execute = redis.execute_command
    inner_pipeline = redis.pipeline

    async def execute_command(*args: Any, **options: Any) -> Any:
        head = args[0] if args else ""
        name = (head.decode() if isinstance(head, bytes) else str(head)).upper()
        if name in _BLOCKING:  # waits on purpose: not a round trip
            return await inner_execute(*args, **options)
        child = script if name in _SCRIPTS else command
        start = time.perf_counter()
        try:
            return await inner_execute(*args, **options)
        finally:
            child.observe(time.perf_counter() - start)

    def make_pipeline(*args: Any, **kw: Any) -> Any:
        pipe = inner_pipeline(*args, **kw)
        inner = pipe.execute

        async def execute(*a: Any, **k: Any) -> Any:
            start = time.perf_counter()
            try:
                return await inner(*a, **k)
            finally:
                pipeline.observe(time.perf_counter() - start)

        pipe.execute = execute
        return pipe

    redis.execute_command = execute_command
    redis.pipeline = make_pipeline
    redis.tidemq_observe_pipeline = pipeline.observe  # the store's own round trips (scripts.RawBatch)
    redis._tidemq_timed = True
