"""Refusals are counted: the worker publishes ``refused_<reason>`` counters with its lease, and an API node
serves them on ``GET /metrics`` as ``tidemq_cluster_refusals_total{reason="<reason>",worker="<id>"}``.

This module is alone on its worker (module-scoped), so the counts are exact.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from tests.fixtures.brokers import BrokerProcess, free_port
from tests.limits.helpers import open5, redis_url, set_tenant, uid, until, worker_stats

pytestmark = pytest.mark.redis

EXPECTED = {
    "refused_protocol_disabled": 2,
    "refused_subscription_quota": 1,
    "refused_payload_too_large": 1,
    "refused_max_connections": 1,
    "refused_wildcard_disabled": 1,
}


async def test_refusals_are_counted_in_worker_stats_and_api_metrics(
        worker, worker_id, tenant, settings, c5, r, redis_server, tmp_path: Path) -> None:
    settings(MQTT5Enabled=False, TotalConnections=2, MaxTopicFiltersPerSub=1, MaxUserPayloadBytes=10,
             WildcardSubscriptionEnabled=False)
    await c5(expect=0x84)
    await c5(expect=0x84)
    other = f"m{uid()}"
    set_tenant(r, other, TotalConnections=1, MaxTopicFiltersPerSub=1, MaxUserPayloadBytes=10,
               WildcardSubscriptionEnabled=False)
    c = await open5(worker, f"c{uid()}", username=f"{other}/u")
    await open5(worker, f"c{uid()}", username=f"{other}/u", expect=0x97)
    assert await c.subscribe(("a", 0), ("b", 0)) == [0, 0x97]
    assert await c.subscribe(("a/+", 0)) == [0xA2]
    assert await c.publish("a", b"x" * 11, qos=1) == 0x95
    await c.close()

    def counted() -> dict[str, int] | None:
        stats = worker_stats(r, worker_id)
        return stats if all(stats.get(k) == v for k, v in EXPECTED.items()) else None

    until(counted, 10.0, f"refusal counters in tidemq:wstats:{worker_id}")

    port = free_port()
    argv = [sys.executable, "-m", "tidemq.cli", "api", "--host", "127.0.0.1", "--api-port", str(port),
            "--redis-url", redis_url(redis_server)]
    api = BrokerProcess("api", argv, port=port, api_port=port, log_path=tmp_path / "api.log")
    api.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as http:
            def scraped() -> str | None:
                text = http.get("/metrics").text
                series = 'tidemq_cluster_refusals_total{{reason="{}",worker="{}"}} {}.0'
                return text if all(series.format(k[8:], worker_id, v) in text for k, v in EXPECTED.items()) else None

            until(scraped, 10.0, "worker refusal counters on GET /metrics")
    finally:
        api.stop()
