"""Worker leases, the per-worker session index, and reaping a dead worker's sessions."""

from __future__ import annotations

from typing import Any

from tests.store.helpers import NOW, connect
from tidemq.store import keys as K
from tidemq.store import leases, session_get
from tidemq.store.leases import OrphanSession

T = "lease{t}"
TTL = 5000


async def test_renew_sets_lease_with_ttl_and_heartbeat(r: Any) -> None:
    await leases.lease_renew(r, "w1", ttl_ms=TTL, now_ms=NOW)
    assert await r.get(K.lease("w1")) == str(NOW).encode()
    assert 0 < await r.pttl(K.lease("w1")) <= TTL
    assert await r.zscore(K.workers(), "w1") == NOW
    await leases.lease_renew(r, "w1", ttl_ms=TTL, now_ms=NOW + 1000)
    assert await r.zscore(K.workers(), "w1") == NOW + 1000


async def test_dead_needs_an_old_heartbeat_and_no_lease(r: Any) -> None:
    for w in ("alive", "old-but-leased", "dead", "fresh-no-lease"):
        await leases.lease_renew(r, w, ttl_ms=TTL, now_ms=NOW - 10_000 if w != "fresh-no-lease" else NOW)
    await leases.lease_renew(r, "alive", ttl_ms=TTL, now_ms=NOW)
    await r.delete(K.lease("dead"), K.lease("fresh-no-lease"))  # as if their TTL ran out
    assert await leases.dead_workers(r, now_ms=NOW, grace_ms=TTL) == ["dead"]
    assert await leases.dead_workers(r, now_ms=NOW + 2 * TTL, grace_ms=TTL) == ["dead", "fresh-no-lease"]


async def test_one_reaper_claims_a_dead_worker(r: Any) -> None:
    assert await leases.claim_reap(r, "dead", "w1") is True
    assert await leases.claim_reap(r, "dead", "w2") is False
    assert await leases.claim_reap(r, "dead", "w1") is False
    assert await r.get(K.reap_lock("dead")) == b"w1"
    assert 0 < await r.pttl(K.reap_lock("dead")) <= 60000
    assert await leases.claim_reap(r, "other", "w2") is True


async def test_orphans_are_the_sessions_the_dead_worker_still_owns(r: Any) -> None:
    await connect(r, T, "p", worker="wd", track=True, will=b"will-p", will_delay=7, expiry=120)
    await connect(r, T, "t", worker="wd", track=True, persistent=False, expiry=0)
    await connect(r, T, "moved", worker="wd", track=True)
    await connect(r, T, "moved", worker="w2", track=True)  # taken over since: not an orphan
    await connect(r, T, "gone", worker="wd", track=True)
    await r.delete(K.sess(T, "gone"))  # record removed, index entry left behind
    await r.sadd(K.worker_sessions("wd"), "no-separator")  # junk is skipped
    got = sorted(await leases.orphans(r, "wd"), key=lambda o: o.client_id)
    assert [(o.tenant, o.client_id) for o in got] == [(T, "p"), (T, "t")]
    p, t = got
    assert (p.will, p.will_delay, p.expiry, p.persistent) == (b"will-p", 7, 120, True)
    assert (t.will, t.will_delay, t.expiry, t.persistent) == (b"", 0, 0, False)
    rec = await session_get(r, T, "p")
    assert rec is not None and p.epoch == rec["epoch"]
    assert await leases.orphans(r, "nobody") == []


async def test_end_orphan_ends_the_session_like_its_connection(r: Any) -> None:
    await connect(r, T, "p", worker="wd", track=True, will=b"w", will_delay=30, expiry=120)
    await connect(r, T, "t", worker="wd", track=True, persistent=False, expiry=0)
    by_id = {o.client_id: o for o in await leases.orphans(r, "wd")}
    assert await leases.end_orphan(r, by_id["t"], now_ms=NOW + 1) == "removed"
    assert await session_get(r, T, "t") is None
    assert await leases.end_orphan(r, by_id["p"], now_ms=NOW + 1, will_at=NOW + 30_001) == "offline"
    rec = await session_get(r, T, "p")
    assert rec is not None and rec["worker"] == "" and rec["will"] == b"w"
    assert await r.zscore(K.wills(T), "p") == NOW + 30_001  # the delayed will waits for will_take


async def test_end_orphan_after_a_reconnect_is_stale(r: Any) -> None:
    await connect(r, T, "c", worker="wd", track=True)
    (orphan,) = await leases.orphans(r, "wd")
    await connect(r, T, "c", worker="w2")  # the client came back on another worker meanwhile
    assert await leases.end_orphan(r, orphan, now_ms=NOW + 1) == "stale"
    rec = await session_get(r, T, "c")
    assert rec is not None and rec["worker"] == "w2"
    stale = OrphanSession(T, "missing", 1, b"", 0, 0, False)
    assert await leases.end_orphan(r, stale, now_ms=NOW) == "stale"


async def test_forget_and_release_drop_the_worker(r: Any) -> None:
    for w in ("dead", "leaving"):
        await leases.lease_renew(r, w, ttl_ms=TTL, now_ms=NOW)
        await connect(r, T, f"c-{w}", worker=w, track=True)
    await leases.forget_worker(r, "dead")
    assert not await r.exists(K.worker_sessions("dead"))
    assert await r.zscore(K.workers(), "dead") is None
    await leases.lease_release(r, "leaving")
    assert not await r.exists(K.lease("leaving"), K.worker_sessions("leaving"))
    assert await r.zrange(K.workers(), 0, -1) == []


async def test_stats_of_live_workers(r: Any) -> None:
    assert await leases.read_stats(r) == {}
    await leases.lease_renew(r, "w1", ttl_ms=TTL, now_ms=NOW)
    await leases.lease_renew(r, "w2", ttl_ms=TTL, now_ms=NOW)
    await leases.publish_stats(r, "w1", {"connections": 3, "published": 10}, ttl_ms=TTL)
    await leases.publish_stats(r, "w1", {"connections": 2}, ttl_ms=TTL)  # overwritten, not merged
    await leases.publish_stats(r, "w2", {}, ttl_ms=TTL)  # nothing to write
    assert 0 < await r.pttl(K.worker_stats("w1")) <= TTL
    assert await leases.read_stats(r) == {"w1": {"connections": 2}}
