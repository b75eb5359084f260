"""RFC 6455 server side without I/O: the opening handshake, a streaming frame reader, frame encoding.

``parse_request`` turns the HTTP/1.1 Upgrade request head into a ``Handshake``
(with the 101 response to send) or raises ``HandshakeError`` carrying the
HTTP status and the full error response. ``FrameReader.feed`` takes bytes as
they arrive and returns the unmasked payload of binary and continuation
frames *as soon as it arrives* (a frame is never buffered whole: MQTT packets
may span frames and frames may hold several packets, so only the byte stream
matters), the control frames that completed, and the first protocol error as
a ``WebSocketError`` with its close code. Invariants: the reader buffers at
most one partial frame header or one control frame (<= 139 bytes); after a
close frame or an error it returns nothing more; client frames must be masked
[RFC 6455 5.1]; text frames fail with 1003 [MQTT-6.0.0-1]; a frame longer
than ``max_frame_size`` fails with 1009.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass, field

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_REQUEST_BYTES = 8192  # request line + headers
SUBPROTOCOLS = ("mqtt", "mqttv3.1")

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_NO_STATUS = 1005
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011

_REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 426: "Upgrade Required",
            431: "Request Header Fields Too Large"}


# ------------------------------------------------------------------ handshake


class HandshakeError(Exception):
    """The upgrade request is refused: ``response()`` is the whole HTTP answer to send before closing."""

    def __init__(self, status: int, detail: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(f"{status} {detail}")
        self.status = status
        self.detail = detail
        self.headers = headers

    def response(self) -> bytes:
        body = (self.detail + "\n").encode()
        lines = [f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Error')}",
                 "Content-Type: text/plain; charset=utf-8", f"Content-Length: {len(body)}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass(slots=True)
class Handshake:
    path: str
    query: str
    subprotocol: str | None
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names; repeated ones joined by ", "
    response: bytes = b""


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` [RFC 6455 4.2.2]."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + GUID).digest()).decode("ascii")


def _tokens(value: str) -> list[str]:
    return [t.strip().lower() for t in value.split(",") if t.strip()]


def parse_origins(value: str) -> frozenset[str] | None:
    """The allowed-origins setting (comma list) as normalised origins; None (any origin) when empty."""
    origins = frozenset(normalise_origin(o) for o in value.split(",") if o.strip())
    return None if not origins or "*" in origins else origins


def normalise_origin(origin: str) -> str:
    """An Origin value compared case-insensitively, without a trailing ``/``."""
    return origin.strip().lower().rstrip("/")


def parse_request(head: bytes, *, path: str = "/mqtt", subprotocols: tuple[str, ...] = SUBPROTOCOLS,
                  allowed_origins: frozenset[str] | None = None, require_subprotocol: bool = False) -> Handshake:
    """Validate an upgrade request head (without the final blank line) and build the 101 answer.

    Subprotocol: the first of ``subprotocols`` the client offers; a client that
    offers only others is refused (400); one that offers none is accepted
    without the header (lenient towards clients that omit it) unless
    ``require_subprotocol`` (then 400). Origin: with ``allowed_origins`` (see
    ``parse_origins``), a request whose ``Origin`` is not in the set is refused
    (403): that stops other web sites' pages from opening connections with a
    visitor's browser. A request without ``Origin`` (not a browser) passes:
    such a client can send any Origin it likes, so refusing it protects nothing.
    """
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise HandshakeError(400, "undecodable request") from exc
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise HandshakeError(400, "malformed request line")
    method, target, version = parts
    if version != "HTTP/1.1":
        raise HandshakeError(400, "HTTP/1.1 required")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HandshakeError(400, "malformed header line")
        name, value = name.lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if method != "GET":
        raise HandshakeError(405, "only GET upgrades to WebSocket", (("Allow", "GET"),))
    req_path, _, query = target.partition("?")
    if req_path != path:
        raise HandshakeError(404, f"no WebSocket endpoint at {req_path}")
    if "websocket" not in _tokens(headers.get("upgrade", "")):
        raise HandshakeError(400, "Upgrade: websocket header required")
    if "upgrade" not in _tokens(headers.get("connection", "")):
        raise HandshakeError(400, "Connection: Upgrade header required")
    if headers.get("sec-websocket-version", "") != "13":
        raise HandshakeError(426, "WebSocket version 13 required", (("Sec-WebSocket-Version", "13"),))
    key = headers.get("sec-websocket-key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError(key)
    except (ValueError, binascii.Error) as exc:
        raise HandshakeError(400, "Sec-WebSocket-Key must be 16 bytes, base64-encoded") from exc
    origin = headers.get("origin")
    if allowed_origins is not None and origin is not None and normalise_origin(origin) not in allowed_origins:
        raise HandshakeError(403, "origin not allowed")
    offered = _tokens(headers.get("sec-websocket-protocol", ""))
    chosen = next((p for p in subprotocols if p.lower() in offered), None)
    if (offered or require_subprotocol) and chosen is None:
        raise HandshakeError(400, f"unsupported subprotocol; this server speaks {', '.join(subprotocols)}")
    lines_out = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Accept: {accept_key(key)}"]
    if chosen is not None:
        lines_out.append(f"Sec-WebSocket-Protocol: {chosen}")
    response = ("\r\n".join(lines_out) + "\r\n\r\n").encode("latin-1")
    return Handshake(req_path, query, chosen, headers, response)


# ------------------------------------------------------------------ frames


class WebSocketError(Exception):
    """A protocol violation by the peer: fail the connection with close ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


def frame_header(opcode: int, length: int, *, fin: bool = True) -> bytes:
    """Header of an unmasked (server) frame with a ``length``-byte payload."""
    b0 = (0x80 if fin else 0) | opcode
    if length < 126:
        return bytes((b0, length))
    if length < 65536:
        return struct.pack("!BBH", b0, 126, length)
    return struct.pack("!BBQ", b0, 127, length)


def encode_frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    return frame_header(opcode, len(payload), fin=fin) + payload


def close_payload(code: int | None, reason: str = "") -> bytes:
    """Body of a close frame; ``None`` means no status code (an empty body)."""
    if code is None:
        return b""
    return struct.pack("!H", code) + reason.encode("utf-8")[:123]


def unmask(data: bytes | memoryview, mask: bytes, offset: int = 0) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` starting at mask position ``offset`` (one C-speed big-int XOR)."""
    n = len(data)
    if n == 0:
        return b""
    r = offset & 3
    if r:
        mask = mask[r:] + mask[:r]
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def _valid_close_code(code: int) -> bool:
    if 1000 <= code <= 1014:
        return code not in (1004, 1005, 1006)
    return 3000 <= code <= 4999


class FrameReader:
    """Streaming frame parser for one connection (client-to-server direction)."""

    __slots__ = ("_buf", "_done", "_fin", "_in_message", "_mask", "_offset", "_remaining",
                 "max_frame_size", "require_mask")

    def __init__(self, max_frame_size: int, *, require_mask: bool = True) -> None:
        self.max_frame_size = max_frame_size
        self.require_mask = require_mask
        self._buf = b""  # a partial header or control frame
        self._remaining = 0  # payload bytes left in the current data frame
        self._mask = b""
        self._offset = 0
        self._fin = True
        self._in_message = False  # a fragmented binary message is open
        self._done = False  # a close frame or an error was returned

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, data: bytes) -> tuple[bytes, list[tuple[int, bytes]], WebSocketError | None]:
        """Bytes in; out: the data payload, the completed control frames, the error that stopped parsing."""
        if self._done:
            return b"", [], None
        if self._buf:
            data = self._buf + data
            self._buf = b""
        out: list[bytes] = []
        controls: list[tuple[int, bytes]] = []
        pos, n = 0, len(data)
        view = memoryview(data)
        try:
            while pos < n:
                if self._remaining:
                    take = min(self._remaining, n - pos)
                    chunk = view[pos:pos + take]
                    out.append(unmask(chunk, self._mask, self._offset) if self._mask else bytes(chunk))
                    self._offset += take
                    self._remaining -= take
                    pos += take
                    if not self._remaining:
                        self._end_data_frame()
                    continue
                if n - pos < 2:
                    break
                b0, b1 = data[pos], data[pos + 1]
                ln = b1 & 0x7F
                masked = b1 & 0x80
                hlen = 2 + (2 if ln == 126 else 8 if ln == 127 else 0) + (4 if masked else 0)
                if n - pos < hlen:
                    break
                if ln == 126:
                    ln = int.from_bytes(data[pos + 2:pos + 4], "big")
                elif ln == 127:
                    ln = int.from_bytes(data[pos + 2:pos + 10], "big")
                    if ln >> 63:
                        raise WebSocketError(CLOSE_PROTOCOL_ERROR, "payload length has its top bit set")
                opcode = b0 & 0x0F
                fin = bool(b0 & 0x80)
                self._check(b0, opcode, fin, ln, bool(masked))
                mask = data[pos + hlen - 4:pos + hlen] if masked else b""
                if opcode >= 0x8:
                    if n - pos < hlen + ln:
                        break
                    body = data[pos + hlen:pos + hlen + ln]
                    pos += hlen + ln
                    if mask:
                        body = unmask(body, mask)
                    if opcode == OP_CLOSE:
                        controls.append((OP_CLOSE, _check_close(body)))
                        self._done = True
                        return b"".join(out), controls, None
                    controls.append((opcode, body))
                    continue
                pos += hlen
                self._in_message = True
                self._fin = fin
                self._mask = mask
                self._offset = 0
                self._remaining = ln
                if not ln:
                    self._end_data_frame()
        except WebSocketError as exc:
            self._done = True
            return b"".join(out), controls, exc
        if pos < n:
            self._buf = bytes(view[pos:])
        return b"".join(out), controls, None

    def _end_data_frame(self) -> None:
        if self._fin:
            self._in_message = False

    def _check(self, b0: int, opcode: int, fin: bool, length: int, masked: bool) -> None:
        if b0 & 0x70:
            raise WebSocketError(CLOSE_PROTOCOL_ERROR, "reserved bits set without an extension")
        if self.require_mask and not masked:
            raise WebSocketError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
        if opcode >= 0x8:
            if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
                raise WebSocketError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
            if not fin or length > 125:
                raise WebSocketError(CLOSE_PROTOCOL_ERROR, "control frames must be unfragmented, <= 125 bytes")
            return
        if opcode == OP_TEXT:
            raise WebSocketError(CLOSE_UNSUPPORTED_DATA, "MQTT needs binary frames, not text")
        if opcode == OP_CONTINUATION:
            if not self._in_message:
                raise WebSocketError(CLOSE_PROTOCOL_ERROR, "continuation frame outside a message")
        elif opcode == OP_BINARY:
            if self._in_message:
                raise WebSocketError(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented message")
        else:
            raise WebSocketError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
        if length > self.max_frame_size:
            raise WebSocketError(CLOSE_TOO_BIG, f"frame of {length} bytes exceeds {self.max_frame_size}")


def _check_close(body: bytes) -> bytes:
    """Validate a close frame body [RFC 6455 5.5.1, 7.4]; returns it unchanged."""
    if not body:
        return body
    if len(body) == 1:
        raise WebSocketError(CLOSE_PROTOCOL_ERROR, "close frame body of one byte")
    code = int.from_bytes(body[:2], "big")
    if not _valid_close_code(code):
        raise WebSocketError(CLOSE_PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        body[2:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebSocketError(CLOSE_INVALID_PAYLOAD, "close reason is not UTF-8") from exc
    return body


def parse_close(body: bytes) -> tuple[int | None, str]:
    """(code, reason) of a validated close frame body; ``(None, "")`` when it has none."""
    if len(body) < 2:
        return None, ""
    return int.from_bytes(body[:2], "big"), body[2:].decode("utf-8", "replace")
