"""Packet handlers driven in-process: a real ``MQTTConnection`` on services built over the embedded
store (fakeredis) with a fake clock and a fake transport — no sockets, no sleeping on timers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tidemq.worker import timers
from tidemq.worker.broker import Broker
from tidemq.worker.connection import MQTTConnection

from tidemq.auth import AuthResult, ConnectInfo, DevOnlyProvider, Identity
from tidemq.clock import FakeClock
from tidemq.config import Settings
from tidemq.mqtt import codec
from tidemq.mqtt.packets import Connack, Connect, Packet, Puback, Publish, Will
from tidemq.store import scripts as store_scripts
from tidemq.store.connection import close_redis, open_redis


class FakeTransport:
    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.out += data

    def writelines(self, chunks: list[bytes]) -> None:
        for data in chunks:
            self.out += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    abort = close

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class DenyWillTopic(DevOnlyProvider):
    async def authenticate(self, info: ConnectInfo) -> AuthResult:
        return AuthResult(True, "t1", info.username or "u")

    async def check_publish(self, who: Identity, topic: str, qos: int, retain: bool) -> bool:
        return not topic.startswith("forbidden/")


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    settings = Settings(redis_url=f"memory://unit-{uuid.uuid4().hex[:8]}")
    redis = await open_redis(settings.redis_url)
    await store_scripts.load_all(redis)
    b = Broker(settings, redis, auth=DenyWillTopic(), clock=FakeClock())
    try:
        yield b
    finally:
        await close_redis(redis)


def _client(broker: Broker) -> tuple[MQTTConnection, FakeTransport]:
    conn = MQTTConnection(broker.services)
    tr = FakeTransport()
    conn.connection_made(tr)  # type: ignore[arg-type]
    return conn, tr


async def _settle(conn: MQTTConnection) -> None:
    for _ in range(50):
        tasks = conn.live_tasks()
        if not tasks:
            await asyncio.sleep(0)
            if not conn.live_tasks():
                return
        else:
            await asyncio.wait(tasks, timeout=5)


def _packets(data: bytes, level: int) -> list[Packet]:
    dec = codec.Decoder(protocol_level=level, server_side=False)
    dec.feed(data)
    out = []
    while (p := dec.next_packet()) is not None:
        out.append(p)
    return out


async def test_will_denied_by_acl_refuses_connect(broker: Broker) -> None:
    conn, tr = _client(broker)
    conn.data_received(codec.encode(Connect(protocol_level=5, client_id="c1", clean_start=True, keep_alive=0,
                                            will=Will("forbidden/x", b"bye", 0, False)), 5))
    await _settle(conn)
    (ack,) = _packets(bytes(tr.out), 5)
    assert isinstance(ack, Connack) and ack.reason_code == 0x87
    assert broker.services.metrics.counters["refused_will_denied"] == 1


async def test_v3_will_denied_gets_return_code_5(broker: Broker) -> None:
    conn, tr = _client(broker)
    conn.data_received(codec.encode(Connect(protocol_level=4, client_id="c1", clean_start=True, keep_alive=0,
                                            will=Will("forbidden/x", b"bye", 0, False)), 4))
    await _settle(conn)
    (ack,) = _packets(bytes(tr.out), 4)
    assert isinstance(ack, Connack) and ack.reason_code == 5


async def test_publish_in_the_connect_segment_is_processed_after_connack(broker: Broker) -> None:
    conn, tr = _client(broker)
    conn.data_received(codec.encode(Connect(protocol_level=4, client_id="c1", clean_start=True, keep_alive=0), 4)
                       + codec.encode(Publish("a/b", b"x", 1, False, False, 5, {}), 4))
    await _settle(conn)
    await broker.services.dispatcher.drain()
    await asyncio.sleep(0)
    packets = _packets(bytes(tr.out), 4)
    assert isinstance(packets[0], Connack) and packets[0].reason_code == 0
    assert any(isinstance(p, Puback) and p.packet_id == 5 for p in packets[1:])


async def test_connect_timeout_with_fake_clock(broker: Broker) -> None:
    conn, tr = _client(broker)
    clock = broker.services.clock
    assert isinstance(clock, FakeClock)
    timers.check_connection(conn, clock.monotonic() + 5)
    assert not tr.closed
    timers.check_connection(conn, clock.monotonic() + timers.CONNECT_TIMEOUT + 1)
    assert tr.closed and conn.close_reason == "no CONNECT in time"


async def test_pending_connect_cap(broker: Broker) -> None:
    broker.services.settings.max_pending_connects = 2
    _client(broker)
    _client(broker)
    _conn, tr = _client(broker)
    assert tr.closed
    assert broker.services.metrics.counters["refused_pending_connects"] == 1


class CountingTransport(FakeTransport):
    def __init__(self) -> None:
        super().__init__()
        self.paused = 0
        self.resumed = 0

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        self.resumed += 1


async def test_a_big_read_is_parsed_a_chunk_per_loop_turn_in_order(broker: Broker) -> None:
    """A pipelining publisher's 256 KiB read is not parsed in one go: reading pauses, the rest is parsed a chunk
    per loop turn (other connections and the dispatcher run between), every message in order, then reading
    resumes."""
    from tidemq.worker.connection import READ_CHUNK

    conn = MQTTConnection(broker.services)
    tr = CountingTransport()
    conn.connection_made(tr)  # type: ignore[arg-type]
    conn.data_received(codec.encode(Connect(protocol_level=4, client_id="big", clean_start=True, keep_alive=0), 4))
    await _settle(conn)
    n = 10000
    burst = b"".join(codec.encode(Publish("a/b", b"%05d" % i, 1, False, False, i % 65535 + 1, {}), 4) for i in range(n))
    assert len(burst) > 3 * READ_CHUNK
    dispatcher = broker.services.dispatcher
    before = dispatcher.stats_in[1]
    conn.data_received(burst)
    assert 0 < dispatcher.stats_in[1] - before < n  # the first chunk only
    assert tr.paused == 1 and tr.resumed == 0
    for _ in range(1000):
        if dispatcher.stats_in[1] - before == n and tr.resumed:
            break
        await asyncio.sleep(0)
    assert dispatcher.stats_in[1] - before == n and tr.resumed == 1
    await dispatcher.drain()
    await asyncio.sleep(0)
    acks = [p.packet_id for p in _packets(bytes(tr.out), 4) if isinstance(p, Puback)]
    assert acks == [i % 65535 + 1 for i in range(n)]
