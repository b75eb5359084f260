"""MQTT over WebSocket on asyncio: the ``websockets`` sans-IO ``ServerProtocol`` behind an asyncio.Protocol.

``WebSocketProtocol`` is the ``asyncio.Protocol`` the listener creates per
TCP (or TLS) connection. It feeds the socket's bytes to a
``websockets.server.ServerProtocol`` (RFC 6455 handshake, frame parsing,
masking, ping/pong and the closing handshake all live there) and writes out
whatever that protocol has to send. Our own parts are the policy around it:
the WebSocket path (404), the allowed origins (403, compared
case-insensitively and without a trailing ``/``; a request without
``Origin`` is not a browser and passes), the subprotocol (``mqtt``, else
``mqttv3.1``; a client offering only others gets 400, one offering none is
accepted unless ``require_subprotocol``), a request head of at most
``MAX_REQUEST_BYTES`` (431), text frames closing with 1003 [MQTT-6.0.0-1],
and ``max_frame_size`` per frame (1009).

After a successful upgrade it creates the inner protocol (the worker's
``MQTTConnection``) and hands it a ``WebSocketTransport``: each ``write()``
becomes one binary frame, and the payload of every received binary or
continuation frame is passed on to ``data_received``, so the inner protocol
sees the same byte stream as over TCP (MQTT packets may span frames and
frames may hold several packets). Flow control and ``get_extra_info``
(peername, peercert, ssl_object...) go straight to the socket transport.

Invariants: the inner protocol gets ``connection_made`` only after a
successful upgrade and exactly one ``connection_lost`` (when the socket
closes); every refusal is an HTTP answer with a one-line reason, then a
close; no data reaches the inner protocol once a close frame was sent or
received; a close started by the server waits at most ``close_timeout`` for
the client's close frame, then drops the socket; a handshake not completed
within ``handshake_timeout`` drops the socket.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

from websockets.exceptions import InvalidHeader, InvalidMessage, InvalidUpgrade, NegotiationError
from websockets.frames import BINARY, CONT, TEXT, CloseCode, Frame
from websockets.http11 import Request, Response
from websockets.protocol import OPEN
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

_MISSING = object()
log = logging.getLogger("tidemq.ws")
# the library logs every open/close at INFO: keep its warnings and errors, not one line per connection
_LIB_LOG = logging.getLogger("tidemq.ws.lib")
_LIB_LOG.setLevel(logging.WARNING)

HANDSHAKE_TIMEOUT = 10.0
CLOSE_TIMEOUT = 3.0
MAX_REQUEST_BYTES = 8192  # request line + headers
SUBPROTOCOLS = ("mqtt", "mqttv3.1")


def parse_origins(value: str) -> frozenset[str] | None:
    """The allowed-origins setting (comma list) as normalised origins; None (any origin) when empty."""
    origins = frozenset(normalise_origin(o) for o in value.split(",") if o.strip())
    return None if not origins or "*" in origins else origins


def normalise_origin(origin: str) -> str:
    """An Origin value compared case-insensitively, without a trailing ``/``."""
    return origin.strip().lower().rstrip("/")


@functools.lru_cache(maxsize=16)
def _origin_patterns(allowed: frozenset[str] | None) -> tuple[re.Pattern[str] | None, ...] | None:
    """``ServerProtocol(origins=...)`` for normalised origins: no Origin header passes, the rest must match."""
    if allowed is None:
        return None
    return (None, *(re.compile(re.escape(o) + "/?", re.IGNORECASE) for o in sorted(allowed)))


def _select(offered: Sequence[Subprotocol], ours: Sequence[Subprotocol] | None, required: bool) -> Subprotocol | None:
    wanted = {p.lower() for p in offered}
    chosen = next((p for p in ours or () if p.lower() in wanted), None)
    if chosen is None and (offered or required):
        raise NegotiationError(f"unsupported subprotocol; this server speaks {', '.join(ours or ())}")
    return chosen


def _select_lenient(protocol: ServerProtocol, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    return _select(offered, protocol.available_subprotocols, False)


def _select_required(protocol: ServerProtocol, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    return _select(offered, protocol.available_subprotocols, True)


class WebSocketTransport(asyncio.Transport):
    """What the inner protocol writes to: bytes in, binary frames out, everything else delegated."""

    def __init__(self, proto: WebSocketProtocol, sock: asyncio.Transport, extra: dict[str, Any]) -> None:
        super().__init__(extra)
        self._proto = proto
        self._ws = proto.ws
        self._sock = sock

    def write(self, data: bytes | bytearray | memoryview) -> None:
        ws = self._ws
        if not data or self._sock.is_closing():
            return
        if ws.state is OPEN:
            ws.send_binary(data)
            self._sock.writelines(ws.data_to_send())
        elif self._proto.draining:  # answering data that came just before a close frame
            self._sock.write(Frame(BINARY, bytes(data)).serialize(mask=False))

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def close(self) -> None:
        self._proto.start_close(CloseCode.NORMAL_CLOSURE)

    def abort(self) -> None:
        self._sock.abort()

    def is_closing(self) -> bool:
        return (self._ws.state is not OPEN and not self._proto.draining) or self._sock.is_closing()

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
                 max_frame_size: int = 268435460, subprotocols: tuple[str, ...] = SUBPROTOCOLS,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT, close_timeout: float = CLOSE_TIMEOUT,
                 allowed_origins: frozenset[str] | None = None, require_subprotocol: bool = False) -> None:
        self.factory = factory
        self.path = path
        self.handshake_timeout = handshake_timeout
        self.close_timeout = close_timeout
        # max_size=(message, frame): MQTT is a byte stream, so only the size of one frame is bounded
        self.ws = ServerProtocol(
            origins=_origin_patterns(allowed_origins),
            subprotocols=[Subprotocol(p) for p in subprotocols],
            select_subprotocol=_select_required if require_subprotocol else _select_lenient,
            max_size=(None, max_frame_size), logger=_LIB_LOG)
        self.inner: asyncio.Protocol | None = None
        self.transport: WebSocketTransport | None = None
        self._sock: asyncio.Transport | None = None
        self._head_bytes = 0
        self.draining = False  # delivering the data frames that preceded a close frame or a protocol error
        self._timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ socket side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._sock = transport  # type: ignore[assignment]
        self._timer = asyncio.get_running_loop().call_later(self.handshake_timeout, self._handshake_expired)

    def data_received(self, data: bytes) -> None:
        sock = self._sock
        assert sock is not None
        if sock.is_closing():
            return
        if self.inner is None:
            self._handshake(data)
            return
        ws = self.ws
        was_open = ws.state is OPEN
        ws.receive_data(data)
        events = ws.events_received()
        if not was_open:  # we sent a close frame: nothing more reaches the inner protocol
            self._flush()
            return
        if ws.state is OPEN:
            self._deliver(events)
            self._flush()
            return
        # a close frame or a protocol error ended this chunk: the data frames before it are still delivered,
        # and what the inner protocol writes back goes out before the close frame and the end of stream
        queued = ws.data_to_send()
        self.draining = True
        try:
            self._deliver(events)
        finally:
            self.draining = False
        self._send(queued + ws.data_to_send())

    def eof_received(self) -> bool:
        return False  # the socket transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
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
        ws, sock = self.ws, self._sock
        assert sock is not None
        self._head_bytes += len(data)
        ws.receive_data(data)
        events = ws.events_received()
        if not events or not isinstance(events[0], Request):
            exc = ws.handshake_exc
            if isinstance(exc, InvalidMessage):  # not HTTP at all: the library closes without an answer
                ws.data_to_send()
                self._refuse(ws.reject(400, f"malformed request: {exc.__cause__ or exc}\n"))
            elif exc is None and self._head_bytes > MAX_REQUEST_BYTES:
                self._refuse(ws.reject(431, "request head too large\n"))
            else:  # incomplete, or refused by the library (414/431): its answer is queued
                self._log_refusal(exc)
                self._flush()
            return
        request = events[0]
        response = self._answer(request)
        if response.status_code != 101:
            self._refuse(response)  # frames pipelined behind the request are dropped with the socket
            return
        early = ws.data_to_send()  # pongs (or an end of stream) for frames pipelined behind the request
        ws.send_response(response)
        self._cancel_timer()
        self._send(ws.data_to_send())
        path, _, query = request.path.partition("?")
        headers: dict[str, str] = {}
        for name, value in request.headers.raw_items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        extra = {"websocket_path": path, "websocket_query": query,
                 "websocket_subprotocol": ws.subprotocol, "websocket_headers": headers}
        self.transport = WebSocketTransport(self, sock, extra)
        self.inner = self.factory()
        self.inner.connection_made(self.transport)
        self._deliver(events[1:])
        self._send(early + ws.data_to_send())

    def _answer(self, request: Request) -> Response:
        """The library's answer to an upgrade request, after our path check and with our status codes."""
        ws = self.ws
        path = request.path.partition("?")[0]
        if path != self.path:
            return ws.reject(404, f"no WebSocket endpoint at {path}\n")
        response = ws.accept(request)
        exc = ws.handshake_exc
        if isinstance(exc, InvalidUpgrade):  # a plain HTTP request: 400 (the library says 426)
            response = ws.reject(400, f"Upgrade: websocket and Connection: Upgrade required ({exc})\n")
        elif isinstance(exc, InvalidHeader) and exc.name == "Sec-WebSocket-Version":
            response = ws.reject(426, "WebSocket version 13 required\n")  # RFC 6455 4.4
            response.headers["Sec-WebSocket-Version"] = "13"
        return response

    def _refuse(self, response: Response) -> None:
        sock = self._sock
        assert sock is not None
        self._log_refusal(f"{response.status_code} {response.body.decode(errors='replace').strip()}")
        self._cancel_timer()
        sock.write(response.serialize())
        sock.close()

    def _log_refusal(self, why: object) -> None:
        if why is None:
            return
        sock = self._sock
        assert sock is not None
        log.info("websocket upgrade refused from %s: %s", sock.get_extra_info("peername"), why,
                 extra={"event": "ws_refused"})

    def _handshake_expired(self) -> None:
        self._timer = None
        if self.inner is None and self._sock is not None:
            self._sock.close()

    # ------------------------------------------------------------ frames

    def _deliver(self, events: Sequence[Any]) -> None:
        """Pass the payload of data frames on (one call per chunk read), up to a text frame (fails with 1003)."""
        ws = self.ws
        deliverable = ws.state is OPEN or self.draining  # checked before a text frame fails the connection
        payloads = []
        for frame in events:
            opcode = frame.opcode
            if opcode is BINARY or opcode is CONT:
                payloads.append(frame.data)
            elif opcode is TEXT:
                if ws.state is OPEN:
                    ws.fail(CloseCode.UNSUPPORTED_DATA, "MQTT needs binary frames, not text")
                break
        inner = self.inner
        if payloads and inner is not None and deliverable:
            inner.data_received(payloads[0] if len(payloads) == 1 else b"".join(payloads))
        if ws.parser_exc is not None and self._sock is not None and ws.state is not OPEN:
            log.info("websocket protocol error from %s: %s", self._sock.get_extra_info("peername"), ws.parser_exc)

    def _flush(self) -> None:
        """Send what the library queued; its end-of-stream marker (b"") closes the socket."""
        self._send(self.ws.data_to_send())

    def _send(self, chunks: list[bytes]) -> None:
        sock = self._sock
        assert sock is not None
        for chunk in chunks:
            if chunk:
                if not sock.is_closing():
                    sock.write(chunk)
            else:
                self._cancel_timer()
                sock.close()

    def start_close(self, code: int, reason: str = "") -> None:
        """Server-side close (the inner transport's ``close()``): send a close frame, await the client's."""
        sock = self._sock
        if self.ws.state is not OPEN or sock is None or sock.is_closing():
            return
        self.ws.send_close(code, reason)
        self._flush()
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
