"""Route freshness without a Redis round trip per publish: route caches invalidated by push, with proof.

DESIGN: once a SUBACK (or a 200 of ``PUT /sub``) was sent, every later PUBLISH
on any worker must reach the subscription. A worker's in-memory route cache
was trusted only after a ``GET`` of the tenant's route version in the
publish's own round trip. On a single Redis (or Sentinel) a worker now skips
that ``GET`` while its cache of the tenant is *fresh*, under this protocol:

1. ``tenant_apply`` (the only writer of routes) publishes ``[tenant, stamp,
   writer, changes, version]`` on ``keys.route_channel()`` in the same script
   that bumps the version (the stamp, version and Redis clock, is what watchers
   acknowledge), and returns the *watchers* whose lease is running
   (``keys.route_watchers()``: watcher -> lease end on the Redis clock).
2. A watcher (every worker) holds one pub/sub connection subscribed to that
   channel and to its own acknowledgement channel. On a route message its
   route cache applies the changes when it holds the version before (so the
   tenant stays fresh: no reload of the tenant's whole table), else the tenant
   is dropped from ``fresh``; either way at once, then it acknowledges.
3. The writer (``settle``) acknowledges its client only after every watcher it
   was given acknowledged, or after the lease end of those that did not.
4. A watcher trusts its cache only while ``trusted()``: its lease was written
   at local time ``s`` and a PING sent on the pub/sub connection after that
   write came back; trust ends at ``s + LEASE_MS - MARGIN_MS``, before Redis
   lets the lease run out. A tenant becomes fresh only through a version
   ``GET`` issued after the current subscription was confirmed, and only if no
   route message of that tenant arrived while the ``GET`` was under way.

Why a stale cache is never used for a publish that follows a SUBACK: the
writer's script ran at Redis time *p*. A watcher whose lease ran at *p* either
acknowledged (it had dropped the tenant) or the SUBACK waited for its lease to
end, and its trust ended earlier; a later lease write is at Redis time > *p*,
so the PING after it returns behind the route message on the same connection
(pub/sub delivers in order). A watcher that had no running lease at *p* did
not trust; it trusts again only after a new lease and PING, again behind the
message. A (re)subscription drops every fresh tenant (messages published while
unsubscribed are lost). A tenant's fresh mark comes from a ``GET`` sent after
the drop, which sees the new version.

A Redis Cluster is not watched (``enabled`` is false): a script touches one
slot and the watchers' hash is global, so there the per-flush ``GET`` stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from tidemq.store import keys
from tidemq.store.connection import is_cluster
from tidemq.store.models import text
from tidemq.store.scripts import get

log = logging.getLogger("tidemq.store")

LEASE_MS = 2_000  # a watcher's lease: the longest a route writer waits for a watcher that does not answer
RENEW_S = 0.5  # lease renewal and PING period (trust lasts LEASE_MS - MARGIN_MS from each renewal)
MARGIN_MS = 250  # trust ends this long before the lease (clock rates, scheduling)
RETRY_S = 0.5  # back-off after a failed pub/sub connection
ACKED_KEEP = 4_096  # (tenant, watcher) acknowledgements remembered for writers that ask after they arrived

_LEASE = get("route_watch_lease")


def enabled(r: Any) -> bool:
    """Route caches are push-invalidated on a single Redis (and Sentinel), not on a cluster."""
    return not is_cluster(r)


_WATCHES: weakref.WeakKeyDictionary[Any, RouteWatch] = weakref.WeakKeyDictionary()


def watch_of(r: Any) -> RouteWatch | None:
    """The route watch of the process that uses store client ``r`` (None: no watch, writes wait for nobody)."""
    return _WATCHES.get(r)


@dataclass(frozen=True, slots=True)
class Notice:
    """What a route change's ``tenant_apply`` answered: the new version, the Redis clock (ms), the
    watchers whose lease ran then (id -> lease end, ms) and the change's stamp (``version.clock-us``: what
    the watchers acknowledge; a version alone repeats after a flush or a restart without persistence)."""

    tenant: str
    version: int
    now_ms: int
    watchers: dict[str, int]
    stamp: str

    @classmethod
    def parse(cls, tenant: str, reply: list[Any]) -> Notice:
        flat = reply[2]
        watchers = {text(flat[i]): int(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}
        return cls(tenant, int(reply[0]), int(reply[1]), watchers, text(reply[3]))


class RouteWatch:
    """One process's route watch: the listener of route changes (a worker: ``member``) and the
    acknowledgements of the changes it writes (worker and API node). See the module doc."""

    def __init__(self, r: Any, node_id: str, *, member: bool = True) -> None:
        self.r = r
        self.node_id = node_id
        self.member = member
        self.fresh: set[str] = set()  # tenants whose cached routes are current (see ``confirm``)
        self.ready = asyncio.Event()  # subscribed: acknowledgements can reach this node
        self.trust_changed = asyncio.Event()  # set whenever trust was given or taken (for whoever waits on it)
        self._epoch = 0  # bumped at every (re)subscription
        self._seq = 0  # route messages seen
        self._changed: dict[str, int] = {}  # tenant -> seq of its last route message
        self._trust_until = 0.0  # loop time
        self._acks: dict[str, list[list[str]]] = defaultdict(list)  # writer -> [me, tenant, stamp] to acknowledge
        self._ack_task: asyncio.Task[None] | None = None
        self._acked: dict[tuple[str, str], set[str]] = {}  # (tenant, stamp) -> the watchers that acknowledged
        self._waiters: dict[tuple[str, str], _Waiter] = {}  # (tenant, stamp) -> the writer waiting for it
        # the route cache's hook: apply a change (tenant, version, [["P", client, filter, value] | ["D", client,
        # filter], ...]); True when the cache now holds that version, so a fresh tenant stays fresh
        self.on_change: Callable[[str, int, list[list[str]]], bool] | None = None
        self.on_reset: Callable[[], None] | None = None  # changes may have been missed: read everything again
        self._ack_channel = keys.route_acks(node_id).encode()
        self._route_channel = keys.route_channel().encode()

    # ---------------------------------------------------------------- the cache's side

    def trusted(self) -> bool:
        """The lease and the pub/sub connection are confirmed: fresh tenants need no version ``GET``."""
        return self.member and asyncio.get_running_loop().time() < self._trust_until

    def token(self) -> tuple[int, int] | None:
        """Taken before a version ``GET``; None while not subscribed (nothing may become fresh)."""
        return (self._epoch, self._seq) if self.ready.is_set() else None

    def confirm(self, tenants: Iterable[str], token: tuple[int, int] | None) -> None:
        """The ``GET`` taken after ``token`` answered for ``tenants`` (and the cache now holds those
        versions): fresh, unless a route message of the tenant (or a resubscription) came meanwhile."""
        if token is None or token[0] != self._epoch:
            return
        seq = token[1]
        for t in tenants:
            if self._changed.get(t, -1) <= seq:
                self.fresh.add(t)

    # ---------------------------------------------------------------- the writer's side

    async def settle(self, notice: Notice | None) -> None:
        """Return once every watcher of ``notice`` applied or dropped the change (acknowledged), or its lease
        (and so its trust) ran out. Called by a route writer before it acknowledges its client."""
        if notice is None:
            return
        key = (notice.tenant, notice.stamp)
        done = self._acked.pop(key, set())  # acknowledgements may come before the script's own reply
        left = {w: end for w, end in notice.watchers.items() if w not in done}
        if not left:
            return
        waiter = _Waiter(set(left), asyncio.get_running_loop().create_future())
        self._waiters[key] = waiter
        timeout = (max(left.values()) - notice.now_ms + MARGIN_MS) / 1000
        try:
            await asyncio.wait_for(asyncio.shield(waiter.done), timeout=max(0.0, timeout))
        except TimeoutError:
            log.warning("route change of tenant %r: watchers %s did not acknowledge within their lease",
                        notice.tenant, sorted(waiter.left))
        finally:
            self._waiters.pop(key, None)

    def _on_ack(self, payload: bytes) -> None:
        try:
            acks = orjson.loads(payload)
        except orjson.JSONDecodeError:  # never expected: the writer waits for the lease instead
            log.error("route watch: unreadable acknowledgement %r", payload[:200])
            return
        for w, t, stamp in acks:
            key = (t, stamp)
            waiter = self._waiters.get(key)
            if waiter is None:  # before the writer's own reply (or after it gave up): kept for a while
                if len(self._acked) >= ACKED_KEEP:
                    self._acked.clear()
                self._acked.setdefault(key, set()).add(w)
                continue
            waiter.left.discard(w)
            if not waiter.left and not waiter.done.done():
                waiter.done.set_result(None)

    # ---------------------------------------------------------------- the listener

    def _on_route(self, payload: bytes) -> None:
        try:
            t, stamp, writer, changes, v = orjson.loads(payload)
            t, stamp, writer, v = str(t), str(stamp), str(writer), int(v)
        except (orjson.JSONDecodeError, TypeError, ValueError):  # never expected: trust nothing rather than guess
            log.error("route watch: unreadable route change %r: every tenant is read again", payload[:200])
            self._untrust_tenants()
            return
        self._seq += 1
        self._changed[t] = self._seq
        if len(self._changed) > ACKED_KEEP:  # only tenants changed during a GET matter
            self._changed = {t: self._seq}
        # the cache either moves to version v by itself (it held v - 1) or the tenant is read again
        applied = self.on_change is not None and isinstance(changes, list) and self.on_change(t, v, changes)
        if not applied:
            self.fresh.discard(t)
        if writer and self.member:
            if writer == self.node_id:  # our own change: no round trip through Redis
                self._on_ack(orjson.dumps([[writer, t, stamp]]))
                return
            self._acks[writer].append([self.node_id, t, stamp])
            if self._ack_task is None or self._ack_task.done():
                self._ack_task = asyncio.get_running_loop().create_task(self._send_acks())

    async def _send_acks(self) -> None:
        await asyncio.sleep(0)  # every route message of this read first: one PUBLISH per writer
        while self._acks:
            acks, self._acks = self._acks, defaultdict(list)
            pipe = self.r.pipeline(transaction=False)
            for writer, items in acks.items():
                pipe.publish(keys.route_acks(writer), orjson.dumps(items))
            try:
                await pipe.execute()
            except Exception as exc:  # the writers wait for our lease to end instead
                log.warning("route change acknowledgements not sent: %s", exc)

    def _untrust(self) -> None:
        self._untrust_tenants()
        self._trust_until = 0.0
        self.trust_changed.set()

    def _untrust_tenants(self) -> None:
        self._epoch += 1  # a version read under way confirms nothing
        self.fresh.clear()
        if self.on_reset is not None:
            self.on_reset()

    async def close(self) -> None:
        """End the lease now (a graceful stop): writers stop waiting for this node at once."""
        if self.member:
            self.member = False  # no renewal, no trust
            self.trust_changed.set()
            await _LEASE(self.r, [keys.route_watchers()], [self.node_id, LEASE_MS, "1"])

    async def run(self) -> None:
        """Listen until cancelled; reconnects (dropping all trust) whenever the connection fails."""
        try:
            while True:
                try:
                    await self._listen()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("route watch connection failed (%s): publishes check route versions", exc)
                self._untrust()
                self.ready.clear()
                await asyncio.sleep(RETRY_S)
        finally:
            self._untrust()
            if _WATCHES.get(self.r) is self:
                del _WATCHES[self.r]
            if self.member:
                with contextlib.suppress(Exception):
                    await _LEASE(self.r, [keys.route_watchers()], [self.node_id, LEASE_MS, "1"])

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        ps = self.r.pubsub()
        ping: tuple[int, str, float] | None = None  # (epoch, PING payload, local time of the lease write)
        n = 0
        next_renew = 0.0
        try:
            await ps.subscribe(self._route_channel, self._ack_channel)
            while True:
                now = loop.time()
                if now >= next_renew and self.ready.is_set() and self.member:
                    next_renew = now + RENEW_S
                    await _LEASE(self.r, [keys.route_watchers()], [self.node_id, LEASE_MS, ""])
                    n += 1
                    ping = (self._epoch, f"rw{n}", now)
                    await ps.ping(ping[1])
                msg = await ps.get_message(timeout=max(0.01, next_renew - loop.time()) if self.member else 1.0)
                if msg is None:
                    continue
                kind = msg["type"]
                if kind == "message":
                    if msg["channel"] == self._route_channel:
                        self._on_route(msg["data"])
                    else:
                        self._on_ack(msg["data"])
                elif kind == "pong":
                    if (ping is not None and ping[0] == self._epoch
                            and text(msg["data"]) == ping[1]):
                        self._trust_until = ping[2] + (LEASE_MS - MARGIN_MS) / 1000
                        self.trust_changed.set()
                        ping = None
                elif kind == "subscribe":
                    # a (re)subscription: whatever was published while unsubscribed is lost
                    self._untrust()
                    ping = None
                    if msg["data"] >= 2:
                        self.ready.set()
                        # from now on every route change written through our client waits for the
                        # watchers' acknowledgements, which can reach us (TenantOps.settle)
                        _WATCHES[self.r] = self
                        next_renew = 0.0
        finally:
            with contextlib.suppress(Exception):
                await ps.aclose()


@dataclass(slots=True)
class _Waiter:
    left: set[str]
    done: asyncio.Future[None]
