"""What every handler shares: the API state, and the ``endpoint`` decorator that frames a handler.

``ApiState`` (``app.ctx.state``) holds the settings read once at start, the
store client, the auth provider, the tenant settings provider, the route
cache and the metrics: caches only, nothing durable. ``endpoint(name)`` turns a handler of
``(request, state, params)`` into a Sanic handler that validates the headers
against ``app.spec`` (400 before any store call), refuses a tenant-scoped
token acting on another tenant (403, ``app.tokens``) and bounds the whole
store conversation with ``store_timeout`` (a timeout is a 503, see
``app.errors``), so a request never hangs on Redis.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sanic import HTTPResponse, Request

from tidemq.auth import AuthProvider
from tidemq.config import Settings
from tidemq.publish import RouteCache
from tidemq.store.route_watch import RouteWatch
from tidemq.tenants import SettingsProvider, TenantSettings

from .errors import ApiError
from .headers import parse
from .metrics import Metrics
from .spec import BY_NAME, Params
from .tokens import allows

DEFAULT_STORE_TIMEOUT = 3.0  # seconds for the whole store conversation of one request


@dataclass(slots=True)
class ApiState:
    settings: Settings
    redis: Any
    auth: AuthProvider
    tenants: SettingsProvider
    store_timeout: float = DEFAULT_STORE_TIMEOUT
    retained_topic_limit: int | None = None  # overrides the tenant setting RetainedTopicLimit when set
    routes: RouteCache = field(default_factory=RouteCache)
    watch: RouteWatch | None = None  # set by start_api; while it runs, route writes wait for the workers
    metrics: Metrics = field(default_factory=Metrics)
    openapi: bytes = b""


Handler = Callable[[Request, ApiState, Params], Awaitable[HTTPResponse]]


def endpoint(name: str) -> Callable[[Handler], Callable[[Request], Awaitable[HTTPResponse]]]:
    """Frame a handler of the endpoint ``name`` of ``app.spec`` (see module doc)."""
    ep = BY_NAME[name]

    def wrap(fn: Handler) -> Callable[[Request], Awaitable[HTTPResponse]]:
        @functools.wraps(fn)
        async def handler(request: Request) -> HTTPResponse:
            params = parse(ep, request.ctx.headers, request.ctx.client_meta)
            if "tenant_id" in params.values and not allows(request.ctx.token_scope, tenant(params)):
                raise ApiError(403, f"token not allowed for tenant {tenant(params)}")
            state: ApiState = request.app.ctx.state
            async with asyncio.timeout(state.store_timeout):
                return await fn(request, state, params)

        return handler

    return wrap


def tenant(params: Params) -> str:
    return str(params["tenant_id"])


async def tenant_settings(state: ApiState, t: str) -> TenantSettings:
    """The tenant's effective settings (process defaults + its Redis overrides, cached briefly)."""
    return await state.tenants.get(t)


def check_body(request: Request, ts: TenantSettings) -> None:
    """413 when the body is over the tenant's MaxUserPayloadBytes."""
    size = len(request.body or b"")
    if size > ts.max_user_payload_bytes:
        raise ApiError(413, f"body larger than the max payload of {ts.max_user_payload_bytes} bytes")
