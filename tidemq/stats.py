"""The one table from a worker's stats keys to Prometheus metric families (shared by worker and API).

A worker keeps flat integer stats (``refused_<reason>``, ``messages_in_qos1``, ``connections``, ...),
publishes them with its lease (``tidemq:wstats:<id>``) and renders them on its own ``/metrics``; the API
renders the same hashes as its cluster view. Both go through ``family_of`` so a key always becomes the
same family: a counter (``kind == "counter"``, rendered ``<name>_total``) or a gauge, and at most one
label taken from the key (``qos``, ``reason``). Invariants: the table is closed, so label values come
from the code, never from clients; a key nobody listed becomes ``tidemq_<key>_total`` (a counter), so
a new counter shows up without a table edit and never as a mistyped gauge.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable
from typing import NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

_SAFE = re.compile(r"[^a-zA-Z0-9_]")


class Family(NamedTuple):
    name: str  # without ``_total``: prometheus-client appends it to counters
    kind: str  # "counter" | "gauge"
    doc: str
    label: str = ""  # the one label this key sets ("" for none)
    value: str = ""


GAUGES: dict[str, Family] = {
    "connections": Family("tidemq_connections", "gauge", "Open client transports (before and after CONNECT)."),
    "sessions_online": Family("tidemq_sessions_online", "gauge", "Sessions connected to this worker."),
    "persistent_online": Family("tidemq_sessions_persistent_online", "gauge",
                                "Persistent sessions connected to this worker."),
    "dispatch_backlog": Family("tidemq_dispatch_backlog", "gauge", "Publishes queued in the dispatcher."),
    "pending_connects": Family("tidemq_connections_pending", "gauge",
                               "Transports that have not finished CONNECT yet."),
}

COUNTERS: dict[str, Family] = {
    "connections_total": Family("tidemq_connections_accepted", "counter", "CONNECTs accepted (sessions registered)."),
    "messages_routed": Family("tidemq_messages_routed", "counter", "Publishes routed by the dispatcher."),
    "wills_published": Family("tidemq_wills_published", "counter", "Will messages published."),
    "slow_consumer_disconnects": Family("tidemq_slow_consumer_disconnects", "counter",
                                        "Clients disconnected because their QoS 1/2 backlog outgrew the inbox size."),
}

_RECEIVED = Family("tidemq_messages_received", "counter", "PUBLISH packets received from clients, by QoS.", "qos")
_SENT = Family("tidemq_messages_sent", "counter", "PUBLISH packets sent to clients, by QoS.", "qos")
_REFUSED = Family("tidemq_refusals", "counter",
                  "Refusals (CONNECT refused, PUBLISH/SUBSCRIBE denied, quotas), by reason.", "reason")
_DROPPED = Family("tidemq_drops", "counter", "Messages dropped (QoS 0 to backed-up clients, inbox full, "
                  "fan-out limits), by reason.", "reason")

ALWAYS = (_RECEIVED, _SENT, _REFUSED, _DROPPED)
_EVENTS = Family("tidemq_events", "counter", "Broker events handed to the event sinks, by kind.", "kind")
_EVENTS_DROPPED = Family("tidemq_events_dropped", "counter",
                         "Events a sink lost (queue full or a failed send), by sink.", "sink")


def family_of(key: str) -> Family:
    """The family of one stats key, with the label value it carries in ``value``."""
    if key in GAUGES:
        return GAUGES[key]
    if key in COUNTERS:
        return COUNTERS[key]
    for prefix, fam in (("messages_in_qos", _RECEIVED), ("messages_out_qos", _SENT)):
        if key.startswith(prefix):
            return fam._replace(value=key[len(prefix):])
    if key.startswith("events_dropped_"):
        return _EVENTS_DROPPED._replace(value=key[len("events_dropped_"):])
    if key.startswith("events_"):
        return _EVENTS._replace(value=key[len("events_"):])
    if key == "refused_inbox_full":  # an inbox drop, counted with the drops
        return _DROPPED._replace(value="inbox_full")
    if key.startswith("refused_"):
        return _REFUSED._replace(value=key[len("refused_"):])
    if key.startswith("dropped_"):
        return _DROPPED._replace(value=key[len("dropped_"):])
    name = _SAFE.sub("_", key).removesuffix("_total")
    return Family(f"tidemq_{name}", "counter", f"Worker counter {key}.")


def build_families(rows: Iterable[tuple[dict[str, str], dict[str, int]]], *, prefix: str = "tidemq_") -> list[Metric]:
    """Typed families of stats rows; each row is ``(extra labels, stats)`` (the API adds ``worker``).

    ``prefix`` replaces ``tidemq_`` in every name (the API's cluster view uses ``tidemq_cluster_``).
    """
    out: dict[str, Metric] = {}
    rows = list(rows)
    for fam in ALWAYS:  # labelled families exist (empty) before their first sample
        name = prefix + fam.name.removeprefix("tidemq_")
        extra_names = sorted(rows[0][0]) if rows else []
        out[name] = CounterMetricFamily(name, fam.doc, labels=[*extra_names, fam.label])
    for extra, stats in rows:
        extra_names = sorted(extra)
        for key, value in sorted(stats.items()):
            fam = family_of(key)
            name = prefix + fam.name.removeprefix("tidemq_")
            labels = [*extra_names, fam.label] if fam.label else extra_names
            metric = out.get(name)
            if metric is None:
                cls = CounterMetricFamily if fam.kind == "counter" else GaugeMetricFamily
                metric = out[name] = cls(name, fam.doc, labels=labels)
            values = [extra[n] for n in extra_names] + ([fam.value] if fam.label else [])
            metric.add_metric(values, value)  # type: ignore[attr-defined]
    return list(out.values())


class LoopHistogram:
    """A histogram for one event loop's hot path: ``observe`` is a bisect and two adds, no lock.

    prometheus-client's ``Histogram`` takes a lock per observation (it is thread-safe); a worker is one
    thread, and a fan-out observes once per copy sent, so the worker keeps plain counts and renders them
    as a ``HistogramMetricFamily`` at scrape time. One instance per label value.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(running)))
        return out


def histogram_family(name: str, doc: str, label: str, children: dict[str, LoopHistogram]) -> Metric:
    fam = HistogramMetricFamily(name, doc, labels=[label])
    for value, h in children.items():
        fam.add_metric([value], h.buckets(), h.sum)
    return fam
