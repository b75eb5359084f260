"""The admin API application: ``create_app`` (the factory) and ``start_api`` (run it in this event loop).

``create_app(settings, redis)`` builds one Sanic app per call (unique name, no
import-time app), registers one blueprint per resource and the cross-cutting
middleware: request ids (parsed or generated, echoed on every response),
header normalisation (a known header given twice is a 400), the bearer
tokens (``app.tokens``: every path but /healthz, /readyz and the browsable docs
(``app.docs``: ``/``, ``/docs`` and its assets) needs one when a token or a token file is
configured; the token's tenants are checked by ``app.context.endpoint``), metrics, and the
single error handler (``app.errors``).
``start_api`` serves it with ``create_server`` inside the running loop, next
to an MQTT worker in standalone mode; the returned handle's ``stop()`` closes
it. The store client belongs to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
import uuid
from typing import Any

from sanic import HTTPResponse, Request, Sanic
from sanic.response import BaseHTTPResponse

from tidemq.auth import AuthProvider, make_provider
from tidemq.config import Settings
from tidemq.store import admin as admin_store
from tidemq.store import route_watch
from tidemq.store.route_watch import RouteWatch
from tidemq.tenants import SettingsProvider

from . import docs, openapi
from .context import DEFAULT_STORE_TIMEOUT, ApiState
from .endpoints import BLUEPRINTS
from .errors import ApiError, error_response
from .headers import collect, new_req_id, parse_req_id
from .spec import OPEN_PATHS
from .tokens import Tokens

log = logging.getLogger("tidemq.api")

_names = itertools.count(1)
BODY_SLACK = 64 * 1024
# Sanic's hard cap on a body: above the process max payload (so the handler answers 413 with the
# tenant's limit itself) and room for tenants whose MaxUserPayloadBytes override is larger.
BODY_CAP_MIN = 4 * 1024 * 1024


def create_app(
    settings: Settings,
    redis: Any,
    *,
    auth: AuthProvider | None = None,
    store_timeout: float = DEFAULT_STORE_TIMEOUT,
    retained_topic_limit: int | None = None,
    tenants: SettingsProvider | None = None,
) -> Sanic[Any, Any]:
    """The admin API as a Sanic app bound to ``settings`` and the store client ``redis``.

    ``auth`` defaults to ``make_provider(settings)`` and ``tenants`` to a ``SettingsProvider``
    on ``redis``; ``retained_topic_limit`` overrides every tenant's RetainedTopicLimit.
    """
    app = Sanic(f"tidemq_api_{next(_names)}", configure_logging=False, env_prefix="TIDEMQ_SANIC_")
    app.config.MOTD = False
    app.config.TOUCHUP = False  # rewriting handle_request twice (a second app in a process) breaks it
    app.config.ACCESS_LOG = False
    app.config.NOISY_EXCEPTIONS = False
    app.config.REQUEST_MAX_SIZE = max(settings.max_payload, BODY_CAP_MIN) + BODY_SLACK
    app.config.FALLBACK_ERROR_FORMAT = "text"
    app.ctx.state = ApiState(settings, redis, auth or make_provider(settings),
                             tenants or SettingsProvider(redis, settings), store_timeout=store_timeout,
                             retained_topic_limit=retained_topic_limit, openapi=openapi.document())
    for bp in BLUEPRINTS:
        app.blueprint(bp)
    app.blueprint(docs.bp)
    tokens = Tokens.from_settings(settings.api_token, settings.api_token_file)

    async def _before(request: Request) -> HTTPResponse | None:
        request.ctx.t0 = time.perf_counter()
        request.ctx.token_scope = None  # no token needed; else the tenants the caller's token covers
        headers, meta = collect(request.headers.items())
        request.ctx.headers = headers
        request.ctx.client_meta = meta
        req_id = parse_req_id(headers.get("req_id"))  # not an int64: replaced by a generated one (BifroMQ)
        request.ctx.req_id = new_req_id() if req_id is None else req_id
        if tokens.required and request.path not in OPEN_PATHS and request.path not in docs.OPEN_PATHS:
            scope = tokens.scope(headers.get("authorization"))
            if scope is None:
                raise ApiError(401, "missing or invalid bearer token")
            request.ctx.token_scope = scope
        return None

    async def _after(request: Request, response: BaseHTTPResponse) -> None:
        req_id = getattr(request.ctx, "req_id", None)
        if req_id is None:  # the request failed before our middleware (e.g. a malformed request line)
            req_id = request.ctx.req_id = new_req_id()
        response.headers["req_id"] = str(req_id)
        route = request.route
        name = route.name.rsplit(".", 1)[-1] if route is not None else "unknown"
        t0 = getattr(request.ctx, "t0", None)
        app.ctx.state.metrics.observe(name, request.method, response.status,
                                      time.perf_counter() - t0 if t0 else 0.0)

    app.register_middleware(_before, "request")
    app.register_middleware(_after, "response")
    app.error_handler.add(Exception, error_response)
    return app


class ApiHandle:
    """A running API server: ``port`` it listens on, ``await stop()`` to close it."""

    def __init__(self, app: Sanic[Any, Any], server: Any, port: int,
                 watch_task: asyncio.Task[None] | None = None) -> None:
        self.app = app
        self.server = server
        self.port = port
        self.watch_task = watch_task

    async def stop(self) -> None:
        server, self.server = self.server, None
        if server is None:
            return
        if self.watch_task is not None:
            self.watch_task.cancel()
            with contextlib.suppress(BaseException):
                await self.watch_task
        try:
            await server.before_stop()
            server.close()
            await asyncio.wait_for(server.wait_closed(), timeout=5.0)
            for conn in list(server.connections):
                conn.close_if_idle()
            await server.after_stop()
        finally:
            Sanic.unregister_app(self.app)
        log.info("admin API stopped")


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def start_api(settings: Settings, redis: Any, **options: Any) -> ApiHandle:
    """Serve the admin API on ``settings.host:settings.api_port`` (0 = a free port) in this event loop.

    ``options`` go to ``create_app`` (``auth``, ``store_timeout``, ``retained_topic_limit``, ``tenants``).
    """
    app = create_app(settings, redis, **options)
    try:
        async with asyncio.timeout(app.ctx.state.store_timeout):
            await admin_store.ensure_scripts(redis)
    except Exception as exc:  # the store may come up later: /readyz says so, NOSCRIPT reloads
        log.warning("admin API: could not load Lua scripts yet: %s", exc)
    watch_task = None
    if route_watch.enabled(redis):  # route changes of PUT /sub, DELETE /unsub wait for the workers' caches
        watch = app.ctx.state.watch = RouteWatch(redis, f"api-{uuid.uuid4().hex[:12]}", member=False)
        watch_task = asyncio.get_running_loop().create_task(watch.run())
        try:
            await asyncio.wait_for(watch.ready.wait(), timeout=app.ctx.state.store_timeout)
        except TimeoutError:  # acknowledgements cannot reach us yet: a route change waits for leases instead
            log.warning("admin API: route watch not subscribed yet")
    sock = _listen(settings.host, settings.api_port)
    server: Any = await app.create_server(sock=sock, return_asyncio_server=True, access_log=False)
    if server is None:  # pragma: no cover - Sanic always returns one with return_asyncio_server
        raise RuntimeError("Sanic did not return a server")
    await server.startup()
    await server.before_start()
    await server.start_serving()
    await server.after_start()
    port = sock.getsockname()[1]
    log.info("admin API listening http=%s:%d", settings.host, port)
    return ApiHandle(app, server, port, watch_task)
