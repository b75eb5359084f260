"""Broker events (BifroMQ's EventCollector): one ``EventSink`` interface, three built-ins, chosen by settings.

A worker emits an ``Event`` for every connect, disconnect, kick (admin kill or session removal),
takeover, refusal, drop (aggregated: one event per tenant and reason per sweep, with a ``count``),
will fired, and the ``debug_*`` events of tenants with ``DebugModeEnabled``. ``EventBus.emit`` hands it
to every configured sink. Invariants: ``emit`` never awaits, never blocks the event loop and never
raises (a failing sink is logged, throttled, and skipped); an event carries no payload, password or
authentication data; a sink that must do I/O queues the event in a bounded queue and drops (and
counts) what does not fit.

``TIDEMQ_EVENT_SINKS`` (comma list; empty = no sink, the default; these are ``Settings`` fields, checked
when the settings are loaded; a custom sink that cannot be built fails the worker's start):

- ``log``: one INFO line per event on the logger ``tidemq.events`` (structured fields for JSON logs);
  ``debug_*`` events are logged on ``tidemq.debug`` whatever the sinks are.
- ``webhook``: POSTs JSON arrays of events to ``TIDEMQ_EVENT_WEBHOOK_URL`` (bounded queue of
  ``TIDEMQ_EVENT_QUEUE`` events, batches of up to 100, 5 s timeout; needs ``httpx``).
- ``redis``: appends to the capped stream ``tidemq:events:{<tenant>}`` (``XADD MAXLEN ~``
  ``TIDEMQ_EVENT_STREAM_MAXLEN``, default 10000), one pipelined round trip per batch.
- ``pkg.module:Class``: a custom sink, built with no arguments; it implements ``EventSink``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import orjson

from tidemq.counters import LogThrottle
from tidemq.store import event_stream

if TYPE_CHECKING:
    from tidemq.config import Settings

log = logging.getLogger("tidemq.events")

KINDS = ("connect", "disconnect", "kick", "takeover", "refusal", "drop", "will")
QUEUE_SIZE = 10000
BATCH = 100


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # one of KINDS, or debug_<what>
    tenant: str
    client: str = ""
    at_ms: int = 0  # wall clock
    fields: Mapping[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "tenant": self.tenant, "client": self.client, "at": self.at_ms, **self.fields}


@runtime_checkable
class EventSink(Protocol):
    """What a sink implements. ``emit`` must return at once; ``start``/``close`` bracket its life."""

    def emit(self, event: Event) -> None: ...

    async def start(self, redis: Any) -> None: ...

    async def close(self) -> None: ...


class LogSink:
    """One INFO line per event on ``tidemq.events`` (``debug_*`` events are already logged)."""

    def emit(self, event: Event) -> None:
        if event.kind.startswith("debug_"):
            return
        details = " ".join(f"{k}={v}" for k, v in event.fields.items())
        extra: dict[str, object] = {"event": f"event_{event.kind}", "tenant": event.tenant, "client": event.client}
        for k in ("reason", "code", "user", "address"):
            if k in event.fields:
                extra[k] = event.fields[k]
        log.info("event %s tenant=%s client=%s %s", event.kind, event.tenant, event.client, details, extra=extra)

    async def start(self, redis: Any) -> None:
        return None

    async def close(self) -> None:
        return None


class QueuedSink:
    """Base of the sinks that do I/O: a bounded queue drained in batches by one task of their own."""

    name = "queued"

    def __init__(self, size: int = QUEUE_SIZE) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=size)
        self.dropped = 0  # events that found the queue full
        self.sent = 0
        self._task: asyncio.Task[None] | None = None
        self._throttle = LogThrottle(60.0, 8)

    def emit(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            if self._throttle.allow("full", time.monotonic()):
                log.warning("event sink %s: queue full, dropping events (%d so far)", self.name, self.dropped)

    async def start(self, redis: Any) -> None:
        self._task = asyncio.get_running_loop().create_task(self._drain())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _drain(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                await self.send(batch)
                self.sent += len(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.dropped += len(batch)
                if self._throttle.allow("send", time.monotonic()):
                    log.warning("event sink %s failed, %d events lost: %r", self.name, len(batch), exc)

    async def send(self, batch: list[Event]) -> None:
        raise NotImplementedError


class WebhookSink(QueuedSink):
    """POST a JSON array of events to a URL (``TIDEMQ_EVENT_WEBHOOK_URL``)."""

    name = "webhook"

    def __init__(self, url: str, size: int = QUEUE_SIZE, timeout: float = 5.0) -> None:
        super().__init__(size)
        if not url.startswith(("http://", "https://")):
            raise ValueError("TIDEMQ_EVENT_WEBHOOK_URL: an http:// or https:// URL is needed for the webhook sink")
        self.url = url
        self.timeout = timeout
        self._client: Any = None

    async def start(self, redis: Any) -> None:
        import httpx  # only this sink needs it

        self._client = httpx.AsyncClient(timeout=self.timeout)
        await super().start(redis)

    async def close(self) -> None:
        await super().close()
        if self._client is not None:
            await self._client.aclose()

    async def send(self, batch: list[Event]) -> None:
        body = orjson.dumps([e.to_dict() for e in batch], default=str)
        response = await self._client.post(self.url, content=body, headers={"Content-Type": "application/json"})
        response.raise_for_status()


class RedisStreamSink(QueuedSink):
    """XADD to the tenant's capped stream ``tidemq:events:{<tenant>}``."""

    name = "redis"

    def __init__(self, maxlen: int = 10000, size: int = QUEUE_SIZE) -> None:
        super().__init__(size)
        self.maxlen = maxlen
        self._redis: Any = None

    async def start(self, redis: Any) -> None:
        self._redis = redis
        await super().start(redis)

    async def send(self, batch: list[Event]) -> None:
        entries = [(e.tenant, {"kind": e.kind, "tenant": e.tenant, "client": e.client, "at": str(e.at_ms),
                               "data": orjson.dumps(e.to_dict(), default=str).decode()}) for e in batch]
        await event_stream.append_events(self._redis, entries, cap=self.maxlen)


class EventBus:
    """The sinks of one process; ``emit`` is what the worker calls."""

    def __init__(self, sinks: list[EventSink] | None = None, clock_ms: Any = None) -> None:
        self.sinks: list[EventSink] = list(sinks or [])
        self.counts: dict[str, int] = {}  # events emitted, by kind
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._throttle = LogThrottle(60.0, 64)

    def emit(self, kind: str, tenant: str, client: str = "", **fields: object) -> None:
        if not self.sinks:
            return
        self.counts[kind] = self.counts.get(kind, 0) + 1
        event = Event(kind, tenant, client, self._clock_ms(), fields)
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception as exc:
                if self._throttle.allow(type(sink).__name__, time.monotonic()):
                    log.warning("event sink %s failed: %r", type(sink).__name__, exc)

    async def start(self, redis: Any) -> None:
        for sink in self.sinks:
            await sink.start(redis)

    async def close(self) -> None:
        for sink in self.sinks:
            with contextlib.suppress(Exception):
                await sink.close()

    def dropped(self) -> dict[str, int]:
        """Events lost by each queued sink (queue full or a failed send)."""
        return {s.name: s.dropped for s in self.sinks if isinstance(s, QueuedSink)}


def make_sink(spec: str, settings: Settings) -> EventSink:
    """One sink from its name in ``TIDEMQ_EVENT_SINKS`` (a ValueError names what is wrong)."""
    size = settings.event_queue
    if spec == "log":
        return LogSink()
    if spec == "webhook":
        return WebhookSink(settings.event_webhook_url, size)
    if spec == "redis":
        return RedisStreamSink(settings.event_stream_maxlen, size)
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"TIDEMQ_EVENT_SINKS: unknown sink {spec!r} (log, webhook, redis or pkg.module:Class)")
    try:
        sink = getattr(importlib.import_module(module), name)()
    except Exception as exc:  # import, attribute or constructor failure: one line naming the setting
        raise ValueError(f"TIDEMQ_EVENT_SINKS: cannot load {spec!r}: {exc}") from None
    if not isinstance(sink, EventSink):
        raise ValueError(f"TIDEMQ_EVENT_SINKS: {spec!r} does not implement EventSink (emit, start, close)")
    return sink


def bus_from_settings(settings: Settings) -> EventBus:
    """The bus ``settings.event_sinks`` asks for (empty: no sink); a ValueError names a sink that cannot be built."""
    return EventBus([make_sink(s, settings) for s in settings.event_sink_specs()])
