"""``/metrics`` of a real worker (health port) and of the API (cluster view), parsed with
``prometheus_client.parser``: names, types, ``_total`` suffixes, the histograms and process metrics, the opt-in
tenant labels; and every metric the Grafana dashboard queries exists in that output.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.limits.helpers import open5, set_tenant, uid, until, until_async
from tests.observability.conftest import Obs

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm" / "tidemq" / "dashboards" / "tidemq.json"

WORKER_FAMILIES = {
    "tidemq_connections": "gauge", "tidemq_sessions_online": "gauge", "tidemq_dispatch_backlog": "gauge",
    "tidemq_messages_received": "counter", "tidemq_messages_sent": "counter",
    "tidemq_connections_accepted": "counter", "tidemq_refusals": "counter",
    "tidemq_drops": "counter", "tidemq_events": "counter", "tidemq_worker_lease_age_seconds": "gauge",
    "tidemq_publish_deliver_latency_seconds": "histogram", "tidemq_connect_duration_seconds": "histogram",
    "tidemq_redis_roundtrip_seconds": "histogram", "tidemq_tenant_messages_received": "counter",
    "process_cpu_seconds": "counter", "process_resident_memory_bytes": "gauge",
}
API_FAMILIES = {
    "tidemq_api_requests": "counter", "tidemq_api_request_duration_seconds": "histogram",
    "tidemq_cluster_workers": "gauge", "tidemq_cluster_messages_received": "counter",
    "tidemq_cluster_connections": "gauge", "tidemq_inbox_depth": "gauge", "process_cpu_seconds": "counter",
}


def parse(text: str) -> dict[str, tuple[str, list[tuple[str, dict[str, str], float]]]]:
    """family name -> (type, samples); checks the naming rules on the way."""
    out = {}
    for fam in text_string_to_metric_families(text):
        samples = [(s.name, s.labels, s.value) for s in fam.samples]
        if fam.type == "counter":
            assert all(n.endswith(("_total", "_created")) for n, _l, _v in samples), fam.name
        else:
            assert not fam.name.endswith("_total"), f"{fam.name} is a {fam.type} named like a counter"
            assert not any(n.endswith("_total") for n, _l, _v in samples), fam.name
        assert fam.name not in out, f"{fam.name} twice"
        out[fam.name] = (fam.type, samples)
    return out


def sample_names(families: dict[str, tuple[str, list[tuple[str, dict[str, str], float]]]]) -> set[str]:
    return {n for _t, samples in families.values() for n, _l, _v in samples}


async def _traffic(obs: Obs, tenant: str, r: redis.Redis) -> None:
    set_tenant(r, tenant, MaxTopicFiltersPerSub=1)
    sub = await open5(obs.broker, f"s{uid()}", username=f"{tenant}/u")
    pub = await open5(obs.broker, f"p{uid()}", username=f"{tenant}/u")
    assert await sub.subscribe(("m/#", 1), ("n", 0)) == [1, 0x97]  # and a refusal
    assert await pub.publish("m/1", b"x", qos=1) == 0
    await sub.get()
    await pub.close()
    await sub.close()


async def test_worker_metrics_parse_with_types_and_suffixes(obs: Obs, r: redis.Redis) -> None:
    tenant = f"obs{uid()}"
    await _traffic(obs, tenant, r)
    async with httpx.AsyncClient(base_url=obs.health, timeout=5) as http:
        async def scraped() -> dict | None:
            fams = parse((await http.get("/metrics")).text)
            received = fams.get("tidemq_tenant_messages_received", ("", []))[1]
            ok = any(lbl.get("tenant") == tenant for _n, lbl, _v in received)
            return fams if ok and "tidemq_sessions_online" in fams else None

        fams = await until_async(scraped, 10.0, "worker /metrics with the tenant's series")
        response = await http.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    for name, kind in WORKER_FAMILIES.items():
        assert name in fams, f"{name} missing"
        assert fams[name][0] == kind, (name, fams[name][0])
    qos = {lbl["qos"]: v for n, lbl, v in fams["tidemq_messages_received"][1] if n.endswith("_total")}
    assert qos.get("1", 0) >= 1
    counts = {lbl["op"]: v for n, lbl, v in fams["tidemq_redis_roundtrip_seconds"][1] if n.endswith("_count")}
    assert counts.get("pipeline", 0) + counts.get("script", 0) > 0, counts
    latency = [v for n, lbl, v in fams["tidemq_publish_deliver_latency_seconds"][1]
               if n.endswith("_count") and lbl["qos"] == "1"]
    assert latency and latency[0] >= 1
    accepted = [v for n, lbl, v in fams["tidemq_connect_duration_seconds"][1]
                if n.endswith("_count") and lbl["outcome"] == "accepted"]
    assert accepted and accepted[0] >= 2


def test_api_cluster_view_parses(obs: Obs, api_base: str) -> None:
    with httpx.Client(base_url=api_base, timeout=5) as http:
        def scraped() -> dict | None:
            fams = parse(http.get("/metrics").text)
            conns = fams.get("tidemq_cluster_connections", ("", []))[1]
            return fams if any(lbl.get("worker") == obs.worker_id for _n, lbl, _v in conns) else None

        fams = until(scraped, 10.0, "the worker's stats in the API's cluster view")
    for name, kind in API_FAMILIES.items():
        assert name in fams, f"{name} missing"
        assert fams[name][0] == kind, (name, fams[name][0])


def _dashboard_metrics() -> set[str]:
    doc = json.loads(DASHBOARD.read_text())
    exprs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                exprs.append(node["expr"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    assert exprs, "the dashboard has no queries"
    names = set()
    for expr in exprs:
        names |= {m for m in re.findall(r"\b((?:tidemq|process)_[a-zA-Z0-9_]+)\b", expr)}
    return names


async def test_dashboard_queries_only_existing_metrics(obs: Obs, api_base: str, r: redis.Redis) -> None:
    await _traffic(obs, f"obs{uid()}", r)
    async with httpx.AsyncClient(timeout=5) as http:
        worker = sample_names(parse((await http.get(f"{obs.health}/metrics")).text))
        api = sample_names(parse((await http.get(f"{api_base}/metrics")).text))
    missing = _dashboard_metrics() - worker - api
    assert not missing, f"the dashboard queries metrics nobody exports: {sorted(missing)}"


def test_docs_and_chart_carry_the_dashboard() -> None:
    chart_copy = json.loads(DASHBOARD.read_text())
    docs = (ROOT / "docs" / "observability.md").read_text()
    assert chart_copy["title"] and "helm/tidemq/dashboards/tidemq.json" in docs
    template = (ROOT / "helm" / "tidemq" / "templates" / "grafana-dashboard.yaml").read_text()
    assert 'grafana_dashboard: "1"' in template and "grafanaDashboard.enabled" in template
