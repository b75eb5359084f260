"""The asyncio WebSocket wrapper on real loopback sockets, around an echo protocol instead of MQTT."""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from tidemq.worker.transport.websocket import WebSocketProtocol

from tests.transport import wsclient as wsc
from tests.transport.wsclient import client_frame, read_close, read_frame, read_response_head, upgrade_request

WAIT = 5.0


class Echo(asyncio.Protocol):
    """Writes back what it receives; ``close!`` closes, ``pause!`` pauses reading."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.received = bytearray()
        self.lost = asyncio.Event()
        self.writes_paused = False
        self.got = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.received += data
        self.got.set()
        if data == b"close!":
            self.transport.close()
        elif data == b"pause!":
            self.transport.pause_reading()
        else:
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        assert not self.lost.is_set(), "connection_lost twice"
        self.lost.set()

    def pause_writing(self) -> None:
        self.writes_paused = True


@dataclass
class Server:
    port: int
    inners: list[Echo] = field(default_factory=list)

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def upgraded(self, protocol: str | None = "mqtt") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await self.open()
        req, accept = upgrade_request(protocol=protocol)
        writer.write(req)
        status, headers = await asyncio.wait_for(read_response_head(reader), WAIT)
        assert status == 101
        assert headers["sec-websocket-accept"] == accept
        return reader, writer


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server(0)

    def inner() -> Echo:
        e = Echo()
        srv.inners.append(e)
        return e

    loop = asyncio.get_running_loop()
    s = await loop.create_server(lambda: WebSocketProtocol(inner, path="/mqtt", max_frame_size=100_000,
                                                           handshake_timeout=0.5, close_timeout=0.5),
                                 "127.0.0.1", 0)
    srv.port = s.sockets[0].getsockname()[1]
    try:
        yield srv
    finally:
        s.close()
        await s.wait_closed()


async def _eof(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), WAIT)


async def test_upgrade_then_echo(server: Server) -> None:
    reader, writer = await server.upgraded()
    writer.write(client_frame(wsc.OP_BINARY, b"\x10\x0c hello"))
    assert await asyncio.wait_for(read_frame(reader), WAIT) == (wsc.OP_BINARY, True, b"\x10\x0c hello")
    inner = server.inners[0]
    assert inner.transport is not None
    assert inner.transport.get_extra_info("websocket_subprotocol") == "mqtt"
    assert inner.transport.get_extra_info("websocket_path") == "/mqtt"
    assert inner.transport.get_extra_info("peername")[0] == "127.0.0.1"
    assert inner.transport.get_extra_info("peercert") is None
    assert inner.transport.get_write_buffer_size() == 0
    assert not inner.transport.can_write_eof()
    writer.close()


async def test_upgrade_without_subprotocol_header(server: Server) -> None:
    reader, writer = await server.upgraded(protocol=None)
    writer.write(client_frame(wsc.OP_BINARY, b"x"))
    assert (await asyncio.wait_for(read_frame(reader), WAIT))[2] == b"x"
    writer.close()


@pytest.mark.parametrize(("kwargs", "status"), [({}, 400), ({"path": "/nope"}, 404), ({"method": "PUT"}, 405)])
async def test_bad_handshake_gets_http_error_and_close(server: Server, kwargs: dict[str, str], status: int) -> None:
    reader, writer = await server.open()
    if kwargs:
        req, _ = upgrade_request(**kwargs)  # type: ignore[arg-type]
    else:
        req = b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n"  # a plain HTTP request, no upgrade
    writer.write(req)
    got, _headers = await asyncio.wait_for(read_response_head(reader), WAIT)
    assert got == status
    await _eof(reader)  # the body, then the server closes
    assert server.inners == []
    writer.close()


async def test_oversized_request_head_is_refused(server: Server) -> None:
    reader, writer = await server.open()
    writer.write(b"GET /mqtt HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 10000 + b"\r\n")
    status, _ = await asyncio.wait_for(read_response_head(reader), WAIT)
    assert status == 431
    writer.close()


async def test_silent_client_is_dropped_after_handshake_timeout(server: Server) -> None:
    reader, writer = await server.open()
    writer.write(b"GET /mq")
    assert await _eof(reader) == b""
    assert server.inners == []
    writer.close()


async def test_request_and_frames_in_one_write(server: Server) -> None:
    reader, writer = await server.open()
    req, _ = upgrade_request()
    writer.write(req + client_frame(wsc.OP_BINARY, b"early"))
    status, _ = await asyncio.wait_for(read_response_head(reader), WAIT)
    assert status == 101
    assert (await asyncio.wait_for(read_frame(reader), WAIT))[2] == b"early"
    writer.close()


async def test_fragments_and_ping(server: Server) -> None:
    reader, writer = await server.upgraded()
    writer.write(client_frame(wsc.OP_BINARY, b"abc", fin=False))
    writer.write(client_frame(wsc.OP_PING, b"are you there"))
    writer.write(client_frame(wsc.OP_CONTINUATION, b"def", fin=True))
    echoed = bytearray()
    pong = None
    while len(echoed) < 6 or pong is None:
        op, fin, payload = await asyncio.wait_for(read_frame(reader), WAIT)
        assert fin
        if op == wsc.OP_PONG:
            pong = payload
        else:
            assert op == wsc.OP_BINARY
            echoed += payload
    assert bytes(echoed) == b"abcdef" and pong == b"are you there"
    assert bytes(server.inners[0].received) == b"abcdef"
    writer.close()


async def test_large_payload_round_trip(server: Server) -> None:
    reader, writer = await server.upgraded()
    payload = os.urandom(90_000)  # 64-bit length frame in, one frame out (header + payload written apart)
    writer.write(client_frame(wsc.OP_BINARY, payload[:50_000], fin=False, mask=os.urandom(4)))
    writer.write(client_frame(wsc.OP_CONTINUATION, payload[50_000:], mask=os.urandom(4)))
    echoed = bytearray()
    while len(echoed) < len(payload):
        _op, _fin, data = await asyncio.wait_for(read_frame(reader), WAIT)
        echoed += data
    assert bytes(echoed) == payload
    writer.close()


@pytest.mark.parametrize(("frame", "code"), [
    (client_frame(wsc.OP_BINARY, b"", length=100_001), wsc.CLOSE_TOO_BIG),
    (client_frame(wsc.OP_TEXT, b"hello"), wsc.CLOSE_UNSUPPORTED_DATA),
    (client_frame(wsc.OP_BINARY, b"hello", mask=None), wsc.CLOSE_PROTOCOL_ERROR),
])
async def test_violations_close_with_code(server: Server, frame: bytes, code: int) -> None:
    reader, writer = await server.upgraded()
    writer.write(frame)
    assert await asyncio.wait_for(read_close(reader), WAIT) == code
    assert await _eof(reader) == b""
    await asyncio.wait_for(server.inners[0].lost.wait(), WAIT)
    writer.close()


async def test_client_initiated_close(server: Server) -> None:
    reader, writer = await server.upgraded()
    writer.write(client_frame(wsc.OP_BINARY, b"last") + client_frame(wsc.OP_CLOSE, struct.pack("!H", 1001)))
    assert (await asyncio.wait_for(read_frame(reader), WAIT))[2] == b"last"
    assert await asyncio.wait_for(read_close(reader), WAIT) == 1001  # echoed
    assert await _eof(reader) == b""  # and the server closes the TCP connection first
    await asyncio.wait_for(server.inners[0].lost.wait(), WAIT)
    assert bytes(server.inners[0].received) == b"last"
    writer.close()


async def test_server_initiated_close_waits_for_the_client(server: Server) -> None:
    reader, writer = await server.upgraded()
    writer.write(client_frame(wsc.OP_BINARY, b"close!"))
    assert await asyncio.wait_for(read_close(reader), WAIT) == wsc.CLOSE_NORMAL
    inner = server.inners[0]
    assert inner.transport is not None and inner.transport.is_closing()
    inner.transport.write(b"ignored after close")
    assert not inner.lost.is_set()
    writer.write(client_frame(wsc.OP_CLOSE, struct.pack("!H", 1000)))
    assert await _eof(reader) == b""
    await asyncio.wait_for(inner.lost.wait(), WAIT)
    writer.close()


async def test_server_close_accepts_an_unmasked_close_reply(server: Server) -> None:
    reader, writer = await server.upgraded()
    writer.write(client_frame(wsc.OP_BINARY, b"close!"))
    assert await asyncio.wait_for(read_close(reader), WAIT) == wsc.CLOSE_NORMAL
    writer.write(client_frame(wsc.OP_CLOSE, struct.pack("!H", 1000), mask=None))  # as paho-mqtt replies
    assert await _eof(reader) == b""
    writer.close()


async def test_server_close_times_out_on_a_silent_client(server: Server) -> None:
    reader, writer = await server.upgraded()
    writer.write(client_frame(wsc.OP_BINARY, b"close!"))
    assert await asyncio.wait_for(read_close(reader), WAIT) == wsc.CLOSE_NORMAL
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), WAIT)  # dropped after close_timeout
    await asyncio.wait_for(server.inners[0].lost.wait(), WAIT)
    writer.close()


async def test_pause_reading_reaches_the_socket(server: Server) -> None:
    reader, writer = await server.upgraded()
    writer.write(client_frame(wsc.OP_BINARY, b"pause!"))
    inner = server.inners[0]  # made in the same callback that wrote the 101 response
    await asyncio.wait_for(inner.got.wait(), WAIT)
    assert inner.transport is not None and not inner.transport.is_reading()
    inner.transport.resume_reading()
    assert inner.transport.is_reading()
    writer.write(client_frame(wsc.OP_BINARY, b"again"))
    assert (await asyncio.wait_for(read_frame(reader), WAIT))[2] == b"again"
    writer.close()


async def test_interop_with_the_websockets_library(server: Server) -> None:
    client = pytest.importorskip("websockets.asyncio.client")
    async with client.connect(f"ws://127.0.0.1:{server.port}/mqtt", subprotocols=["mqtt"],
                              max_size=None, open_timeout=WAIT, close_timeout=WAIT) as ws:
        assert ws.subprotocol == "mqtt"
        payload = os.urandom(70_000)
        await ws.send(payload)
        got = bytearray()
        while len(got) < len(payload):
            got += await asyncio.wait_for(ws.recv(), WAIT)
        assert bytes(got) == payload
        await ws.ping()
        await ws.send(b"close!")
        await asyncio.wait_for(ws.wait_closed(), WAIT)
        assert ws.close_code == wsc.CLOSE_NORMAL


@pytest.mark.parametrize(("kwargs", "status", "header"), [
    ({"version": "8"}, 426, ("sec-websocket-version", "13")),  # RFC 6455 4.4: say which version we speak
    ({"key": "tooshort"}, 400, None),
    ({"key": ""}, 400, None),
    ({"protocol": "stomp"}, 400, None),
    ({"extra": "Origin: https://a.example\r\nOrigin: https://b.example\r\n"}, 400, None),
])
async def test_handshake_refusals(server: Server, kwargs: dict[str, str], status: int,
                                  header: tuple[str, str] | None) -> None:
    reader, writer = await server.open()
    req, _ = upgrade_request(**kwargs)  # type: ignore[arg-type]
    writer.write(req)
    got, headers = await asyncio.wait_for(read_response_head(reader), WAIT)
    assert got == status
    assert headers["connection"] == "close"
    if header is not None:
        assert headers[header[0]] == header[1]
    body = await _eof(reader)
    assert body.count(b"\n") == 1  # a one-line reason
    assert server.inners == []
    writer.close()


@pytest.mark.parametrize("request_bytes", [b"garbage\r\n\r\n", b"GET /mqtt SPDY/3\r\n\r\n"])
async def test_non_http_gets_400(server: Server, request_bytes: bytes) -> None:
    reader, writer = await server.open()
    writer.write(request_bytes)
    status, _ = await asyncio.wait_for(read_response_head(reader), WAIT)
    assert status == 400
    await _eof(reader)
    writer.close()


async def test_request_head_over_8k_in_short_lines_is_refused(server: Server) -> None:
    reader, writer = await server.open()
    writer.write(b"GET /mqtt HTTP/1.1\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 60) for i in range(120)))
    status, _ = await asyncio.wait_for(read_response_head(reader), WAIT)
    assert status == 431
    writer.close()


@pytest.mark.parametrize(("frame", "code"), [
    (client_frame(wsc.OP_CONTINUATION, b"x"), wsc.CLOSE_PROTOCOL_ERROR),  # continuation without a message
    (client_frame(wsc.OP_BINARY, b"a", fin=False) + client_frame(wsc.OP_BINARY, b"b"), wsc.CLOSE_PROTOCOL_ERROR),
    (client_frame(wsc.OP_PING, b"x", fin=False), wsc.CLOSE_PROTOCOL_ERROR),  # fragmented control frame
    (client_frame(wsc.OP_PING, b"x" * 126), wsc.CLOSE_PROTOCOL_ERROR),  # control frame too long
    (client_frame(0x3, b"x"), wsc.CLOSE_PROTOCOL_ERROR),  # reserved data opcode
    (client_frame(wsc.OP_BINARY, b"x", rsv=4), wsc.CLOSE_PROTOCOL_ERROR),  # RSV1 without an extension
    (client_frame(wsc.OP_CLOSE, struct.pack("!H", 999)), wsc.CLOSE_PROTOCOL_ERROR),  # invalid close code
    (client_frame(wsc.OP_CLOSE, struct.pack("!H", 1000) + b"\xff\xfe"), wsc.CLOSE_INVALID_PAYLOAD),
])
async def test_protocol_errors_close_with_code(server: Server, frame: bytes, code: int) -> None:
    reader, writer = await server.upgraded()
    writer.write(client_frame(wsc.OP_BINARY, b"before") + frame)
    echoed = bytearray()
    while True:
        op, _fin, payload = await asyncio.wait_for(read_frame(reader), WAIT)
        if op == wsc.OP_CLOSE:
            break
        echoed += payload
    assert echoed.startswith(b"before")  # data before the error still counts
    assert struct.unpack("!H", payload[:2])[0] == code
    assert await _eof(reader) == b""
    await asyncio.wait_for(server.inners[0].lost.wait(), WAIT)
    writer.close()


async def test_frames_split_at_every_byte(server: Server) -> None:
    reader, writer = await server.upgraded()
    payloads = [os.urandom(n) for n in (1, 125, 126, 300)]
    stream = b"".join(client_frame(wsc.OP_BINARY, p, mask=os.urandom(4)) for p in payloads)
    for i in range(len(stream)):
        writer.write(stream[i:i + 1])
        await writer.drain()
    want = b"".join(payloads)
    echoed = bytearray()
    while len(echoed) < len(want):
        echoed += (await asyncio.wait_for(read_frame(reader), WAIT))[2]
    assert bytes(echoed) == want
    writer.close()
