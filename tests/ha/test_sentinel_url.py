"""``redis+sentinel://`` URLs: parsing, refusals with a one-line reason, and a client that follows a failover.

The failover test uses the store API directly (no broker): a client opened on the Sentinel URL writes,
``SENTINEL FAILOVER`` promotes the replica, and the same client writes and reads on the new primary,
Lua scripts included (reloaded on NOSCRIPT), while a signal reader blocked in XREAD goes on reading.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest
from redis.exceptions import RedisError

from tests.ha.conftest import SentinelDeployment
from tidemq.store import SignalListener, close_redis, is_cluster, open_redis, publish_signal
from tidemq.store.connection import MASTER_CHECK_INTERVAL, SENTINEL_PORT, parse_sentinel_url


def test_parse_full_url() -> None:
    u = parse_sentinel_url("redis+sentinel://app:s%40cret@s1:26380,s2,[::1]:26381/my-master/3"
                           "?sentinel_password=sp&sentinel_username=su&socket_timeout=7.5")
    assert u.sentinels == [("s1", 26380), ("s2", SENTINEL_PORT), ("::1", 26381)]
    assert (u.master, u.db, u.username, u.password) == ("my-master", 3, "app", "s@cret")
    assert (u.sentinel_username, u.sentinel_password, u.socket_timeout, u.ssl) == ("su", "sp", 7.5, False)


def test_parse_minimal_url() -> None:
    u = parse_sentinel_url("rediss+sentinel://:pw@h1:1/m")
    assert (u.sentinels, u.master, u.db, u.username, u.password, u.ssl) == ([("h1", 1)], "m", 0, None, "pw", True)
    assert u.socket_timeout is None


@pytest.mark.parametrize(("url", "reason"), [
    ("redis+sentinel:///m", "at least one sentinel"),
    ("redis+sentinel://h1:26379", "master-name"),
    ("redis+sentinel://h1:26379/m/x", "bad db"),
    ("redis+sentinel://h1:26379/m/0/extra", "master-name"),
    ("redis+sentinel://h1:port/m", "bad port"),
    ("redis+sentinel://h1:0/m", "bad port"),
    ("redis+sentinel://h1,:5/m", "empty host"),
    ("redis+sentinel://h1/m?socket_timeout=-1", "positive"),
    ("redis+sentinel://h1/m?socket_timeout=soon", "socket_timeout"),
    ("redis+sentinel://h1/m?sentinel_pasword=x", "unknown options"),
])
async def test_bad_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        await open_redis(url)


@pytest.mark.redis
async def test_client_follows_a_failover(sentinel_deployment: Callable[..., SentinelDeployment]) -> None:
    from tidemq.store.scripts import load_all

    dep = sentinel_deployment(replicas=1)
    r = await open_redis(dep.url)
    listener = None
    reading: asyncio.Task[bytes] | None = None
    try:
        assert not is_cluster(r)
        await load_all(r)
        await r.set("before", b"1")
        assert await r.wait(1, 2000) == 1  # on the replica before the failover
        listener = await SignalListener(r, "wf").open()
        await publish_signal(r, "wf", b"s1")
        async with asyncio.timeout(5):
            assert await listener.get() == b"s1"
        reading = asyncio.create_task(listener.get())  # blocked in XREAD across the failover
        await asyncio.gather(*(r.ping() for _ in range(4)))  # idle pooled connections to the old primary
        old = dep.primary.port
        await asyncio.to_thread(dep.failover)
        new = await asyncio.to_thread(dep.failed_over, old, replicas=0)  # named, not yet resynced
        assert new == dep.replicas[0].port
        # a pooled connection to the demoted primary (it takes writes until it is made a replica, ~10 s
        # later, and loses them then) is dropped within MASTER_CHECK_INTERVAL of the switch
        loop = asyncio.get_running_loop()
        switched = loop.time()
        fresh = dep.replicas[0].client()
        try:
            async with asyncio.timeout(15):
                i = 0
                while True:
                    i += 1
                    with contextlib.suppress(RedisError):  # READONLY or a killed connection: a retry goes on
                        await r.set(f"after{i}", b"2")
                    if await asyncio.to_thread(fresh.get, f"after{i}") == "2":
                        break
                    await asyncio.sleep(0.05)  # pacing of a client writing on through the switch
            assert loop.time() - switched < MASTER_CHECK_INTERVAL + 2.0
            await publish_signal(r, "wf", b"s2")
            async with asyncio.timeout(10):
                assert await reading == b"s2"  # the reader left the old primary and read on from its last id
            assert await r.get("before") == b"1"
            await asyncio.to_thread(dep.failed_over, old, replicas=1)  # the old primary now replicates the new
            assert fresh.get(f"after{i}") == "2"
        finally:
            fresh.close()
    finally:
        if reading is not None and not reading.done():
            reading.cancel()
        if listener is not None:
            await listener.close()
        await close_redis(r)
