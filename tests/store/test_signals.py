"""Signals: send to a worker, read one's own (a stream per worker on Redis, pub/sub on the embedded store);
a reader whose Redis connection is killed mid-stream loses nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tidemq.store import SignalListener, listen, publish_signal, publish_signals_many


async def test_publish_and_receive(r: Any) -> None:
    listener = await SignalListener(r, "w1").open()
    other = await SignalListener(r, "w2").open()
    try:
        assert await publish_signal(r, "w1", b"\x00first\xff") >= 1
        await publish_signals_many(r, [("w1", b"second"), ("w2", b"for-w2"), ("w1", b"third"), ("w9", b"lost")])
        await publish_signals_many(r, [])
        async with asyncio.timeout(5):
            assert [await listener.get() for _ in range(3)] == [b"\x00first\xff", b"second", b"third"]
            assert await other.get() == b"for-w2"
    finally:
        await listener.close()
        await other.close()
    assert await publish_signal(r, "nobody", b"x") in (0, 1)  # pub/sub: nobody listens; stream: queued


async def test_listen_generator(r: Any) -> None:
    received: list[bytes] = []
    done = asyncio.Event()
    ready = asyncio.Event()
    gen = listen(r, "wg", ready=ready)

    async def consume() -> None:
        async for payload in gen:
            received.append(payload)
            if len(received) == 2:
                done.set()
                return

    task = asyncio.create_task(consume())
    try:
        async with asyncio.timeout(5):
            await ready.wait()
            assert await publish_signal(r, "wg", b"hello") >= 1
            await publish_signal(r, "wg", b"again")
            await done.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await gen.aclose()
    assert received == [b"hello", b"again"]


async def test_reader_killed_mid_stream_loses_nothing(r: Any) -> None:
    if type(r).__module__.startswith("fakeredis") or "Cluster" in type(r).__name__:
        pytest.skip("CLIENT KILL of one node's connections: the single-node case")
    listener = await SignalListener(r, "wk").open()
    got: list[bytes] = []
    try:
        async with asyncio.timeout(20):
            for n in range(300):
                await publish_signal(r, "wk", b"%d" % n)
                if n % 50 == 25:
                    await r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
                if n % 7 == 0:
                    while len(got) < n // 2:
                        got.append(await listener.get())
            while len(got) < 300:
                got.append(await listener.get())
    finally:
        await listener.close()
    assert got == [b"%d" % n for n in range(300)]
