"""CONNECT handling for one connection: authentication, admission, the session claim, CONNACK, resume.

A mixin of ``MQTTConnection`` (``workers/connection.py``): the steps run in
order — MQTT 5 enhanced authentication or the provider's ``authenticate``,
the tenant's admission limits (protocol switches, connect rate, connection
caps, will size, session expiry bounds), then one ``session_connect`` round
trip that claims the session with a new epoch (and indexes it for the
reaper), a takeover signal to the previous owner, CONNACK, and the resume
of QoS 2 flows and the inbox. Nothing is claimed in Redis before the client
is admitted; a client that left meanwhile has its claim undone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from tidemq.auth import AuthResult, ConnectInfo
from tidemq.limits import ConnectionLimiter
from tidemq.message import Message, pack
from tidemq.mqtt import session as sm
from tidemq.mqtt import topics
from tidemq.mqtt.packets import Connect
from tidemq.mqtt.reason_codes import RC
from tidemq.store import sessions as sess_store

from .inbox import InboxCursor

log = logging.getLogger("tidemq.conn")

CONNECT_TIMEOUT = 10.0
ACK_BARRIER_TIMEOUT = 1.0  # seconds a resuming session waits for this worker's pending inbox acks


class ConnectHandler:
    """The CONNECT half of ``MQTTConnection``."""

    async def _on_connect(self, p: Connect) -> None:
        broker = self.broker
        m = self.machine
        level = p.protocol_level
        client_id = p.client_id
        assigned = False
        if not client_id:
            if level == 5 or (level == 4 and p.clean_start):
                client_id = f"tidemq-{uuid.uuid4().hex}"
                assigned = level == 5
            else:  # [MQTT-3.1.3-8]
                m.refuse(RC.CLIENT_IDENTIFIER_NOT_VALID)
                self.flush()
                return
        info = ConnectInfo(
            client_id, p.username, p.password, level, self.address,
            p.properties.get("authentication_method"), p.properties.get("authentication_data"),
            cert_subject=self.cert_subject)
        auth_props: dict[str, Any] = {}
        if info.auth_method and level == 5:
            auth, auth_props = await self._enhanced_auth(info, p)
        else:
            auth = await broker.auth.authenticate(info)
        if auth is None or not auth.ok:
            code = auth.reason_code if auth is not None and auth.reason_code else RC.NOT_AUTHORIZED
            broker.refuse("auth", auth.tenant_id if auth else "", code)
            m.refuse(code)
            self.close_reason = "authentication failed"
            self.flush()
            return
        ts = await broker.tenant_settings.get(auth.tenant_id)
        code = broker.admit(auth.tenant_id, level, ts)
        if code:
            m.refuse(code)
            self.close_reason = "refused by a limit"
            self.flush()
            return
        self.counted = True
        self.tenant = auth.tenant_id
        if p.will is not None and len(p.will.payload) > ts.max_last_will_bytes:
            m.refuse(broker.refuse("will_too_large", self.tenant, RC.PACKET_TOO_LARGE))
            self.flush()
            return
        settings = broker.settings
        if level == 5:
            expiry = p.properties.get("session_expiry_interval", 0)
        else:
            expiry = 0 if p.clean_start else ts.max_session_expiry_seconds
        if ts.force_transient:
            expiry = 0
        capped = min(expiry, ts.max_session_expiry_seconds)
        if capped > 0:
            capped = max(capped, ts.min_session_expiry_seconds)
        m.set_limits(sm.Limits(
            max_packet_size=settings.max_packet_size, receive_maximum=ts.receiving_maximum,
            topic_alias_maximum=ts.max_topic_alias, server_keep_alive=settings.server_keep_alive,
            min_keep_alive=ts.min_keep_alive_seconds))
        self.limiter = ConnectionLimiter(ts, time.monotonic())
        self.tenant, self.user, self.client_id = auth.tenant_id, auth.user_id, client_id
        self.expiry = capped
        self.persistent = capped > 0
        m.defer_pubcomp = self.persistent
        self.will = p.will
        if p.will is not None:
            try:
                topics.validate_topic_name(p.will.topic)
            except topics.TopicError:
                m.refuse(RC.TOPIC_NAME_INVALID)
                self.flush()
                return
        will_blob, will_delay = b"", 0
        if p.will is not None:
            will_blob, will_delay = _pack_will(p.will, client_id, level)
        if self.persistent and not p.clean_start:
            # acks that a previous connection of this session sent to this worker are written
            # before we resume, so an acknowledged message is not sent again (bounded: the ack
            # loop of a busy worker may never be idle)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(broker.inbox_ops.flush_now(), ACK_BARRIER_TIMEOUT)
        res = await sess_store.session_connect(
            broker.redis, self.tenant, client_id, user=self.user, ver=level, clean_start=p.clean_start,
            persistent=self.persistent, expiry=capped, worker=broker.worker_id, address=self.address,
            client_type="MQTT", now_ms=int(time.time() * 1000), will=will_blob, will_delay=will_delay,
            track=True)  # index first, claim second, one round trip: a crash leaves an extra, never a loss
        if self.transport is None or self.transport.is_closing():
            # the client went away while we were connecting: undo our claim
            await sess_store.session_disconnect(broker.redis, self.tenant, client_id, res.epoch,
                                                now_ms=int(time.time() * 1000))
            return
        self.epoch = res.epoch
        if res.prev_worker:
            await broker.takeover(self.tenant, client_id, res.prev_worker, res.prev_epoch)
        broker.register(self)
        self.registered = True
        broker.note_tenant(self.tenant)
        self.sub_count = len(res.subscriptions)
        self.sub_filters = set(res.subscriptions)
        props: dict[str, Any] = dict(auth_props)
        if level == 5:
            if assigned:
                props["assigned_client_identifier"] = client_id
            if capped != expiry:
                props["session_expiry_interval"] = capped
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
        present = res.present and not p.clean_start
        m.accept(session_present=present, properties=props)
        log.info("connect tenant=%s user=%s client=%s ver=%d persistent=%s present=%s addr=%s",
                 self.tenant, self.user, client_id, level, self.persistent, present, self.address,
                 extra={"event": "connect", "tenant": self.tenant, "user": self.user, "client": client_id,
                        "ver": level, "persistent": self.persistent, "present": present,
                        "address": self.address})
        if self.persistent:
            m.restore_session(qos2_incoming=res.q2in_ids)
            for pid in res.rel_ids:
                m.send_pubrel(pid, tag=("rel", pid))
            self.inbox = InboxCursor(self, sent=res.sent)
            self.inbox.wake()
        self.flush()
        queued, self._queued = self._queued, []
        for ev in queued:
            self._on_publish(ev.packet)  # type: ignore[union-attr]
        self.flush()

    async def _enhanced_auth(self, info: ConnectInfo, p: Connect) -> tuple[Any, dict[str, Any]]:
        """MQTT 5 enhanced authentication: AUTH exchanges until the provider decides [MQTT-4.12]."""
        method = info.auth_method
        packet: Any = p
        for _ in range(16):  # a bounded number of round trips
            step = await self.broker.auth.auth(info, packet)
            if step.kind == "success" and step.result is not None:
                props = {"authentication_method": method}
                if step.data:
                    props["authentication_data"] = step.data
                return step.result, props
            if step.kind != "continue":
                return _failed(step.reason_code or RC.NOT_AUTHORIZED), {}
            props = {"authentication_method": method}
            if step.data:
                props["authentication_data"] = step.data
            self.machine.send_auth(RC.CONTINUE_AUTHENTICATION, props)
            self.flush()
            self._auth_wait = asyncio.get_running_loop().create_future()
            try:
                packet = await asyncio.wait_for(self._auth_wait, timeout=CONNECT_TIMEOUT)
            except TimeoutError:
                return _failed(RC.NOT_AUTHORIZED), {}
            finally:
                self._auth_wait = None
            if packet.properties.get("authentication_method") != method:  # [MQTT-4.12.0-5]
                return _failed(RC.BAD_AUTHENTICATION_METHOD), {}
            info.auth_data = packet.properties.get("authentication_data")
        return _failed(RC.NOT_AUTHORIZED), {}


def _failed(code: int) -> Any:

    return AuthResult(False, reason_code=code)


def _pack_will(will: Any, client_id: str, level: int) -> tuple[bytes, int]:
    """The will as a message blob (stored with the session so any worker can fire it)."""
    props = dict(will.properties) if level == 5 else {}
    delay = int(props.pop("will_delay_interval", 0) or 0)
    wexp = props.pop("message_expiry_interval", 0) or 0
    msg = Message(will.topic, will.payload, will.qos, will.retain, props, 0, client_id, 0,
                  {"wexp": wexp} if wexp else {})
    return pack(msg), delay
