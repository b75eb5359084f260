"""Signal transport: deliver bytes to a worker and read one's own, without losing any.

On Redis (single node or cluster) every worker reads its own stream
``wsig:{<worker>}``: senders XADD (trimmed to about ``STREAM_MAXLEN`` entries,
and expiring ``STREAM_TTL_MS`` after the last write, so the stream of a worker
that is gone vanishes); the worker reads with a blocking XREAD from the last id
it saw. A reader whose connection drops (a Redis restart, ``CLIENT KILL``, a
cut network) reconnects and goes on from that id: nothing sent meanwhile is
lost, unlike pub/sub, which drops whatever was published while the subscriber
was away.

A failover (Sentinel promoting a replica that lagged) or a Redis restart
without persistence can leave a stream that ends *before* the last id the
reader saw; new entries may then get ids below it (the new primary's clock may
be behind) and a plain XREAD from that id would skip them. So after every
failed read, and after every read that found nothing in ``BLOCK_MS`` (redis-py
may have retried a read on the new primary by itself), the reader checks the
stream's tail: when it went back, the reader re-reads the stream from the
oldest id it remembers (the last ``SEEN_IDS`` entries; from the start when the
tail is older than all of them), takes only entries it has not seen, and goes
on from the tail. It never gives up: errors are retried
with back-off until it is cancelled.

The embedded store (``memory://``, one process) keeps plain pub/sub:
its connections cannot drop.

What the bytes mean is ``tidemq.signals``' business, not this module's.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

from redis.exceptions import TimeoutError as RedisTimeoutError

from tidemq.store import keys
from tidemq.store.connection import is_cluster

log = logging.getLogger("tidemq.store")

SUBSCRIBE_TIMEOUT = 10.0
STREAM_MAXLEN = 10_000  # entries kept per worker stream (approximate trim): a reader may lag this far
STREAM_TTL_MS = 600_000  # a stream nobody writes to for this long is dropped (its worker is gone)
READ_COUNT = 512  # entries per XREAD
BLOCK_MS = 2_000  # how long one XREAD waits before it is issued again (under redis-py's 5 s socket timeout)
RETRY_MIN, RETRY_MAX = 0.05, 2.0  # back-off of a reader whose connection failed
FIELD = b"s"
SEEN_IDS = 4_096  # ids of the last entries read, kept to tell replayed entries from new ones after a failover


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


def _id(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or b"0")


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
        self._seen: deque[bytes] = deque(maxlen=SEEN_IDS)
        self._seen_set: set[bytes] = set()
        self._check_tail = False  # a read failed: make sure the stream did not go back before reading on
        self.rewinds = 0  # times the stream was found behind the last id read (failover, restart)

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
                if self._check_tail:
                    await self._resync()
                    self._check_tail = False
                    if self._buffer:
                        break
                res = await self._xread()
            except asyncio.CancelledError:
                raise
            except (TimeoutError, RedisTimeoutError):  # a slow server, not a lost connection: ask again at once
                continue
            except Exception as exc:  # the connection dropped (or the primary moved): read again from the last id
                pause = min(max(pause * 2, RETRY_MIN), RETRY_MAX)
                self._check_tail = True
                log.warning("signal stream %s: read failed, again in %.2fs from %s: %s", self.key, pause,
                            self._last.decode(), exc)
                await asyncio.sleep(pause)
                continue
            pause = 0.0
            if not res:  # idle for BLOCK_MS: cheap moment to check the tail (redis-py may have retried the
                self._check_tail = True  # read on a new primary by itself, where its entries may sit below)
            for _key, entries in res or ():
                self._take(entries)
        return self._buffer.pop(0)

    async def _xread(self) -> Any:
        """XREAD from the last id. On a cluster the node owning the stream is named: redis-py cannot find the
        key of an XREAD itself and would ask the server (two COMMAND GETKEYS round trips) every time."""
        if not is_cluster(self._r):
            return await self._r.xread({self.key: self._last}, count=READ_COUNT, block=BLOCK_MS)
        return await self._r.execute_command("XREAD", "COUNT", READ_COUNT, "BLOCK", BLOCK_MS, "STREAMS", self.key,
                                             self._last, target_nodes=self._r.get_node_from_key(self.key))

    def _take(self, entries: Any) -> None:
        for entry_id, fields in entries:
            eid = bytes(entry_id)
            self._last = eid
            if eid in self._seen_set:
                continue
            if len(self._seen) == SEEN_IDS:
                self._seen_set.discard(self._seen[0])
            self._seen.append(eid)
            self._seen_set.add(eid)
            payload = fields.get(FIELD)
            if payload is not None:
                self._buffer.append(bytes(payload))

    async def _resync(self) -> None:
        """After a failed read: when the stream now ends before the last id read, take the entries up
        to its tail that were not read yet (written after the failover) and go on from the tail."""
        tail = await _tail(self._r, self.key)
        if _id(tail) >= _id(self._last):
            return
        self.rewinds += 1
        log.warning("signal stream %s went back from %s to %s (failover or restart): catching up from the "
                    "oldest id remembered", self.key, self._last.decode(), tail.decode())
        oldest = min(self._seen, key=_id) if self._seen else None
        # the stream may hold entries read before (replicated ones) and new ones: from the oldest id
        # remembered on, the unseen are new; a tail older than all of them: the stream was recreated
        start = oldest if oldest is not None and _id(oldest) <= _id(tail) else b"-"
        while True:
            entries = await self._r.xrange(self.key, start, tail, count=READ_COUNT)
            self._take(entries)
            if len(entries) < READ_COUNT:
                break
            start = b"(" + bytes(entries[-1][0])
        self._last = tail

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
