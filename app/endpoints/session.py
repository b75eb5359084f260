"""Sessions of a tenant: ``GET /session``, ``DELETE /session``, ``GET /sessions`` and ``DELETE /kill``.

Answers come from the session registry in Redis, never from hope: a session
is online when its record names an owner worker. Disconnections are signals
to those workers (``K`` for kills, ``X`` for removed sessions), published
only after the registry was read (kill) or changed (expire) — the removal of
a session (routes, inbox, record) is one script per chunk of sessions.
A kill honours BifroMQ's ``server_redirect`` (``no`` | ``move`` | ``temp_use``)
and ``server_reference`` headers (MQTT 5 clients get 0x9D / 0x9C with the
reference) and is logged with the caller's ``client_type`` and ``client_meta_*``.
``GET /session`` metadata also carries the attributes the auth provider returned at the
CONNECT of the connection holding the session (as BifroMQ's ClientInfo metadata); the
built-in keys win over an attribute of the same name.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sanic import Blueprint, HTTPResponse, Request, json

from tidemq import signals
from tidemq.mqtt.reason_codes import RC
from tidemq.store import admin as admin_store
from tidemq.store import session_attrs
from tidemq.store import sessions as sess_store
from tidemq.store import signals as signal_store
from tidemq.store.keys import session_name, split_session_name

from ..context import ApiState, endpoint, tenant
from ..errors import ApiError
from ..spec import Params
from .common import now_ms
from .pub import audit

bp = Blueprint("session")


def _session_json(t: str, c: str, rec: dict[str, Any], queued: int, inflight: int) -> dict[str, Any]:
    worker = rec.get("worker", "")
    return {
        "tenantId": t,
        "type": "MQTT",
        "metadata": {
            **session_attrs.attributes_of(rec),
            "ver": str(rec.get("ver", "")),
            "userId": rec.get("user", ""),
            "clientId": c,
            "channelId": str(rec.get("epoch", "")),
            "address": rec.get("address", ""),
            "broker": worker,
            "sessionType": "p" if rec.get("persistent") else "t",
        },
        "online": bool(worker),
        "connectedAt": rec.get("connected_at", 0),
        "disconnectedAt": rec.get("disconnected_at", 0) or None,
        "expirySeconds": rec.get("expiry", 0),
        "clientType": rec.get("client_type", ""),
        "subscriptions": [
            {"topicFilter": f, "qos": o.qos, "noLocal": o.no_local, "retainAsPublished": o.retain_as_published,
             "retainHandling": o.retain_handling}
            for f, o in sorted(rec.get("subscriptions", {}).items())
        ],
        "inbox": {"queued": queued, "inflight": inflight},
    }


@bp.get("/session", name="session_get")
@endpoint("session_get")
async def session_get(request: Request, state: ApiState, params: Params) -> HTTPResponse:
    t, c, user = tenant(params), str(params["client_id"]), str(params["user_id"])
    name = session_name(user, c)  # the session of (tenant, user, client id)
    rec = await sess_store.session_get(state.redis, t, name)
    if rec is None or rec.get("user", "") != user:
        raise ApiError(404, "no session")
    queued, inflight = await admin_store.inbox_state(state.redis, t, name, int(rec.get("sent", 0)))
    return json(_session_json(t, c, rec, queued, inflight))


@bp.delete("/session", name="session_expire")
@endpoint("session_expire")
async def session_expire(request: Request, state: ApiState, params: Params) -> HTTPResponse:
    t = tenant(params)
    expiry = params.get("expiry_seconds")
    removed = await sess_store.sessions_expire(
        state.redis, t, now_ms=now_ms(), older_than_s=None if expiry is None else int(expiry))  # type: ignore[call-overload]
    by_worker: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for s in removed:
        if s.worker:
            by_worker[s.worker].append((s.client_id, s.epoch))
    if by_worker:  # each worker closes exactly the connections whose sessions were removed
        await signal_store.publish_signals_many(state.redis, [
            (w, signals.encode(signals.Close(t, removed=True, targets=targets)))
            for w, targets in sorted(by_worker.items())])
    return json({"expired": len(removed)})


@bp.get("/sessions", name="sessions")
@endpoint("sessions")
async def sessions(request: Request, state: ApiState, params: Params) -> HTTPResponse:
    t = tenant(params)
    items, nxt = await admin_store.sessions_list(state.redis, t, after=str(params.get("cursor", "")),
                                                 limit=int(params["limit"]))  # type: ignore[call-overload]
    out = [{
        "clientId": split_session_name(s["client_id"])[1],
        "userId": s["user"],
        "online": bool(s["worker"]),
        "broker": s["worker"],
        "sessionType": "p" if s["persistent"] else "t",
        "ver": str(s["ver"]),
        "connectedAt": s["connected_at"],
        "disconnectedAt": s["disconnected_at"] or None,
        "expirySeconds": s["expiry"],
    } for s in items]
    return json({"sessions": out, "cursor": nxt or None})


REDIRECT_CODES = {"no": 0, "temp_use": RC.USE_ANOTHER_SERVER, "move": RC.SERVER_MOVED}  # BifroMQ's values
MAX_SERVER_REFERENCE = 65535  # bytes of an MQTT UTF-8 string


def _redirection(params: Params) -> tuple[int, str]:
    """``server_redirect`` / ``server_reference`` as BifroMQ reads them: the DISCONNECT code (0: none) and
    the reference (sent only with a redirect)."""
    raw = params.get("server_redirect")
    if raw is not None and str(raw) not in REDIRECT_CODES:
        raise ApiError(400, "server_redirect must be no, move or temp_use")
    reference = str(params.get("server_reference") or "")
    if len(reference.encode("utf-8")) > MAX_SERVER_REFERENCE:
        raise ApiError(400, f"server_reference exceeds {MAX_SERVER_REFERENCE} bytes")
    code = REDIRECT_CODES[str(raw)] if raw is not None else 0
    return code, reference if code else ""


@bp.delete("/kill", name="kill")
@endpoint("kill")
async def kill(request: Request, state: ApiState, params: Params) -> HTTPResponse:
    t = tenant(params)
    user = params.get("user_id")
    client = params.get("client_id")
    if client is not None and user is None:
        raise ApiError(400, "client_id requires user_id")
    redirect, reference = _redirection(params)
    owners = await admin_store.online_owners(
        state.redis, t, user=None if user is None else str(user),
        name=None if client is None else session_name(str(user), str(client)))
    if not owners:
        raise ApiError(404, "no online connection matched")
    by_worker: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for o in owners:  # the connections the registry named, by epoch: never a later reconnect
        by_worker[o.worker].append((o.client_id, o.epoch))
    await signal_store.publish_signals_many(state.redis, [
        (w, signals.encode(signals.Close(t, targets=targets, redirect=redirect, server_reference=reference)))
        for w, targets in sorted(by_worker.items())])
    state.metrics.outcome("kill", "killed")
    audit("kill", t, params, result="killed", killed=len(owners), redirect=f"0x{redirect:02x}" if redirect else "no")
    return json({"killed": len(owners)})
