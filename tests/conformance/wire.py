"""A tiny, independent MQTT packet builder/reader and a raw asyncio socket client for conformance tests.

Deliberately shares no code with ``tidemq.mqtt``: a codec bug in the broker must
not be able to hide itself by being present on both ends. Builders return exact
bytes (no validation: tests need to send broken packets); ``RawClient`` reads
whole packets (fixed header + remaining length) with bounded waits and tells a
clean close from a timeout.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

TIMEOUT = 5.0

# packet types (upper nibble of byte 1)
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = 8, 9, 10, 11, 12, 13, 14, 15

# property ids used by the tests
P_SESSION_EXPIRY = 0x11
P_ASSIGNED_CLIENT_ID = 0x12
P_REASON_STRING = 0x1F
P_RECEIVE_MAXIMUM = 0x21
P_TOPIC_ALIAS_MAXIMUM = 0x22
P_USER_PROPERTY = 0x26

_PROP_KIND = {  # id -> wire type (MQTT 5 table 2-4)
    0x01: "byte", 0x02: "u32", 0x03: "str", 0x08: "str", 0x09: "bin", 0x0B: "varint", 0x11: "u32",
    0x12: "str", 0x13: "u16", 0x15: "str", 0x16: "bin", 0x17: "byte", 0x18: "u32", 0x19: "byte",
    0x1A: "str", 0x1C: "str", 0x1F: "str", 0x21: "u16", 0x22: "u16", 0x23: "u16", 0x24: "byte",
    0x25: "byte", 0x26: "pair", 0x27: "u32", 0x28: "byte", 0x29: "byte", 0x2A: "byte",
}


# -- primitives ------------------------------------------------------------------------------
def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def u16(n: int) -> bytes:
    return struct.pack("!H", n)


def u32(n: int) -> bytes:
    return struct.pack("!I", n)


def s(text: str | bytes) -> bytes:
    """UTF-8 string (or raw bytes, for broken strings) with its two-byte length."""
    data = text.encode() if isinstance(text, str) else text
    return u16(len(data)) + data


def packet(ptype: int, flags: int, body: bytes) -> bytes:
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + body


def props(*items: tuple[int, object]) -> bytes:
    """Encode MQTT 5 properties: ``props((0x11, 60), (0x26, ("k", "v")))`` -> length-prefixed block."""
    out = bytearray()
    for pid, value in items:
        out += varint(pid)
        kind = _PROP_KIND[pid]
        if kind == "byte":
            out.append(int(value))  # type: ignore[call-overload]
        elif kind == "u16":
            out += u16(int(value))  # type: ignore[call-overload]
        elif kind == "u32":
            out += u32(int(value))  # type: ignore[call-overload]
        elif kind == "varint":
            out += varint(int(value))  # type: ignore[call-overload]
        elif kind in ("str", "bin"):
            out += s(value)  # type: ignore[arg-type]
        else:
            k, v = value  # type: ignore[misc]
            out += s(k) + s(v)
    return varint(len(out)) + bytes(out)


# -- packet builders -------------------------------------------------------------------------
def connect(
    client_id: str | bytes = "",
    *,
    version: int = 4,
    clean: bool = True,
    keepalive: int = 60,
    username: str | None = None,
    password: bytes | None = None,
    will: tuple[str, bytes, int, bool] | None = None,
    properties: bytes = b"\x00",
    protocol_name: str | None = None,
) -> bytes:
    name = protocol_name or ("MQIsdp" if version == 3 else "MQTT")
    flags = 0x02 if clean else 0
    will_part = b""
    if will is not None:
        topic, payload, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        will_part = (b"\x00" if version == 5 else b"") + s(topic) + s(payload)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    var = s(name) + bytes([version, flags]) + u16(keepalive) + (properties if version == 5 else b"")
    payload = s(client_id) + will_part
    if username is not None:
        payload += s(username)
    if password is not None:
        payload += s(password)
    return packet(CONNECT, 0, var + payload)


def publish(
    topic: str | bytes,
    payload: bytes = b"",
    *,
    qos: int = 0,
    pid: int | None = None,
    retain: bool = False,
    dup: bool = False,
    version: int = 4,
    properties: bytes = b"\x00",
) -> bytes:
    flags = (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = s(topic)
    if qos:
        body += u16(pid if pid is not None else 1)
    if version == 5:
        body += properties
    return packet(PUBLISH, flags, body + payload)


def _ack(ptype: int, flags: int, pid: int, version: int, reason: int | None) -> bytes:
    body = u16(pid)
    if version == 5 and reason is not None:
        body += bytes([reason])
    return packet(ptype, flags, body)


def puback(pid: int, version: int = 4, reason: int | None = None) -> bytes:
    return _ack(PUBACK, 0, pid, version, reason)


def pubrec(pid: int, version: int = 4, reason: int | None = None) -> bytes:
    return _ack(PUBREC, 0, pid, version, reason)


def pubrel(pid: int, version: int = 4, reason: int | None = None) -> bytes:
    return _ack(PUBREL, 0x02, pid, version, reason)


def pubcomp(pid: int, version: int = 4, reason: int | None = None) -> bytes:
    return _ack(PUBCOMP, 0, pid, version, reason)


def subscribe(pid: int, *filters: tuple[str | bytes, int], version: int = 4, flags: int = 0x02,
              properties: bytes = b"\x00") -> bytes:
    body = u16(pid) + (properties if version == 5 else b"")
    for topic, options in filters:
        body += s(topic) + bytes([options])
    return packet(SUBSCRIBE, flags, body)


def unsubscribe(pid: int, *filters: str, version: int = 4) -> bytes:
    body = u16(pid) + (b"\x00" if version == 5 else b"")
    for topic in filters:
        body += s(topic)
    return packet(UNSUBSCRIBE, 0x02, body)


def pingreq() -> bytes:
    return b"\xc0\x00"


def disconnect(version: int = 4, reason: int = 0) -> bytes:
    if version == 5 and reason:
        return packet(DISCONNECT, 0, bytes([reason]) + b"\x00")
    return b"\xe0\x00"


# -- reading ---------------------------------------------------------------------------------
@dataclass
class Packet:
    type: int
    flags: int
    body: bytes

    @property
    def raw(self) -> bytes:
        return packet(self.type, self.flags, self.body)

    @property
    def pid(self) -> int:
        return int(struct.unpack("!H", self.body[:2])[0])


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    mult, value = 1, 0
    for _ in range(4):
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) * mult
        if not byte & 0x80:
            return value, pos
        mult *= 128
    raise ValueError("varint longer than 4 bytes")


def parse_props(data: bytes, pos: int) -> tuple[dict[int, list[object]], int]:
    """Decode a property block at ``pos``; returns ({id: [values]}, position after the block)."""
    length, pos = read_varint(data, pos)
    end = pos + length
    out: dict[int, list[object]] = {}
    while pos < end:
        pid, pos = read_varint(data, pos)
        kind = _PROP_KIND[pid]
        value: object
        if kind == "byte":
            value, pos = data[pos], pos + 1
        elif kind == "u16":
            value, pos = struct.unpack("!H", data[pos:pos + 2])[0], pos + 2
        elif kind == "u32":
            value, pos = struct.unpack("!I", data[pos:pos + 4])[0], pos + 4
        elif kind == "varint":
            value, pos = read_varint(data, pos)
        elif kind in ("str", "bin"):
            n = struct.unpack("!H", data[pos:pos + 2])[0]
            raw = data[pos + 2:pos + 2 + n]
            value, pos = (raw.decode() if kind == "str" else raw), pos + 2 + n
        else:
            n = struct.unpack("!H", data[pos:pos + 2])[0]
            k = data[pos + 2:pos + 2 + n].decode()
            pos += 2 + n
            m = struct.unpack("!H", data[pos:pos + 2])[0]
            value, pos = (k, data[pos + 2:pos + 2 + m].decode()), pos + 2 + m
        out.setdefault(pid, []).append(value)
    return out, end


def parse_publish(p: Packet, version: int = 4) -> tuple[str, bytes, int, int | None, bool]:
    """(topic, payload, qos, packet id, retain) of a PUBLISH."""
    n = struct.unpack("!H", p.body[:2])[0]
    topic = p.body[2:2 + n].decode()
    pos = 2 + n
    qos = (p.flags >> 1) & 3
    pid = None
    if qos:
        pid = struct.unpack("!H", p.body[pos:pos + 2])[0]
        pos += 2
    if version == 5:
        _, pos = parse_props(p.body, pos)
    return topic, p.body[pos:], qos, pid, bool(p.flags & 1)


class Closed(Exception):
    """The broker closed the connection (EOF or reset)."""


class RawClient:
    """A bare TCP MQTT client: send bytes, read whole packets, every wait bounded."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, version: int = 4) -> None:
        self.reader = reader
        self.writer = writer
        self.version = version

    @classmethod
    async def open(cls, host: str, port: int, version: int = 4) -> RawClient:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)
        return cls(reader, writer, version)

    @classmethod
    async def connected(cls, host: str, port: int, client_id: str, version: int = 4, **kw: object) -> RawClient:
        """Open and complete CONNECT/CONNACK (asserting success)."""
        c = await cls.open(host, port, version)
        await c.send(connect(client_id, version=version, **kw))  # type: ignore[arg-type]
        ack = await c.read()
        assert ack.type == CONNACK, ack
        assert ack.body[1] == 0, f"CONNACK refused: {ack.body!r}"
        return c

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def _readexactly(self, n: int, within: float) -> bytes:
        try:
            return await asyncio.wait_for(self.reader.readexactly(n), within)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise Closed() from exc

    async def read(self, within: float = TIMEOUT) -> Packet:
        """The next whole packet; ``Closed`` on EOF, ``TimeoutError`` if none arrives in time."""
        first = await self._readexactly(1, within)
        mult, length = 1, 0
        for _ in range(4):
            b = (await self._readexactly(1, within))[0]
            length += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                break
        body = await self._readexactly(length, within) if length else b""
        return Packet(first[0] >> 4, first[0] & 0x0F, body)

    async def read_type(self, ptype: int, within: float = TIMEOUT) -> Packet:
        """Read packets until one of ``ptype`` arrives (answering nothing); bounded overall."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            p = await self.read(max(0.01, deadline - loop.time()))
            if p.type == ptype:
                return p

    async def expect_close(self, within: float = TIMEOUT) -> list[Packet]:
        """Assert the broker closes this connection within ``within``; returns what it sent first."""
        got: list[Packet] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise AssertionError(f"connection still open after {within}s; received {got}")
                got.append(await self.read(remaining))
        except Closed:
            return got
        except TimeoutError as exc:
            raise AssertionError(f"connection still open after {within}s; received {got}") from exc

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), TIMEOUT)
        except (ConnectionError, TimeoutError):
            pass

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
