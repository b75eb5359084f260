"""Retained messages of a tenant: ``POST /retain`` (set or clear), ``GET /retain`` (page), ``DELETE /retain``.

``POST /retain`` stores the message with its qos and expiry through the
``retain_set`` script (which enforces the tenant's topic limit atomically);
it does not deliver to current subscribers. The clean-up deletes only what it
inspected (``admin_retain_delete`` re-checks each blob), never a message
retained again meanwhile.
"""

from __future__ import annotations

from sanic import Blueprint, HTTPResponse, Request, json, text

from tidemq.message import pack, unpack
from tidemq.store import admin as admin_store
from tidemq.store import retained as retained_store
from tidemq.store import sessions as sess_store

from ..context import ApiState, check_body, endpoint, tenant, tenant_settings
from ..errors import ApiError
from ..spec import Params
from .common import check_topic, now_ms
from .pub import audit, message_of

bp = Blueprint("retain")

SCAN_PAGE = 500


@bp.post("/retain", name="retain")
@endpoint("retain")
async def retain(request: Request, state: ApiState, params: Params) -> HTTPResponse:
    t = tenant(params)
    ts = await tenant_settings(state, t)
    check_topic(ts, str(params["topic"]))
    check_body(request, ts)
    if not ts.retain_enabled:
        raise ApiError(401, "retained messages are disabled for this tenant")
    msg = message_of(request, params, retain=True)
    blob = pack(msg) if msg.payload else b""
    limit = state.retained_topic_limit if state.retained_topic_limit is not None else ts.retained_topic_limit
    result = await retained_store.retain_set(state.redis, t, msg.topic, blob, limit=limit)
    if result == "RETAINED" and msg.expire_at_ms:  # the workers' sweep drops it when it expires
        await sess_store.tenants_add(state.redis, t)
    state.metrics.outcome("retain", result)
    audit("retain", t, params, topic=msg.topic, qos=msg.qos, result=result)
    if result == "EXCEED_LIMIT":
        raise ApiError(400, "EXCEED_LIMIT")
    return text(result)


def _describe(topic: str, blob: bytes) -> dict[str, object]:
    try:
        msg = unpack(blob)
    except (ValueError, KeyError):
        return {"topic": topic, "qos": None, "payloadBytes": len(blob), "createdAt": None, "expiresAt": None}
    return {
        "topic": topic,
        "qos": msg.qos,
        "payloadBytes": len(msg.payload),
        "createdAt": msg.created_ms or None,
        "expiresAt": msg.expire_at_ms or None,
        "clientType": msg.origin.get("client_type"),
    }


@bp.get("/retain", name="retain_list")
@endpoint("retain_list")
async def retain_list(request: Request, state: ApiState, params: Params) -> HTTPResponse:
    cursor = int(params.get("cursor", 0))  # type: ignore[call-overload]
    nxt, items = await retained_store.retain_list(state.redis, tenant(params), cursor,
                                                  int(params["limit"]))  # type: ignore[call-overload]
    return json({"retained": [_describe(t, b) for t, b in items], "cursor": str(nxt) if nxt else None})


def _due(blob: bytes, now: int, older_than_ms: int | None) -> bool:
    try:
        msg = unpack(blob)
    except (ValueError, KeyError):
        return older_than_ms is not None  # unreadable: dropped by an age-based clean-up only
    if msg.expire_at_ms and msg.expire_at_ms <= now:
        return True
    return older_than_ms is not None and msg.created_ms <= now - older_than_ms


@bp.delete("/retain", name="retain_clean")
@endpoint("retain_clean")
async def retain_clean(request: Request, state: ApiState, params: Params) -> HTTPResponse:
    t = tenant(params)
    expiry = params.get("expiry_seconds")
    if expiry == 0:
        return json({"cleared": await retained_store.retain_clear(state.redis, t)})
    older = int(expiry) * 1000 if expiry is not None else None  # type: ignore[call-overload]
    now = now_ms()
    cleared = 0
    cursor = 0
    while True:
        cursor, items = await retained_store.retain_list(state.redis, t, cursor, SCAN_PAGE)
        due = [(topic, blob) for topic, blob in items if _due(blob, now, older)]
        if due:
            cleared += await admin_store.retain_delete_if_same(state.redis, t, due)
        if cursor == 0:
            return json({"cleared": cleared})
