"""A tiny WebSocket client-side toolkit for the transport tests: frame builder, frame reader, raw handshake.

Independent of ``workers.transport`` and of the ``websockets`` library on purpose (its own frame
encoding and parsing), so a bug in the server's framing cannot hide itself in the tests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, CLOSE_UNSUPPORTED_DATA, CLOSE_INVALID_PAYLOAD, CLOSE_TOO_BIG = (
    1000, 1002, 1003, 1007, 1009)


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bytes | None = b"\x37\xfa\x21\x3d",
                 rsv: int = 0, length: int | None = None) -> bytes:
    """One client frame; ``mask=None`` sends it unmasked, ``length`` overrides the declared length."""
    n = len(payload) if length is None else length
    head = bytearray([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 65536:
        head.append(mbit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack("!Q", n)
    if mask is None:
        return bytes(head) + payload
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes(head) + mask + body


def upgrade_request(path: str = "/mqtt", *, protocol: str | None = "mqtt", key: str | None = None,
                    extra: str = "", method: str = "GET", version: str = "13") -> tuple[bytes, str]:
    """(request bytes, expected Sec-WebSocket-Accept)."""
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", f"Sec-WebSocket-Version: {version}"]
    if protocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    req = "\r\n".join(lines) + "\r\n" + extra + "\r\n"
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    return req.encode(), accept


async def read_response_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    return status, headers


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """(opcode, fin, payload) of one server frame; server frames must not be masked."""
    b0, b1 = await reader.readexactly(2)
    assert not b1 & 0x80, "server frames must not be masked"
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    return b0 & 0x0F, bool(b0 & 0x80), await reader.readexactly(n)


async def read_close(reader: asyncio.StreamReader) -> int | None:
    """Skip data frames until a close frame; its status code (None when it has none)."""
    while True:
        opcode, _fin, payload = await read_frame(reader)
        if opcode == 0x8:
            return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
