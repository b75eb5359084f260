"""Tenant limits across workers: two real worker processes on one real Redis, clients over real sockets.

``TotalConnections`` and ``TotalConnectPerSecond`` count the tenant's CONNECTs on every worker (leased places
in Redis, tidemq/store/tenant_limits.py); ``MaxSharedGroupMembers`` is decided in Redis with the write of the
shared route, so clients joining one group on two workers at the same moment cannot both take the last place.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis

from tests.fixtures.brokers import Broker
from tests.limits.helpers import attach_log, open5, redis_url, set_tenant, uid, until_async, worker_with_env
from tests.mqtt5.v5wire import V5
from tidemq.store import keys, load_routes
from tidemq.store.connection import close_redis, open_redis

pytestmark = pytest.mark.redis

QUOTA_EXCEEDED, RATE_EXCEEDED = 0x97, 0x9F


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, redis_server: Any) -> Iterator[list[Any]]:
    """Two workers on the session's Redis (module-wide; every test has its own tenant)."""
    env = {"TIDEMQ_TENANT_SETTINGS_TTL": "0.2"}
    with worker_with_env(tmp_path_factory.mktemp("cl1"), redis_url(redis_server), env) as one, \
            worker_with_env(tmp_path_factory.mktemp("cl2"), redis_url(redis_server), env) as two:
        yield [one, two]


@pytest.fixture
def workers(request: pytest.FixtureRequest, pair: list[Any]) -> list[Broker]:
    for proc, _ in pair:
        if not proc.alive:
            proc.start()
        attach_log(request, proc)
    return [b for _, b in pair]


@pytest.fixture
def tenant(redis_server: Any) -> str:
    return f"cl{uid()}"


@pytest.fixture
def settings(redis_server: Any, tenant: str) -> Iterator[Callable[..., None]]:
    client = redis.Redis.from_url(redis_url(redis_server))
    yield lambda **values: set_tenant(client, tenant, **values)
    client.close()


@pytest.fixture
async def opened(workers: list[Broker], tenant: str) -> AsyncIterator[Callable[..., Any]]:
    """``await opened(i)`` -> (client or None, CONNACK reason) of a new v5 client of the tenant on worker i."""
    made: list[V5] = []

    async def attempt(i: int) -> tuple[V5 | None, int]:
        try:
            c = await open5(workers[i], f"c{uid()}", username=f"{tenant}/u")
        except AssertionError as exc:  # refused: open5 closed it and says why
            return None, int(str(exc).split("CONNACK reason ")[1].split(",")[0], 16)
        made.append(c)
        return c, 0

    yield attempt
    for c in made:
        await c.close()


async def test_total_connections_are_the_tenants_on_every_worker(workers, settings, opened) -> None:
    settings(TotalConnections=4)
    first = [await opened(0), await opened(1), await opened(0), await opened(1)]
    assert [code for _, code in first] == [0, 0, 0, 0]
    assert (await opened(0))[1] == QUOTA_EXCEEDED and (await opened(1))[1] == QUOTA_EXCEEDED
    gone = first[0][0]
    assert gone is not None
    await gone.bye()  # its place is free again: first on its own worker, on the other one after a sync

    async def admitted_on_the_other_worker() -> bool:
        c, code = await opened(1)
        if c is not None:
            return True
        assert code == QUOTA_EXCEEDED
        return False

    await until_async(admitted_on_the_other_worker, 10.0, "the freed place reaching the other worker")
    assert (await opened(0))[1] == QUOTA_EXCEEDED


async def test_a_burst_on_two_workers_stays_within_the_limit(workers, settings, opened) -> None:
    settings(TotalConnections=10)
    results = await asyncio.gather(*(opened(i % 2) for i in range(30)))
    admitted = sum(1 for c, _ in results if c is not None)
    assert {code for _, code in results} <= {0, QUOTA_EXCEEDED}
    assert 10 <= admitted <= 10 + len(workers), admitted  # docs/settings.md: at most one per worker beyond


async def redis_second_start(redis_server: Any) -> None:
    """Wait until the Redis clock starts a new second (the burst below then falls in one second)."""
    client = redis.Redis.from_url(redis_url(redis_server))
    try:
        _, micros = client.time()
    finally:
        client.close()
    await asyncio.sleep((1_000_000 - micros) / 1e6 + 0.005)


async def test_connect_rate_is_the_tenants_on_every_worker(workers, settings, opened, redis_server) -> None:
    settings(TotalConnectPerSecond=4)
    await redis_second_start(redis_server)
    started = time.monotonic()
    results = await asyncio.gather(*(opened(i % 2) for i in range(10)))
    took = time.monotonic() - started
    admitted = sum(1 for c, _ in results if c is not None)
    assert {code for _, code in results} <= {0, RATE_EXCEEDED}
    if took < 0.9:  # one second of the Redis clock (a slow machine may spread the burst over two)
        assert 4 <= admitted <= 4 + len(workers), admitted
    else:
        assert 4 <= admitted <= 2 * (4 + len(workers)), admitted
    await redis_second_start(redis_server)  # a new second: places again
    assert (await opened(1))[1] == 0


async def test_two_workers_joining_one_group_at_once(workers, tenant, settings, redis_server) -> None:
    settings(MaxSharedGroupMembers=3)
    clients = [await open5(workers[i % 2], f"g{i}-{uid()}", username=f"{tenant}/u") for i in range(8)]
    try:
        codes = await asyncio.gather(*(c.subscribe(("$share/grp/cl/t", 1)) for c in clients))
        joined = [c for c, code in zip(clients, codes, strict=True) if code == [1]]
        assert len(joined) == 3 and sorted(code for (code,) in codes) == [1] * 3 + [QUOTA_EXCEEDED] * 5
        r = await open_redis(redis_url(redis_server))
        try:
            _, routes = await load_routes(r, tenant)
            assert len([x for x in routes if x.topic_filter == "$share/grp/cl/t"]) == 3
            assert await r.hget(keys.shared_members(tenant), "$share/grp/cl/t") == b"3"
        finally:
            await close_redis(r)
        await joined[0].bye()  # a transient member leaves: its route (and its place) goes with its session
        late = next(c for c in clients if c not in joined)

        async def joins() -> bool:
            return await late.subscribe(("$share/grp/cl/t", 1)) == [1]

        await until_async(joins, 10.0, "a place freed by a member that left")
    finally:
        for c in clients:
            await c.close()
