"""The MQTT worker process: listeners, the session registry and background loops.

A ``Broker`` holds only live connections (``sessions`` maps
``(tenant, client id)`` to the connection that owns it here) and caches;
everything durable is in Redis. It composes the dispatcher (publish routing),
the inbox reader/acker, the signal listener (deliveries, inbox notifications,
takeovers and kills sent by other processes on ``tidemq:w:<worker id>``), a
one-second timer for keep-alive and CONNECT timeouts, and the session-expiry
sweeper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from typing import Any

from tidemq import signals
from tidemq.auth import AuthProvider, make_provider
from tidemq.config import Settings
from tidemq.limits import ConnectionCounter, ConnectRateLimiter
from tidemq.message import Message, unpack
from tidemq.mqtt import session as sm
from tidemq.mqtt.reason_codes import RC
from tidemq.publish import DROPS
from tidemq.store import leases
from tidemq.store import scripts as store_scripts
from tidemq.store import sessions as sess_store
from tidemq.store import signals as signal_store
from tidemq.store import wills as will_store
from tidemq.tenants import SettingsProvider, TenantSettings

from .connection import MQTTConnection
from .dispatch import Dispatcher
from .health import start_health
from .inbox import InboxOps, InboxReader
from .transport.listeners import start_listeners

log = logging.getLogger("tidemq.worker")

LEASE_TTL_MS = 6000  # a worker silent this long is dead: its sessions are reaped
LEASE_RENEW_S = 2.0


class Broker:
    def __init__(self, settings: Settings, redis: Any, *, auth: AuthProvider | None = None) -> None:
        self.settings = settings
        self.redis = redis
        self.auth: AuthProvider = auth or make_provider(settings)
        self.tenant_settings = SettingsProvider(redis, settings)
        self.conn_counter = ConnectionCounter(settings.max_connections)
        self.connect_rate = ConnectRateLimiter(settings.max_connect_rate)
        self.worker_id = settings.worker_id or f"w-{uuid.uuid4().hex[:12]}"
        self.connections: set[MQTTConnection] = set()
        self.sessions: dict[tuple[str, str], MQTTConnection] = {}
        self.dispatcher = Dispatcher(self)
        self.inbox_reader = InboxReader(self)
        self.inbox_ops = InboxOps(self)
        self.metrics: Counter[str] = Counter()
        self.stopping = False
        self.servers: list[asyncio.base_events.Server] = []
        self._tenants: set[str] = set()
        self._bg: set[asyncio.Task[Any]] = set()
        self._wills: set[asyncio.Task[Any]] = set()
        self.cleanups: set[asyncio.Task[Any]] = set()  # session cleanups of closed connections
        self.lease_renewed_at = 0.0  # monotonic time of the last successful lease renewal
        self.health_server: asyncio.base_events.Server | None = None  # answers 503 while draining

    # ------------------------------------------------------------ lifecycle

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Load scripts, start background loops and the TCP listener; returns the bound port."""
        await store_scripts.load_all(self.redis)
        await leases.lease_renew(self.redis, self.worker_id, ttl_ms=LEASE_TTL_MS, now_ms=_now_ms())
        self.lease_renewed_at = time.monotonic()
        ready = asyncio.Event()
        self._spawn(self._listen_signals(ready))
        # accept no client before takeover/kill signals can reach us
        await asyncio.wait_for(ready.wait(), timeout=15)
        for coro in (self._timers(), self._sweeper(), self._lease_loop()):
            self._spawn(coro)
        # TLS / WebSocket listeners (settings tls_port, ws_port, wss_port) first: TCP accepting means all are up
        if self.settings.health_port:  # before MQTT: a probe must see "ready" no earlier than clients can
            self.health_server = await start_health(self, host, self.settings.health_port, reuse_port=reuse_port)
        self.servers += await start_listeners(self.settings, lambda: MQTTConnection(self), host, reuse_port=reuse_port)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: MQTTConnection(self), host, port, backlog=2048,
                                          reuse_port=reuse_port or None)
        self.servers.append(server)
        bound = server.sockets[0].getsockname()[1]
        log.info("worker %s listening mqtt=%s:%d", self.worker_id, host, bound)
        return bound

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def stop(self, grace: float | None = None) -> None:
        """Graceful drain: refuse new connections, disconnect clients (0x8B, or 0x9C with the server
        reference when one is configured), fire no wills (NoLWTWhenServerShuttingDown), flush writes,
        release the lease — all within ``drain_grace`` seconds."""
        grace = self.settings.drain_grace if grace is None else grace
        self.stopping = True
        for server in self.servers:
            server.close()
        conns = list(self.connections)
        ref = self.settings.server_reference
        for conn in conns:
            conn.publish_will = False
            if ref:
                conn.close(RC.USE_ANOTHER_SERVER, "server shutting down", {"server_reference": ref})
            else:
                conn.close(RC.SERVER_SHUTTING_DOWN, "server shutting down")
        # connection_lost (and so each cleanup) runs on a later loop turn: wait for all of them
        deadline = asyncio.get_running_loop().time() + grace
        while (self.connections or self.cleanups) and asyncio.get_running_loop().time() < deadline:
            pending = list(self.cleanups)
            if pending:
                await asyncio.wait(pending, timeout=max(0.0, deadline - asyncio.get_running_loop().time()))
            else:
                await asyncio.sleep(0.01)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.dispatcher.drain(), timeout=grace)
            await asyncio.wait_for(self.inbox_ops.flush_now(), timeout=grace)
        for task in list(self._bg) + list(self._wills):
            task.cancel()
        with contextlib.suppress(Exception):
            await leases.lease_release(self.redis, self.worker_id)
        with contextlib.suppress(Exception):
            await self.auth.close()  # type: ignore[attr-defined]
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=1.0)
        if self.health_server is not None:  # probes saw 503 "draining" until here
            self.health_server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.health_server.wait_closed(), timeout=1.0)

    # ------------------------------------------------------------ registry

    def limits(self) -> sm.Limits:
        s = self.settings
        return sm.Limits(max_packet_size=s.max_packet_size, receive_maximum=s.max_inflight,
                         topic_alias_maximum=16, server_keep_alive=s.server_keep_alive,
                         min_keep_alive=s.min_keep_alive)

    def settings_for(self, tenant: str) -> TenantSettings:
        """The tenant's settings from the cache, never awaiting (the hot path)."""
        return self.tenant_settings.cached(tenant)

    def admit(self, tenant: str, level: int, ts: TenantSettings) -> int:
        """Connection-level limits at CONNECT: 0 to admit (the counter is then held), else the reason."""
        now = time.monotonic()
        if not ts.protocol_enabled(level):
            return self.refuse("protocol_disabled", tenant, RC.UNSUPPORTED_PROTOCOL_VERSION)
        if not self.connect_rate.allow(tenant, now, ts.total_connect_per_second):
            return self.refuse("connect_rate", tenant, RC.CONNECTION_RATE_EXCEEDED)
        if not self.conn_counter.acquire(tenant, ts.total_connections):
            return self.refuse("max_connections", tenant, RC.QUOTA_EXCEEDED)
        return 0

    def refuse(self, reason: str, tenant: str, code: int) -> int:
        """Count and log a refusal (every limit hit goes through here)."""
        self.metrics[f"refused_{reason}"] += 1
        log.warning("refused tenant=%s reason=%s code=0x%02x", tenant, reason, code,
                    extra={"event": "refused", "tenant": tenant, "reason": reason, "code": code})
        return code

    def register(self, conn: MQTTConnection) -> None:
        key = (conn.tenant, conn.client_id)
        old = self.sessions.get(key)
        if old is not None and old is not conn:
            old.close(RC.SESSION_TAKEN_OVER, "session taken over")
        self.sessions[key] = conn
        self.metrics["connections_total"] += 1

    def unregister(self, conn: MQTTConnection) -> None:
        key = (conn.tenant, conn.client_id)
        if self.sessions.get(key) is conn:
            del self.sessions[key]

    def note_tenant(self, tenant: str) -> None:
        if tenant not in self._tenants:
            self._tenants.add(tenant)
            self._spawn(sess_store.tenants_add(self.redis, tenant))

    async def takeover(self, tenant: str, client_id: str, prev_worker: str, prev_epoch: int) -> None:
        """Close the previous owner of a session (local: in ``register``; remote: a signal)."""
        if prev_worker == self.worker_id:
            return
        body = {"t": tenant, "c": client_id, "e": prev_epoch}
        await signal_store.publish_signal(self.redis, prev_worker, signals.encode_control("T", body))

    # ------------------------------------------------------------ delivery

    def deliver_local(self, tenant: str, client_id: str, msg: Message, qos: int, sub_ids: tuple[int, ...],
                      rap: bool, now_ms: int) -> None:
        conn = self.sessions.get((tenant, client_id))
        if conn is not None and not conn.persistent:
            conn.deliver(msg, qos, sub_ids, rap, now_ms)

    def notify_inbox(self, tenant: str, client_id: str) -> None:
        conn = self.sessions.get((tenant, client_id))
        if conn is not None and conn.inbox is not None:
            conn.inbox.wake()

    def will_delay_ms(self, conn: MQTTConnection) -> int:
        """How long this connection's will waits (ms): MQTT 5 will delay, bounded by the session
        expiry [MQTT-3.1.3-9]; 0 publishes it now."""
        will = conn.will
        if will is None or conn.machine.protocol_level != 5 or not conn.persistent or not conn.expiry:
            return 0
        return min(int(will.properties.get("will_delay_interval", 0) or 0), conn.expiry) * 1000

    async def publish_will(self, conn: MQTTConnection) -> None:
        """Publish the will of a connection that ended abnormally, now."""
        will = conn.will
        conn.will = None
        now_ms = int(time.time() * 1000)
        props = dict(will.properties)
        props.pop("will_delay_interval", None)
        expiry = props.get("message_expiry_interval")
        msg = Message(will.topic, will.payload, will.qos, will.retain, props,
                      now_ms + expiry * 1000 if expiry else 0, conn.client_id, now_ms)
        if not await self.auth.check_publish(conn.identity, will.topic, will.qos, will.retain):
            return
        self.dispatcher.submit(conn.tenant, msg)
        self.metrics["wills_published"] += 1

    def stats(self) -> dict[str, int]:
        """Counters and gauges for /metrics (published to Redis with the lease)."""
        out = dict(self.metrics)
        out["connections"] = len(self.connections)
        out["sessions_online"] = len(self.sessions)
        out["persistent_online"] = sum(1 for c in self.sessions.values() if c.persistent)
        for qos, n in enumerate(self.dispatcher.stats_in):
            out[f"messages_in_qos{qos}"] = n
        out["messages_routed"] = self.dispatcher.stats_routed
        out["dispatch_backlog"] = self.dispatcher.backlog
        out.update(DROPS.totals())  # inbox drops (refused_inbox_full, dropped_qos0_*)
        return out

    def schedule_will(self, tenant: str, client_id: str, fire_at_ms: int) -> None:
        """A timer for a delayed will stored in Redis; any worker's sweep fires it too (once)."""
        task = asyncio.get_running_loop().create_task(self._delayed_will(tenant, client_id, fire_at_ms))
        self._wills.add(task)
        task.add_done_callback(self._wills.discard)

    async def _delayed_will(self, tenant: str, client_id: str, fire_at_ms: int) -> None:
        await asyncio.sleep(max(0.0, (fire_at_ms - _now_ms()) / 1000))
        await self.fire_stored_will(tenant, client_id)

    async def fire_stored_will(self, tenant: str, client_id: str) -> bool:
        """Take a due delayed will from Redis (exactly one worker gets it) and publish it."""
        blob = await will_store.will_take(self.redis, tenant, client_id, now_ms=_now_ms())
        if blob is None:
            return False  # not due, already fired elsewhere, or the client came back [MQTT-3.1.3-9]
        self._publish_stored_will(tenant, blob)
        return True

    def _publish_stored_will(self, tenant: str, blob: bytes) -> None:
        """Publish a will kept in Redis (its message expiry counts from now)."""
        msg = unpack(blob)
        msg.created_ms = _now_ms()
        wexp = msg.origin.pop("wexp", 0)
        msg.expire_at_ms = msg.created_ms + wexp * 1000 if wexp else 0
        self.dispatcher.submit(tenant, msg)
        self.metrics["wills_published"] += 1

    # ------------------------------------------------------------ background loops

    async def _listen_signals(self, ready: asyncio.Event) -> None:
        while not self.stopping:
            try:
                async for payload in signal_store.listen(self.redis, self.worker_id, ready=ready):
                    try:
                        self._on_signal(payload)
                    except Exception:
                        log.exception("bad signal")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("signal listener failed, retrying: %s", exc)
                await asyncio.sleep(1.0)

    def _on_signal(self, payload: bytes) -> None:
        kind, body = signals.decode(payload)
        if kind == "D":
            now_ms = int(time.time() * 1000)
            for d in body:
                msg = unpack(d.blob)
                for tgt in d.targets:
                    self.deliver_local(d.tenant, tgt.client_id, msg, tgt.qos, tgt.subscription_ids,
                                       tgt.retain_as_published, now_ms)
        elif kind == "N":
            for tenant, cids in body["s"]:
                for cid in cids:
                    self.notify_inbox(tenant, cid)
        elif kind == "T":
            conn = self.sessions.get((body["t"], body["c"]))
            if conn is not None and conn.epoch == body["e"]:
                conn.close(RC.SESSION_TAKEN_OVER, "session taken over")
        elif kind in ("K", "X"):
            self._kill(body, kind)

    def _kill(self, body: dict[str, Any], kind: str) -> int:
        tenant = body["t"]
        why = "killed by admin" if kind == "K" else "session removed"
        if "s" in body:  # exact targets: (client id, epoch) of the connections the registry named
            n = 0
            for cid, epoch in body["s"]:
                conn = self.sessions.get((tenant, cid))
                if conn is not None and (not epoch or conn.epoch == epoch):
                    conn.close(RC.ADMINISTRATIVE_ACTION, why)
                    n += 1
            return n
        user, cid = body.get("u"), body.get("c")
        n = 0
        for (t, c), conn in list(self.sessions.items()):
            if t != tenant or (user and conn.user != user) or (cid and c != cid):
                continue
            conn.close(RC.ADMINISTRATIVE_ACTION, "killed by admin" if kind == "K" else "session removed")
            n += 1
        return n

    async def _timers(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for conn in list(self.connections):
                conn.check_timers(now)

    async def _lease_loop(self) -> None:
        """Renew our lease; reap the sessions of workers whose lease ran out."""
        while True:
            await asyncio.sleep(LEASE_RENEW_S)
            try:
                await leases.lease_renew(self.redis, self.worker_id, ttl_ms=LEASE_TTL_MS, now_ms=_now_ms())
                self.lease_renewed_at = time.monotonic()
                await leases.publish_stats(self.redis, self.worker_id, self.stats(), ttl_ms=LEASE_TTL_MS)
                for dead in await leases.dead_workers(self.redis, now_ms=_now_ms(), grace_ms=LEASE_TTL_MS):
                    if dead != self.worker_id and await leases.claim_reap(self.redis, dead, self.worker_id):
                        await self._reap(dead)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("lease renewal / reaping failed: %s", exc)

    async def _reap(self, dead: str) -> None:
        """End every session a dead worker owned: fire wills (honouring will delay), mark offline."""
        orphans = await leases.orphans(self.redis, dead)
        log.warning("worker %s is dead: reaping %d sessions", dead, len(orphans))
        for o in orphans:
            will_at = 0
            if o.will:
                if o.will_delay and o.persistent and o.expiry:
                    will_at = _now_ms() + min(o.will_delay, o.expiry) * 1000  # stays stored until due
                else:
                    self._publish_stored_will(o.tenant, o.will)
            ended = await leases.end_orphan(self.redis, o, now_ms=_now_ms(), will_at=will_at)
            if will_at and ended == "offline":
                self.schedule_will(o.tenant, o.client_id, will_at)
        await leases.forget_worker(self.redis, dead)

    async def _sweeper(self) -> None:
        interval = self.settings.sweep_interval
        while True:
            await asyncio.sleep(interval)
            try:
                now_ms = int(time.time() * 1000)
                for tenant in await sess_store.tenants_list(self.redis):
                    # due delayed wills first: a will due at session end fires before the session goes
                    for client_id in await will_store.wills_due(self.redis, tenant, now_ms=now_ms):
                        await self.fire_stored_will(tenant, client_id)
                    await sess_store.sessions_expire(self.redis, tenant, now_ms=now_ms)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("session sweep failed: %s", exc)


def _now_ms() -> int:
    return int(time.time() * 1000)
