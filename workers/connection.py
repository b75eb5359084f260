"""One client connection: asyncio transport <-> sans-IO state machine <-> store.

``MQTTConnection`` is an ``asyncio.Protocol``: bytes go into the
``ServerConnection`` state machine, its events are handled here (the only
place that awaits the store for a connection), and whatever the machine
queues is written once per event-loop turn. Session lifecycle:

- CONNECT: authenticate, ``session_connect`` in Redis (new epoch, takeover of
  any previous owner), CONNACK, then resume: PUBRELs for QoS 2 flows past
  PUBREC, inbox redelivery (DUP on what was sent before);
- persistent sessions receive every message through their inbox (a Redis
  stream read by ``InboxCursor``); transient ones straight from the
  dispatcher or a ``D`` signal, with an in-memory window;
- close: the will (unless a normal DISCONNECT or a server shutdown), then
  ``session_disconnect`` with our epoch, so a takeover is never undone.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from tidemq.auth import Identity
from tidemq.limits import ConnectionLimiter
from tidemq.message import Message
from tidemq.mqtt import session as sm
from tidemq.mqtt import topics
from tidemq.mqtt.packets import Publish
from tidemq.mqtt.reason_codes import RC
from tidemq.store import sessions as sess_store

from .connect import CONNECT_TIMEOUT, ConnectHandler
from .inbox import InboxCursor
from .subscribe import SubscribeHandler
from .transport.tls import cert_subject

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger("tidemq.conn")

WRITE_HIGH_WATER = 4 * 1024 * 1024  # bytes buffered before QoS 0 is dropped for this client


class MQTTConnection(ConnectHandler, SubscribeHandler, asyncio.Protocol):
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.machine = sm.ServerConnection(limits=broker.limits())
        self.transport: asyncio.Transport | None = None
        self.address = ""
        self.cert_subject: str | None = None
        self.opened = time.monotonic()
        self.tenant = ""
        self.user = ""
        self.client_id = ""
        self.epoch = 0
        self.persistent = False
        self.expiry = 0
        self.will: Any = None
        self.registered = False
        self.closing = False
        self.publish_will = True
        self.close_reason = ""
        self.inbox: InboxCursor | None = None
        self._flush_scheduled = False
        self._paused = False
        self._pending: deque[tuple[Message, int, tuple[int, ...], bool]] = deque()  # transient backlog
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connect_task: asyncio.Task[None] | None = None
        self._queued: list[sm.Event] = []
        self.counted = False  # holds a slot of the broker's connection counter
        self._out_hold_until = 0.0
        self.limiter: ConnectionLimiter | None = None
        self.sub_count = 0  # filters of the session (MaxTopicFiltersPerInbox)
        self.sub_filters: set[str] = set()  # their names: re-subscribing an existing filter takes no quota
        self._auth_wait: asyncio.Future[Any] | None = None
        self._pub_gate: deque[Publish] = deque()  # publishes awaiting an async ACL check, in order
        self._gate_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.address = f"{peer[0]}:{peer[1]}" if peer else ""
        self.cert_subject = cert_subject(transport.get_extra_info("peercert"))  # TLS client certificate
        self.broker.connections.add(self)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if self.limiter is not None:
            pause = self.limiter.received(now, len(data))
            if pause > 0 and self.transport is not None:  # InBoundBandWidth: slow the reader down
                self.transport.pause_reading()
                asyncio.get_running_loop().call_later(pause, self._resume_reading)
        events = self.machine.receive_data(data, now)
        for ev in events:
            self._on_event(ev)
        self.flush()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.broker.connections.discard(self)
        if self.machine.state is not sm.State.CLOSED:
            self.machine.state = sm.State.CLOSED
        if not self.close_reason:
            self.close_reason = "connection lost" if exc is None else f"connection lost: {exc}"
        self._spawn(self._cleanup())
        self.broker.cleanups.update(t for t in self._tasks if not t.done())

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._pending:
            self._drain_pending()  # the QoS 1/2 backlog held back while the socket was backed up
        if self.inbox is not None:
            self.inbox.wake()

    def _backed_up(self) -> bool:
        """More than WRITE_HIGH_WATER bytes wait in the transport: a slow consumer; send no more for now."""
        return self.transport is not None and self.transport.get_write_buffer_size() > WRITE_HIGH_WATER

    def flush(self) -> None:
        self._flush_scheduled = False
        data = self.machine.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            if self.limiter is not None:  # OutBoundBandWidth: hold droppable (QoS 0) sends for a while
                now = time.monotonic()
                hold = self.limiter.sent(now, len(data))
                if hold > 0:
                    self._out_hold_until = now + hold
        if self.machine.state is sm.State.CLOSED and not self.closing:
            self.closing = True
            if self.transport is not None:
                self.transport.close()

    def flush_soon(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def close(self, reason_code: int = 0, why: str = "", properties: dict[str, Any] | None = None) -> None:
        """Server-side close (v5 DISCONNECT with ``reason_code`` first)."""
        if why and not self.close_reason:
            self.close_reason = why
        self.machine.disconnect(reason_code, properties=properties)
        self.flush()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self.broker.cleanups.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("connection task failed for %s/%s: %r", self.tenant, self.client_id, exc, exc_info=exc)
            self.close(RC.UNSPECIFIED_ERROR, "internal error")

    @property
    def identity(self) -> Identity:
        return Identity(self.tenant, self.user, self.client_id)

    # ------------------------------------------------------------ events

    def _on_event(self, ev: sm.Event) -> None:
        if isinstance(ev, sm.PublishReceived):
            if self._connect_task is not None and not self._connect_task.done():
                self._queued.append(ev)
            else:
                self._on_publish(ev.packet)
        elif isinstance(ev, sm.PubackReceived):
            if _is_inbox(ev.tag) and self.inbox is not None:
                self.inbox.on_puback(ev.packet_id, ev.tag)
            else:
                self._drain_pending()
        elif isinstance(ev, sm.PubcompReceived):
            if _is_inbox(ev.tag) and self.inbox is not None:
                self.inbox.on_pubcomp(ev.packet_id, ev.tag)
            else:
                self._drain_pending()
        elif isinstance(ev, sm.PubrecReceived):
            self._on_pubrec(ev)
        elif isinstance(ev, sm.PubrelReceived):
            if self.persistent:  # PUBCOMP once the id is gone from the stored session (defer_pubcomp)
                self.broker.inbox_ops.q2del(self.tenant, self.client_id, ev.packet_id,
                                            then=functools.partial(self._complete, ev.packet_id))
        elif isinstance(ev, sm.SubscribeReceived):
            self._spawn(self._on_subscribe(ev.packet))
        elif isinstance(ev, sm.UnsubscribeReceived):
            self._spawn(self._on_unsubscribe(ev.packet))
        elif isinstance(ev, sm.ConnectReceived):
            self._connect_task = asyncio.get_running_loop().create_task(self._on_connect(ev.packet))
            self._connect_task.add_done_callback(self._task_done)
        elif isinstance(ev, sm.DisconnectReceived):
            self.close_reason = f"client disconnect 0x{ev.reason_code:02x}"
            self.publish_will = ev.publish_will
            if ev.session_expiry is not None and self.machine.protocol_level == 5:
                if self.expiry == 0 and ev.session_expiry > 0:  # [MQTT-3.14.2-2]
                    self.close(RC.PROTOCOL_ERROR, "session expiry set at DISCONNECT after 0")
                    self.publish_will = True
                else:
                    self.expiry = min(ev.session_expiry, self.broker.settings.max_session_expiry)
        elif isinstance(ev, sm.AuthReceived):
            if self._auth_wait is not None and not self._auth_wait.done():
                self._auth_wait.set_result(ev.packet)  # the next step of an enhanced authentication
            else:
                self.close(RC.BAD_AUTHENTICATION_METHOD, "re-authentication not supported")
        elif isinstance(ev, sm.ConnectionFailed):
            self.close_reason = f"protocol error: {ev.error}"
            log.info("closing %s (%s/%s): %s", self.address, self.tenant, self.client_id, ev.error)

    # ------------------------------------------------------------ publish in

    def _on_publish(self, p: Publish) -> None:
        broker = self.broker
        ts = broker.settings_for(self.tenant)
        try:
            topics.validate_topic_name(p.topic, max_levels=ts.max_topic_levels, max_length=ts.max_topic_length,
                                       max_level_length=ts.max_topic_level_length)
        except topics.TopicError as exc:
            self.close(RC.TOPIC_NAME_INVALID, f"bad topic: {exc}")
            return
        if p.topic.startswith("$SYS"):
            self._reject_publish(p, RC.NOT_AUTHORIZED)
            return
        if p.qos > ts.maximum_qos:  # [MQTT-3.2.2-11]
            self.close(broker.refuse("qos_not_supported", self.tenant, RC.QOS_NOT_SUPPORTED))
            return
        if p.retain and not ts.retain_enabled:  # [MQTT-3.2.2-14]
            self.close(broker.refuse("retain_disabled", self.tenant, RC.RETAIN_NOT_SUPPORTED))
            return
        if (ts.payload_format_validation_enabled and p.properties.get("payload_format_indicator") == 1
                and not _is_utf8(p.payload)):  # [MQTT-3.3.2-4]: PayloadFormatValidationEnabled
            self._reject_publish(p, broker.refuse("payload_format", self.tenant, RC.PAYLOAD_FORMAT_INVALID))
            return
        if len(p.payload) > ts.max_user_payload_bytes:
            self._reject_publish(p, broker.refuse("payload_too_large", self.tenant, RC.PACKET_TOO_LARGE))
            return
        if self.limiter is not None and not self.limiter.allow_publish(time.monotonic()):
            self._reject_publish(p, broker.refuse("publish_rate", self.tenant, RC.MESSAGE_RATE_TOO_HIGH))
            return
        allowed = getattr(broker.auth, "allowed_publish", None)
        if allowed is not None and not self._pub_gate:
            if not allowed(self.identity, p.topic, p.qos, p.retain):
                self._reject_publish(p, broker.refuse("publish_denied", self.tenant, RC.NOT_AUTHORIZED))
                return
            self._route_publish(p)
        else:  # an async provider: check in arrival order, so one publisher's messages stay ordered
            self._pub_gate.append(p)
            if self._gate_task is None or self._gate_task.done():
                self._gate_task = asyncio.get_running_loop().create_task(self._drain_gate())

    async def _drain_gate(self) -> None:
        broker = self.broker
        while self._pub_gate:
            p = self._pub_gate[0]
            ok = await broker.auth.check_publish(self.identity, p.topic, p.qos, p.retain)
            self._pub_gate.popleft()
            if ok:
                self._route_publish(p)
            else:
                self._reject_publish(p, broker.refuse("publish_denied", self.tenant, RC.NOT_AUTHORIZED))
            self.flush_soon()

    def _route_publish(self, p: Publish) -> None:
        m = self.machine
        broker = self.broker
        now_ms = int(time.time() * 1000)
        props = p.properties
        expiry = props.get("message_expiry_interval")
        msg = Message(p.topic, p.payload, p.qos, p.retain, props, now_ms + expiry * 1000 if expiry else 0,
                      self.client_id, now_ms)
        if p.qos == 0:
            broker.dispatcher.submit(self.tenant, msg)
        else:
            pid, qos = p.packet_id, p.qos

            def done(rc: int, pid: int = pid, qos: int = qos) -> None:
                code = rc if rc in (RC.NO_MATCHING_SUBSCRIBERS, RC.SUCCESS, RC.QUOTA_EXCEEDED) \
                    else RC.UNSPECIFIED_ERROR
                if code == RC.QUOTA_EXCEEDED and m.protocol_level < 5:
                    # MQTT 3 has no failure PUBACK: acknowledge, the drop is counted and logged
                    log.warning("inbox full: MQTT 3 publish acknowledged but queued nowhere tenant=%s "
                                "client=%s", self.tenant, self.client_id,
                                extra={"event": "inbox_drop_acked", "tenant": self.tenant,
                                       "client": self.client_id})
                    code = RC.SUCCESS
                if self.persistent and qos == 2 and code < 0x80:
                    # the id is recorded only once the message is routed, and PUBREC goes out only once
                    # it is recorded: a crash in between makes the client resend the PUBLISH (routed
                    # again) instead of the resumed session discarding it as a duplicate (lost)
                    broker.inbox_ops.q2add(self.tenant, self.client_id, pid,
                                           then=lambda: done_ack(pid, qos, code))
                    return
                done_ack(pid, qos, code)

            def done_ack(pid: int, qos: int, code: int) -> None:
                if code >= 0x80 and m.protocol_level < 5:
                    # MQTT 3 has no failure PUBACK: never acknowledge what the store did not take;
                    # close instead, so the client sends it again after reconnecting
                    self.close(RC.SERVER_UNAVAILABLE, "store unavailable: publish not acknowledged")
                    return
                m.ack_publish(pid, qos, code)  # type: ignore[arg-type]
                self.flush_soon()

            broker.dispatcher.submit(self.tenant, msg, done)
        if broker.dispatcher.overloaded and self.transport is not None:
            self.transport.pause_reading()
            broker.dispatcher.pause_until_drained(self._resume_reading)

    def _resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def _reject_publish(self, p: Publish, rc: int) -> None:
        if p.qos > 0 and self.machine.protocol_level == 5:
            self.machine.ack_publish(p.packet_id, p.qos, rc)  # type: ignore[arg-type]
        elif p.qos > 0:
            self.machine.ack_publish(p.packet_id, p.qos, 0)  # v3: silently dropped  # type: ignore[arg-type]

    # ------------------------------------------------------------ publish out

    def deliver(self, msg: Message, qos: int, sub_ids: tuple[int, ...], rap: bool, now_ms: int,
                retained: bool = False) -> None:
        """A message for this transient session (local route or ``D`` signal)."""
        if self.machine.state is not sm.State.CONNECTED:
            return
        if msg.expire_at_ms and msg.expire_at_ms <= now_ms:
            return
        retain = retained or (rap and msg.retain)
        if qos == 0:
            if (self.transport is not None and self.transport.get_write_buffer_size() > WRITE_HIGH_WATER) or (
                    self._out_hold_until and time.monotonic() < self._out_hold_until):
                self.broker.metrics["dropped_qos0"] += 1
                return
            self._send(msg, 0, retain, sub_ids, now_ms)
        elif self._pending or self.machine.window_free == 0 or self._backed_up():
            if len(self._pending) >= self.broker.settings_for(self.tenant).session_inbox_size:
                # a slow consumer: its QoS 1/2 backlog outgrew the inbox policy; never grow memory
                self.broker.metrics["slow_consumer_disconnects"] += 1
                log.warning("slow consumer tenant=%s client=%s backlog=%d: disconnecting",
                            self.tenant, self.client_id, len(self._pending))
                self._pending.clear()
                self.close(RC.QUOTA_EXCEEDED, "slow consumer: backlog over the inbox size")
                return
            self._pending.append((msg, qos, sub_ids, retain))
        else:
            self._send(msg, qos, retain, sub_ids, now_ms)
        self.flush_soon()

    def _send(self, msg: Message, qos: int, retain: bool, sub_ids: tuple[int, ...], now_ms: int,
              *, packet_id: int | None = None, dup: bool = False, tag: Any = None) -> int | None:
        props = self.out_properties(msg, sub_ids, now_ms)
        pid = self.machine.send_publish(msg.topic, msg.payload, qos=qos, retain=retain, dup=dup,
                                        properties=props, packet_id=packet_id,
                                        tag=tag if tag is not None else msg)
        if pid is not None:
            self.broker.metrics[f"messages_out_qos{qos}"] += 1
        return pid

    def out_properties(self, msg: Message, sub_ids: tuple[int, ...], now_ms: int) -> dict[str, Any]:
        if self.machine.protocol_level != 5:
            return {}
        props = dict(msg.properties)
        left = msg.remaining_expiry(now_ms)
        if left is not None:
            props["message_expiry_interval"] = left
        if sub_ids:
            props["subscription_identifier"] = list(sub_ids)
        return props

    def _complete(self, packet_id: int) -> None:
        self.machine.complete(packet_id)
        self.flush_soon()

    def _on_pubrec(self, ev: sm.PubrecReceived) -> None:
        if _is_inbox(ev.tag):
            if self.inbox is not None:
                self.inbox.on_pubrec(ev.packet_id, ev.tag, ev.reason_code)
        elif ev.reason_code >= 0x80:
            self._drain_pending()

    def _drain_pending(self) -> None:
        now_ms = int(time.time() * 1000)
        while self._pending and self.machine.window_free > 0 and not self._backed_up():
            msg, qos, sub_ids, retain = self._pending.popleft()
            if msg.expire_at_ms and msg.expire_at_ms <= now_ms:
                continue
            self._send(msg, qos, retain, sub_ids, now_ms)
        self.flush_soon()

    async def _wait_connected(self) -> None:
        if self._connect_task is not None and not self._connect_task.done():
            await asyncio.shield(self._connect_task)

    # ------------------------------------------------------------ close

    async def _cleanup(self) -> None:
        if self._connect_task is not None and not self._connect_task.done():
            try:
                await asyncio.shield(self._connect_task)
            except Exception:
                pass
        broker = self.broker
        if self.counted:
            self.counted = False
            broker.conn_counter.release(self.tenant)
        if not self.registered:
            return
        broker.unregister(self)
        reason = self.close_reason or "closed"
        log.info("disconnect tenant=%s user=%s client=%s reason=%s", self.tenant, self.user, self.client_id,
                 reason, extra={"event": "disconnect", "tenant": self.tenant, "user": self.user,
                                "client": self.client_id, "reason": reason})
        will_at = 0
        if self.will is not None and self.publish_will and not broker.stopping:
            delay_ms = broker.will_delay_ms(self)
            if delay_ms:  # kept in the offline record; this worker's timer or any sweep fires it
                will_at = int(time.time() * 1000) + delay_ms
            else:
                await broker.publish_will(self)
        if self.inbox is not None:
            self.inbox.stop()
        if self.persistent:  # this session's acks are written before it is marked offline
            await broker.inbox_ops.flush_now()
        try:
            # no newer connection of this session on this worker: leave the reaper index in the same trip
            untrack = broker.worker_id if broker.sessions.get((self.tenant, self.client_id)) is None else ""
            ended = await sess_store.session_disconnect(
                broker.redis, self.tenant, self.client_id, self.epoch, now_ms=int(time.time() * 1000),
                expiry=self.expiry, will_at=will_at, untrack_worker=untrack)
            if will_at and ended == "offline":
                broker.schedule_will(self.tenant, self.client_id, will_at)
        except Exception as exc:
            log.error("session_disconnect failed for %s/%s: %s", self.tenant, self.client_id, exc)
            return  # keep the index entry: a reaper ends the session if we die

    def check_timers(self, now: float) -> None:
        """Called about once a second by the broker: CONNECT timeout and keep alive."""
        st = self.machine.state
        if st is sm.State.AWAIT_CONNECT and now - self.opened > CONNECT_TIMEOUT:
            self.close_reason = "no CONNECT in time"
            self.machine.state = sm.State.CLOSED
            self.flush()
        elif self.machine.keepalive_expired(now):
            self.close(RC.KEEP_ALIVE_TIMEOUT, "keep alive timeout")


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _is_inbox(tag: Any) -> bool:
    """Tags of persistent-session flows: ("inbox", seq) or ("rel", packet id)."""
    return isinstance(tag, tuple) and bool(tag) and tag[0] in ("inbox", "rel")
