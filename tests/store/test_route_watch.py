"""Route watch (tidemq/store/route_watch.py) on a real single Redis: what makes skipping the route-version read safe.

- a route write (``TenantOps.apply``) returns only after every watcher dropped the tenant (acknowledged), and a
  watcher that does not answer holds the writer until its lease ended on the Redis clock;
- a version read that overlapped a route change never marks the tenant fresh;
- a lost pub/sub connection drops all trust and every fresh tenant, and trust comes back by itself;
- a worker whose routes are fresh routes publishes without a single ``GET`` (the point of it all), and
  route changes reach its cache as deltas (no reload of the tenant's table), equal to Redis after each.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tidemq.publish import RouteCache
from tidemq.store import keys, route_watch
from tidemq.store.connection import close_redis, open_redis
from tidemq.store.indexes import TenantOps, route_value
from tidemq.store.models import SubOpts
from tidemq.store.route_watch import RouteWatch
from tidemq.store.subscriptions import load_routes

TENANT = "rw-tenant"
Watches = Callable[..., Awaitable[RouteWatch]]  # the fixture: start a watch on a client of its own


@pytest.fixture
def store_url(redis_server: Any) -> str:  # this protocol exists on a single Redis only
    from tests.fixtures.redis_servers import flush_port

    flush_port(redis_server.port)
    return f"redis://127.0.0.1:{redis_server.port}/0"


@pytest.fixture
async def watches(store_url: str) -> AsyncIterator[Watches]:
    """Start a watch on a store client of its own (as each process has): its ``r`` writes as that node."""
    tasks: list[asyncio.Task[None]] = []
    clients: list[Any] = []

    async def make(node_id: str, *, member: bool = True) -> RouteWatch:
        client = await open_redis(store_url)
        clients.append(client)
        w = RouteWatch(client, node_id, member=member)
        tasks.append(asyncio.get_running_loop().create_task(w.run()))
        return w

    yield make
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(BaseException):
            await t
    for client in clients:
        await close_redis(client)


async def until(cond: Callable[[], bool], *ws: RouteWatch) -> None:
    """Wait until ``cond()`` holds, re-checking whenever one of ``ws`` changes its trust."""
    async with asyncio.timeout(10):
        while not cond():
            for w in ws:
                w.trust_changed.clear()
            await asyncio.wait([asyncio.ensure_future(w.trust_changed.wait()) for w in ws],
                               return_when=asyncio.FIRST_COMPLETED)


async def redis_ms(r: Any) -> int:
    sec, usec = await r.time()
    return int(sec) * 1000 + int(usec) // 1000


async def put_route(w: RouteWatch, client: str, topic_filter: str = "a/b") -> TenantOps:
    """A route written by ``w``'s process: ``apply`` returns once every watcher acknowledged."""
    ops = TenantOps(TENANT)
    ops.route_put(client, topic_filter, route_value("w1", False, SubOpts(qos=1).encode(), f"{client}-gen"))
    await ops.apply(w.r)
    return ops


async def test_settle_returns_once_every_watcher_dropped_the_tenant(
    r: Any, watches: Watches
) -> None:
    a, b = await watches("w-a"), await watches("w-b")
    await until(lambda: a.trusted() and b.trusted(), a, b)
    b.confirm([TENANT], b.token())
    assert TENANT in b.fresh

    ops = await put_route(a, "c1")
    assert ops.notice is not None and set(ops.notice.watchers) == {"w-a", "w-b"}
    assert TENANT not in b.fresh  # b dropped it before a may acknowledge its client
    assert TENANT not in a.fresh


async def test_a_watcher_that_never_answers_holds_the_writer_until_its_lease_ended(
    r: Any, watches: Watches
) -> None:
    a = await watches("w-a")
    await until(a.trusted, a)
    ghost_end = await route_watch._LEASE(r, [keys.route_watchers()], ["ghost", 600, ""])
    ops = await put_route(a, "c2")
    assert ops.notice is not None and ops.notice.watchers["ghost"] == ghost_end
    assert await redis_ms(r) >= ghost_end  # its trust (shorter than its lease) is over


async def test_an_expired_watcher_is_not_waited_for_and_is_removed(r: Any, watches: Watches) -> None:
    a = await watches("w-a")
    await until(a.trusted, a)
    await r.hset(keys.route_watchers(), "gone", await redis_ms(r) - 1)
    ops = await put_route(a, "c3")
    assert ops.notice is not None and "gone" not in ops.notice.watchers
    assert not await r.hexists(keys.route_watchers(), "gone")


async def test_a_version_read_overlapping_a_change_does_not_make_the_tenant_fresh(
    r: Any, watches: Watches
) -> None:
    a, b = await watches("w-a"), await watches("w-b")
    await until(lambda: a.trusted() and b.trusted(), a, b)
    token = b.token()  # b starts a version read ...
    await put_route(a, "c4")  # ... a route changes meanwhile ...
    b.confirm([TENANT], token)  # ... and the read's answer comes in
    assert TENANT not in b.fresh
    b.confirm([TENANT], b.token())  # a read after the change
    assert TENANT in b.fresh


async def test_a_lost_connection_drops_all_trust_until_resubscribed(
    r: Any, watches: Watches
) -> None:
    b = await watches("w-b")
    await until(b.trusted, b)
    b.confirm([TENANT], b.token())
    await r.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    await until(lambda: not b.trusted(), b)
    assert not b.fresh
    await until(b.trusted, b)  # back by itself; fresh only after a new version read
    assert not b.fresh


async def test_a_non_member_is_never_trusted_and_holds_no_lease(r: Any, watches: Watches) -> None:
    api = await watches("api-1", member=False)
    await asyncio.wait_for(api.ready.wait(), 10)
    assert not api.trusted()
    assert not await r.hexists(keys.route_watchers(), "api-1")


async def test_close_ends_the_lease(r: Any, watches: Watches) -> None:
    a = await watches("w-a")
    await until(a.trusted, a)
    assert await r.hexists(keys.route_watchers(), "w-a")
    await a.close()
    assert not a.trusted()
    assert not await r.hexists(keys.route_watchers(), "w-a")


async def test_fresh_routes_need_no_version_read(r: Any, watches: Watches, store_url: str) -> None:
    a = await watches("w-a")
    await until(a.trusted, a)
    await put_route(a, "c5")
    cache = RouteCache(watch=a)
    await cache.refresh(r, [TENANT])  # first: read and loaded
    assert TENANT in a.fresh
    probe = await open_redis(store_url)
    try:
        await probe.config_resetstat()
        for _ in range(20):
            await cache.refresh(r, [TENANT])
        stats = await probe.info("commandstats")
        assert "cmdstat_get" not in stats and "cmdstat_hgetall" not in stats, stats
        assert [rt.client_id for rt in cache.match(TENANT, "a/b")] == ["c5"]

        await put_route(a, "c6")  # a change: applied from its message, nothing read
        await cache.refresh(r, [TENANT])
        stats = await probe.info("commandstats")
        assert "cmdstat_get" not in stats, stats
        assert sorted(rt.client_id for rt in cache.match(TENANT, "a/b")) == ["c5", "c6"]
    finally:
        await close_redis(probe)


def _snapshot(routes: Any) -> set[tuple[str, str, int, str]]:
    return {(rt.client_id, rt.topic_filter, rt.qos, rt.gen) for rt in routes}


async def test_random_changes_keep_the_cache_equal_to_redis_without_reloads(
    r: Any, watches: Watches, store_url: str
) -> None:
    a = await watches("w-a")
    await until(a.trusted, a)
    cache = RouteCache(watch=a)
    await put_route(a, "seed")
    await cache.refresh(r, [TENANT])
    rnd = random.Random(7)
    probe = await open_redis(store_url)
    try:
        await probe.config_resetstat()
        for step in range(150):
            ops = TenantOps(TENANT)
            for _ in range(rnd.randint(1, 4)):
                client, topic_filter = f"c{rnd.randint(0, 5)}", rnd.choice(["a/b", "a/+", "#", "$share/g/a/b"])
                if rnd.random() < 0.6:
                    ops.route_put(client, topic_filter,
                                  route_value("w1", False, SubOpts(qos=rnd.randint(0, 2)).encode(), f"g{step}"))
                else:
                    ops.route_drop(client, topic_filter, "")
            await ops.apply(a.r)
            await cache.refresh(r, [TENANT])
            _version, stored = await load_routes(r, TENANT)
            assert _snapshot(cache.tenants[TENANT].trie.routes()) == _snapshot(stored), f"step {step}"
        stats = await probe.info("commandstats")
        # the test's own 150 snapshots only: no version read or reload by the cache, every change came as a delta
        assert stats["cmdstat_get"]["calls"] == 150
    finally:
        await close_redis(probe)


async def test_a_cache_that_missed_a_version_reads_the_tenant_again(
    r: Any, watches: Watches
) -> None:
    a = await watches("w-a")
    await until(a.trusted, a)
    cache = RouteCache(watch=a)
    await put_route(a, "c7")
    await cache.refresh(r, [TENANT])
    cache.tenants[TENANT].version -= 1  # as if a change had been missed
    await put_route(a, "c8")
    assert TENANT not in a.fresh
    await cache.refresh(r, [TENANT])
    assert sorted(rt.client_id for rt in cache.match(TENANT, "a/b")) == ["c7", "c8"]
    assert TENANT in a.fresh


async def test_a_version_repeated_after_a_flush_is_not_taken_for_acknowledged(r: Any, watches: Watches) -> None:
    """Acknowledgements name the change (version and Redis clock), not the version alone: after a FLUSHALL
    (or a restart without persistence) versions start again at 1, and an acknowledgement of the old version 1
    must not let a writer skip a watcher for the new one."""
    a, b = await watches("w-a"), await watches("w-b")
    await until(lambda: a.trusted() and b.trusted(), a, b)
    first = await put_route(a, "c9")  # version 1, acknowledged by w-a and w-b
    assert first.notice is not None and first.notice.version == 1 and set(first.notice.watchers) == {"w-a", "w-b"}
    await b.close()  # w-b stops answering ...
    await r.flushall()
    # ... but a watcher of that name holds a lease again (as a worker restarted under the same id would)
    end = await route_watch._LEASE(r, [keys.route_watchers()], ["w-b", 600, ""])
    again = await put_route(a, "c9")
    assert again.notice is not None and again.notice.version == 1 and "w-b" in again.notice.watchers
    assert await redis_ms(r) >= end  # the writer waited for w-b's lease, not for a stale acknowledgement


async def test_after_a_flush_the_cache_is_read_again_even_when_versions_meet(r: Any, watches: Watches) -> None:
    """Versions start again after a FLUSHALL: a replica at version 2 (old routes) must not pass for current when
    the new routes reach version 2 too."""
    a = await watches("w-a")
    await until(a.trusted, a)
    cache = RouteCache(watch=a)
    await put_route(a, "c10")
    await cache.refresh(a.r, [TENANT])
    await put_route(a, "c11")  # applied as a delta: the replica is at version 2
    assert cache.tenants[TENANT].version == 2
    await r.flushall()
    await until(a.trusted, a)
    await put_route(a, "c12")
    await put_route(a, "c13")  # version 2 again, other routes
    await cache.refresh(a.r, [TENANT])
    assert sorted(rt.client_id for rt in cache.match(TENANT, "a/b")) == ["c12", "c13"]
