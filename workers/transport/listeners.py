"""Start the worker's extra listeners (TLS, WebSocket, WebSocket over TLS) from the settings.

``start_listeners`` opens one asyncio server per port that is not 0
(``tls_port``, ``ws_port``, ``wss_port``); every one of them ends in a
protocol made by the same ``factory`` (the worker passes
``lambda: MQTTConnection(broker)``), so all transports share the session
logic. The TLS context is built once and shared by TLS and WSS. Either all
requested listeners start or none stays open (a failure closes those already
started and raises).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any

from tidemq.config import Settings

from .tls import build_ssl_context
from .websocket import WebSocketProtocol, parse_origins

log = logging.getLogger("tidemq.worker")

BACKLOG = 2048


async def start_listeners(settings: Settings, factory: Callable[[], asyncio.Protocol], host: str, *,
                          reuse_port: bool = False, ssl_context: ssl.SSLContext | None = None) -> list[asyncio.Server]:
    """Start the TLS / WS / WSS listeners the settings turn on; returns their servers (maybe none).
    ``ssl_context``: the context to serve TLS with (default: built from the settings)."""
    if not (settings.tls_port or settings.ws_port or settings.wss_port):
        return []
    loop = asyncio.get_running_loop()
    ctx = (ssl_context or build_ssl_context(settings)) if (settings.tls_port or settings.wss_port) else None

    origins = parse_origins(settings.ws_allowed_origins)

    def ws_factory() -> asyncio.Protocol:
        return WebSocketProtocol(factory, path=settings.ws_path, max_frame_size=settings.max_packet_size,
                                 allowed_origins=origins, require_subprotocol=settings.ws_require_subprotocol)

    plan: list[tuple[str, int, Callable[[], asyncio.Protocol], Any]] = []
    if settings.tls_port:
        plan.append(("mqtts", settings.tls_port, factory, ctx))
    if settings.ws_port:
        plan.append(("ws", settings.ws_port, ws_factory, None))
    if settings.wss_port:
        plan.append(("wss", settings.wss_port, ws_factory, ctx))
    servers: list[asyncio.Server] = []
    try:
        for name, port, proto_factory, ssl_ctx in plan:
            server = await loop.create_server(proto_factory, host, port, ssl=ssl_ctx, backlog=BACKLOG,
                                              reuse_port=reuse_port or None)
            servers.append(server)
            bound = server.sockets[0].getsockname()[1]
            suffix = settings.ws_path if name in ("ws", "wss") else ""
            log.info("listening %s=%s:%d%s", name, host, bound, suffix)
    except BaseException:
        for server in servers:
            server.close()
        for server in servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        raise
    return servers
