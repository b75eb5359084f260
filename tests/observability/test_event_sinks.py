"""The event sinks without a broker: configuration errors name the variable, custom sinks load by
``pkg.module:Class``, the webhook sink POSTs JSON arrays to a real local HTTP server, and ``emit`` never
blocks: a webhook that never answers fills the bounded queue and the rest is counted as dropped."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest

from tidemq.config import Settings
from tidemq.events import Event, EventBus, LogSink, WebhookSink, bus_from_settings


class Recorder:
    """A custom sink, loaded by name in a test."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    async def start(self, redis: Any) -> None:
        return None

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(("env", "message"), [
    ({"TIDEMQ_EVENT_SINKS": "kafka"}, "unknown sink 'kafka'"),
    ({"TIDEMQ_EVENT_SINKS": "nowhere.module:Sink"}, "cannot load 'nowhere.module:Sink'"),
    ({"TIDEMQ_EVENT_SINKS": "tidemq.events:Event"}, "cannot load"),  # Event() needs arguments
    ({"TIDEMQ_EVENT_SINKS": "collections:OrderedDict"}, "does not implement EventSink"),
    ({"TIDEMQ_EVENT_SINKS": "webhook"}, "TIDEMQ_EVENT_WEBHOOK_URL"),
    ({"TIDEMQ_EVENT_SINKS": "redis", "TIDEMQ_EVENT_STREAM_MAXLEN": "lots"}, "TIDEMQ_EVENT_STREAM_MAXLEN"),
    ({"TIDEMQ_EVENT_SINKS": "log", "TIDEMQ_EVENT_QUEUE": "0"}, "TIDEMQ_EVENT_QUEUE"),
])
def test_bad_configuration_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bus_from_settings(Settings.from_env(env))


def test_custom_sink_by_name_and_empty_default() -> None:
    assert bus_from_settings(Settings()).sinks == []
    bus = bus_from_settings(Settings.from_env(
        {"TIDEMQ_EVENT_SINKS": " log , tests.observability.test_event_sinks:Recorder "}))
    log_sink, recorder = bus.sinks
    assert isinstance(log_sink, LogSink) and isinstance(recorder, Recorder)
    bus.emit("connect", "acme", "c1", user="u")
    assert [(e.kind, e.tenant, e.client, dict(e.fields)) for e in recorder.events] == [
        ("connect", "acme", "c1", {"user": "u"})]
    assert bus.counts == {"connect": 1}


def test_log_sink_writes_one_structured_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="tidemq.events"):
        EventBus([LogSink()]).emit("refusal", "acme", "", reason="auth", code=0x86)
    (rec,) = caplog.records
    assert rec.name == "tidemq.events" and "event refusal tenant=acme" in rec.getMessage()
    assert rec.__dict__["event"] == "event_refusal" and rec.__dict__["reason"] == "auth"


async def _http_server(bodies: asyncio.Queue[bytes], answer: bool = True) -> tuple[asyncio.Server, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        await bodies.put(await reader.readexactly(length))
        if answer:
            writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        else:
            await asyncio.Event().wait()  # never answers
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/events"


async def test_webhook_posts_json_arrays() -> None:
    bodies: asyncio.Queue[bytes] = asyncio.Queue()
    server, url = await _http_server(bodies)
    sink = WebhookSink(url)
    bus = EventBus([sink])
    await bus.start(None)
    try:
        bus.emit("connect", "acme", "c1", user="u")
        bus.emit("will", "acme", "c1", topic="t/w")
        got: list[dict[str, Any]] = []
        while len(got) < 2:
            got += orjson.loads(await asyncio.wait_for(bodies.get(), 5))
        assert [(e["kind"], e["tenant"], e["client"]) for e in got] == [("connect", "acme", "c1"),
                                                                     ("will", "acme", "c1")]
        assert got[1]["topic"] == "t/w" and got[0]["at"] > 0
    finally:
        await bus.close()
        server.close()


async def test_a_stuck_webhook_never_blocks_emit() -> None:
    bodies: asyncio.Queue[bytes] = asyncio.Queue()
    server, url = await _http_server(bodies, answer=False)
    sink = WebhookSink(url, size=50, timeout=30.0)
    bus = EventBus([sink])
    await bus.start(None)
    try:
        bus.emit("connect", "acme", "c0")
        await asyncio.wait_for(bodies.get(), 5)  # the first POST is in flight and will never be answered
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(1000):
            bus.emit("connect", "acme", f"c{i}")
        assert loop.time() - started < 1.0
        assert sink.queue.qsize() == 50 and sink.dropped == 950
        assert bus.dropped() == {"webhook": 950}
    finally:
        await bus.close()
        server.close()
