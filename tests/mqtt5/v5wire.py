"""A raw MQTT 5 client for the feature tests, built on the independent packet builder in ``tests/conformance/wire``.

Libraries hide exactly what these tests need to see (topic aliases on the wire,
how many PUBLISHes arrive before an ack, the reason code of a server DISCONNECT),
so ``V5`` speaks bytes: it never acks on its own, returns every PUBLISH with its
decoded properties (``{property id: [values]}``), and every wait is bounded
(``wire.TIMEOUT``). It shares no code with ``tidemq.mqtt``.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field

from tests.conformance import wire
from tests.fixtures.brokers import Broker

# property ids (MQTT 5 table 2-4)
PFI, MSG_EXPIRY, CONTENT_TYPE, RESPONSE_TOPIC, CORRELATION = 0x01, 0x02, 0x03, 0x08, 0x09
SUB_ID, SESSION_EXPIRY, WILL_DELAY, RECEIVE_MAX, TOPIC_ALIAS_MAX = 0x0B, 0x11, 0x18, 0x21, 0x22
TOPIC_ALIAS, MAX_QOS, USER_PROP, MAX_PACKET = 0x23, 0x24, 0x26, 0x27
SHARED_AVAILABLE = 0x2A


@dataclass
class Pub:
    """A PUBLISH as received."""

    topic: str
    payload: bytes
    qos: int
    pid: int | None
    retain: bool
    dup: bool
    props: dict[int, list[object]] = field(default_factory=dict)

    def prop(self, pid: int) -> object:
        vals = self.props.get(pid)
        return vals[0] if vals else None


@dataclass
class Connack:
    session_present: bool
    reason: int
    props: dict[int, list[object]]

    def prop(self, pid: int, default: object = None) -> object:
        vals = self.props.get(pid)
        return vals[0] if vals else default


def connect5(client_id: str, *, clean: bool = True, keepalive: int = 60, props: bytes = b"\x00",
             will: tuple[str, bytes, int, bool] | None = None, will_props: bytes = b"\x00") -> bytes:
    """CONNECT (v5) with optional will and will properties (``wire.connect`` sends none)."""
    flags = 0x02 if clean else 0
    will_part = b""
    if will is not None:
        topic, payload, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        will_part = will_props + wire.s(topic) + wire.s(payload)
    var = wire.s("MQTT") + bytes([5, flags]) + wire.u16(keepalive) + props
    return wire.packet(wire.CONNECT, 0, var + wire.s(client_id) + will_part)


def parse_publish(p: wire.Packet) -> Pub:
    n = struct.unpack("!H", p.body[:2])[0]
    topic = p.body[2:2 + n].decode()
    pos = 2 + n
    qos = (p.flags >> 1) & 3
    pid = None
    if qos:
        pid = struct.unpack("!H", p.body[pos:pos + 2])[0]
        pos += 2
    props, pos = wire.parse_props(p.body, pos)
    return Pub(topic, p.body[pos:], qos, pid, bool(p.flags & 1), bool(p.flags & 8), props)


def sub_options(qos: int = 0, *, no_local: bool = False, rap: bool = False, rh: int = 0) -> int:
    """The SUBSCRIBE options byte (MQTT 5 3.8.3.1)."""
    return qos | (0x04 if no_local else 0) | (0x08 if rap else 0) | (rh << 4)


class V5(wire.RawClient):
    """A raw v5 connection (see module doc). ``received`` keeps PUBLISHes read while waiting for acks."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer, 5)
        self.received: list[Pub] = []
        self.connack: Connack | None = None
        self._pid = 0

    @classmethod
    async def open5(cls, broker: Broker, client_id: str, *, expect: int = 0, **kw: object) -> V5:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(broker.host, broker.port), wire.TIMEOUT)
        c = cls(reader, writer)
        await c.send(connect5(client_id, **kw))  # type: ignore[arg-type]
        ack = await c.read()
        assert ack.type == wire.CONNACK, ack
        props, _ = wire.parse_props(ack.body, 2)
        c.connack = Connack(bool(ack.body[0] & 1), ack.body[1], props)
        assert ack.body[1] == expect, f"CONNACK reason {ack.body[1]:#x}, expected {expect:#x}"
        return c

    def next_pid(self) -> int:
        self._pid = self._pid % 65535 + 1
        return self._pid

    async def subscribe(self, *filters: tuple[str, int], sub_id: int | None = None) -> list[int]:
        """SUBSCRIBE (options bytes from ``sub_options``) and wait for the SUBACK; returns its codes."""
        pid = self.next_pid()
        props = wire.props((SUB_ID, sub_id)) if sub_id is not None else b"\x00"
        await self.send(wire.subscribe(pid, *filters, version=5, properties=props))
        ack = await self._until(wire.SUBACK)
        assert ack.pid == pid
        _, pos = wire.parse_props(ack.body, 2)
        return list(ack.body[pos:])

    async def publish(self, topic: str, payload: bytes = b"", *, qos: int = 0, retain: bool = False,
                      props: bytes = b"\x00", wait: bool = True) -> int:
        """PUBLISH; QoS 1 waits for the PUBACK and returns its reason code (QoS 0: 0)."""
        pid = self.next_pid() if qos else None
        await self.send(wire.publish(topic, payload, qos=qos, pid=pid, retain=retain, version=5,
                                     properties=props))
        if qos == 1 and wait:
            ack = await self._until(wire.PUBACK)
            assert ack.pid == pid
            return ack.body[2] if len(ack.body) > 2 else 0
        return 0

    async def _until(self, ptype: int, within: float = wire.TIMEOUT) -> wire.Packet:
        """Read until a packet of ``ptype``; PUBLISHes met on the way are kept in ``received``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            p = await self.read(max(0.01, deadline - loop.time()))
            if p.type == ptype:
                return p
            if p.type == wire.PUBLISH:
                self.received.append(parse_publish(p))
            elif p.type == wire.DISCONNECT:
                raise AssertionError(f"server DISCONNECT {p.body[:1].hex()} while waiting for type {ptype}")

    async def get(self, within: float = wire.TIMEOUT, *, ack: bool = True) -> Pub:
        """The next PUBLISH (already received ones first); QoS 1 is acked unless ``ack`` is false."""
        if self.received:
            m = self.received.pop(0)
        else:
            m = parse_publish(await self._until(wire.PUBLISH, within))
        if ack and m.qos == 1:
            await self.send(wire.puback(m.pid or 0))
        elif ack and m.qos == 2:
            await self.send(wire.pubrec(m.pid or 0))
            await self._until(wire.PUBREL, within)
            await self.send(wire.pubcomp(m.pid or 0))
        return m

    async def until_sentinel(self, publisher: V5, topic: str) -> list[Pub]:
        """Publish a sentinel (QoS 1) on ``topic`` and return what this client got before it."""
        token = f"sentinel-{id(self)}-{publisher.next_pid()}".encode()
        await publisher.publish(topic, token, qos=1)
        before: list[Pub] = []
        while True:
            m = await self.get()
            if m.payload == token:
                return before
            before.append(m)

    async def disconnect_reason(self, within: float = wire.TIMEOUT) -> int:
        """Wait for the server's DISCONNECT and the close; returns its reason code."""
        got = await self.expect_close(within)
        discs = [p for p in got if p.type == wire.DISCONNECT]
        assert discs, f"closed without DISCONNECT; got {got}"
        return discs[0].body[0] if discs[0].body else 0

    async def bye(self, reason: int = 0, props: bytes | None = None) -> None:
        """Client DISCONNECT (optionally with properties), then close."""
        if props is not None:
            await self.send(wire.packet(wire.DISCONNECT, 0, bytes([reason]) + props))
        else:
            await self.send(wire.disconnect(5, reason))
        await self.close()
