"""Signal transport: deliver bytes to a worker and read one's own, without losing any.

On Redis (single node or cluster) every worker reads its own stream
``wsig:{<worker>}``: senders XADD (trimmed to about ``STREAM_MAXLEN`` entries,
and expiring ``STREAM_TTL_MS`` after the last write, so the stream of a worker
that is gone vanishes); the worker reads with a blocking XREAD from the last id
it saw. A reader whose connection drops (a Redis restart, ``CLIENT KILL``, a
cut network) reconnects and goes on from that id: nothing sent meanwhile is
lost, unlike pub/sub, which drops whatever was published while the subscriber
was away. The embedded store (``memory://``, one process) keeps plain pub/sub:
its connections cannot drop.

What the bytes mean is ``tidemq.signals``' business, not this module's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from redis.exceptions import TimeoutError as RedisTimeoutError

from tidemq.store import keys

log = logging.getLogger("tidemq.store")

SUBSCRIBE_TIMEOUT = 10.0
STREAM_MAXLEN = 10_000  # entries kept per worker stream (approximate trim): a reader may lag this far
STREAM_TTL_MS = 600_000  # a stream nobody writes to for this long is dropped (its worker is gone)
READ_COUNT = 512  # entries per XREAD
BLOCK_MS = 2_000  # how long one XREAD waits before it is issued again (under redis-py's 5 s socket timeout)
RETRY_MIN, RETRY_MAX = 0.05, 2.0  # back-off of a reader whose connection failed
FIELD = b"s"


def _streams(r: Any) -> bool:
    """Streams on a Redis server; pub/sub on the in-process embedded store."""
    return type(r).__module__.split(".")[0] != "fakeredis"


async def publish_signal(r: Any, worker_id: str, payload: bytes) -> int:
    """Send ``payload`` to worker ``worker_id``; returns 1 (queued for it; pub/sub: receivers reached)."""
    if not _streams(r):
        return int(await r.publish(keys.worker_channel(worker_id), payload))
    await publish_signals_many(r, [(worker_id, payload)])
    return 1


async def publish_signals_many(r: Any, signals: Sequence[tuple[str, bytes]]) -> None:
    """Send several signals in one pipelined round trip (per node on a cluster)."""
    if not signals:
        return
    pipe = r.pipeline(transaction=False)
    if not _streams(r):
        for worker_id, payload in signals:
            pipe.publish(keys.worker_channel(worker_id), payload)
        await pipe.execute()
        return
    touched: set[str] = set()
    for worker_id, payload in signals:
        key = keys.worker_stream(worker_id)
        pipe.xadd(key, {FIELD: payload}, maxlen=STREAM_MAXLEN, approximate=True)
        touched.add(key)
    for key in touched:
        pipe.pexpire(key, STREAM_TTL_MS)
    await pipe.execute()


async def _tail(r: Any, key: str) -> bytes:
    """The id of the last entry of ``key`` ("0-0" when empty): a new reader starts after it."""
    last = await r.xrevrange(key, count=1)
    return bytes(last[0][0]) if last else b"0-0"


class SignalListener:
    """One worker reading its signals: ``await open()`` (a signal sent after it returns is received),
    then ``await get()`` or iterate; ``close()``. Reconnects by itself after Redis trouble."""

    def __init__(self, r: Any, worker_id: str) -> None:
        self._r = r
        self._streams = _streams(r)
        self.worker_id = worker_id
        self.key = keys.worker_stream(worker_id)
        self._last = b"0-0"
        self._buffer: list[bytes] = []
        self._pubsub: Any = None

    async def open(self) -> SignalListener:
        if self._streams:
            self._last = await _tail(self._r, self.key)
            return self
        self._pubsub = self._r.pubsub()
        await self._pubsub.subscribe(keys.worker_channel(self.worker_id))
        async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
            while True:
                msg = await self._pubsub.get_message(ignore_subscribe_messages=False, timeout=None)
                if msg is not None and _kind(msg) == "subscribe":
                    return self

    async def get(self) -> bytes:
        """The next payload (waits for it; wrap in ``asyncio.timeout`` to bound the wait)."""
        if not self._streams:
            while True:
                msg = await self._pubsub.get_message(ignore_subscribe_messages=False, timeout=None)
                if msg is not None and _kind(msg) == "message":
                    data: bytes = msg["data"]
                    return data
        pause = 0.0
        while not self._buffer:
            try:
                res = await self._r.xread({self.key: self._last}, count=READ_COUNT, block=BLOCK_MS)
            except asyncio.CancelledError:
                raise
            except (TimeoutError, RedisTimeoutError):  # a slow server, not a lost connection: ask again at once
                continue
            except Exception as exc:  # the connection dropped: read again from the last id seen
                pause = min(max(pause * 2, RETRY_MIN), RETRY_MAX)
                log.warning("signal stream %s: read failed, again in %.2fs from %s: %s", self.key, pause,
                            self._last.decode(), exc)
                await asyncio.sleep(pause)
                continue
            pause = 0.0
            for _key, entries in res or ():
                for entry_id, fields in entries:
                    self._last = bytes(entry_id)
                    payload = fields.get(FIELD)
                    if payload is not None:
                        self._buffer.append(bytes(payload))
        return self._buffer.pop(0)

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
    """Yield every payload sent to ``worker_id`` from now on; ``ready`` is set once a signal sent after
    that is sure to be received."""
    listener = await SignalListener(r, worker_id).open()
    if ready is not None:
        ready.set()
    try:
        async for payload in listener:
            yield payload
    finally:
        await listener.close()


async def drop_stream(r: Any, worker_id: str) -> None:
    """Remove a worker's signal stream (its worker stopped or was reaped)."""
    if _streams(r):
        await r.delete(keys.worker_stream(worker_id))


__all__ = ["SignalListener", "drop_stream", "listen", "publish_signal", "publish_signals_many"]
