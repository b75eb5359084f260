"""Inbound PUBLISH and the inbound QoS 2 release: validation, limits, ACL, routing, acknowledgement.

Each PUBLISH is checked against the tenant's topic limits, ``$``-topics,
MaximumQoS, RetainEnabled, payload format and size, and MsgPubPerSec; then
the provider's publish ACL — synchronously when the provider can answer from
memory, else through an ordered gate so one publisher's messages stay in
order; a provider that raises is answered by the tenant's
``ByPassPermCheckError`` (``tidemq.auth.checks``). Accepted messages go to the dispatcher; a QoS 1/2 message is
acknowledged only after the store took it (PUBACK/PUBREC with the outcome).
MQTT 3 has no failure PUBACK: a publish the store did not take closes the
connection instead, so the client sends it again after reconnecting.

Persistent sessions record an inbound QoS 2 packet id in the same atomic step
that routes the message (``inbox_append`` with the publisher's q2in set), so a
resend after a lost reply or a crash is recognised and not routed again; PUBCOMP
goes out only after the id is removed again. A crash at any point neither loses
nor duplicates the message.
"""

from __future__ import annotations

import logging
from collections import deque
from functools import partial
from typing import TYPE_CHECKING

from tidemq.auth.checks import allowed_publish_now, check_publish
from tidemq.message import Message, expiry_deadline
from tidemq.mqtt import session as sm
from tidemq.mqtt import topics
from tidemq.mqtt.packets import Publish
from tidemq.mqtt.reason_codes import RC

from . import debug_events

if TYPE_CHECKING:
    from .connection import MQTTConnection
    from .session import ClientSession

log = logging.getLogger("tidemq.conn")


def on_publish(conn: MQTTConnection, ev: sm.PublishReceived) -> None:
    p = ev.packet
    session = conn.session
    assert session is not None  # the machine emits no PUBLISH before the CONNACK
    svc = conn.services
    metrics = svc.metrics
    tenant = session.tenant
    ts = svc.tenants.cached(tenant)
    try:
        topics.validate_topic_name(p.topic, max_levels=ts.max_topic_levels, max_length=ts.max_topic_length,
                                   max_level_length=ts.max_topic_level_length)
    except topics.TopicError as exc:
        conn.close(RC.TOPIC_NAME_INVALID, f"bad topic: {exc}")
        return
    if p.topic.startswith("$SYS"):
        _reject(conn, p, RC.NOT_AUTHORIZED)
        return
    if p.qos > ts.maximum_qos:  # [MQTT-3.2.2-11]
        conn.close(metrics.refuse("qos_not_supported", tenant, RC.QOS_NOT_SUPPORTED))
        return
    if p.retain and not ts.retain_enabled:  # [MQTT-3.2.2-14]
        conn.close(metrics.refuse("retain_disabled", tenant, RC.RETAIN_NOT_SUPPORTED))
        return
    if (ts.payload_format_validation_enabled and p.properties.get("payload_format_indicator") == 1
            and not _is_utf8(p.payload)):  # [MQTT-3.3.2-4]: PayloadFormatValidationEnabled
        _reject(conn, p, metrics.refuse("payload_format", tenant, RC.PAYLOAD_FORMAT_INVALID))
        return
    if len(p.payload) > ts.max_user_payload_bytes:
        _reject(conn, p, metrics.refuse("payload_too_large", tenant, RC.PACKET_TOO_LARGE))
        return
    # the time the packet's bytes were read (``data_received``): no clock call per message
    if session.limiter is not None and not session.limiter.allow_publish(conn.machine.last_received):
        _reject(conn, p, metrics.refuse("publish_rate", tenant, RC.MESSAGE_RATE_TOO_HIGH))
        return
    if ts.debug_mode_enabled:  # never the payload, only its size
        debug_events.event("publish", tenant, session.client_id, "topic=%s qos=%d retain=%s bytes=%d", p.topic,
                           p.qos, p.retain, len(p.payload))
    bypass = ts.by_pass_perm_check_error
    allowed = None if conn.pub_gate else allowed_publish_now(svc.auth, session.identity, p.topic, p.qos, p.retain,
                                                             bypass=bypass)
    if allowed is not None:
        if not allowed:
            _reject(conn, p, metrics.refuse("publish_denied", tenant, RC.NOT_AUTHORIZED))
            return
        _route(conn, p)
    else:  # an async provider: check in arrival order, so one publisher's messages stay ordered
        gate = conn.pub_gate
        if gate is None:
            gate = conn.pub_gate = deque()
        gate.append(p)
        if conn.gate_task is None or conn.gate_task.done():
            conn.gate_task = conn.spawn(_drain_gate(conn))


async def _drain_gate(conn: MQTTConnection) -> None:
    svc = conn.services
    session = conn.session
    gate = conn.pub_gate
    assert session is not None and gate is not None
    while gate:
        p = gate[0]
        ok = await check_publish(svc.auth, session.identity, p.topic, p.qos, p.retain,
                                 bypass=svc.tenants.cached(session.tenant).by_pass_perm_check_error)
        gate.popleft()
        if ok:
            _route(conn, p)
        else:
            _reject(conn, p, svc.metrics.refuse("publish_denied", session.tenant, RC.NOT_AUTHORIZED))
        conn.flush_soon()


def _route(conn: MQTTConnection, p: Publish) -> None:
    svc = conn.services
    session = conn.session
    assert session is not None
    now_ms = svc.clock.wall_ms()
    props = p.properties
    interval = props.get("message_expiry_interval") if props else None
    msg = Message(p.topic, p.payload, p.qos, p.retain, props, expiry_deadline(now_ms, interval) if interval else 0,
                  session.name, now_ms)
    tenant = session.tenant
    svc.metrics.received(tenant)
    dispatcher = svc.dispatcher
    qos = p.qos
    if qos == 0:
        dispatcher.submit(tenant, msg, origin=session)
    else:
        pid = p.packet_id
        assert pid is not None
        # a persistent session's QoS 2 packet id is recorded by the routing step itself (atomically with the
        # inbox appends), so PUBREC follows a recorded id and a resend of a routed message is never routed again
        dedupe = (session.name, pid) if qos == 2 and session.persistent else None
        dispatcher.submit(tenant, msg, partial(_routed, conn, session, pid, qos, dedupe is not None), origin=session,
                          dedupe=dedupe)
    if dispatcher.overloaded and conn.transport is not None:
        conn.transport.pause_reading()
        dispatcher.pause_until_drained(conn.resume_reading)


def _routed(conn: MQTTConnection, session: ClientSession, pid: int, qos: int, recorded: bool, rc: int) -> None:
    """The dispatcher routed a QoS 1/2 publish (``rc``): acknowledge it, after the stored QoS 2 packet id of a
    persistent session (``recorded``) is marked done or dropped."""
    code = rc if rc in (RC.NO_MATCHING_SUBSCRIBERS, RC.SUCCESS, RC.QUOTA_EXCEEDED) else RC.UNSPECIFIED_ERROR
    if recorded:
        ops = conn.services.inbox_ops
        if code >= 0x80 and conn.machine.protocol_level == 5:
            # a v5 PUBREC with a failure ends the flow: the id is free again before the client can
            # reuse it (MQTT 3 is disconnected instead and resends with the same id: it stays recorded)
            ops.q2del(session.tenant, session.name, pid, then=partial(_acknowledge, conn, session, pid, qos, code))
            return
        if code < 0x80 or code == RC.QUOTA_EXCEEDED:
            # routed everywhere (inboxes and clean sessions): marked "d<pid>" before the PUBREC, so
            # a resumed session answers a resend itself only for a message that went everywhere;
            # an unmarked id (a crash in between) is routed again, inboxes skipped (inbox_append)
            ops.q2done(session.tenant, session.name, pid, then=partial(_acknowledge, conn, session, pid, qos, code))
            return
    _acknowledge(conn, session, pid, qos, code)


def _acknowledge(conn: MQTTConnection, session: ClientSession, pid: int, qos: int, code: int) -> None:
    m = conn.machine
    if code >= 0x80 and m.protocol_level < 5:
        if code == RC.QUOTA_EXCEEDED:  # MQTT 3 has no failure PUBACK: acknowledged, counted and logged
            log.warning("inbox full: MQTT 3 publish acknowledged but queued nowhere tenant=%s client=%s",
                        session.tenant, session.client_id, extra={
                            "event": "inbox_drop_acked", "tenant": session.tenant,
                            "client": session.client_id})
            code = RC.SUCCESS
        else:
            session.publish_failed = True  # its later queued publishes are not routed either
            conn.close(RC.SERVER_UNAVAILABLE, "store unavailable: publish not acknowledged")
            return
    m.ack_publish(pid, qos, code)
    conn.flush_soon()


def _reject(conn: MQTTConnection, p: Publish, rc: int) -> None:
    """A refused PUBLISH: v5 gets the reason in its PUBACK/PUBREC; v3 a plain ack (dropped)."""
    if p.qos > 0 and p.packet_id is not None:
        conn.machine.ack_publish(p.packet_id, p.qos, rc if conn.machine.protocol_level == 5 else 0)


def on_pubrel_unknown(conn: MQTTConnection, ev: sm.PubrelUnknown) -> None:
    """PUBREL for an id the resumed session did not restore (recorded, but its routing was never confirmed):
    PUBCOMP went out already; the stored id is dropped so a later reuse of it is never taken for a resend."""
    session = conn.session
    if session is not None and session.persistent:
        conn.services.inbox_ops.q2del(session.tenant, session.name, ev.packet_id)


def on_pubrel(conn: MQTTConnection, ev: sm.PubrelReceived) -> None:
    """Inbound QoS 2 released: a persistent session sends PUBCOMP once the id is gone from Redis."""
    session = conn.session
    if session is not None and session.persistent:
        pid = ev.packet_id
        conn.services.inbox_ops.q2del(session.tenant, session.name, pid, then=lambda: _complete(conn, pid))


def _complete(conn: MQTTConnection, packet_id: int) -> None:
    conn.machine.complete(packet_id)
    conn.flush_soon()


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True



