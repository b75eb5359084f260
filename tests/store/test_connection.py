"""Store URLs: schemes, and memory:// stores isolated by name."""

from __future__ import annotations

import pytest

from tidemq.store import close_redis, is_cluster, open_redis


async def test_memory_stores_are_shared_by_name_and_isolated_across_names() -> None:
    a1 = await open_redis("memory://iso-a")
    a2 = await open_redis("memory://iso-a")
    b = await open_redis("memory://iso-b")
    try:
        await a1.set("k", b"v")
        assert await a2.get("k") == b"v"
        assert await b.get("k") is None
        assert not is_cluster(a1)
    finally:
        for client in (a1, a2, b):
            await close_redis(client)


async def test_bad_urls() -> None:
    with pytest.raises(ValueError, match="scheme"):
        await open_redis("http://localhost")
    with pytest.raises(ValueError, match="host"):
        await open_redis("redis+cluster://")


async def test_single_node_url(redis_server) -> None:
    client = await open_redis(redis_server.url)
    try:
        assert await client.ping()
        assert not is_cluster(client)
    finally:
        await close_redis(client)
