"""MQTT over WebSocket on asyncio: a protocol wrapper whose inner transport speaks binary frames.

``WebSocketProtocol`` is the ``asyncio.Protocol`` the listener creates per
TCP (or TLS) connection. It answers the HTTP/1.1 Upgrade request (refusals
get their HTTP status and a close), then creates the inner protocol (the
worker's ``MQTTConnection``) and hands it a ``WebSocketTransport``: each
``write()`` becomes one unmasked binary frame, and the payload of every
received binary/continuation frame is passed on to ``data_received`` as it
arrives, so the inner protocol sees the same byte stream as over TCP.
Flow control (``pause_reading``, ``get_write_buffer_size``, ``pause_writing``)
and ``get_extra_info`` (peername, peercert, ssl_object...) go straight to the
socket transport. Invariants: the inner protocol gets ``connection_made``
only after a successful upgrade and exactly one ``connection_lost`` (when
the socket closes); the handshake enforces the optional allowed origins (403)
and required subprotocol (400) given to the constructor; pings are answered; a close started by either side is
completed (the server waits at most ``close_timeout`` for the client's
close frame, then drops the socket); a protocol error closes with its code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from . import ws_protocol as wsp

_MISSING = object()
log = logging.getLogger("tidemq.ws")

HANDSHAKE_TIMEOUT = 10.0
CLOSE_TIMEOUT = 3.0
_LARGE_WRITE = 16384  # above this, header and payload go out as two buffers instead of one copy


class WebSocketTransport(asyncio.Transport):
    """What the inner protocol writes to: bytes in, binary frames out, everything else delegated."""

    def __init__(self, proto: WebSocketProtocol, sock: asyncio.Transport, extra: dict[str, Any]) -> None:
        super().__init__(extra)
        self._proto = proto
        self._sock = sock

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._proto.close_sent or self._sock.is_closing():
            return
        n = len(data)
        if not n:
            return
        header = wsp.frame_header(wsp.OP_BINARY, n)
        if n < _LARGE_WRITE:
            self._sock.write(header + bytes(data))
        else:
            self._sock.writelines((header, data))

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def close(self) -> None:
        self._proto.start_close(wsp.CLOSE_NORMAL)

    def abort(self) -> None:
        self._sock.abort()

    def is_closing(self) -> bool:
        return self._proto.close_sent or self._sock.is_closing()

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("WebSocket has no half-close")

    def get_write_buffer_size(self) -> int:
        return self._sock.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._sock.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._sock.set_write_buffer_limits(high, low)

    def pause_reading(self) -> None:
        self._sock.pause_reading()

    def resume_reading(self) -> None:
        self._sock.resume_reading()

    def is_reading(self) -> bool:
        return self._sock.is_reading()

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._proto.inner  # type: ignore[return-value]

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._proto.inner = protocol  # type: ignore[assignment]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        own = super().get_extra_info(name, _MISSING)  # what the upgrade recorded (e.g. the path)
        if own is not _MISSING:
            return own
        return self._sock.get_extra_info(name, default)


class WebSocketProtocol(asyncio.Protocol):
    """One WebSocket connection; ``factory()`` makes the protocol that receives the byte stream."""

    def __init__(self, factory: Callable[[], asyncio.Protocol], *, path: str = "/mqtt",
                 max_frame_size: int = 268435460, subprotocols: tuple[str, ...] = wsp.SUBPROTOCOLS,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT, close_timeout: float = CLOSE_TIMEOUT,
                 allowed_origins: frozenset[str] | None = None, require_subprotocol: bool = False) -> None:
        self.factory = factory
        self.path = path
        self.subprotocols = subprotocols
        self.allowed_origins = allowed_origins
        self.require_subprotocol = require_subprotocol
        self.handshake_timeout = handshake_timeout
        self.close_timeout = close_timeout
        self.reader = wsp.FrameReader(max_frame_size)
        self.inner: asyncio.Protocol | None = None
        self.transport: WebSocketTransport | None = None
        self.close_sent = False
        self._sock: asyncio.Transport | None = None
        self._head = b""
        self._timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ socket side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._sock = transport  # type: ignore[assignment]
        self._timer = asyncio.get_running_loop().call_later(self.handshake_timeout, self._handshake_expired)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            self._handshake(data)
        else:
            self._frames(data)

    def eof_received(self) -> bool:
        return False  # the socket transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self.close_sent = True
        inner, self.inner = self.inner, None
        if inner is not None:
            inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    # ------------------------------------------------------------ handshake

    def _handshake(self, data: bytes) -> None:
        assert self._sock is not None
        if self._sock.is_closing():
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > wsp.MAX_REQUEST_BYTES:
                self._refuse(wsp.HandshakeError(431, "request head too large"))
            return
        if end > wsp.MAX_REQUEST_BYTES:
            self._refuse(wsp.HandshakeError(431, "request head too large"))
            return
        head, rest = self._head[:end], self._head[end + 4:]
        self._head = b""
        try:
            hs = wsp.parse_request(head, path=self.path, subprotocols=self.subprotocols,
                                   allowed_origins=self.allowed_origins, require_subprotocol=self.require_subprotocol)
        except wsp.HandshakeError as exc:
            self._refuse(exc)
            return
        self._cancel_timer()
        self._sock.write(hs.response)
        extra = {"websocket_path": hs.path, "websocket_query": hs.query,
                 "websocket_subprotocol": hs.subprotocol, "websocket_headers": hs.headers}
        self.transport = WebSocketTransport(self, self._sock, extra)
        self.inner = self.factory()
        self.inner.connection_made(self.transport)
        if rest:
            self._frames(rest)

    def _refuse(self, exc: wsp.HandshakeError) -> None:
        assert self._sock is not None
        log.info("websocket upgrade refused from %s: %s", self._sock.get_extra_info("peername"), exc,
                 extra={"event": "ws_refused", "code": exc.status})
        self._cancel_timer()
        self._sock.write(exc.response())
        self._sock.close()

    def _handshake_expired(self) -> None:
        self._timer = None
        if self.inner is None and self._sock is not None:
            self._sock.close()

    # ------------------------------------------------------------ frames

    def _frames(self, data: bytes) -> None:
        sock = self._sock
        assert sock is not None
        payload, controls, error = self.reader.feed(data)
        if payload and not self.close_sent and self.inner is not None:
            self.inner.data_received(payload)
        for opcode, body in controls:
            if opcode == wsp.OP_PING:
                if not self.close_sent and not sock.is_closing():
                    sock.write(wsp.encode_frame(wsp.OP_PONG, body))
            elif opcode == wsp.OP_CLOSE:
                if not self.close_sent:  # the client starts the close: echo its code, then drop the socket
                    code, _reason = wsp.parse_close(body)
                    self.close_sent = True
                    sock.write(wsp.encode_frame(wsp.OP_CLOSE, wsp.close_payload(code)))
                self._cancel_timer()
                sock.close()
                return
        if error is not None:
            if self.close_sent:
                # waiting for the client's close frame (some clients send it unmasked): just drop the socket
                self._cancel_timer()
                sock.close()
                return
            log.info("websocket protocol error from %s: %s", sock.get_extra_info("peername"), error)
            self.close_sent = True
            if not sock.is_closing():
                sock.write(wsp.encode_frame(wsp.OP_CLOSE, wsp.close_payload(error.code, error.reason)))
            sock.close()

    def start_close(self, code: int, reason: str = "") -> None:
        """Server-side close (the inner transport's ``close()``): send a close frame, await the client's."""
        sock = self._sock
        if self.close_sent or sock is None or sock.is_closing():
            return
        self.close_sent = True
        sock.write(wsp.encode_frame(wsp.OP_CLOSE, wsp.close_payload(code, reason)))
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(self.close_timeout, self._close_expired)
        # a paused reader would never see the client's close frame
        if not sock.is_reading():
            sock.resume_reading()

    def _close_expired(self) -> None:
        self._timer = None
        if self._sock is not None and not self._sock.is_closing():
            self._sock.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
