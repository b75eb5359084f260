"""``WorkerMetrics`` without a broker: tenant labels only for the top N (the rest as ``_other``), the
tenant cap, loop histograms rendered as Prometheus histograms, and unknown stats keys typed as counters."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from tidemq.worker import metrics as wm

from tidemq.events import EventBus
from tidemq.stats import LoopHistogram, family_of


def _families(m: wm.WorkerMetrics) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    return {f.name: [(s.name, s.labels, s.value) for s in f.samples]
            for f in text_string_to_metric_families(m.exposition().decode())}


def test_tenant_labels_top_n_and_other() -> None:
    m = wm.WorkerMetrics(EventBus(), tenant_top=2)
    for tenant, n in (("big", 5), ("mid", 3), ("small", 1), ("tiny", 1)):
        for _ in range(n):
            m.received(tenant)
    fams = _families(m)
    got = {lbl["tenant"]: v for _n, lbl, v in fams["tidemq_tenant_messages_received"]}
    assert got == {"big": 5, "mid": 3, "_other": 2}
    assert "tidemq_tenant_messages_received" not in _families(wm.WorkerMetrics(EventBus(), tenant_top=0))


def test_tenants_are_capped(monkeypatch) -> None:
    monkeypatch.setattr(wm, "MAX_TENANTS", 3)
    m = wm.WorkerMetrics(EventBus(), tenant_top=0)
    for i in range(10):
        m.sent(f"t{i}", 0, 0, 0, False)
    m.sent("t0", 0, 0, 0, False)
    m._fold()
    assert len(m.sent_by) == 3 and sum(m.sent_by.values()) == 11 and m.sent_by["t0"] == 2
    assert m.sent_by[wm.OTHER] == 8


def test_loop_histogram_is_cumulative_with_inclusive_bounds() -> None:
    h = LoopHistogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 2.0):
        h.observe(v)
    assert h.buckets() == [("0.1", 2.0), ("1.0", 3.0), ("+Inf", 4.0)]
    m = wm.WorkerMetrics(EventBus(), tenant_top=0)
    m.sent("t", 1, created_ms=1000, now_ms=1004, retain=False)
    m.sent("t", 1, created_ms=1000, now_ms=90000, retain=True)  # a retained replay: not observed
    samples = _families(m)["tidemq_publish_deliver_latency_seconds"]
    count = [v for n, lbl, v in samples if n.endswith("_count") and lbl["qos"] == "1"]
    le5ms = [v for n, lbl, v in samples if n.endswith("_bucket") and lbl == {"qos": "1", "le": "0.005"}]
    assert count == [1.0] and le5ms == [1.0]


def test_unknown_stats_keys_become_counters() -> None:
    assert family_of("something_new") == ("tidemq_something_new", "counter", "Worker counter something_new.", "", "")
    assert family_of("refused_auth").name == "tidemq_refusals" and family_of("refused_auth").value == "auth"
    assert family_of("refused_inbox_full")[:2] == ("tidemq_drops", "counter")
    assert family_of("connections").kind == "gauge"
