"""Worker liveness: leases, the per-worker session index, and reaping dead workers.

Each worker renews ``lease:<id>`` (a key with a TTL) and its heartbeat score
in the ``workers`` sorted set every few seconds, and keeps the set of
sessions it owns in ``wsess:<id>`` (queued ahead of the claim in the same
round trip by ``session_connect(track=True)``, removed with
``session_disconnect(untrack_worker=...)``, so a crash can leave extras but
never miss a session). A worker whose lease expired is dead: one
reaper (``reap:<id>`` NX lock) takes its session list, and each session still
naming the dead worker as owner is ended exactly as its connection would have
ended — through ``session_disconnect`` with the recorded epoch, which a
concurrent reconnect turns into a harmless "stale".

These keys are global (untagged); each command touches one key, so they run
unchanged on Redis Cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tidemq.store.models import text as _s

from . import keys
from .sessions import session_disconnect

SEP = "\0"


@dataclass(slots=True)
class OrphanSession:
    tenant: str
    client_id: str
    epoch: int
    will: bytes  # b"" when none
    will_delay: int
    expiry: int
    persistent: bool



async def lease_renew(r: Any, worker_id: str, *, ttl_ms: int, now_ms: int) -> None:
    pipe = r.pipeline(transaction=False)
    pipe.set(keys.lease(worker_id), str(now_ms), px=ttl_ms)
    pipe.zadd(keys.workers(), {worker_id: now_ms})
    await pipe.execute()


async def lease_release(r: Any, worker_id: str) -> None:
    """Graceful exit: the worker's sessions were already ended one by one."""
    pipe = r.pipeline(transaction=False)
    pipe.delete(keys.lease(worker_id))
    pipe.zrem(keys.workers(), worker_id)
    pipe.delete(keys.worker_sessions(worker_id))
    await pipe.execute()


async def dead_workers(r: Any, *, now_ms: int, grace_ms: int) -> list[str]:
    """Workers whose heartbeat is older than ``grace_ms`` and whose lease key is gone."""
    stale = await r.zrangebyscore(keys.workers(), "-inf", now_ms - grace_ms)
    out = []
    for wid in stale:
        w = _s(wid)
        if not await r.exists(keys.lease(w)):
            out.append(w)
    return out


async def claim_reap(r: Any, dead: str, me: str, *, ttl_ms: int = 60000) -> bool:
    return bool(await r.set(keys.reap_lock(dead), me, nx=True, px=ttl_ms))


async def reaped_by(r: Any, worker_id: str) -> str | None:
    """The worker that claimed to reap ``worker_id`` (within the reap lock's TTL), or None."""
    who = await r.get(keys.reap_lock(worker_id))
    return _s(who) if who is not None else None


async def forget_reap(r: Any, worker_id: str, reaper: str) -> None:
    """Drop the reap lock on ``worker_id`` once it has handled being reaped (if it is still ``reaper``'s)."""
    if await reaped_by(r, worker_id) == reaper:
        await r.delete(keys.reap_lock(worker_id))


async def orphans(r: Any, dead: str) -> list[OrphanSession]:
    """Sessions the dead worker still owns (per their records), with their wills."""
    members = await r.smembers(keys.worker_sessions(dead))
    pairs = [(_s(m).split(SEP, 1)) for m in members]
    pairs = [p for p in pairs if len(p) == 2]
    if not pairs:
        return []
    pipe = r.pipeline(transaction=False)
    for t, c in pairs:
        pipe.hmget(keys.sess(t, c), "worker", "epoch", "will", "will_delay", "expiry", "persistent")
    recs = await pipe.execute()
    out = []
    for (t, c), rec in zip(pairs, recs, strict=True):
        worker, epoch, will, delay, expiry, persistent = rec
        if worker is None or _s(worker) != dead:
            continue
        out.append(OrphanSession(t, c, int(epoch or 0), will or b"", int(delay or 0), int(expiry or 0),
                                 _s(persistent or b"0") == "1"))
    return out


async def end_orphan(r: Any, o: OrphanSession, *, now_ms: int, will_at: int = 0) -> str:
    """End one orphaned session as its connection would have ended ("stale" if it reconnected);
    ``will_at`` keeps its will as a delayed will (see ``tidemq.store.wills``)."""
    return await session_disconnect(r, o.tenant, o.client_id, o.epoch, now_ms=now_ms, will_at=will_at)


async def forget_worker(r: Any, dead: str) -> None:
    pipe = r.pipeline(transaction=False)
    pipe.delete(keys.worker_sessions(dead))
    pipe.zrem(keys.workers(), dead)
    await pipe.execute()
    await r.delete(keys.worker_stream(dead))  # its own hash tag: a command of its own on a cluster


async def publish_stats(r: Any, worker_id: str, stats: dict[str, int], *, ttl_ms: int) -> None:
    """Write the worker's counters (overwritten each time; they vanish with the worker)."""
    if not stats:
        return
    key = keys.worker_stats(worker_id)
    pipe = r.pipeline(transaction=False)
    pipe.delete(key)
    pipe.hset(key, mapping={k: str(v) for k, v in stats.items()})
    pipe.pexpire(key, ttl_ms)
    await pipe.execute()


async def read_stats(r: Any) -> dict[str, dict[str, int]]:
    """Counters of every live worker: worker id -> {name: value}."""
    workers = [_s(w) for w in await r.zrange(keys.workers(), 0, -1)]
    if not workers:
        return {}
    pipe = r.pipeline(transaction=False)
    for w in workers:
        pipe.hgetall(keys.worker_stats(w))
    out = {}
    for w, h in zip(workers, await pipe.execute(), strict=True):
        if h:
            out[w] = {_s(k): int(v) for k, v in h.items()}
    return out


async def workers_read(r: Any) -> list[dict[str, Any]]:
    """Read-only view of every worker in the ``workers`` set (for ``tidemq inspect``): id, last heartbeat
    (ms), the lease's remaining TTL in ms (-2: no lease, the worker is dead or gone) and its counters."""
    entries = await r.zrange(keys.workers(), 0, -1, withscores=True)
    if not entries:
        return []
    pipe = r.pipeline(transaction=False)
    for wid, _score in entries:
        pipe.pttl(keys.lease(_s(wid)))
        pipe.hgetall(keys.worker_stats(_s(wid)))
    res = await pipe.execute()
    return [{"worker": _s(wid), "heartbeat": int(score), "lease_ttl_ms": int(res[2 * i]),
             "stats": {_s(k): int(v) for k, v in res[2 * i + 1].items()}}
            for i, (wid, score) in enumerate(entries)]
