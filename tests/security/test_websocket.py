"""WebSocket handshake checks: allowed origins (403) and the required ``mqtt`` subprotocol (400).

Attack: a page on another site opens a WebSocket to the broker from a visitor's browser (cross-site
WebSocket hijacking), or a client skips the MQTT subprotocol. The upgrade must be refused with its HTTP
status before any MQTT byte is read, and a well-formed upgrade from an allowed origin must still get a
CONNACK over the same listener.
"""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Callable
from typing import Any

import pytest

from tests.conformance import wire
from tests.fixtures.brokers import BrokerProcess, free_port
from tests.security.conftest import WAIT, redis_url_of, wait_port

pytestmark = pytest.mark.redis

GOOD = "https://app.example.com"


def upgrade(port: int, *, origin: str | None, protocol: str | None) -> tuple[socket.socket, bytes]:
    """Send an upgrade request; return the socket and the response head (through the blank line)."""
    lines = ["GET /mqtt HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}", "Sec-WebSocket-Version: 13"]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    if protocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    return s, head


def masked_binary(payload: bytes) -> bytes:
    mask = os.urandom(4)
    assert len(payload) < 126
    return bytes([0x82, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@pytest.fixture
def ws_port(launch: Callable[..., BrokerProcess], redis_server: Any) -> int:
    port = free_port()
    proc = launch("worker", "--redis-url", redis_url_of(redis_server),
                  env={"TIDEMQ_WS_PORT": str(port), "TIDEMQ_WS_ALLOWED_ORIGINS": f"{GOOD}, http://localhost:3000",
                       "TIDEMQ_WS_REQUIRE_SUBPROTOCOL": "true"})
    wait_port(port, proc)
    return port


@pytest.mark.parametrize(("origin", "protocol", "status"), [
    ("https://evil.example.net", "mqtt", b"403"),
    ("https://app.example.com.evil.net", "mqtt", b"403"),
    ("null", "mqtt", b"403"),
    (GOOD, None, b"400"),
    (GOOD, "chat", b"400"),
    (None, None, b"400"),
])
def test_refused_upgrades(ws_port: int, origin: str | None, protocol: str | None, status: bytes) -> None:
    s, head = upgrade(ws_port, origin=origin, protocol=protocol)
    with s:
        assert head.startswith(b"HTTP/1.1 " + status + b" "), head
        s.sendall(masked_binary(wire.connect("late")))  # MQTT after a refusal goes nowhere
        rest = b""
        try:
            while chunk := s.recv(4096):
                rest += chunk
        except OSError:
            pass
        assert b"\x20\x02" not in rest
    fresh_client_gets_connack(ws_port)


@pytest.mark.parametrize("origin", [GOOD, "HTTPS://APP.EXAMPLE.COM/", None])  # None: not a browser
def test_allowed_upgrade_serves_mqtt(ws_port: int, origin: str | None) -> None:
    fresh_client_gets_connack(ws_port, origin=origin)


def fresh_client_gets_connack(port: int, origin: str | None = GOOD) -> None:
    s, head = upgrade(port, origin=origin, protocol="mqtt")
    with s:
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert b"Sec-WebSocket-Protocol: mqtt" in head
        s.sendall(masked_binary(wire.connect("ws-fresh")))
        frame = head.split(b"\r\n\r\n", 1)[1]
        while len(frame) < 6:
            frame += s.recv(4096)
        assert frame[:2] == b"\x82\x04" and frame[2:6] == b"\x20\x02\x00\x00", frame
