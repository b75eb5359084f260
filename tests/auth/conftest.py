"""A tiny local HTTP/1.1 server standing in for an auth webhook, on a free port, stopped by its fixture.

``hook.respond(body)`` decides each answer (default: allow); ``hook.hold``
(an Event) makes every request wait until it is set, for timeout and
request-sharing tests; ``hook.received`` is set whenever a request arrives.
Modes: ``chunked`` answers with chunked encoding, ``close`` closes after each
answer; ``hook.headers`` keeps each request's headers. ``serve_hook(ssl=ctx)``
starts one over TLS (the ``tls_hook`` fixture: the test PKI's server
certificate, client certificates required). Handler tasks are cancelled at
teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.transport.pki import PKI, make_pki


class Hook:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        self.respond: Callable[[dict[str, Any]], tuple[int, Any]] = lambda body: (200, {"result": "allow"})
        self.hold: asyncio.Event | None = None
        self.received = asyncio.Event()
        self.chunked = False
        self.close_after = False
        self.url = ""
        self.headers: list[dict[str, str]] = []  # request headers (lower-cased names), one dict per request
        self.tasks: set[asyncio.Task[Any]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                headers = {}
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                    if name.strip().lower() == "content-length":
                        length = int(value)
                self.headers.append(headers)
                body = json.loads(await reader.readexactly(length))
                self.requests.append(body)
                self.received.set()
                if self.hold is not None:
                    await self.hold.wait()
                status, answer = self.respond(body)
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                conn = "Connection: close\r\n" if self.close_after else ""
                if self.chunked:
                    half = len(data) // 2
                    payload = b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in (data[:half], data[half:])
                                       if c) + b"0\r\n\r\n"
                    writer.write(f"HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n{conn}\r\n".encode()
                                 + payload)
                else:
                    writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: {len(data)}\r\n{conn}\r\n".encode() + data)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.tasks.discard(task)


@contextlib.asynccontextmanager
async def serve_hook(ssl_ctx: ssl.SSLContext | None = None) -> AsyncIterator[Hook]:
    h = Hook()
    server = await asyncio.start_server(h.handle, "127.0.0.1", 0, ssl=ssl_ctx)
    port = server.sockets[0].getsockname()[1]
    h.url = f"{'https' if ssl_ctx else 'http'}://{'localhost' if ssl_ctx else '127.0.0.1'}:{port}/auth?v=1"
    try:
        yield h
    finally:
        server.close()
        for task in list(h.tasks):
            task.cancel()
        for task in list(h.tasks):
            with contextlib.suppress(BaseException):
                await task
        await server.wait_closed()


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    async with serve_hook() as h:
        yield h


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def tls_hook(pki: PKI) -> AsyncIterator[Hook]:
    """An HTTPS webhook with the test PKI's server certificate that requires a client certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    ctx.load_verify_locations(str(pki.ca))
    ctx.verify_mode = ssl.CERT_REQUIRED
    async with serve_hook(ctx) as h:
        yield h
