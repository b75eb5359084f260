"""Periodic work: per-connection timers (CONNECT timeout, keep alive, in-session resend, MinSendPerSec) and the
session sweep.

``check_connection`` is pure in time (the clock is passed in), so it is unit
tested without sleeping. The connection timers are one ``TimerWheel`` per
worker (no loop handle per connection, no scan of every connection every
second): each connection sits in the bucket of the second of its next
deadline and is looked at only then; a deadline that moved meanwhile (a
packet arrived) puts it back at the new one. A timeout is acted on within
``TICK`` seconds of its deadline, as before. The outbound side's deadlines (a resend due, the end of a
MinSendPerSec period: ``Outbound.next_due``) share the connection's one place in the wheel. The sweep fires due delayed
wills first (a will due at session end fires before the session goes), then
ends expired sessions.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from tidemq.auth import AuthProvider
from tidemq.auth.grant import poll, provider_generation, subscribe_grant_now
from tidemq.clock import Clock
from tidemq.mqtt.reason_codes import RC
from tidemq.mqtt.session import State
from tidemq.store import retained as retained_store
from tidemq.store import sessions as sess_store
from tidemq.store.reconcile import Reconciler

from .wills import WillService

if TYPE_CHECKING:
    from .connection import MQTTConnection
    from .registry import Registry

log = logging.getLogger("tidemq.worker")

CONNECT_TIMEOUT = 10.0  # seconds a connection may take to send CONNECT
TICK = 1.0


def check_connection(conn: MQTTConnection, now: float) -> None:
    """CONNECT timeout and keep alive of one connection at monotonic time ``now``."""
    if conn.machine.connect_timed_out(now, CONNECT_TIMEOUT, conn.opened):
        conn.close_reason = "no CONNECT in time"
        conn.flush()
    elif conn.machine.keepalive_expired(now):
        conn.close(RC.KEEP_ALIVE_TIMEOUT, "keep alive timeout")
    else:
        conn.outbound.on_timer(now)  # in-session resends and the MinSendPerSec period (deliver.py)


def next_deadline(conn: MQTTConnection, now: float) -> float | None:
    """When ``conn`` must be looked at again, or None when no timer applies any more (closed, or
    connected without keep alive)."""
    m = conn.machine
    state = m.state
    if state is State.CONNECTED:
        at = m.last_received + m.keep_alive * 1.5 if m.keep_alive > 0 else None
        out = conn.outbound.next_due()
        return out if at is None or (out is not None and out < at) else at
    if state is State.AWAIT_CONNECT:
        return conn.opened + CONNECT_TIMEOUT
    if state is State.CONNECTING:  # the CONNECT is being decided (authentication, the store): its keep alive
        return now + TICK  # applies from the CONNACK, so look again at the next tick
    return None


class TimerWheel:
    """The connection timers of one worker: connections bucketed by the whole second of their next
    deadline (see module doc). ``schedule`` is O(1); ``due`` returns the buckets whose second has come."""

    __slots__ = ("_buckets", "_cursor")

    def __init__(self) -> None:
        # second -> the connections due then (a dict as an ordered set: ``cancel`` is O(1))
        self._buckets: dict[int, dict[MQTTConnection, None]] = {}
        self._cursor: int | None = None  # the last second ``due`` emptied

    def __len__(self) -> int:
        return sum(map(len, self._buckets.values()))

    def schedule(self, conn: MQTTConnection, at: float) -> None:
        """Look at ``conn`` at monotonic time ``at`` (replaces an earlier schedule of it)."""
        self.cancel(conn)
        key = int(at)
        cursor = self._cursor
        if cursor is not None and key <= cursor:
            key = cursor + 1  # its second is past: the next ``due``
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = {conn: None}
        else:
            bucket[conn] = None
        conn.timer_key = key

    def cancel(self, conn: MQTTConnection) -> None:
        """Forget ``conn`` (it closed): the wheel holds no reference to a closed connection."""
        key = conn.timer_key
        if key is not None:
            conn.timer_key = None
            bucket = self._buckets.get(key)
            if bucket is not None:
                bucket.pop(conn, None)
                if not bucket:
                    del self._buckets[key]

    def due(self, now: float) -> list[MQTTConnection]:
        """Take every connection whose bucket's second is ``now``'s or earlier."""
        until = int(now)
        buckets = self._buckets
        cursor = self._cursor
        if cursor is None or until - cursor > len(buckets):  # first call, or a long stall: by the keys
            keys = [k for k in buckets if k <= until]
        else:
            keys = [k for k in range(cursor + 1, until + 1) if k in buckets]
        self._cursor = until if cursor is None else max(cursor, until)
        out: list[MQTTConnection] = []
        for k in keys:
            out += buckets.pop(k)
        for conn in out:
            conn.timer_key = None
        return out


def run_timers(registry: Registry, now: float) -> None:
    """One tick of the wheel: check the connections that are due, put the live ones back at their next
    deadline (a connection that is gone is dropped)."""
    wheel = registry.timers
    live = registry.connections
    for conn in wheel.due(now):
        if conn not in live:
            continue
        check_connection(conn, now)
        at = next_deadline(conn, now)
        if at is not None:
            wheel.schedule(conn, at)


async def connection_timers(registry: Registry, clock: Clock, auth: AuthProvider) -> None:
    generation = provider_generation(auth)
    while True:
        await asyncio.sleep(TICK)
        now = clock.monotonic()
        run_timers(registry, now)
        try:
            current = poll(auth)  # the provider re-reads changed rules (e.g. the auth file)
        except Exception as exc:
            log.warning("auth provider poll failed: %s", exc)
            continue
        if current != generation:
            generation = current
            for conn in list(registry.sessions.values()):
                try:
                    refresh_reads(conn)
                except Exception as exc:  # a provider that fails must not stop the keep-alive timers
                    log.warning("re-evaluating the subscriptions of %s/%s failed: %s", conn.tenant, conn.client_id,
                                exc)


def refresh_reads(conn: MQTTConnection) -> None:
    """The ACL changed: recompute which subscriptions of ``conn`` are narrowed (before its next delivery
    where the provider answers synchronously)."""
    session = conn.session
    if session is None or not session.sub_filters:
        return
    auth = conn.services.auth
    grants = {flt: subscribe_grant_now(auth, session.identity, flt, qos) for flt, qos in session.sub_filters.items()}
    if any(g is None for g in grants.values()):  # an asynchronous provider: recomputed on a task
        conn.spawn(session.reads.refresh(auth, session.identity, dict(session.sub_filters)))
        return
    session.reads.clear()
    for flt, grant in grants.items():
        assert grant is not None
        session.reads.set(flt, grant)
    session.reads.generation = provider_generation(auth)


async def sweeper(redis: Any, wills: WillService, clock: Clock, interval: float) -> None:
    """The backstop of every timer: due delayed wills, then expired sessions, of every tenant with
    something left; a tenant with neither (nor retained messages) is pruned from the index, so the
    sweep's cost follows the tenants that still have sessions, not every tenant ever seen. Each sweep also
    checks one chunk of every tenant's indexes against the sessions (``Reconciler``: what a crash between
    a session step and its tenant step left behind) and one page of its retained messages for expired
    ones."""
    reconciler = Reconciler()
    retained_at: dict[str, bytes] = {}  # tenant -> where its retained-expiry pass goes on
    while True:
        await asyncio.sleep(interval)
        try:
            for tenant in await sess_store.tenants_list(redis):
                await wills.fire_due(tenant)
                await sess_store.sessions_expire(redis, tenant, now_ms=clock.wall_ms())
                repairs = await reconciler.step(redis, tenant)
                if repairs:
                    log.info("tenant %s: indexes repaired: %s", tenant, repairs)
                cursor, expired = await retained_store.retain_expire_step(redis, tenant, retained_at.get(tenant, b""),
                                                                        clock.wall_ms())
                retained_at[tenant] = cursor
                if expired:
                    log.info("tenant %s: %d expired retained messages dropped", tenant, expired)
                if await sess_store.tenants_prune(redis, tenant):
                    reconciler.forget(tenant)
                    retained_at.pop(tenant, None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("session sweep failed: %s", exc)


class ExpiryTimers:
    """Session expiry on time: a session that went offline here gets a timer at its deadline (the sweep
    is the backstop for sessions of dead workers and for any timer lost with its worker)."""

    SLACK = 0.05  # seconds after the deadline: the store compares with the same clock
    MAX_DELAY = 86_400.0  # longer expiries are left to the sweep (no timer kept for days)

    def __init__(self, redis: Any, clock: Clock) -> None:
        self.redis = redis
        self.clock = clock
        self.stopped = False
        self._due: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def schedule(self, tenant: str, expires_at_ms: int) -> None:
        delay = (expires_at_ms - self.clock.wall_ms()) / 1000 + self.SLACK
        if delay <= self.MAX_DELAY:
            asyncio.get_running_loop().call_later(max(0.0, delay), self._fire, tenant)

    def _fire(self, tenant: str) -> None:
        if self.stopped:
            return
        self._due.add(tenant)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._expire())

    async def _expire(self) -> None:
        while self._due:
            tenant = self._due.pop()
            try:  # ends every session of the tenant whose deadline passed (a reconnect cancelled its own)
                await sess_store.sessions_expire(self.redis, tenant, now_ms=self.clock.wall_ms())
            except Exception as exc:  # the sweep ends it later
                log.warning("session expiry of tenant %s deferred to the sweep: %s", tenant, exc)
