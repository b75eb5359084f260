"""``POST /pub``: publish as a client of the tenant would, routed exactly like a client publish.

The message is packed once (payload stays binary) and routed by
``tidemq.publish.publish``: persistent subscribers' inboxes through the
inbox-append script, online transient subscribers through one ``D`` signal
per owning worker. ``OK`` once the store has taken it for at least one
subscriber, ``NO_MATCH`` otherwise. It never retains. The tenant's fan-out limits
(``MaxGroupFanout``, ``MaxPersistentFanout``, ``MaxPersistentFanoutBytes``) apply as for a client.
The caller's ``client_type`` and ``client_meta_*`` are its publisher identity: ``$oshare`` groups
pick the member for it by rendezvous hashing, as they do for a client's id (``publisher_key``).
"""

from __future__ import annotations

import logging

from sanic import Blueprint, HTTPResponse, Request, text

from tidemq.message import Message
from tidemq.publish import FanoutLimits, publish

from ..context import ApiState, check_body, endpoint, tenant, tenant_settings
from ..spec import Params
from .common import check_topic, now_ms

bp = Blueprint("pub")
log = logging.getLogger("tidemq.api")


def origin_of(params: Params) -> dict[str, object]:
    """``client_type`` and ``client_meta_*`` of the caller, carried in the message header."""
    origin: dict[str, object] = {"client_type": params["client_type"]}
    if params.client_meta:
        origin["client_meta"] = dict(params.client_meta)
    return origin


def publisher_key(params: Params) -> str:
    """The ``$oshare`` identity of an API caller: ``client_type`` and its sorted ``client_meta_*`` pairs
    (BifroMQ hashes the caller's ClientInfo the same way). It can never equal an MQTT client id's key
    in practice: it starts with a NUL byte, which no valid client id contains."""
    meta = sorted(dict(params.client_meta).items()) if params.client_meta else []
    return "\0api\0" + str(params["client_type"]) + "".join(f"\0{k}={v}" for k, v in meta)


def audit(event: str, t: str, params: Params, **fields: object) -> None:
    """One log line per publishing call, naming the caller (``client_type``, ``client_meta_*``); never
    the payload."""
    meta = dict(params.client_meta) if params.client_meta else {}
    log.info("api %s tenant=%s client_type=%s %s", event, t, params["client_type"],
             " ".join(f"{k}={v}" for k, v in fields.items()),
             extra={"event": f"api_{event}", "tenant": t, "client_type": params["client_type"],
                    "client_meta": meta or None, "reason": fields.get("result")})


def message_of(request: Request, params: Params, *, retain: bool) -> Message:
    now = now_ms()
    expiry = params.get("expiry_seconds")
    return Message(
        topic=str(params["topic"]),
        payload=bytes(request.body or b""),
        qos=int(params["qos"]),  # type: ignore[call-overload]
        retain=retain,
        expire_at_ms=now + int(expiry) * 1000 if expiry else 0,  # type: ignore[call-overload]
        sender="",
        created_ms=now,
        origin=origin_of(params),
    )


@bp.post("/pub", name="pub")
@endpoint("pub")
async def pub(request: Request, state: ApiState, params: Params) -> HTTPResponse:
    t = tenant(params)
    ts = await tenant_settings(state, t)
    check_topic(ts, str(params["topic"]))
    check_body(request, ts)
    msg = message_of(request, params, retain=False)
    res = await publish(state.redis, state.routes, t, msg,
                        inbox_limit=ts.session_inbox_size, drop_oldest=ts.qos0_drop_oldest,
                        limits=FanoutLimits.of(ts), sticky_key=publisher_key(params))
    result = "OK" if res.matched else "NO_MATCH"
    state.metrics.outcome("pub", result)
    audit("pub", t, params, topic=msg.topic, qos=msg.qos, result=result)
    return text(result)
