"""The live connections of this worker and the sessions they own here.

``Registry`` is the only in-memory index of who is connected to this worker:
every open transport (``connections``) and, once CONNECT succeeded, the
connection that owns ``(tenant, client id)`` here (``sessions``), and the
worker's one timer wheel for the CONNECT timeout and keep alive (``timers``). Deliveries
for local transient sessions, inbox wake-ups and close signals (takeover,
kill, session removed) are resolved through it. A newer connection of the
same session replaces the older one, which is closed with 0x8E.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tidemq.message import Message
from tidemq.mqtt.reason_codes import RC
from tidemq.signals import Close, Takeover

from .metrics import WorkerMetrics
from .timers import CONNECT_TIMEOUT, TimerWheel

if TYPE_CHECKING:
    from .connection import MQTTConnection


class Registry:
    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics
        self.connections: set[MQTTConnection] = set()
        self.sessions: dict[tuple[str, str], MQTTConnection] = {}
        self.timers = TimerWheel()  # CONNECT timeout and keep alive of every connection (timers.py)

    def opened(self, conn: MQTTConnection) -> None:
        self.connections.add(conn)
        self.timers.schedule(conn, conn.opened + CONNECT_TIMEOUT)

    def closed(self, conn: MQTTConnection) -> None:
        self.connections.discard(conn)
        self.timers.cancel(conn)

    def register(self, key: tuple[str, str], conn: MQTTConnection) -> None:
        old = self.sessions.get(key)
        if old is not None and old is not conn:
            old.close(RC.SESSION_TAKEN_OVER, "session taken over")
            self.metrics.event("takeover", key[0], key[1], by="local")
        self.sessions[key] = conn
        self.metrics.inc("connections_total")
        self.metrics.event("connect", key[0], key[1], user=conn.user, address=conn.address)

    def unregister(self, key: tuple[str, str], conn: MQTTConnection) -> bool:
        """Forget ``conn``; True when no other connection of the session is registered here."""
        if self.sessions.get(key) is conn:
            del self.sessions[key]
            self.metrics.event("disconnect", key[0], key[1], user=conn.user, reason=conn.close_reason)
        return key not in self.sessions

    def get(self, tenant: str, client_id: str) -> MQTTConnection | None:
        return self.sessions.get((tenant, client_id))

    def deliver_local(self, tenant: str, client_id: str, msg: Message, qos: int, sub_ids: tuple[int, ...],
                      rap: bool, now_ms: int) -> None:
        """A message for a transient session of this worker (persistent ones read their inbox)."""
        conn = self.sessions.get((tenant, client_id))
        if conn is not None and conn.session is not None and not conn.session.persistent:
            if msg.token and conn.session.seen_before(msg.token):
                # an inbound QoS 2 message routed again after its publisher's worker died before the PUBREC:
                # this connection has it already (a persistent session's inbox does the same with q2seen)
                self.metrics.inc("qos2_repeats_suppressed")
                return
            conn.outbound.deliver(msg, qos, sub_ids, rap, now_ms)

    def notify_inbox(self, tenant: str, client_id: str) -> None:
        conn = self.sessions.get((tenant, client_id))
        if conn is not None and conn.inbox is not None:
            conn.inbox.wake()

    def takeover(self, sig: Takeover) -> None:
        conn = self.sessions.get((sig.tenant, sig.client_id))
        if conn is not None and conn.epoch == sig.epoch:
            conn.close(RC.SESSION_TAKEN_OVER, "session taken over")
            self.metrics.event("takeover", sig.tenant, sig.client_id, by="other worker")

    def close_named(self, sig: Close) -> int:
        """Close the connections a kill / session-removal signal names; returns how many."""
        why = "session removed" if sig.removed else "killed by admin"
        code = sig.redirect or RC.ADMINISTRATIVE_ACTION  # 0x9C / 0x9D when the kill redirects (MQTT 5)
        props = {"server_reference": sig.server_reference} if sig.redirect and sig.server_reference else None
        n = 0
        if sig.targets is not None:  # exact targets: (client id, epoch) pairs the registry named
            for cid, epoch in sig.targets:
                conn = self.sessions.get((sig.tenant, cid))
                if conn is not None and (not epoch or conn.epoch == epoch):
                    conn.close(code, why, props)
                    self.metrics.event("kick", sig.tenant, cid, reason=why)
                    n += 1
            return n
        for (t, c), conn in list(self.sessions.items()):
            if t != sig.tenant or (sig.user and conn.user != sig.user) or (sig.client_id and c != sig.client_id):
                continue
            conn.close(code, why, props)
            self.metrics.event("kick", t, c, reason=why)
            n += 1
        return n

    def counts(self) -> dict[str, int]:
        return {
            "connections": len(self.connections),
            "sessions_online": len(self.sessions),
            "persistent_online": sum(1 for c in self.sessions.values() if c.persistent),
        }
