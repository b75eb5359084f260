"""The signal reader after a failover to a replica that lagged: the stream went back, nothing new is skipped.

The failover is simulated on one real Redis with explicit stream ids: the reader has read ``100-0``,
``200-0`` and ``300-0``; the stream is then replaced by what a lagging replica would hold (``100-0``,
``200-0``) plus entries the new primary wrote with a clock behind the old one (``250-0``, ``260-0``),
ids a plain ``XREAD`` from ``300-0`` would never return. The reader finds the tail behind its last id
(after an idle read, or after a failed one), takes the two new entries and not the replayed ones, and
reads on from there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.fixtures.redis_servers import RedisServer, flush_port
from tidemq.store import keys, signals
from tidemq.store.connection import close_redis, open_redis
from tidemq.store.signals import FIELD, SignalListener

pytestmark = pytest.mark.redis


@pytest.fixture
async def r(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    monkeypatch.setattr(signals, "BLOCK_MS", 200)  # idle reads (and so tail checks) every 0.2 s
    flush_port(redis_server.port)
    client = await open_redis(redis_server.url)
    try:
        yield client
    finally:
        await close_redis(client)


async def _add(r: Any, key: str, *entries: tuple[str, bytes]) -> None:
    for entry_id, payload in entries:
        await r.xadd(key, {FIELD: payload}, id=entry_id)


@pytest.mark.parametrize("how", ["idle", "connection-killed"])
async def test_reader_takes_entries_written_below_its_last_id_after_a_failover(r: Any, how: str) -> None:
    listener = await SignalListener(r, f"rw-{how}").open()
    key = keys.worker_stream(f"rw-{how}")
    try:
        await _add(r, key, ("100-0", b"a"), ("200-0", b"b"), ("300-0", b"c"))
        async with asyncio.timeout(5):
            assert [await listener.get() for _ in range(3)] == [b"a", b"b", b"c"]
        reading = asyncio.create_task(listener.get())
        await r.delete(key)  # the new primary: what had replicated, then its own writes with lower ids
        await _add(r, key, ("100-0", b"a"), ("200-0", b"b"), ("250-0", b"d"), ("260-0", b"e"))
        if how == "connection-killed":
            await r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        async with asyncio.timeout(10):
            got = [await reading, await listener.get()]
            await _add(r, key, ("301-0", b"f"))
            got.append(await listener.get())
        assert got == [b"d", b"e", b"f"]
        assert listener.rewinds == 1
    finally:
        await listener.close()


async def test_reader_goes_on_when_its_stream_vanished(r: Any) -> None:
    listener = await SignalListener(r, "rw-gone").open()
    key = keys.worker_stream("rw-gone")
    try:
        await _add(r, key, ("500-0", b"x"))
        async with asyncio.timeout(5):
            assert await listener.get() == b"x"
        reading = asyncio.create_task(listener.get())
        await r.delete(key)  # expired, or never replicated before the failover
        await _add(r, key, ("7-0", b"y"))
        async with asyncio.timeout(10):
            assert await reading == b"y"
    finally:
        await listener.close()
