"""Cluster-wide TotalConnections / TotalConnectPerSecond leases (tidemq.store.tenant_limits), on every backend.

The leases never hand out places past the limit, whatever the interleaving of workers; a worker's share stops
counting once its TTL ran out without a renewal (a dead worker needs no reaper); the connect-rate count is per
second of the Redis clock and counts CONNECTs admitted without a place whatever the limit.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tidemq.store import keys
from tidemq.store.tenant_limits import ConnsRequest, conns_sync, conns_total, rate_lease

T = "tl-tenant"
TTL = 6000


def now_ms() -> int:
    return int(time.time() * 1000)


async def lease(r: Any, worker: str, held: int, want: int, limit: int, ttl: int = TTL) -> tuple[int, int, int]:
    (a,) = await conns_sync(r, worker, [ConnsRequest(T, held, want, limit)], ttl_ms=ttl)
    return a.granted, a.others, a.workers


async def test_connection_places_are_shared_up_to_the_limit(r: Any) -> None:
    assert await lease(r, "w1", 0, 6, 10) == (6, 0, 1)
    assert await lease(r, "w2", 1, 6, 10) == (3, 6, 2)  # w2 holds 1 connection already: 10 - 6 - 1
    assert await lease(r, "w3", 0, 1, 10) == (0, 10, 3)  # nothing granted, nothing held: no field
    assert await conns_total(r, T, now_ms=now_ms()) == 10
    assert await lease(r, "w1", 2, 0, 10) == (0, 4, 2)  # w1 trims its share to the 2 it uses
    assert await lease(r, "w3", 0, 5, 10) == (4, 6, 3)
    assert await lease(r, "w3", 0, 0, 10) == (0, 6, 3)  # held 0: the field goes
    assert await r.hexists(keys.tenant_connections(T), "w3") == 0
    assert await lease(r, "w2", 4, 0, 10) == (0, 2, 2)  # a share may exceed the limit (connections exist)


async def test_concurrent_leases_never_pass_the_limit(r: Any) -> None:
    answers = await asyncio.gather(*(lease(r, f"w{i}", 0, 2, 13) for i in range(20)))
    assert sum(g for g, _, _ in answers) == 13
    assert await conns_total(r, T, now_ms=now_ms()) == 13


async def test_a_share_not_renewed_stops_counting(r: Any) -> None:
    assert (await lease(r, "dead", 0, 5, 5, ttl=50))[0] == 5
    assert (await lease(r, "live", 0, 5, 5))[0] == 0
    deadline = time.monotonic() + 5
    while await conns_total(r, T, now_ms=now_ms()) != 0:  # no event: the Redis clock passes the share's TTL
        assert time.monotonic() < deadline, "the dead worker's share still counts"
        await asyncio.sleep(0.02)
    assert await lease(r, "live", 0, 5, 5) == (5, 0, 1)
    assert await r.hexists(keys.tenant_connections(T), "dead") == 0  # removed by the live worker's call


async def start_of_a_second(r: Any) -> None:
    """Wait for a fresh second of the Redis clock, so the test's calls fall in one second."""
    answer = await rate_lease(r, "other-tenant", want=0, limit=1, taken=0)
    if answer.ms_left < 700:
        await asyncio.sleep(answer.ms_left / 1000 + 0.005)


async def test_connect_rate_places_per_second(r: Any) -> None:
    await start_of_a_second(r)
    a = await rate_lease(r, T, want=3, limit=5, taken=0)
    assert (a.granted, a.count) == (3, 3) and 0 < a.ms_left <= 1000
    b = await rate_lease(r, T, want=3, limit=5, taken=0)
    assert (b.granted, b.count) == (2, 5)
    c = await rate_lease(r, T, want=3, limit=5, taken=1)  # admitted without a place: counted anyway
    assert (c.granted, c.count) == (0, 6)
    await asyncio.sleep(c.ms_left / 1000 + 0.005)  # the next second of the Redis clock starts from zero
    d = await rate_lease(r, T, want=3, limit=5, taken=0)
    assert (d.granted, d.count) == (3, 3)


async def test_concurrent_rate_leases_never_pass_the_limit(r: Any) -> None:
    await start_of_a_second(r)
    answers = await asyncio.gather(*(rate_lease(r, T, want=2, limit=9, taken=0) for _ in range(15)))
    assert sum(a.granted for a in answers) == 9
    assert max(a.count for a in answers) == 9
