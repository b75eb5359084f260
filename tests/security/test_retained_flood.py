"""Attack: a wildcard SUBSCRIBE against many large retained messages, over real sockets against a worker
process on the real Redis. One tenant's client stores 2,000 retained messages of 64 KiB (125 MiB); the
tenant's RetainMessageMatchLimit is 10. A ``#`` subscriber gets exactly 10 of them, and Redis sends the
worker about those 10 payloads, not all 2,000 (its ``total_net_output_bytes`` grows by less than 20
payloads, and no HSCAN runs): matching reads topic names from the index, then only the payloads it
delivers. A fresh client is served afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conformance import wire
from tests.fixtures.brokers import Broker, BrokerProcess
from tests.limits.helpers import open5, redis_url, set_tenant, uid, worker_with_env
from tidemq.store import keys

pytestmark = pytest.mark.redis

COUNT = 2000
SIZE = 64 * 1024
LIMIT = 10
WINDOW = 32  # QoS 1 PUBLISHes in flight: the worker's default receive maximum


@pytest.fixture
def worker(tmp_path: Path, redis_server: Any) -> Iterator[tuple[BrokerProcess, Broker]]:
    with worker_with_env(tmp_path, redis_url(redis_server), {}) as w:
        yield w


def payload(i: int) -> bytes:
    head = b"retained %05d " % i
    return head + bytes([i % 251]) * (SIZE - len(head))


def redis_out(r: redis.Redis) -> tuple[int, int]:
    """Bytes Redis has sent to all its clients, and how many HSCANs it has run."""
    stats = r.info("stats")
    hscan = r.info("commandstats").get("cmdstat_hscan", {}).get("calls", 0)
    return int(stats["total_net_output_bytes"]), int(hscan)


async def test_wildcard_subscribe_reads_no_more_payloads_than_it_delivers(
        worker: tuple[BrokerProcess, Broker], redis_server: Any) -> None:
    _, broker = worker
    r = redis.Redis.from_url(redis_url(redis_server))
    tenant = f"t{uid()}"
    set_tenant(r, tenant, RetainMessageMatchLimit=LIMIT)

    attacker = await open5(broker, f"a{uid()}", username=f"{tenant}/attacker")
    for start in range(0, COUNT, WINDOW):
        batch = range(start, min(start + WINDOW, COUNT))
        for i in batch:
            pid = attacker.next_pid()
            await attacker.send(wire.publish(f"flood/{i % 40}/{i}", payload(i), qos=1, pid=pid, retain=True,
                                             version=5))
        for _ in batch:
            ack = await attacker._until(wire.PUBACK)
            assert len(ack.body) <= 2 or ack.body[2] in (0x00, 0x10), ack  # 0x10: no subscribers yet
    assert r.hlen(keys.retain(tenant)) == COUNT

    victim = await open5(broker, f"v{uid()}", username=f"{tenant}/victim")
    out_before, hscan_before = redis_out(r)
    assert await victim.subscribe(("#", 1)) == [1]
    got = await victim.until_sentinel(attacker, "sentinel/not-retained")
    out_after, hscan_after = redis_out(r)

    assert len(got) == LIMIT and all(m.retain and len(m.payload) == SIZE for m in got)
    assert len({m.topic for m in got}) == LIMIT
    assert all(m.payload == payload(int(m.topic.rsplit("/", 1)[1])) for m in got)
    assert hscan_after == hscan_before
    # the 10 delivered payloads, the sentinel, INFO replies and the worker's heartbeats fit well below this;
    # reading every retained payload would be 2,000 x 64 KiB = 125 MiB
    assert out_after - out_before < 20 * SIZE, out_after - out_before

    # a second wildcard subscriber of a narrower filter is bounded the same way
    assert await victim.subscribe(("flood/7/+", 0)) == [0]
    narrower = await victim.until_sentinel(attacker, "sentinel/not-retained")
    assert len(narrower) == LIMIT and all(m.topic.startswith("flood/7/") for m in narrower)

    await victim.close()
    await attacker.close()
    fresh = await open5(broker, f"fresh{uid()}", username=f"t{uid()}/fresh")
    assert await fresh.subscribe((f"fresh/{uid()}", 1)) == [1]
    await fresh.close()
    r.close()
