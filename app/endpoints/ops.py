"""Operations endpoints: ``/healthz`` (process alive), ``/readyz`` (Redis reachable, scripts loaded),
``/metrics`` (Prometheus text: this process, plus the live workers' published counters) and
``/openapi.json``. Health and readiness need no token; metrics (every tenant's inbox depth, every worker's
counters) need a token that covers every tenant when tokens are configured."""

from __future__ import annotations

import asyncio

from sanic import Blueprint, HTTPResponse, Request, raw, text

from tidemq.store import admin as admin_store
from tidemq.store import leases

from ..context import ApiState
from ..errors import ApiError, store_unavailable
from ..tokens import ALL

bp = Blueprint("ops")


@bp.get("/healthz", name="healthz")
async def healthz(request: Request) -> HTTPResponse:
    return text("ok")


@bp.get("/readyz", name="readyz")
async def readyz(request: Request) -> HTTPResponse:
    state: ApiState = request.app.ctx.state
    try:
        async with asyncio.timeout(state.store_timeout):
            await state.redis.ping()
            if not await admin_store.scripts_loaded(state.redis):
                await admin_store.ensure_scripts(state.redis)
                if not await admin_store.scripts_loaded(state.redis):
                    return text("not ready: Lua scripts not loaded", status=503)
    except Exception as exc:
        reason = store_unavailable(exc) or f"store error: {type(exc).__name__}"
        return text(f"not ready: {reason}", status=503)
    return text("ready")


@bp.get("/metrics", name="metrics")
async def metrics(request: Request) -> HTTPResponse:
    if request.ctx.token_scope not in (None, ALL):
        raise ApiError(403, "metrics need a token for every tenant")
    state: ApiState = request.app.ctx.state
    workers: dict[str, dict[str, int]] = {}
    depths: dict[str, int] = {}
    try:  # the live workers' counters, as they last published them with their lease
        async with asyncio.timeout(min(1.0, state.store_timeout)):
            workers = await leases.read_stats(state.redis)
        async with asyncio.timeout(min(2.0, state.store_timeout)):
            depths = await admin_store.inbox_depths(state.redis)
    except Exception as exc:  # metrics stay available without the store
        state.metrics.outcome("metrics", "workers_unavailable")
        if store_unavailable(exc) is None:
            raise
    return text(state.metrics.render(workers, depths), content_type="text/plain; version=0.0.4; charset=utf-8")


@bp.get("/openapi.json", name="openapi")
async def openapi(request: Request) -> HTTPResponse:
    state: ApiState = request.app.ctx.state
    return raw(state.openapi, content_type="application/json")
