"""SUBSCRIBE and UNSUBSCRIBE: validation, quotas, ACL, routes, retained replay.

Each filter is checked against the tenant's topic limits, quotas and feature
switches and the auth provider; the accepted ones are written with their
routes (``tidemq.store.subscriptions``: the session's step, then the tenant's;
the route version moves, so every worker sees them before the SUBACK leaves).
``MaxSharedGroupMembers`` is decided there, in Redis, with the write of the
shared route (two joins on two workers cannot both take the last place); a
refused shared filter gets 0x97 Quota exceeded. Retained messages are looked up before
the SUBACK and replayed after it — through the inbox for persistent sessions,
so a live message published after the SUBACK never overtakes them. A ``PUT /sub``
of the admin API on an online session arrives as a ``Subscribed`` signal
(``on_api_subscribed``): the connection takes the filter into its state and
replays the retained messages the same way (no SUBACK: the API answered).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING

from tidemq.auth import SubscribeGrant
from tidemq.auth.checks import check_subscribe
from tidemq.message import Message, unpack
from tidemq.mqtt import session as sm
from tidemq.mqtt import topics
from tidemq.mqtt.packets import Subscribe, Unsubscribe
from tidemq.mqtt.reason_codes import RC
from tidemq.signals import Subscribed
from tidemq.store import retained as retained_store
from tidemq.store import subscriptions as sub_store
from tidemq.store.models import NoSession, SubOpts

from . import debug_events

if TYPE_CHECKING:
    from .connection import MQTTConnection

log = logging.getLogger("tidemq.conn")


def on_subscribe(conn: MQTTConnection, ev: sm.SubscribeReceived) -> None:
    conn.spawn(_subscribe(conn, ev.packet))


def on_unsubscribe(conn: MQTTConnection, ev: sm.UnsubscribeReceived) -> None:
    conn.spawn(_unsubscribe(conn, ev.packet))


async def _subscribe(conn: MQTTConnection, p: Subscribe) -> None:
    svc = conn.services
    session = conn.session
    if session is None or not conn.connected:
        return
    ts = await svc.tenants.get(session.tenant)
    v5 = conn.machine.protocol_level == 5
    sub_id = p.properties.get("subscription_identifier")
    if isinstance(sub_id, list):
        sub_id = sub_id[0] if sub_id else None
    codes: list[int] = []
    accepted: list[tuple[str, SubOpts]] = []
    positions: list[int] = []
    grants: dict[str, SubscribeGrant] = {}
    room = ts.max_topic_filters_per_inbox - session.sub_count
    for i, s in enumerate(p.subscriptions):
        refusal = 0
        try:
            topics.validate_topic_filter(s.topic_filter, max_levels=ts.max_topic_levels,
                                         max_length=ts.max_topic_length,
                                         max_level_length=ts.max_topic_level_length)
        except topics.TopicError:
            codes.append(RC.TOPIC_FILTER_INVALID if v5 else 0x80)
            continue
        fresh = s.topic_filter not in session.sub_filters and all(f != s.topic_filter for f, _ in accepted)
        if i >= ts.max_topic_filters_per_sub or (fresh and sum(
                1 for f, _ in accepted if f not in session.sub_filters) >= room):
            refusal = svc.metrics.refuse("subscription_quota", session.tenant, RC.QUOTA_EXCEEDED)
        elif not ts.wildcard_subscription_enabled and topics.has_wildcard(topics.parse_shared(s.topic_filter)[2]):
            refusal = svc.metrics.refuse("wildcard_disabled", session.tenant, RC.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED)
        elif not ts.shared_subscription_enabled and topics.parse_shared(s.topic_filter)[0] is not None:
            refusal = svc.metrics.refuse("shared_disabled", session.tenant, RC.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED)
        elif sub_id and not ts.subscription_identifier_enabled:
            refusal = svc.metrics.refuse("subid_disabled", session.tenant, RC.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED)
        if refusal:
            codes.append(refusal if v5 else 0x80)
            continue
        kind, _group, _real = topics.parse_shared(s.topic_filter)
        if kind is not None and s.no_local and v5:  # [MQTT-3.8.3-4]
            conn.close(RC.PROTOCOL_ERROR, "no local on a shared subscription")
            return
        grant = await check_subscribe(svc.auth, session.identity, s.topic_filter, s.qos,
                                      bypass=ts.by_pass_perm_check_error)  # a provider error: the tenant decides
        if not grant.granted:
            svc.metrics.refuse("subscribe_denied", session.tenant, RC.NOT_AUTHORIZED)
            codes.append(RC.NOT_AUTHORIZED if v5 else 0x80)
            continue
        grants[s.topic_filter] = grant  # narrowed by overlapping deny rules, or plain
        qos = min(s.qos, ts.maximum_qos)
        positions.append(len(codes))
        codes.append(qos)
        accepted.append((s.topic_filter, SubOpts(
            qos=qos, no_local=s.no_local, retain_as_published=s.retain_as_published,
            retain_handling=s.retain_handling, subscription_id=sub_id)))
    existed: list[bool] = []
    if accepted:
        try:  # MaxSharedGroupMembers is checked in Redis, atomically with the shared route's write
            res = await sub_store.subscribe_checked(svc.redis, session.tenant, session.name, accepted,
                                                    epoch=session.epoch,
                                                    max_group_members=ts.max_shared_group_members)
        except NoSession:  # the connection ended (or was taken over) while we got here
            conn.close(RC.SESSION_TAKEN_OVER, "session gone before SUBACK")
            return
        existed = res.existed
        kept: list[tuple[str, SubOpts]] = []
        kept_existed: list[bool] = []
        for (flt, opts), was, pos in zip(accepted, existed, positions, strict=True):
            if flt in res.refused:  # the group is full and we are not in it: not a subscription
                code = svc.metrics.refuse("shared_group_full", session.tenant, RC.QUOTA_EXCEEDED)
                codes[pos] = code if v5 else 0x80
                if was:
                    session.sub_filters.pop(flt, None)
                    session.reads.discard(flt)
                    session.sub_count = max(0, session.sub_count - 1)
                continue
            kept.append((flt, opts))
            kept_existed.append(was)
            if not was:
                session.sub_count += 1
            session.sub_filters[flt] = opts.qos
            session.reads.set(flt, grants[flt])  # deliveries through it are read-checked from now on
        accepted, existed = kept, kept_existed
    # retained replays are looked up (and inbox ones appended) BEFORE the SUBACK, the rest sent
    # right behind it: a message published after the client saw its SUBACK can never overtake
    # the retained one (which would leave the client with stale state last)
    direct: list[tuple[Message, int, tuple[int, ...]]] = []
    for (flt, opts), was in zip(accepted, existed, strict=True):
        if opts.retain_handling == 2 or (opts.retain_handling == 1 and was):
            continue
        if topics.parse_shared(flt)[0] is not None:
            continue  # [MQTT-3.8.4-?] no retained messages for shared subscriptions
        direct += await _replay_retained(conn, flt, opts)
    if ts.debug_mode_enabled:
        debug_events.event("subscribe", session.tenant, session.client_id, "filters=%s codes=%s",
                           [x.topic_filter for x in p.subscriptions], [f"0x{c:02x}" for c in codes])
    conn.machine.ack_subscribe(p.packet_id, codes)
    now_ms = svc.clock.wall_ms()
    for msg, qos, sub_ids in direct:
        conn.outbound.deliver(msg, qos, sub_ids, True, now_ms, retained=True)
    conn.flush()

async def _replay_retained(conn: MQTTConnection, flt: str, opts: SubOpts) -> list[tuple[Message, int, tuple[int, ...]]]:
    """Retained messages for ``flt``: QoS 1/2 ones of a persistent session are appended to its
    inbox (awaited); the others are returned for direct delivery."""
    svc = conn.services
    now_ms = svc.clock.wall_ms()
    # RetainMessageMatchLimit bounds the payloads read, not only those sent (tidemq/store/retained.py)
    limit = svc.tenants.cached(conn.tenant).retain_message_match_limit
    blobs = await retained_store.retain_match(svc.redis, conn.tenant, flt, limit, now_ms=now_ms)
    sub_ids = (opts.subscription_id,) if opts.subscription_id else ()
    direct: list[tuple[Message, int, tuple[int, ...]]] = []
    appended: list[asyncio.Future[int]] = []
    for blob in blobs:
        msg = unpack(blob)
        if msg.expired(now_ms):
            continue
        qos = min(msg.qos, opts.qos)
        if conn.persistent and qos > 0:
            fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            svc.dispatcher.submit_to(conn.tenant, conn.client_id, msg, qos, sub_ids, functools.partial(_settle, fut))
            appended.append(fut)
        else:
            direct.append((msg, qos, sub_ids))
    if appended:
        await asyncio.gather(*appended)
    return direct

def on_api_subscribed(conn: MQTTConnection, sig: Subscribed) -> None:
    """``PUT /sub`` stored ``sig.topic_filter`` for this connection: track it and replay retained messages."""
    conn.spawn(_api_subscribed(conn, sig))


async def _api_subscribed(conn: MQTTConnection, sig: Subscribed) -> None:
    session = conn.session
    if session is None or not conn.connected or session.epoch != sig.epoch:
        return
    svc = conn.services
    ts = await svc.tenants.get(session.tenant)
    grant = await check_subscribe(svc.auth, session.identity, sig.topic_filter, sig.qos,
                                  bypass=ts.by_pass_perm_check_error)
    if sig.topic_filter not in session.sub_filters:
        session.sub_count += 1
    session.sub_filters[sig.topic_filter] = sig.qos
    session.reads.set(sig.topic_filter, grant)  # narrowed like a SUBSCRIBE's (the API checked the grant)
    opts = SubOpts(qos=sig.qos, retain_as_published=sig.retain_as_published,
                   retain_handling=sig.retain_handling, subscription_id=sig.subscription_id)
    if (not grant.granted or opts.retain_handling == 2 or (opts.retain_handling == 1 and sig.existed)
            or topics.parse_shared(sig.topic_filter)[0] is not None):
        return
    direct = await _replay_retained(conn, sig.topic_filter, opts)
    now_ms = svc.clock.wall_ms()
    for msg, qos, sub_ids in direct:
        conn.outbound.deliver(msg, qos, sub_ids, True, now_ms, retained=True)
    conn.flush()


def _settle(fut: asyncio.Future[int], rc: int) -> None:
    if not fut.done():
        fut.set_result(rc)


async def _unsubscribe(conn: MQTTConnection, p: Unsubscribe) -> None:
    session = conn.session
    if session is None or not conn.connected:
        return
    svc = conn.services
    try:
        existed = await sub_store.unsubscribe(svc.redis, session.tenant, session.name, p.topic_filters,
                                              epoch=session.epoch, gen=session.gen)
    except NoSession:  # the connection ended (or was taken over) while we got here
        conn.close(RC.SESSION_TAKEN_OVER, "session gone before UNSUBACK")
        return
    session.sub_count = max(0, session.sub_count - sum(1 for e in existed if e))
    for flt in p.topic_filters:
        session.sub_filters.pop(flt, None)
        session.reads.discard(flt)
    codes: list[int] = [RC.SUCCESS if e else RC.NO_SUBSCRIPTION_EXISTED for e in existed]
    if svc.tenants.cached(session.tenant).debug_mode_enabled:
        debug_events.event("unsubscribe", session.tenant, session.client_id, "filters=%s codes=%s",
                           list(p.topic_filters), [f"0x{c:02x}" for c in codes])
    conn.machine.ack_unsubscribe(p.packet_id, codes)
    conn.flush()
