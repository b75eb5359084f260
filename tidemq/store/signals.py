"""Signal transport: publish bytes on a worker's channel and listen on one's own.

A single node (and fakeredis) uses PUBLISH / SUBSCRIBE; a cluster uses
sharded pub/sub (SPUBLISH / SSUBSCRIBE), so a signal travels only to the
shard owning the channel instead of being broadcast to every node. What the
bytes mean is tidemq.signals' business, not this module's. Pub/sub is
fire-and-forget: durable state is in Redis first, a signal only says "look".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from tidemq.store import keys
from tidemq.store.connection import is_cluster

SUBSCRIBE_TIMEOUT = 10.0


async def publish_signal(r: Any, worker_id: str, payload: bytes) -> int:
    """Send ``payload`` to worker ``worker_id``; returns the number of receivers Redis reports."""
    channel = keys.worker_channel(worker_id)
    if is_cluster(r):
        return int(await r.spublish(channel, payload))
    return int(await r.publish(channel, payload))


async def publish_signals_many(r: Any, signals: Sequence[tuple[str, bytes]]) -> None:
    """Send several signals in one pipelined round trip (per node on a cluster)."""
    if not signals:
        return
    pipe = r.pipeline(transaction=False)
    cluster = is_cluster(r)
    for worker_id, payload in signals:
        channel = keys.worker_channel(worker_id)
        if cluster:
            pipe.execute_command("SPUBLISH", channel, payload)
        else:
            pipe.publish(channel, payload)
    await pipe.execute()


class SignalListener:
    """The subscription of one worker to its channel.

    ``await open()`` returns once Redis confirmed the subscription (a signal
    published after that is received; it raises TimeoutError after
    SUBSCRIBE_TIMEOUT s); iterate or ``await get()`` for payloads; ``close()``.
    """

    def __init__(self, r: Any, worker_id: str) -> None:
        self._r = r
        self._cluster = is_cluster(r)
        self.channel = keys.worker_channel(worker_id)
        self._pubsub: Any = None

    async def open(self) -> SignalListener:
        self._pubsub = self._r.pubsub()
        if self._cluster:
            await self._pubsub.ssubscribe(self.channel)
        else:
            await self._pubsub.subscribe(self.channel)
        async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
            while True:
                msg = await self._get()
                if msg is not None and _kind(msg) in ("subscribe", "ssubscribe"):
                    return self

    async def _get(self) -> dict[str, Any] | None:
        """The next pub/sub message of any type (blocks until there is one)."""
        msg: dict[str, Any] | None
        if self._cluster:
            msg = await self._pubsub.get_sharded_message(ignore_subscribe_messages=False, timeout=None)
        else:
            msg = await self._pubsub.get_message(ignore_subscribe_messages=False, timeout=None)
        return msg

    async def get(self) -> bytes:
        """The next payload (waits for it; wrap in ``asyncio.timeout`` to bound the wait)."""
        while True:
            msg = await self._get()
            if msg is not None and _kind(msg) in ("message", "smessage"):
                data: bytes = msg["data"]
                return data

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        return await self.get()

    async def close(self) -> None:
        if self._pubsub is not None:
            pubsub, self._pubsub = self._pubsub, None
            await pubsub.aclose()


def _kind(msg: dict[str, Any]) -> str:
    kind = msg.get("type")
    return kind.decode() if isinstance(kind, bytes) else str(kind)


async def listen(r: Any, worker_id: str, *, ready: asyncio.Event | None = None) -> AsyncIterator[bytes]:
    """Yield every payload published to ``worker_id``.

    It subscribes on the first iteration and then sets ``ready`` (if given):
    a signal published after ``ready`` is set is received.
    """
    listener = await SignalListener(r, worker_id).open()
    if ready is not None:
        ready.set()
    try:
        async for payload in listener:
            yield payload
    finally:
        await listener.close()
