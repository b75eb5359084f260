"""The worker's HTTP health endpoint, for orchestrators' probes (``TIDEMQ_HEALTH_PORT``, 0 = off).

- ``GET /healthz``: the event loop answers (liveness).
- ``GET /readyz``: 200 only while the worker should get new connections: Redis answers a
  PING within a second, the worker's lease was renewed recently, and it is not draining.
  A draining worker turns unready first, so a load balancer stops sending it clients
  before SIGTERM's disconnects begin.
- ``GET /metrics``: this worker's Prometheus metrics (``workers/metrics.py``), so Prometheus
  scrapes every worker directly; no token (bind the health port to a private network).

A deliberately tiny HTTP/1.1 responder (one request per connection, bounded header size
and time) so the worker needs no web framework.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol


class Readiness(Protocol):
    """What readiness reads (the broker offers it; tests pass a stub)."""

    @property
    def stopping(self) -> bool: ...

    @property
    def lease_renewed_at(self) -> float: ...

    @property
    def redis(self) -> Any: ...

log = logging.getLogger("tidemq.health")

MAX_HEAD = 8192
READ_TIMEOUT = 5.0
LEASE_STALE_S = 6.0  # the lease TTL: older than this and other workers may reap us


METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def start_health(broker: Readiness, host: str, port: int, *, reuse_port: bool = False,
                       metrics: Callable[[], bytes] | None = None) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        content_type = "text/plain; charset=utf-8"
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            if metrics is not None and _is_metrics(head):
                status, payload, content_type = _metrics(metrics)
            else:
                status, body = await _answer(broker, head[:MAX_HEAD])
                payload = (body + "\n").encode()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            status, payload = 400, b"bad request\n"
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                  503: "Service Unavailable"}[status]
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                     f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
        with contextlib.suppress(Exception):
            await writer.drain()
            writer.close()
            await writer.wait_closed()

    # with ``--processes N`` every process binds the port (SO_REUSEPORT): any of them may answer
    server = await asyncio.start_server(handle, host, port, limit=MAX_HEAD, reuse_port=reuse_port or None)
    log.info("worker health listening http=%s:%d", host, server.sockets[0].getsockname()[1])
    return server


def _metrics(render: Callable[[], bytes]) -> tuple[int, bytes, str]:
    try:
        return 200, render(), METRICS_TYPE
    except Exception as exc:  # a failing collector answers 503, never kills the endpoint
        log.warning("metrics rendering failed: %r", exc)
        return 503, f"metrics unavailable ({type(exc).__name__})\n".encode(), "text/plain; charset=utf-8"


def _is_metrics(head: bytes) -> bool:
    parts = head.split(b"\r\n", 1)[0].split()
    return len(parts) == 3 and parts[0] == b"GET" and parts[1].split(b"?", 1)[0] == b"/metrics"


async def _answer(broker: Readiness, head: bytes) -> tuple[int, str]:
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) != 3:
        return 400, "bad request"
    method, path = parts[0], parts[1].split(b"?", 1)[0]
    if path not in (b"/healthz", b"/readyz", b"/metrics"):
        return 404, "not found"
    if method not in (b"GET", b"HEAD"):
        return 405, "method not allowed"
    if path == b"/healthz":
        return 200, "ok"
    if path == b"/metrics":
        return 404, "not found: no metrics on this endpoint"
    if broker.stopping:
        return 503, "not ready: draining"
    if time.monotonic() - broker.lease_renewed_at > LEASE_STALE_S:
        return 503, "not ready: lease not renewed"
    try:
        async with asyncio.timeout(1.0):
            await broker.redis.ping()
    except Exception as exc:
        return 503, f"not ready: Redis unavailable ({type(exc).__name__})"
    return 200, "ready"
