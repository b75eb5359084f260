"""CONNECT: authentication, admission, the will check, the session claim, CONNACK, resume.

The steps run in order — MQTT 5 enhanced authentication (AUTH exchanges) or
the provider's ``authenticate``; the tenant's admission limits (protocol
switches, connect rate, connection caps, session expiry bounds); the will,
checked like a PUBLISH and by the ACL (``workers/wills.py``); then
``session_connect``, which claims the session with a new epoch (and indexes it
for the reaper) and then writes the tenant's indexes, each step in a pipeline
shared with the other CONNECTs and session ends of the moment
(``svc.store_calls``, ``tidemq/store/coalesce.py``); a takeover signal to the
previous owner, CONNACK, and the resume of QoS 2 flows and the inbox. Nothing is claimed in Redis
before the client is admitted; a client that left meanwhile has its claim
undone. Packets the client sent behind its CONNECT are processed only after
the CONNACK [MQTT-3.1.4-5] (the state machine hands them back from ``accept``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import TYPE_CHECKING, Any

from tidemq.auth import AuthResult, ConnectInfo, Identity
from tidemq.auth.checks import check_subscribe
from tidemq.auth.grant import provider_generation
from tidemq.limits import ConnectionLimiter
from tidemq.mqtt import session as sm
from tidemq.mqtt.packets import Auth, Connect
from tidemq.mqtt.reason_codes import RC
from tidemq.signals import Takeover, encode
from tidemq.store import sessions as sess_store
from tidemq.store import signals as signal_store
from tidemq.store import subscriptions as sub_store
from tidemq.tenants import TenantSettings

from . import connect_hooks, debug_events
from .deliver import InboxCursor, ReleaseFlow
from .session import ClientSession
from .timers import CONNECT_TIMEOUT
from .wills import check_will_shape, encode_will, will_from_connect

if TYPE_CHECKING:
    from .connection import MQTTConnection

log = logging.getLogger("tidemq.conn")

ACK_BARRIER_TIMEOUT = 1.0  # seconds a resuming session waits for this worker's pending inbox acks
AUTH_ROUNDS = 16  # AUTH exchanges an enhanced authentication may take
HEADER_ALLOWANCE = 65536 + 1024  # a topic (<= 64 KiB) and properties on top of the payload


def on_connect(conn: MQTTConnection, ev: sm.ConnectReceived) -> None:
    conn.connect_task = conn.spawn(_connect(conn, ev.packet))


def on_auth(conn: MQTTConnection, ev: sm.AuthReceived) -> None:
    if conn.auth_wait is not None and not conn.auth_wait.done():
        conn.auth_wait.set_result(ev.packet)  # the next step of an enhanced authentication
    else:
        conn.close(RC.BAD_AUTHENTICATION_METHOD, "re-authentication not supported")


def _refuse(conn: MQTTConnection, code: int, why: str) -> None:
    conn.machine.refuse(code)
    conn.close_reason = why
    conn.flush()


async def _connect(conn: MQTTConnection, p: Connect) -> None:
    try:
        await _connect_steps(conn, p)
    finally:
        conn.services.admission.connect_done(conn)


async def _connect_steps(conn: MQTTConnection, p: Connect) -> None:
    svc = conn.services
    m = conn.machine
    level = p.protocol_level
    client_id = p.client_id
    assigned = False
    if not client_id:
        if level == 5 or (level == 4 and p.clean_start):
            client_id = f"tidemq-{uuid.uuid4().hex}"
            assigned = level == 5
        else:  # [MQTT-3.1.3-8]
            _refuse(conn, RC.CLIENT_IDENTIFIER_NOT_VALID, "client identifier not valid")
            return
    info = ConnectInfo(
        client_id, p.username, p.password, level, conn.address,
        p.properties.get("authentication_method"), p.properties.get("authentication_data"),
        cert_subject=conn.cert_subject)
    auth_props: dict[str, Any] = {}
    if info.auth_method and level == 5:
        auth, auth_props = await _enhanced_auth(conn, info, p)
    else:
        auth = await svc.auth.authenticate(info)
    if not auth.ok:
        code = auth.reason_code or RC.NOT_AUTHORIZED
        svc.metrics.refuse("auth", auth.tenant_id, code)
        _refuse(conn, code, "authentication failed")
        return
    if await connect_hooks.redirected(conn, client_id, auth):  # the client balancer (TIDEMQ_CLIENT_BALANCER)
        return
    tenant = auth.tenant_id
    ts = await svc.tenants.get(tenant)
    code = await svc.admission.admit(tenant, level, ts, svc.clock.monotonic())
    if code:
        _refuse(conn, code, "refused by a limit")
        return
    conn.counted = True
    session = ClientSession(tenant, auth.user_id, client_id, level)
    name = session.name  # the session in Redis and in the registry: (tenant, user, client id)
    conn.session = session  # from here the connection is the tenant's (the slot is released at the end)
    if p.will is not None:
        code = check_will_shape(p.will, ts, svc.metrics, tenant)
        if not code and not await svc.wills.allowed(Identity(tenant, auth.user_id, client_id), p.will):
            code = svc.metrics.refuse("will_denied", tenant, RC.NOT_AUTHORIZED)
        if code:
            _refuse(conn, code, "will refused")
            return
    expiry, capped = _session_expiry(p, level, ts)
    m.set_limits(_tenant_limits(conn, ts))
    session.limiter = ConnectionLimiter.for_settings(ts, svc.clock.monotonic())  # None: the tenant sets no rate
    session.expiry = capped
    session.persistent = capped > 0
    m.defer_pubcomp = session.persistent
    will_blob, will_delay = b"", 0
    if p.will is not None:
        session.will = will_from_connect(p.will, auth.user_id, level)
        will_blob, will_delay = encode_will(session.will, name), session.will.delay
    if session.persistent and not p.clean_start and svc.inbox_ops.busy:
        # acks that a previous connection of this session sent to this worker are written before we
        # resume, so an acknowledged message is not sent again (bounded: a busy ack loop may never idle)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(svc.inbox_ops.flush_now(), ACK_BARRIER_TIMEOUT)
    now_ms = svc.clock.wall_ms()
    try:
        res = await sess_store.session_connect(
            svc.redis, tenant, name, user=session.user, ver=level, clean_start=p.clean_start,
            persistent=session.persistent, expiry=capped, worker=svc.worker_id, address=conn.address,
            client_type="MQTT", now_ms=now_ms, will=will_blob, will_delay=will_delay,
            track=True,  # index first, claim second, one round trip: a crash leaves an extra, never a loss
            max_group_members=ts.max_shared_group_members,  # a shared route a crash left unwritten: re-checked
            calls=svc.store_calls)
    except sess_store.SessionOfAnotherUser:
        _refuse(conn, svc.metrics.refuse("client_id_of_another_user", tenant, RC.CLIENT_IDENTIFIER_NOT_VALID),
                "client id in use by another user")
        return
    if conn.transport is None or conn.transport.is_closing():
        # the client went away while we were connecting: undo our claim
        await sess_store.session_disconnect(svc.redis, tenant, name, res.epoch, now_ms=svc.clock.wall_ms(),
                                            calls=svc.store_calls)
        return
    session.epoch = res.epoch
    session.gen = res.gen
    await connect_hooks.record_attributes(svc, tenant, name, res.epoch, auth.attributes)  # GET /session
    if res.prev_worker and res.prev_worker != svc.worker_id:  # a local previous owner is closed by register
        await signal_store.publish_signal(svc.redis, res.prev_worker,
                                          encode(Takeover(tenant, name, res.prev_epoch)))
    svc.registry.register(session.key, conn)
    conn.registered = True
    session.sub_count = len(res.subscriptions)
    session.sub_filters = {flt: opts.qos for flt, opts in res.subscriptions.items()}
    present = res.present and not p.clean_start
    if present and session.sub_filters:
        await _recheck_subscriptions(conn, session, ts.by_pass_perm_check_error)
    props = dict(auth_props)
    if level == 5:
        props.update(_connack_properties(ts, client_id if assigned else None, capped if capped != expiry else None))
    held = m.accept(session_present=present, properties=props)
    log.info("connect tenant=%s user=%s client=%s ver=%d persistent=%s present=%s addr=%s",
             tenant, session.user, client_id, level, session.persistent, present, conn.address,
             extra={"event": "connect", "tenant": tenant, "user": session.user, "client": client_id,
                    "ver": level, "persistent": session.persistent, "present": present, "address": conn.address})
    if ts.debug_mode_enabled:
        debug_events.event("connect", tenant, client_id,
                           "ver=%d keep_alive=%d receive_maximum=%d session_expiry=%d will=%s subscriptions=%d",
                           level, p.keep_alive, ts.receiving_maximum, session.expiry,
                           session.will.topic if session.will is not None else "-", session.sub_count)
    if session.persistent or present:
        # a resumed session with Session Expiry 0 (MQTT 5) still gets what was queued for it, on this
        # connection; the session then ends when the connection does
        m.restore_session(qos2_incoming=res.q2in_ids)
        for pid in res.rel_ids:
            m.send_pubrel(pid, tag=ReleaseFlow(pid))
        conn.inbox = InboxCursor(conn, conn.outbound, svc.inbox_reader, svc.inbox_ops, sent=res.sent)
        conn.inbox.wake()
    conn.flush()
    conn.dispatch(held)  # what the client sent behind its CONNECT, in order [MQTT-3.1.4-5]
    conn.flush()


async def _recheck_subscriptions(conn: MQTTConnection, session: ClientSession, bypass: bool) -> None:
    """Subscriptions restored on resume meet the provider's current rules: a filter no longer allowed
    is dropped (and logged, without any payload); one that now overlaps deny rules is narrowed."""
    svc = conn.services
    refused: list[str] = []
    for flt, qos in session.sub_filters.items():
        grant = await check_subscribe(svc.auth, session.identity, flt, qos, bypass=bypass)  # as at SUBSCRIBE
        if grant.granted:
            session.reads.set(flt, grant)
        else:
            refused.append(flt)
    session.reads.generation = provider_generation(svc.auth)
    if not refused:
        return
    await sub_store.unsubscribe(svc.redis, session.tenant, session.name, refused, epoch=session.epoch,
                                gen=session.gen)
    for flt in refused:
        del session.sub_filters[flt]
        svc.metrics.refuse("subscription_dropped", session.tenant, RC.NOT_AUTHORIZED)
        log.warning("subscription dropped on resume tenant=%s user=%s client=%s filter=%s: no longer allowed",
                    session.tenant, session.user, session.client_id, flt,
                    extra={"event": "subscription_dropped", "tenant": session.tenant, "user": session.user,
                           "client": session.client_id, "reason": "acl"})
    session.sub_count = max(0, session.sub_count - len(refused))


TENANT_LIMITS_CACHED = 1024  # TenantSettings values whose state-machine Limits a worker keeps


def _tenant_limits(conn: MQTTConnection, ts: TenantSettings) -> sm.Limits:
    """The state machine's limits for the tenant's settings ``ts``: one object per settings value (the
    provider hands out the same object until it reloads the tenant), shared by its connections."""
    svc = conn.services
    cache = svc.limits_by_settings
    hit = cache.get(id(ts))
    if hit is not None and hit[0] is ts:
        return hit[1]
    settings = svc.settings
    limits = sm.Limits(
        max_packet_size=max_packet_size(settings.max_packet_size, ts), receive_maximum=ts.receiving_maximum,
        topic_alias_maximum=ts.max_topic_alias, server_keep_alive=settings.server_keep_alive,
        min_keep_alive=ts.min_keep_alive_seconds, preauth_max_packet_size=conn.machine.limits.preauth_max_packet_size)
    if len(cache) >= TENANT_LIMITS_CACHED:
        cache.clear()
    cache[id(ts)] = (ts, limits)  # holds ts, so its id is not reused while cached
    return limits


def max_packet_size(process_max: int, ts: TenantSettings) -> int:
    """The cap on an authenticated client's packets, checked at the fixed header: the process maximum, or the
    tenant's MaxUserPayloadBytes plus room for the headers (a payload a little over the limit still gets its
    polite PUBACK 0x95; one far over it is never buffered)."""
    return min(process_max, ts.max_user_payload_bytes + HEADER_ALLOWANCE)


def _session_expiry(p: Connect, level: int, ts: TenantSettings) -> tuple[int, int]:
    """(requested, granted) session expiry: MQTT 3 persistent sessions get the tenant's maximum."""
    if level == 5:
        expiry = int(p.properties.get("session_expiry_interval", 0))
    else:
        expiry = 0 if p.clean_start else ts.max_session_expiry_seconds
    if ts.force_transient:
        expiry = 0
    capped = min(expiry, ts.max_session_expiry_seconds)
    if capped > 0:
        capped = max(capped, ts.min_session_expiry_seconds)
    return expiry, capped


def _connack_properties(ts: TenantSettings, assigned: str | None, expiry: int | None) -> dict[str, Any]:
    props: dict[str, Any] = {}
    if assigned is not None:
        props["assigned_client_identifier"] = assigned
    if expiry is not None:
        props["session_expiry_interval"] = expiry
    if not ts.retain_enabled:
        props["retain_available"] = 0
    if ts.maximum_qos < 2:
        props["maximum_qos"] = ts.maximum_qos
    if not ts.wildcard_subscription_enabled:
        props["wildcard_subscription_available"] = 0
    if not ts.subscription_identifier_enabled:
        props["subscription_identifier_available"] = 0
    if not ts.shared_subscription_enabled:
        props["shared_subscription_available"] = 0
    return props


async def _enhanced_auth(conn: MQTTConnection, info: ConnectInfo, p: Connect) -> tuple[AuthResult, dict[str, Any]]:
    """MQTT 5 enhanced authentication: AUTH exchanges until the provider decides [MQTT-4.12]."""
    method = info.auth_method
    packet: Connect | Auth = p
    for _ in range(AUTH_ROUNDS):
        step = await conn.services.auth.auth(info, packet)
        if step.kind == "success" and step.result is not None:
            props: dict[str, Any] = {"authentication_method": method}
            if step.data:
                props["authentication_data"] = step.data
            return step.result, props
        if step.kind != "continue":
            return AuthResult(False, reason_code=step.reason_code or RC.NOT_AUTHORIZED), {}
        props = {"authentication_method": method}
        if step.data:
            props["authentication_data"] = step.data
        conn.machine.send_auth(RC.CONTINUE_AUTHENTICATION, props)
        conn.flush()
        conn.auth_wait = asyncio.get_running_loop().create_future()
        try:
            packet = await asyncio.wait_for(conn.auth_wait, timeout=CONNECT_TIMEOUT)
        except TimeoutError:
            return AuthResult(False, reason_code=RC.NOT_AUTHORIZED), {}
        finally:
            conn.auth_wait = None
        if packet.properties.get("authentication_method") != method:  # [MQTT-4.12.0-5]
            return AuthResult(False, reason_code=RC.BAD_AUTHENTICATION_METHOD), {}
        info.auth_data = packet.properties.get("authentication_data")
    return AuthResult(False, reason_code=RC.NOT_AUTHORIZED), {}
