"""A tiny HTTP/1.1 client over asyncio streams: POST a body to one URL, get ``(status, body)`` back.

Enough for the webhook provider and nothing more: ``http``/``https`` URLs,
keep-alive connections pooled per client (at most ``max_idle`` idle),
``Content-Length`` and ``chunked`` response bodies (at most ``max_body``
bytes), one retry when a reused keep-alive connection turns out closed.
Every call runs under one overall timeout (``timeout`` seconds); a connection in use when the
call fails or times out is closed, never returned to the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from urllib.parse import urlsplit

from ..logs import redact_url

MAX_BODY = 1024 * 1024
MAX_HEAD = 64 * 1024


class HttpError(Exception):
    """A malformed or oversized HTTP response, or an unusable URL."""


class HttpClient:
    def __init__(self, url: str, *, timeout: float = 2.0, max_idle: int = 8, max_body: int = MAX_BODY,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.timeout = timeout
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HttpError(f"need an http:// or https:// URL with a host, got {redact_url(url)!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self.ssl = ssl_context or ssl.create_default_context()
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = self.port == (443 if self.ssl else 80)
        self.host_header = self.host if default_port else f"{self.host}:{self.port}"
        if ":" in self.host and not default_port:  # IPv6 literal
            self.host_header = f"[{self.host}]:{self.port}"
        self.max_idle = max_idle
        self.max_body = max_body
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, body: bytes, *, content_type: str = "application/json") -> tuple[int, bytes]:
        """POST ``body`` within ``self.timeout`` seconds; returns ``(status, body)``.

        Raises TimeoutError, OSError or HttpError.
        """
        head = (f"POST {self.path} HTTP/1.1\r\nHost: {self.host_header}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: keep-alive\r\nUser-Agent: tidemq\r\n\r\n").encode("latin-1")
        async with asyncio.timeout(self.timeout):
            for _attempt in range(2):
                reused = bool(self._idle)
                reader, writer = self._idle.pop() if reused else await asyncio.open_connection(
                    self.host, self.port, ssl=self.ssl, limit=MAX_HEAD)
                try:
                    writer.write(head + body)
                    await writer.drain()
                    status, data, keep = await self._read_response(reader)
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    _close(writer)
                    if reused:
                        continue  # a keep-alive connection the server had closed: one fresh try
                    raise ConnectionError(f"HTTP connection failed: {exc}") from exc
                except BaseException:
                    _close(writer)
                    raise
                if keep and len(self._idle) < self.max_idle:
                    self._idle.append((reader, writer))
                else:
                    _close(writer)
                return status, data
        raise ConnectionError("HTTP connection closed twice")  # pragma: no cover

    async def _read_response(self, reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as exc:
            raise HttpError("response head too large") from exc
        lines = raw.decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
            raise HttpError(f"bad status line {lines[0]!r}")
        try:
            status = int(status_line[1])
        except ValueError:
            raise HttpError(f"bad status line {lines[0]!r}") from None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        keep = headers.get("connection", "").lower() != "close" and status_line[0] == "HTTP/1.1"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return status, await self._read_chunked(reader), keep
        if "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise HttpError("bad Content-Length") from None
            if length < 0 or length > self.max_body:
                raise HttpError(f"response body of {length} bytes refused")
            return status, await reader.readexactly(length), keep
        if status in (204, 304) or 100 <= status < 200:
            return status, b"", keep
        data = await reader.read(self.max_body + 1)  # body until EOF
        if len(data) > self.max_body:
            raise HttpError("response body too large")
        return status, data, False

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        out = bytearray()
        while True:
            line = await reader.readuntil(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise HttpError("bad chunk size") from None
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return bytes(out)
            if len(out) + size > self.max_body:
                raise HttpError("response body too large")
            out += await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise HttpError("bad chunk terminator")

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for _reader, writer in idle:
            _close(writer)
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()
