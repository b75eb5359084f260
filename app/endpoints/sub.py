"""``PUT /sub`` and ``DELETE /unsub`` on a session, online or offline persistent.

The session must exist and belong to ``user_id`` (else 404); the auth
provider decides with the session's identity (else 401; a provider that
raises is answered by the tenant's ``ByPassPermCheckError``). The QoS is
capped by the tenant's ``MaximumQoS``, as a SUBACK would grant it; a full inbox
(``MaxTopicFiltersPerInbox``) or a full shared group (``MaxSharedGroupMembers``,
counted in Redis with the route's write) answers 400 ``EXCEED_LIMIT``. The change is the
store's subscribe/unsubscribe script, which writes the subscription and its
route and bumps the tenant's route version before the 200 is sent, so every
later publish on any worker or API node sees it.

On an online session ``PUT /sub`` then behaves like a SUBSCRIBE from the client (BifroMQ
subscribes through the online session): a ``Subscribed`` signal tells the owning worker,
which replays the retained messages matching the filter under the subscription's options
(a new subscription has BifroMQ's defaults: Retain Handling 0, Retain As Published off;
an existing one keeps its own, so Retain Handling 1 or 2 replays nothing). Shared filters
get no retained messages (MQTT 5 4.8.2). An offline persistent session gets
none queued: BifroMQ's ``PUT /sub`` reaches online sessions only, and a resumed session
is not sent retained messages for the subscriptions it already has (docs/api.md).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sanic import Blueprint, HTTPResponse, Request, text

from tidemq import signals
from tidemq.auth import Identity
from tidemq.auth.checks import check_subscribe
from tidemq.store import sessions as sess_store
from tidemq.store import signals as signal_store
from tidemq.store import subscriptions as sub_store
from tidemq.store.keys import session_name
from tidemq.store.models import NoSession, SubOpts, SubscriptionLimit

from ..context import ApiState, endpoint, tenant, tenant_settings
from ..errors import ApiError
from ..spec import Params
from .common import check_filter

bp = Blueprint("sub")


async def _session(state: ApiState, params: Params) -> tuple[Identity, str, dict[str, Any]]:
    """The caller's identity (for the auth provider), the session's name and its record (404: none)."""
    t, c, user = tenant(params), str(params["client_id"]), str(params["user_id"])
    name = session_name(user, c)  # the session of (tenant, user, client id)
    rec = await sess_store.session_get(state.redis, t, name)
    if rec is None or rec.get("user", "") != user:
        raise ApiError(404, "no session")
    return Identity(t, user, c), name, rec


@bp.put("/sub", name="sub")
@endpoint("sub")
async def sub(request: Request, state: ApiState, params: Params) -> HTTPResponse:
    topic_filter = str(params["topic_filter"])
    ts = await tenant_settings(state, tenant(params))
    qos = min(int(params["sub_qos"]), ts.maximum_qos)  # type: ignore[call-overload]  # as a SUBACK grants
    check_filter(ts, topic_filter)
    who, name, rec = await _session(state, params)
    grant = await check_subscribe(state.auth, who, topic_filter, qos, bypass=ts.by_pass_perm_check_error,
                                  prefer_sync=False)  # the API asks the provider's check_subscribe itself
    if not grant.granted:
        raise ApiError(401, "subscription denied by the auth provider")
    current = rec["subscriptions"].get(topic_filter)
    opts = dataclasses.replace(current, qos=qos) if current is not None else SubOpts(qos=qos)
    try:  # MaxTopicFiltersPerInbox and MaxSharedGroupMembers are checked in Redis, atomically with the write
        (existed,) = await sub_store.subscribe(state.redis, who.tenant_id, name, [(topic_filter, opts)],
                                               max_filters=ts.max_topic_filters_per_inbox,
                                               max_group_members=ts.max_shared_group_members)
    except NoSession:
        raise ApiError(404, "no session") from None
    except SubscriptionLimit:
        raise ApiError(400, "EXCEED_LIMIT") from None
    worker = str(rec.get("worker") or "")
    if worker:  # online: the owning worker replays the retained messages, as for a SUBSCRIBE
        await signal_store.publish_signal(state.redis, worker, signals.encode(signals.Subscribed(
            who.tenant_id, name, int(rec.get("epoch", 0)), topic_filter, qos, existed,
            opts.retain_handling, opts.retain_as_published, opts.subscription_id)))
    result = "EXISTS" if existed else "OK"
    state.metrics.outcome("sub", result)
    return text(result)


@bp.delete("/unsub", name="unsub")
@endpoint("unsub")
async def unsub(request: Request, state: ApiState, params: Params) -> HTTPResponse:
    topic_filter = str(params["topic_filter"])
    check_filter(await tenant_settings(state, tenant(params)), topic_filter)
    who, name, _rec = await _session(state, params)
    check = getattr(state.auth, "check_unsubscribe", None)
    if check is not None and not await check(who, topic_filter):
        raise ApiError(401, "unsubscription denied by the auth provider")
    try:
        (existed,) = await sub_store.unsubscribe(state.redis, who.tenant_id, name, [topic_filter])
    except NoSession:
        raise ApiError(404, "no session") from None
    result = "OK" if existed else "NO_SUB"
    state.metrics.outcome("unsub", result)
    return text(result)
