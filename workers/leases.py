"""This worker's lease, and the reaping of workers whose lease ran out.

Every ``LEASE_RENEW_S`` the worker renews its lease, publishes its stats
(for the API's ``/metrics``) and renews its share of the tenants' cluster-wide
connection limits (``on_renew``: ``Admission.sync``; a share not renewed for
``LEASE_TTL_MS`` stops counting by itself, so a dead worker's share needs no
reaping). A worker silent for ``LEASE_TTL_MS`` is dead:
one live worker claims it (``claim_reap``, exactly one reaper) and ends every
session it owned — each at the dead connection's epoch, so a client that already
reconnected elsewhere is left alone — then publishes its will through
``workers/wills.py`` (or keeps it stored when delayed: the will delay, capped by
the session expiry). Ending first makes a will fire at most once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tidemq.clock import Clock
from tidemq.store import leases as lease_store

from .wills import WillService, decode_will, delay_ms

log = logging.getLogger("tidemq.worker")

LEASE_TTL_MS = 6000  # a worker silent this long is dead: its sessions are reaped
LEASE_RENEW_S = 2.0


class LeaseKeeper:
    def __init__(self, redis: Any, worker_id: str, clock: Clock, wills: WillService,
                 stats: Callable[[], dict[str, int]], on_reaped: Callable[[], None] = lambda: None,
                 on_renew: Callable[[], Awaitable[None]] | None = None,
                 on_release: Callable[[], Awaitable[None]] | None = None) -> None:
        self.redis = redis
        self.worker_id = worker_id
        self.clock = clock
        self.wills = wills
        self.stats = stats
        self.renewed_at = 0.0  # monotonic time of the last successful renewal (readiness)
        self.on_reaped = on_reaped  # another worker took us for dead and ended our sessions
        self.on_renew = on_renew  # with every renewal: this worker's share of the tenants' connection limits
        self.on_release = on_release  # at a graceful exit, before the lease goes

    async def renew(self) -> None:
        await lease_store.lease_renew(self.redis, self.worker_id, ttl_ms=LEASE_TTL_MS, now_ms=self.clock.wall_ms())
        self.renewed_at = self.clock.monotonic()

    async def run(self) -> None:
        """Renew our lease; reap the sessions of workers whose lease ran out."""
        while True:
            await asyncio.sleep(LEASE_RENEW_S)
            try:
                await self.renew()
                await self.check_reaped()
                await lease_store.publish_stats(self.redis, self.worker_id, self.stats(), ttl_ms=LEASE_TTL_MS)
                if self.on_renew is not None:
                    await self.on_renew()
                dead_workers = await lease_store.dead_workers(self.redis, now_ms=self.clock.wall_ms(),
                                                              grace_ms=LEASE_TTL_MS)
                for dead in dead_workers:
                    if dead != self.worker_id and await lease_store.claim_reap(self.redis, dead, self.worker_id):
                        await self.reap(dead)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("lease renewal / reaping failed: %s", exc)

    async def clear_stale_reap(self) -> None:
        """At start: a reap lock on our id is from an earlier process with the same id (none of our
        connections exist yet), not a reason to fence ourselves."""
        reaper = await lease_store.reaped_by(self.redis, self.worker_id)
        if reaper is not None:
            await lease_store.forget_reap(self.redis, self.worker_id, reaper)

    async def check_reaped(self) -> bool:
        """Fencing: when Redis was out of reach longer than the lease, another worker may have reaped us
        (ended our sessions, deleted our signal stream) while our connections stayed open. Then every
        connection is closed, so its client reconnects and finds its session as Redis now has it,
        instead of living on as a zombie that no route and no signal reaches."""
        reaper = await lease_store.reaped_by(self.redis, self.worker_id)
        if reaper is None:
            return False
        log.error("worker %s was reaped by %s while alive (Redis out of reach past the lease): "
                  "closing every connection so clients resume", self.worker_id, reaper,
                  extra={"event": "reaped_alive", "reason": reaper})
        self.on_reaped()
        await lease_store.forget_reap(self.redis, self.worker_id, reaper)
        return True

    async def reap(self, dead: str) -> None:
        """End every session a dead worker owned: fire wills (honouring will delay), mark offline."""
        orphans = await lease_store.orphans(self.redis, dead)
        log.warning("worker %s is dead: reaping %d sessions", dead, len(orphans))
        for o in orphans:
            will = decode_will(o.will, o.will_delay) if o.will else None
            wait = delay_ms(will, persistent=o.persistent, session_expiry=o.expiry) if will is not None else 0
            will_at = self.clock.wall_ms() + wait if wait else 0
            # the session is ended first, at the dead connection's epoch (one atomic step): only the
            # reaper that ended it publishes the will, and never for a client that already came back
            ended = await lease_store.end_orphan(self.redis, o, now_ms=self.clock.wall_ms(), will_at=will_at)
            if ended == "stale" or will is None:
                continue
            if will_at:
                if ended == "offline":
                    self.wills.schedule(o.tenant, o.client_id, will_at)
            else:
                await self.wills.publish(o.tenant, o.client_id, will)
        await lease_store.forget_worker(self.redis, dead)

    async def release(self) -> None:
        if self.on_release is not None:
            try:
                await self.on_release()
            except Exception as exc:  # the fields run out with their TTL anyway
                log.warning("releasing the connection limits' share failed: %s", exc)
        await lease_store.lease_release(self.redis, self.worker_id)
