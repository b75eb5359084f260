"""Outbound delivery for one connection: the in-flight window, the transient backlog, inbox reading.

``Outbound`` sends messages to one client: it builds the outbound properties
(remaining message expiry, subscription identifiers), keeps QoS 1/2 messages
of a transient session in a bounded backlog while the client's receive
maximum or the socket buffer is full, and drops QoS 0 for a slow consumer or
while OutBoundBandWidth holds sends back. A transient backlog that outgrows the
tenant's inbox size disconnects the client (0x97): memory never grows unbounded.

``InboxCursor`` reads a persistent session's inbox (a Redis stream) after the
last entry it sent, as far as the window allows, and sends each entry with a
packet id derived from its sequence number — so a resumed session re-sends an
unacknowledged message with its original packet id [MQTT-4.4.0-1] and DUP set
when it had been sent before. PUBACK/PUBCOMP delete the entry; PUBREC moves it
to the session's PUBREL set, and the PUBREL goes out only once that is written.

In-session resend (BifroMQ's ``ResendTimeoutSeconds`` / ``MaxResendTimes``, MQTT 3.1 and 3.1.1 clients
only: MQTT 5 forbids resending except on reconnect [MQTT-4.4.0-1]): a QoS 1/2 PUBLISH not acknowledged
(PUBACK, or PUBREC for QoS 2) within ResendTimeoutSeconds of its last send goes again with DUP=1 and the
same packet id, at most MaxResendTimes times; one timeout after the last try the delivery is given up as
BifroMQ does (``DropReason.MaxRetried``): its window slot is freed and, for a persistent session, the inbox
entry is deleted. ``unacked`` (packet id -> ``_Unacked``, in last-send order) is walked from its head by
the worker's ``TimerWheel`` (``timers.py``): no loop handle per message.

``MinSendPerSec``: while QoS 1/2 messages are outstanding (in flight or in the backlog), every
``RATE_PERIOD`` seconds the acknowledgements of the period are compared with the messages outstanding at
its start: fewer than ``min(outstanding at start, MinSendPerSec x RATE_PERIOD)`` marks the connection a
slow consumer (counted, logged once per connection); while marked, its QoS 0 deliveries are dropped
(``dropped_slow_consumer``) as for a backed-up socket. One comparison per period, nothing per message.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tidemq.message import Message, unpack
from tidemq.mqtt.reason_codes import RC
from tidemq.mqtt.session import State

if TYPE_CHECKING:
    from .connection import MQTTConnection
    from .inbox import InboxOps, InboxReader
    from .services import WorkerServices

log = logging.getLogger("tidemq.conn")

READ_BATCH = 256
CONNECTED = State.CONNECTED
RATE_PERIOD = 5.0  # seconds: one MinSendPerSec comparison per period while QoS 1/2 messages are outstanding


@dataclass(slots=True, frozen=True)
class InboxFlow:
    """The tag of an outbound QoS 1/2 flow of an inbox entry."""

    seq: int


@dataclass(slots=True, frozen=True)
class ReleaseFlow:
    """The tag of a QoS 2 flow resumed at PUBREL (its PUBREC was stored before a reconnect)."""

    packet_id: int


def is_inbox_flow(tag: object) -> bool:
    return isinstance(tag, (InboxFlow, ReleaseFlow))


def seq_to_pid(seq: int) -> int:
    return (seq - 1) % 65535 + 1


@dataclass(slots=True)
class _Unacked:
    """One QoS 1/2 PUBLISH of an MQTT 3 client awaiting its acknowledgement (the in-session resend)."""

    tag: Any  # the flow's tag on the state machine (the Message, or an InboxFlow)
    msg: Message
    qos: int
    retain: bool
    sent_at: float  # monotonic time of the last send
    sends: int = 1


class Outbound:
    """Messages to one client (see module doc)."""

    __slots__ = ("acked", "conn", "hold_until", "pending", "period_acked", "period_due", "period_owed",
                 "resend_timeout", "services", "slow", "slow_logged", "unacked", "unacked_logged")

    def __init__(self, conn: MQTTConnection, services: WorkerServices) -> None:
        self.conn = conn
        self.services = services
        # the transient QoS 1/2 backlog, created when first needed (most connections never need one)
        self.pending: deque[tuple[Message, int, tuple[int, ...], bool]] | None = None
        self.hold_until = 0.0  # OutBoundBandWidth: QoS 0 held back until this monotonic time
        # in-session resend (MQTT 3 only): packet id -> its last send, oldest first; created when first needed
        self.unacked: dict[int, _Unacked] | None = None
        self.resend_timeout = 10.0  # the tenant's ResendTimeoutSeconds when last read
        # MinSendPerSec: acknowledgements so far, and the current period (its end, the count at its start,
        # what it owes: the messages outstanding at its start)
        self.acked = 0
        self.period_due: float | None = None
        self.period_acked = 0
        self.period_owed = 0
        self.slow = False
        self.slow_logged = False
        self.unacked_logged = False

    def deliver(self, msg: Message, qos: int, sub_ids: tuple[int, ...], rap: bool, now_ms: int,
                retained: bool = False) -> None:
        """A message for this transient session (local route, ``D`` signal or retained replay)."""
        conn = self.conn
        # the per-delivery checks, inlined (fan-out calls this once per subscriber): connected, not
        # expired, and the read check of narrowed subscriptions (only when the session has one)
        if conn.machine.state is not CONNECTED or (msg.expire_at_ms and msg.expire_at_ms <= now_ms):
            return
        session = conn.session
        reads = session.narrowed if session is not None else None
        if reads is not None and not reads.allows(msg.topic):
            return
        retain = retained or (rap and msg.retain)
        if qos == 0:
            if self.slow:  # below MinSendPerSec with QoS 1/2 outstanding: what it must get goes first
                self.services.metrics.drop("slow_consumer", conn.tenant)
                return
            if conn.backed_up() or (self.hold_until and self.services.clock.monotonic() < self.hold_until):
                self.services.metrics.drop("qos0", conn.tenant)
                return
            self.send(msg, 0, retain, sub_ids, now_ms)
        elif self.pending or conn.machine.window_free == 0 or conn.backed_up():
            pending = self.pending
            if pending is None:
                pending = self.pending = deque()
            if len(pending) >= self.services.tenants.cached(conn.tenant).session_inbox_size:
                # a slow consumer: its QoS 1/2 backlog outgrew the inbox policy; never grow memory
                self.services.metrics.inc("slow_consumer_disconnects")
                log.warning("slow consumer tenant=%s client=%s backlog=%d: disconnecting",
                            conn.tenant, conn.client_id, len(pending))
                pending.clear()
                conn.close(RC.QUOTA_EXCEEDED, "slow consumer: backlog over the inbox size")
                return
            pending.append((msg, qos, sub_ids, retain))
            if self.period_due is None:
                self._start_period(self.services.clock.monotonic())
        else:
            self.send(msg, qos, retain, sub_ids, now_ms)
        conn.flush_soon()

    def send(self, msg: Message, qos: int, retain: bool, sub_ids: tuple[int, ...], now_ms: int, *,
             packet_id: int | None = None, dup: bool = False, tag: Any = None) -> int | None:
        """Queue one PUBLISH on the state machine; its packet id, or None (window full / too large)."""
        conn = self.conn
        machine = conn.machine
        pid = machine.send_publish(
            msg.topic, msg.payload, qos=qos, retain=retain, dup=dup,
            properties=self.properties(msg, sub_ids, now_ms) if machine.protocol_level == 5 else None,
            packet_id=packet_id, tag=tag if tag is not None else msg)
        if pid is not None:
            session = conn.session
            self.services.metrics.sent(session.tenant if session is not None else "", qos, msg.created_ms, now_ms,
                                       retain or dup)
            if pid:  # QoS 1/2: the resend and the MinSendPerSec period
                now = self.services.clock.monotonic()
                if machine.protocol_level < 5:
                    self._track(pid, tag if tag is not None else msg, msg, qos, retain, now)
                if self.period_due is None:
                    self._start_period(now)
        return pid

    def properties(self, msg: Message, sub_ids: tuple[int, ...], now_ms: int) -> dict[str, Any]:
        if self.conn.machine.protocol_level != 5:
            return {}
        props = dict(msg.properties)
        left = msg.remaining_expiry(now_ms)
        if left is not None:
            props["message_expiry_interval"] = left
        if sub_ids:
            props["subscription_identifier"] = list(sub_ids)
        return props

    def drain_pending(self) -> None:
        """Send what the transient backlog holds, as far as the window and the socket allow."""
        conn = self.conn
        pending = self.pending
        if not pending:
            return
        now_ms = self.services.clock.wall_ms()
        while pending and conn.machine.window_free > 0 and not conn.backed_up():
            msg, qos, sub_ids, retain = pending.popleft()
            if not msg.expired(now_ms):
                self.send(msg, qos, retain, sub_ids, now_ms)
        conn.flush_soon()

    # ------------------------------------------------------------ timers: resend and MinSendPerSec

    def acknowledged(self, packet_id: int, done: bool) -> None:
        """The client acknowledged ``packet_id`` (PUBACK, PUBREC or PUBCOMP): no resend of its PUBLISH;
        ``done`` when the delivery is complete (counted for MinSendPerSec)."""
        unacked = self.unacked
        if unacked:
            unacked.pop(packet_id, None)
        if done:
            self.acked += 1

    def _track(self, pid: int, tag: Any, msg: Message, qos: int, retain: bool, now: float) -> None:
        unacked = self.unacked
        if unacked is None:
            unacked = self.unacked = {}
        if not unacked:
            settings = self.services.tenants.cached(self.conn.tenant)
            self.resend_timeout = float(settings.resend_timeout_seconds)
            self._arm(now + self.resend_timeout)
        unacked.pop(pid, None)
        unacked[pid] = _Unacked(tag, msg, qos, retain, now)

    def _arm(self, at: float) -> None:
        """Have the worker's timer wheel look at this connection by ``at`` (keeps an earlier schedule)."""
        conn = self.conn
        key = conn.timer_key
        if key is None or key > int(at):
            self.services.registry.timers.schedule(conn, at)

    def _start_period(self, now: float) -> None:
        self.period_due = now + RATE_PERIOD
        self.period_acked = self.acked
        self.period_owed = self.conn.machine.inflight_count + len(self.pending or ())
        self._arm(self.period_due)

    def next_due(self) -> float | None:
        """When the timers must look at this connection again for its resends or its rate (None: never)."""
        at = self.period_due
        unacked = self.unacked
        if unacked:
            first = next(iter(unacked.values())).sent_at + self.resend_timeout
            at = first if at is None or first < at else at
        return at

    def on_timer(self, now: float) -> None:
        """The timer wheel's look at this connection: due resends, then the end of a MinSendPerSec period."""
        if self.conn.machine.state is not CONNECTED:
            return
        if self.unacked and next(iter(self.unacked.values())).sent_at + self.resend_timeout <= now:
            self._resend_due(now)
        if self.period_due is not None and self.period_due <= now:
            self._end_period(now)

    def _resend_due(self, now: float) -> None:
        conn = self.conn
        machine = conn.machine
        settings = self.services.tenants.cached(conn.tenant)
        timeout = self.resend_timeout = float(settings.resend_timeout_seconds)
        max_times = settings.max_resend_times
        metrics = self.services.metrics
        unacked = self.unacked
        assert unacked is not None
        now_ms = self.services.clock.wall_ms()
        freed = False
        while unacked:
            pid, u = next(iter(unacked.items()))
            if u.sent_at + timeout > now:
                break
            del unacked[pid]
            if u.sends > max_times:  # sent 1 + MaxResendTimes times: given up, as BifroMQ does
                if isinstance(u.tag, InboxFlow):
                    # a persistent session's message is never lost: no more resends in this connection, but
                    # the entry stays in the inbox (and its window slot in use) until the PUBACK or the
                    # resume, which sends it again [MQTT-4.4.0-1] (BifroMQ would drop it: DropReason.MaxRetried)
                    metrics.inc("resends_given_up")
                    continue
                if machine.abandon(pid, u.tag):
                    metrics.drop("max_resend", conn.tenant)
                    if not self.unacked_logged:
                        self.unacked_logged = True
                        log.warning("unacknowledged tenant=%s client=%s packet_id=%d: dropped after %d sends "
                                    "(MaxResendTimes)", conn.tenant, conn.client_id, pid, u.sends,
                                    extra={"event": "max_resend", "tenant": conn.tenant,
                                           "client_id": conn.client_id})
                    freed = True
                continue
            if conn.backed_up():  # the socket is full: try again one timeout later
                u.sent_at = now
                unacked[pid] = u
                break
            msg = u.msg
            if machine.resend_publish(pid, u.tag, msg.topic, msg.payload, qos=u.qos, retain=u.retain,
                                      properties=self.properties(msg, (), now_ms)):
                u.sends += 1
                u.sent_at = now
                unacked[pid] = u
                metrics.inc("messages_resent")
        if freed:
            self.drain_pending()
        conn.flush_soon()

    def _end_period(self, now: float) -> None:
        conn = self.conn
        acked = self.acked - self.period_acked
        owed = min(self.period_owed,
                   int(self.services.tenants.cached(conn.tenant).min_send_per_sec * RATE_PERIOD))
        if acked < owed:
            if not self.slow:
                self.slow = True
                self.services.metrics.inc("slow_consumers")
                if not self.slow_logged:
                    self.slow_logged = True
                    log.warning("slow consumer tenant=%s client=%s: %d acknowledged in %.0fs, MinSendPerSec %d: "
                                "its QoS 0 messages are dropped while it stays below", conn.tenant, conn.client_id,
                                acked, RATE_PERIOD, self.services.tenants.cached(conn.tenant).min_send_per_sec,
                                extra={"event": "slow_consumer", "tenant": conn.tenant, "client_id": conn.client_id})
        else:
            self.slow = False
        if conn.machine.inflight_count or self.pending:
            self._start_period(now)
        else:
            self.period_due = None
            self.slow = False

    def sent_bytes(self, nbytes: int) -> None:
        """OutBoundBandWidth: hold droppable (QoS 0) sends for a while once over the rate."""
        limiter = self.conn.session.limiter if self.conn.session is not None else None
        if limiter is not None:
            now = self.services.clock.monotonic()
            hold = limiter.sent(now, nbytes)
            if hold > 0:
                self.hold_until = now + hold


class InboxCursor:
    """Reads and acknowledges one persistent session's inbox (see module doc)."""

    __slots__ = ("client_id", "conn", "ops", "outbound", "read_after", "reader", "reading", "sent", "stopped",
                 "tenant", "want")

    def __init__(self, conn: MQTTConnection, outbound: Outbound, reader: InboxReader, ops: InboxOps, *,
                 sent: int) -> None:
        self.conn = conn
        self.outbound = outbound
        self.reader = reader
        self.ops = ops
        self.tenant = conn.tenant
        self.client_id = conn.client_id
        self.read_after = 0
        self.sent = sent
        self.reading = False
        self.want = False
        self.stopped = False
        conn.machine.defer_pubrel = True  # PUBREL only once the PUBREC is in Redis (see on_pubrec)

    def wake(self) -> None:
        """New entries may exist (notify, ack freed the window, or resume)."""
        if self.stopped:
            return
        self.want = True
        if not self.reading:
            self._request()

    def _request(self) -> None:
        free = self.conn.machine.window_free
        if free <= 0:
            return  # an ack will wake us
        if self.conn.backed_up():
            return  # a slow consumer: the inbox holds the rest; resume_writing wakes us
        self.want = False
        self.reading = True
        self.reader.request(self, min(READ_BATCH, max(free, 16)))

    def stop(self) -> None:
        self.stopped = True

    def on_entries(self, entries: list[Any], asked: int) -> None:
        self.reading = False
        if self.stopped:
            return
        conn, ops, out = self.conn, self.ops, self.outbound
        t, c = self.tenant, self.client_id
        now_ms = out.services.clock.wall_ms()
        top = self.sent
        blocked = False
        for e in entries:
            if conn.backed_up():  # stop filling the socket buffer of a slow consumer
                blocked = True
                break
            seq = e.seq
            msg = unpack(e.blob)
            if msg.expired(now_ms) or not conn.may_read(msg.topic):  # expired, or a narrowed subscription's deny
                ops.ack(t, c, seq)
                self.read_after = seq
                continue
            if e.qos == 0:
                out.send(msg, 0, e.retain, tuple(e.sub_ids), now_ms)
                ops.ack(t, c, seq)
                self.read_after = seq
                continue
            pid = out.send(msg, e.qos, e.retain, tuple(e.sub_ids), now_ms, packet_id=seq_to_pid(seq),
                           dup=seq <= self.sent, tag=InboxFlow(seq))
            if pid is None:
                if conn.machine.last_drop_reason == "too_large":
                    ops.ack(t, c, seq)
                    self.read_after = seq
                    continue
                blocked = True
                break
            self.read_after = seq
            top = max(top, seq)
        if top > self.sent:
            self.sent = top
            ops.mark_sent(t, c, top)
        conn.flush_soon()
        if not blocked and (len(entries) >= asked or self.want):
            self._request()
        elif blocked:
            self.want = True

    def on_puback(self, tag: InboxFlow) -> None:
        self.ops.ack(self.tenant, self.client_id, tag.seq)
        self._after_ack()

    def on_pubrec(self, pid: int, tag: InboxFlow, reason_code: int) -> None:
        if reason_code >= 0x80:
            self.ops.ack(self.tenant, self.client_id, tag.seq)
            self._after_ack()
        else:
            # the PUBREL goes out only after "rec" is written: were we to die in between, a resume
            # would resend a PUBLISH the client already completed, and it would deliver it twice
            self.ops.rec(self.tenant, self.client_id, tag.seq, pid, then=lambda: self._release(pid))

    def _release(self, pid: int) -> None:
        self.conn.machine.release(pid)
        self.conn.flush_soon()

    def on_pubcomp(self, pid: int) -> None:
        self.ops.comp(self.tenant, self.client_id, pid)
        self._after_ack()

    def _after_ack(self) -> None:
        if self.want and not self.reading and not self.stopped:
            self._request()


# ---------------------------------------------------------------- outbound acknowledgements


def on_puback(conn: MQTTConnection, ev: Any) -> None:
    conn.outbound.acknowledged(ev.packet_id, True)
    if isinstance(ev.tag, InboxFlow) and conn.inbox is not None:
        conn.inbox.on_puback(ev.tag)
    else:
        conn.outbound.drain_pending()


def on_pubrec(conn: MQTTConnection, ev: Any) -> None:
    conn.outbound.acknowledged(ev.packet_id, ev.reason_code >= 0x80)
    if isinstance(ev.tag, InboxFlow):
        if conn.inbox is not None:
            conn.inbox.on_pubrec(ev.packet_id, ev.tag, ev.reason_code)
    elif isinstance(ev.tag, ReleaseFlow):
        pass  # already past PUBREC: the PUBREL is out
    elif ev.reason_code >= 0x80:
        conn.outbound.drain_pending()


def on_pubcomp(conn: MQTTConnection, ev: Any) -> None:
    conn.outbound.acknowledged(ev.packet_id, True)
    if is_inbox_flow(ev.tag) and conn.inbox is not None:
        conn.inbox.on_pubcomp(ev.packet_id)
    else:
        conn.outbound.drain_pending()
