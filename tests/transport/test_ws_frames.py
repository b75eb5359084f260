"""RFC 6455 handshake and frame reader, without I/O (``workers.transport.ws_protocol``)."""

from __future__ import annotations

import itertools
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tidemq.worker.transport import ws_protocol as wsp

from tests.transport.wsclient import client_frame, upgrade_request


def _head(req: bytes) -> bytes:
    return req[: req.index(b"\r\n\r\n")]


# ------------------------------------------------------------------ handshake


def test_rfc_sample_key() -> None:
    assert wsp.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3


@pytest.mark.parametrize(("offered", "chosen"), [
    ("mqtt", "mqtt"), ("mqttv3.1", "mqttv3.1"), ("mqttv3.1, mqtt", "mqtt"), ("MQTT", "mqtt"), (None, None)])
def test_handshake_accepts_and_picks_subprotocol(offered: str | None, chosen: str | None) -> None:
    req, accept = upgrade_request("/mqtt", protocol=offered)
    hs = wsp.parse_request(_head(req + b""), path="/mqtt")
    assert hs.subprotocol == chosen
    assert hs.path == "/mqtt"
    text = hs.response.decode()
    assert text.startswith("HTTP/1.1 101 Switching Protocols\r\n") and text.endswith("\r\n\r\n")
    assert f"Sec-WebSocket-Accept: {accept}\r\n" in text
    assert ("Sec-WebSocket-Protocol: " in text) == (chosen is not None)
    if chosen:
        assert f"Sec-WebSocket-Protocol: {chosen}\r\n" in text


def test_handshake_keeps_query_and_headers() -> None:
    req, _ = upgrade_request("/mqtt?token=abc", extra="X-Forwarded-For: 10.0.0.1\r\n")
    hs = wsp.parse_request(_head(req))
    assert hs.query == "token=abc"
    assert hs.headers["x-forwarded-for"] == "10.0.0.1"


@pytest.mark.parametrize(("kwargs", "status"), [
    ({"path": "/other"}, 404),
    ({"method": "POST"}, 405),
    ({"version": "8"}, 426),
    ({"key": "tooshort"}, 400),
    ({"key": ""}, 400),
    ({"protocol": "stomp"}, 400),
])
def test_handshake_refusals(kwargs: dict[str, str], status: int) -> None:
    req, _ = upgrade_request(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(wsp.HandshakeError) as info:
        wsp.parse_request(_head(req))
    assert info.value.status == status
    resp = info.value.response()
    assert resp.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"Connection: close\r\n" in resp
    if status == 426:
        assert b"Sec-WebSocket-Version: 13\r\n" in resp


@pytest.mark.parametrize("head", [
    b"GET /mqtt HTTP/1.1\r\nHost: x",  # no Upgrade/Connection
    b"GET /mqtt HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade",
    b"garbage",
    b"GET /mqtt HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Version: 13",
    b"GET /mqtt HTTP/1.1\r\nbroken header line",
])
def test_handshake_bad_requests_are_400(head: bytes) -> None:
    with pytest.raises(wsp.HandshakeError) as info:
        wsp.parse_request(head)
    assert info.value.status == 400


# ------------------------------------------------------------------ frames


def reader(max_frame: int = 1 << 20) -> wsp.FrameReader:
    return wsp.FrameReader(max_frame)


def test_masked_binary_frame() -> None:
    data, controls, err = reader().feed(client_frame(wsp.OP_BINARY, b"\x10\x00hello"))
    assert (data, controls, err) == (b"\x10\x00hello", [], None)


def test_unmasked_client_frame_is_a_protocol_error() -> None:
    _data, _c, err = reader().feed(client_frame(wsp.OP_BINARY, b"abc", mask=None))
    assert err is not None and err.code == wsp.CLOSE_PROTOCOL_ERROR


def test_unmasked_allowed_when_not_required() -> None:
    r = wsp.FrameReader(100, require_mask=False)
    assert r.feed(client_frame(wsp.OP_BINARY, b"abc", mask=None)) == (b"abc", [], None)


def test_fragmented_message_with_interleaved_ping() -> None:
    stream = (client_frame(wsp.OP_BINARY, b"first-", fin=False)
              + client_frame(wsp.OP_PING, b"hb")
              + client_frame(wsp.OP_CONTINUATION, b"second-", fin=False, mask=b"\x00\x00\x00\x00")
              + client_frame(wsp.OP_CONTINUATION, b"last", fin=True, mask=b"\xff\x01\xfe\x02"))
    data, controls, err = reader().feed(stream)
    assert err is None
    assert data == b"first-second-last"
    assert controls == [(wsp.OP_PING, b"hb")]


def test_several_frames_in_one_chunk_and_one_frame_per_byte() -> None:
    payloads = [os.urandom(n) for n in (0, 1, 125, 126, 127, 65535, 65536, 70000)]
    stream = b"".join(client_frame(wsp.OP_BINARY, p, mask=os.urandom(4)) for p in payloads)
    want = b"".join(payloads)
    assert reader().feed(stream) == (want, [], None)
    r = reader()
    got = bytearray()
    for i in range(0, 300):  # the small frames, byte by byte
        d, c, e = r.feed(stream[i:i + 1])
        assert c == [] and e is None
        got += d
    d, _c, e = r.feed(stream[300:])
    assert e is None
    assert bytes(got) + d == want


@given(payloads=st.lists(st.binary(max_size=300), max_size=8), cuts=st.lists(st.integers(0, 3000), max_size=12),
       frag=st.booleans())
@settings(max_examples=200, deadline=None)
def test_any_split_gives_the_same_stream(payloads: list[bytes], cuts: list[int], frag: bool) -> None:
    frames = []
    for i, p in enumerate(payloads):
        if frag and len(p) > 2:
            frames.append(client_frame(wsp.OP_BINARY, p[:2], fin=False, mask=os.urandom(4)))
            frames.append(client_frame(wsp.OP_PING, str(i).encode(), mask=os.urandom(4)))
            frames.append(client_frame(wsp.OP_CONTINUATION, p[2:], mask=os.urandom(4)))
        else:
            frames.append(client_frame(wsp.OP_BINARY, p, mask=os.urandom(4)))
    stream = b"".join(frames)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    r = reader()
    out = bytearray()
    for a, b in itertools.pairwise(points):
        d, _c, e = r.feed(stream[a:b])
        assert e is None
        out += d
    assert bytes(out) == b"".join(payloads)


def test_text_frame_closes_1003() -> None:
    _d, _c, err = reader().feed(client_frame(wsp.OP_TEXT, b"\x10\x00"))
    assert err is not None and err.code == wsp.CLOSE_UNSUPPORTED_DATA


def test_oversized_frame_closes_1009_before_the_payload_arrives() -> None:
    r = reader(max_frame=1000)
    _d, _c, err = r.feed(client_frame(wsp.OP_BINARY, b"", length=1001)[:8])
    assert err is not None and err.code == wsp.CLOSE_TOO_BIG
    assert r.done and r.feed(b"more") == (b"", [], None)


def test_data_before_an_error_is_still_delivered() -> None:
    stream = client_frame(wsp.OP_BINARY, b"ok") + client_frame(wsp.OP_BINARY, b"x", rsv=1)
    data, _c, err = reader().feed(stream)
    assert data == b"ok" and err is not None and err.code == wsp.CLOSE_PROTOCOL_ERROR


@pytest.mark.parametrize("frame", [
    client_frame(wsp.OP_CONTINUATION, b"x"),  # continuation without a message
    client_frame(wsp.OP_BINARY, b"a", fin=False) + client_frame(wsp.OP_BINARY, b"b"),  # new message inside one
    client_frame(wsp.OP_PING, b"x", fin=False),  # fragmented control frame
    client_frame(wsp.OP_PING, b"x" * 126),  # control frame too long
    client_frame(0x3, b"x"),  # reserved data opcode
    client_frame(0xB, b"x"),  # reserved control opcode
    client_frame(wsp.OP_BINARY, b"x", rsv=4),  # RSV1 without an extension
    client_frame(wsp.OP_CLOSE, b"\x03"),  # one-byte close body
    client_frame(wsp.OP_CLOSE, struct.pack("!H", 1005)),  # reserved close code
    client_frame(wsp.OP_CLOSE, struct.pack("!H", 999)),
    bytes([0x82, 0xFF]) + b"\x80" + b"\x00" * 7 + b"mask",  # 64-bit length with the top bit set
])
def test_protocol_errors_close_1002(frame: bytes) -> None:
    _d, _c, err = reader().feed(frame)
    assert err is not None and err.code == wsp.CLOSE_PROTOCOL_ERROR, err


def test_close_reason_must_be_utf8() -> None:
    _d, _c, err = reader().feed(client_frame(wsp.OP_CLOSE, struct.pack("!H", 1000) + b"\xff\xfe"))
    assert err is not None and err.code == wsp.CLOSE_INVALID_PAYLOAD


def test_close_frame_stops_parsing() -> None:
    r = reader()
    stream = (client_frame(wsp.OP_BINARY, b"before") + client_frame(wsp.OP_CLOSE, struct.pack("!H", 1001) + b"bye")
              + client_frame(wsp.OP_BINARY, b"after"))
    data, controls, err = r.feed(stream)
    assert data == b"before" and err is None
    assert len(controls) == 1 and controls[0][0] == wsp.OP_CLOSE
    assert wsp.parse_close(controls[0][1]) == (1001, "bye")
    assert r.done and r.feed(b"x") == (b"", [], None)
    assert wsp.parse_close(b"") == (None, "")


def test_server_frame_encoding() -> None:
    assert wsp.encode_frame(wsp.OP_BINARY, b"ab") == b"\x82\x02ab"
    assert wsp.frame_header(wsp.OP_BINARY, 126) == b"\x82\x7e\x00\x7e"
    assert wsp.frame_header(wsp.OP_BINARY, 65536) == b"\x82\x7f" + struct.pack("!Q", 65536)
    assert wsp.frame_header(wsp.OP_BINARY, 5, fin=False) == b"\x02\x05"
    assert wsp.close_payload(1000, "x") == b"\x03\xe8x"
    assert wsp.close_payload(None) == b""
    assert len(wsp.close_payload(1000, "é" * 100)) <= 125


@pytest.mark.parametrize("offset", [0, 1, 2, 3, 5])
def test_unmask_with_offset(offset: int) -> None:
    mask = b"\x01\x02\x03\x04"
    data = os.urandom(37)
    want = bytes(b ^ mask[(i + offset) % 4] for i, b in enumerate(data))
    assert wsp.unmask(data, mask, offset) == want
    assert wsp.unmask(b"", mask) == b""
