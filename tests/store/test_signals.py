"""Signals: publish to a worker's channel, listen on one's own (sharded pub/sub on a cluster)."""

from __future__ import annotations

import asyncio
from typing import Any

from tidemq.store import SignalListener, listen, publish_signal, publish_signals_many


async def test_publish_and_receive(r: Any) -> None:
    listener = await SignalListener(r, "w1").open()
    other = await SignalListener(r, "w2").open()
    try:
        assert await publish_signal(r, "w1", b"\x00first\xff") == 1
        await publish_signals_many(r, [("w1", b"second"), ("w2", b"for-w2"), ("w1", b"third"), ("w9", b"lost")])
        await publish_signals_many(r, [])
        async with asyncio.timeout(5):
            assert [await listener.get() for _ in range(3)] == [b"\x00first\xff", b"second", b"third"]
            assert await other.get() == b"for-w2"
    finally:
        await listener.close()
        await other.close()
    assert await publish_signal(r, "nobody", b"x") == 0


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
            assert await publish_signal(r, "wg", b"hello") == 1
            await publish_signal(r, "wg", b"again")
            await done.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await gen.aclose()
    assert received == [b"hello", b"again"]
