"""TIDEMQ_REDIS_WAIT_REPLICAS: persistent deliveries are acknowledged only once Redis replicas have them.

A primary and one replica of our own (free ports, stopped by the fixture): with ``wait=(1, ...)`` the
appends succeed once the replica confirms; asking for more replicas than exist raises
``ReplicationTimeout`` (the caller refuses the publish instead of acknowledging it) — and the entries
are on the primary all the same (nothing is lost, the publisher may resend).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.fixtures.redis_servers import _command, _require, _start_node, _stop, _wait
from tidemq.store import InboxAppend, InboxTarget, inbox_append_many, inbox_read
from tidemq.store.inbox import ReplicationTimeout
from tidemq.store.scripts import load_all
from tidemq.store.sessions import session_connect

pytestmark = pytest.mark.redis

T = "waitt"


@pytest.fixture(scope="module")
def primary_with_replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    binary = _require("redis-server")
    workdir: Path = tmp_path_factory.mktemp("repl")
    port, primary = _start_node(binary, workdir)
    rport, replica = _start_node(binary, workdir, "--replicaof", "127.0.0.1", str(port))
    try:
        assert _wait(lambda: b"state=online" in _command(port, "INFO", "replication"), 15.0)
        yield port
    finally:
        _stop(replica)
        _stop(primary)
        assert rport


@pytest.fixture
async def r(primary_with_replica: int) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(port=primary_with_replica)
    await load_all(client)
    try:
        yield client
    finally:
        await client.aclose()


async def _session(r: aioredis.Redis, c: str) -> None:
    await session_connect(r, T, c, user="u", ver=5, clean_start=True, persistent=True, expiry=60, worker="w1",
                          address="", client_type="MQTT", now_ms=1)


async def test_appends_wait_for_the_replica(r: aioredis.Redis) -> None:
    await _session(r, "c1")
    res = await inbox_append_many(r, [InboxAppend(T, b"m1", [InboxTarget("c1", 1)], 10, False)], wait=(1, 2000))
    assert res[0].queued == 1


async def test_too_few_replicas_refuse_but_keep_the_entry(r: aioredis.Redis) -> None:
    await _session(r, "c2")
    with pytest.raises(ReplicationTimeout):
        await inbox_append_many(r, [InboxAppend(T, b"m2", [InboxTarget("c2", 1)], 10, False)], wait=(2, 50))
    assert [e.blob for e in await inbox_read(r, T, "c2")] == [b"m2"]
