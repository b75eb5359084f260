"""``ClusterAdmission``: two workers' admissions sharing one tenant's limits through the embedded store.

Checks the decisions the docs promise: exact under sequential use, no round trip while a worker holds places,
freed places stay with their worker until its sync returns them, the dead worker's share runs out, and a
failing Redis leaves the decision to the worker's own count.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tidemq.worker.services import ClusterAdmission

from tidemq.clock import FakeClock
from tidemq.limits import ConnectionCounter
from tidemq.store import keys, scripts
from tidemq.store.connection import close_redis, open_redis
from tidemq.store.tenant_limits import conns_total

T = "ca-tenant"


@pytest.fixture
async def r() -> AsyncIterator[Any]:
    client = await open_redis(f"memory://cadm-{uuid.uuid4().hex[:8]}")
    await scripts.load_all(client)
    yield client
    await close_redis(client)


class Worker:
    """A worker's connection counter and its ClusterAdmission, admitting like ``Admission.admit``."""

    def __init__(self, r: Any, name: str, clock: FakeClock) -> None:
        self.counter = ConnectionCounter()
        self.cluster = ClusterAdmission(r, name, self.counter, clock)

    async def connect(self, limit: int) -> bool:
        self.counter.acquire(T)
        if await self.cluster.hold_connection(T, limit):
            return True
        self.counter.release(T)
        return False

    def disconnect(self) -> None:
        self.counter.release(T)
        self.cluster.release_connection(T)


class Counting:
    """A Redis client wrapper counting the script round trips (to prove a CONNECT made none)."""

    def __init__(self, r: Any) -> None:
        self._r = r
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        if name in ("evalsha", "pipeline"):
            self.calls += 1
        return getattr(self._r, name)


async def test_two_workers_share_the_limit_exactly(r: Any) -> None:
    clock = FakeClock()
    a, b = Worker(r, "wa", clock), Worker(r, "wb", clock)
    got = [await w.connect(5) for w in (a, b, a, b, a, b, a, b)]
    assert got == [True] * 5 + [False] * 3
    assert await conns_total(r, T, now_ms=0) == 5  # no spare places: the workers' count is not known yet
    a.disconnect()  # the place stays with a until a's sync, where the tenant is not under half: returned
    assert not await b.connect(5)
    assert await a.connect(5)  # a reuses it without asking
    a.disconnect()
    await a.cluster.sync()
    assert await b.connect(5) and not await a.connect(5)


async def test_no_round_trip_under_half_the_limit(r: Any) -> None:
    clock = FakeClock()
    counting = Counting(r)
    w = Worker(counting, "w1", clock)  # type: ignore[arg-type]
    await w.cluster.sync()  # knows how many workers live (none: counted as one)
    assert await w.connect(100)  # the first one waits for the first answer
    before = counting.calls
    assert before == 1  # the first CONNECT waited for the first lease
    for _ in range(10):
        assert await w.connect(100)  # under half: leased places or admitted now and counted behind
    assert counting.calls - before <= 2
    for task in list(w.cluster._tasks):
        await task
    await w.cluster.sync()
    assert await conns_total(r, T, now_ms=0) == 11 + w.cluster.conns[T].spare


async def test_a_failing_redis_leaves_the_worker_to_decide(r: Any) -> None:
    class Broken:
        def pipeline(self, transaction: bool = False) -> Any:
            raise ConnectionError("redis down")

        def __getattr__(self, name: str) -> Any:
            raise ConnectionError("redis down")

    w = Worker(Broken(), "w1", FakeClock())
    assert [await w.connect(2) for _ in range(3)] == [True, True, False]


async def test_close_removes_the_share(r: Any) -> None:
    w = Worker(r, "w1", FakeClock())
    assert await w.connect(3)
    assert await r.hexists(keys.tenant_connections(T), "w1")
    w.disconnect()
    await w.cluster.close()
    assert not await r.hexists(keys.tenant_connections(T), "w1")
