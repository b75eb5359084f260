"""Fencing: a live worker that another worker reaped (Redis was out of reach past its lease) closes every
connection, so clients resume from Redis instead of living on unreachable by routes and signals."""

from __future__ import annotations

import uuid

from tidemq.worker.leases import LeaseKeeper

from tidemq.clock import FakeClock
from tidemq.store import keys
from tidemq.store import leases as lease_store
from tidemq.store.connection import close_redis, open_redis


async def test_reaped_while_alive_closes_connections_once() -> None:
    r = await open_redis(f"memory://fence-{uuid.uuid4().hex[:8]}")
    closed: list[int] = []
    keeper = LeaseKeeper(r, "w-alive", FakeClock(), None, dict, on_reaped=lambda: closed.append(1))  # type: ignore[arg-type]
    try:
        await keeper.renew()
        assert await keeper.check_reaped() is False and closed == []
        assert await lease_store.claim_reap(r, "w-alive", "w-other")  # another worker took us for dead
        assert await keeper.check_reaped() is True and closed == [1]
        assert not await r.exists(keys.reap_lock("w-alive"))  # handled: not fenced again
        assert await keeper.check_reaped() is False and closed == [1]
        await lease_store.claim_reap(r, "w-alive", "w-old")  # a lock left by an earlier process, same id
        await keeper.clear_stale_reap()
        assert await keeper.check_reaped() is False and closed == [1]
    finally:
        await close_redis(r)
