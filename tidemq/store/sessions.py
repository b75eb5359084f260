"""Session records: connect (create/resume/take over), disconnect, read, expire; the tenant set.

A session is owned by one connection at a time, identified by its *epoch*
(the Redis clock in microseconds, above the session's previous epoch, so an
epoch is not reused by a client id even after its session was removed and
recreated). Connect always makes the caller the owner and reports the
previous owner so the caller can signal a takeover; disconnect and every
epoch-guarded write from an older connection are no-ops ("stale").

Every change is a script on the session's slot, followed by the tenant's
indexes (``indexes.TenantOps``: routes, session index, expiry and will
hints) on the tenant's slot: the session first, the derived indexes second
(docs/redis-keys.md, "Two slots").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

from tidemq.store import keys
from tidemq.store.coalesce import Coalescer
from tidemq.store.indexes import TenantOps, is_shared, route_value
from tidemq.store.models import ConnectResult, ExpiredSession, SubOpts
from tidemq.store.models import text as _s
from tidemq.store.scripts import Arg, Batch, get
from tidemq.store.subscriptions import drop_refused

_CONNECT = get("session_connect")
_DISCONNECT = get("session_disconnect")
_EXPIRE = get("session_expire")

EXPIRE_CHUNK = 100

DisconnectResult = Literal["stale", "offline", "removed"]

RECORD_INT_FIELDS = ("ver", "expiry", "epoch", "connected_at", "disconnected_at", "seq", "sent", "will_delay")



class SessionOfAnotherUser(Exception):
    """``session_connect`` found the session ``(tenant, client id)`` owned by another user: nothing changed."""

    def __init__(self, tenant: str, client_id: str) -> None:
        super().__init__(f"session {tenant}/{client_id} belongs to another user")


def _confirmed_q2in(members: Sequence[Any]) -> list[int]:
    """The inbound QoS 2 ids a resumed session holds itself: those marked "d<pid>" (routed everywhere before
    their PUBREC; see inbox_append). An unmarked id's resend is routed again (its inbox appends skipped),
    and a PUBREL for it is answered and the stored id dropped."""
    names = {_s(m) for m in members}
    return sorted(int(n) for n in names if not n.startswith("d") and f"d{n}" in names)


async def session_connect(
    r: Any,
    t: str,
    c: str,
    *,
    user: str,
    ver: int,
    clean_start: bool,
    persistent: bool,
    expiry: int,
    worker: str,
    address: str,
    client_type: str,
    now_ms: int,
    will: bytes = b"",
    will_delay: int = 0,
    track: bool = False,
    max_group_members: int = 0,
    calls: Coalescer | None = None,
) -> ConnectResult:
    """Open (clean start / no session) or resume the session ``(t, c)`` owned by ``worker``.

    ``track``: in the same round trip, and queued before the claim, add the session to the worker's
    index (``wsess:<worker>``) that a reaper reads if the worker dies (on a single node the SADD runs
    first; on a cluster the two go to different nodes in one pipelined write).
    ``calls``: send both steps through this coalescer (shared round trips with other connects).
    """
    ks = keys.session_keys(t, c)
    args: list[Arg] = [c, "1" if clean_start else "0", user, ver, "1" if persistent else "0", expiry, worker,
                       address, client_type, now_ms, will, will_delay]
    if track:
        member = t + "\0" + c

        def queue(batch: Batch) -> None:
            batch.pipe.sadd(keys.worker_sessions(worker), member)
            batch.pipe.sadd(keys.tenants(), t)  # the sweeper's tenant index, in the same trip (pruned when empty)
            batch.script(_CONNECT, ks, args)

        res = (await _run(r, calls, queue))[2]
    elif calls is not None:
        (res,) = await calls.run(lambda batch: batch.script(_CONNECT, ks, args))
    else:
        res = await _CONNECT(r, ks, args)
    if int(res[0]) < 0:  # the client id names a live session of another user of the tenant
        raise SessionOfAnotherUser(t, c)
    present, epoch, prev_worker, prev_epoch, sent, subs, rel, q2in, gen, old_gen, old_filters = res
    gen, old_gen = _s(gen), _s(old_gen)
    subscriptions = {_s(subs[i]): SubOpts.decode(subs[i + 1]) for i in range(0, len(subs), 2)}
    # the tenant's side, second: routes of a wiped session go, a new session is indexed, and a resumed
    # one's routes are (re)written (the owner of a transient session changed; and any route a crash
    # kept from being written comes back here)
    ops = TenantOps(t)
    for f in old_filters:
        ops.route_drop(c, _s(f), old_gen)
    if present:
        for f, opts in subscriptions.items():
            ops.route_put_checked(c, f, route_value(worker, persistent, opts.encode(), gen), max_group_members)
    ops.index_add(c, gen)  # also on resume: an entry a crash kept from being written comes back
    # merged with other connects' changes unless a shared route's refusal must be told apart
    await _apply(r, calls, ops, merge=not (present and max_group_members > 0 and any(map(is_shared, subscriptions))))
    if ops.refused:
        await drop_refused(r, t, c, ops.refused, int(epoch))
        for f in ops.refused:
            subscriptions.pop(f, None)
    return ConnectResult(
        present=bool(present),
        epoch=int(epoch),
        prev_worker=_s(prev_worker),
        prev_epoch=int(prev_epoch),
        subscriptions=subscriptions,
        rel_ids=sorted(int(x) for x in rel),
        q2in_ids=_confirmed_q2in(q2in),
        sent=int(sent),
        gen=gen,
    )


async def session_disconnect(
    r: Any, t: str, c: str, epoch: int, *, now_ms: int, expiry: int | None = None, will_at: int = 0,
    untrack_worker: str = "", calls: Coalescer | None = None,
) -> DisconnectResult:
    """The connection ``epoch`` ended: keep the session offline until it expires, or remove it.

    ``will_at`` (ms): keep the stored will as a delayed will firing then (``will_take``), for an
    offline persistent session; 0 drops it (the connection already handled its will).
    ``untrack_worker``: in the same round trip, after the script, drop the session from that
    worker's reaper index (``wsess:<worker>``).
    ``calls``: send both steps through this coalescer (shared round trips with other sessions).
    """
    args: list[Arg] = [epoch, now_ms, "" if expiry is None else expiry, will_at or ""]
    ks = keys.session_keys(t, c)
    if untrack_worker:
        member = t + "\0" + c

        def queue(batch: Batch) -> None:
            batch.script(_DISCONNECT, ks, args)
            batch.pipe.srem(keys.worker_sessions(untrack_worker), member)

        res = (await _run(r, calls, queue))[0]
    elif calls is not None:
        (res,) = await calls.run(lambda batch: batch.script(_DISCONNECT, ks, args))
    else:
        res = await _DISCONNECT(r, ks, args)
    outcome = cast(DisconnectResult, _s(res[0]))  # session_disconnect.lua: exactly one of the three words
    ops = TenantOps(t)
    if outcome == "offline":
        ops.expiry_hint(c, int(res[1]))
        if int(res[2]):
            ops.will_hint(c, int(res[2]))
    elif outcome == "removed":
        gen = _s(res[1])
        for f in res[2:]:
            ops.route_drop(c, _s(f), gen)
        ops.index_remove(c, gen)
    await _apply(r, calls, ops, merge=True)  # the dropped routes are not needed here
    return outcome


async def _run(r: Any, calls: Coalescer | None, queue: Callable[[Batch], object]) -> list[Any]:
    """The results of the commands ``queue`` puts on a batch: through ``calls`` when given, else alone."""
    if calls is not None:
        return await calls.run(queue)
    batch = Batch(r)
    queue(batch)
    return await batch.execute()


async def _apply(r: Any, calls: Coalescer | None, ops: TenantOps, *, merge: bool) -> None:
    """``ops.apply``, through ``calls`` when given (sets ``ops.refused`` the same way); ``merge``: ``ops`` has no
    ``shared_put``, so it may share one ``tenant_apply`` with other callers (``Coalescer.merge_tenant``)."""
    if calls is None:
        await ops.apply(r)
    elif merge:
        await calls.merge_tenant(ops)
    elif ops:
        (res,) = await calls.run(ops.queue)
        ops.refused = [_s(f) for f in res[2]]


async def session_get(r: Any, t: str, c: str) -> dict[str, Any] | None:
    """The decoded session record plus ``subscriptions`` and ``inbox_len``; None when absent."""
    pipe = r.pipeline(transaction=False)
    pipe.hgetall(keys.sess(t, c))
    pipe.hgetall(keys.subs(t, c))
    pipe.xlen(keys.inbox(t, c))
    record, subs, inbox_len = await pipe.execute()
    if not record:
        return None
    out: dict[str, Any] = {_s(k): (v if k == b"will" else _s(v)) for k, v in record.items()}
    for name in RECORD_INT_FIELDS:
        if name in out:
            out[name] = int(out[name] or 0)
    out["persistent"] = out.get("persistent") == "1"
    out["online"] = bool(out.get("worker"))
    out["subscriptions"] = {_s(f): SubOpts.decode(o) for f, o in subs.items()}
    out["inbox_len"] = int(inbox_len)
    return out


async def session_extras(r: Any, t: str, c: str) -> dict[str, Any]:
    """Read-only state around a session record (for ``tidemq inspect``): outbound QoS 2 ids awaiting
    PUBCOMP (``rel``), inbound QoS 2 ids (``q2in``, ``d<pid>`` members included), the expire-at of an
    offline session (``sexp``) and the fire-at of a delayed will (``wills``), in ms (None when absent)."""
    pipe = r.pipeline(transaction=False)
    pipe.smembers(keys.rel(t, c))
    pipe.smembers(keys.q2in(t, c))
    pipe.hmget(keys.sess(t, c), "expire_at", "will_at")
    rel, q2in, (expire_at, will_at) = await pipe.execute()
    return {"rel": sorted(_s(x) for x in rel), "q2in": sorted(_s(x) for x in q2in),
            "expire_at": None if expire_at is None else int(expire_at),
            "will_at": None if will_at is None else int(will_at)}


async def session_owner(r: Any, t: str, c: str) -> tuple[str, int] | None:
    """``(worker, epoch)`` of the session (worker "" when offline); None when there is no session."""
    worker, epoch = await r.hmget(keys.sess(t, c), "worker", "epoch")
    if epoch is None:
        return None
    return _s(worker or b""), int(epoch)


async def sessions_page(r: Any, t: str, *, after: str = "", limit: int = 100) -> list[str]:
    """Session client ids of the tenant in lexical order, strictly after ``after``."""
    low = b"(" + after.encode() if after else b"-"
    ids = await r.zrangebylex(keys.sessidx(t), low, b"+", start=0, num=limit)
    return [_s(x) for x in ids]


async def sessions_count(r: Any, t: str) -> int:
    return int(await r.zcard(keys.sessidx(t)))


async def _expire_chunk(r: Any, t: str, mode: str, now_ms: int, threshold: int,
                        candidates: list[tuple[str, str]]) -> list[ExpiredSession]:
    """Run ``session_expire`` for each ``(client, hint score)`` (one pipeline over their slots), then
    the tenant's side in one ``tenant_apply``: routes and index entries of removed sessions, hints that
    no longer hold."""
    batch = Batch(r)
    for c, _at in candidates:
        batch.script(_EXPIRE, keys.session_keys(t, c), [mode, now_ms, threshold])
    results = await batch.execute()
    ops = TenantOps(t)
    removed: list[ExpiredSession] = []
    for (c, at), res in zip(candidates, results, strict=True):
        kind = _s(res[0])
        if kind == "removed":
            worker, epoch, gen, will_at = _s(res[1]), int(res[2]), _s(res[3]), int(res[4])
            for f in res[5:]:
                ops.route_drop(c, _s(f), gen)
            ops.index_remove(c, gen)
            ops.expiry_unhint(c, at if mode == "expired" else "")
            if will_at:
                ops.will_unhint(c, will_at)
            removed.append(ExpiredSession(c, worker, epoch))
        elif mode == "expired":
            if kind == "kept" and int(res[1]):
                ops.expiry_hint(c, int(res[1]))  # offline again with a later expiry: the hint follows
            else:
                ops.expiry_unhint(c, at)  # online, gone, or kept without expiry: nothing to expire here
        elif kind == "missing":
            ops.index_remove(c, at)
    await ops.apply(r)
    return removed


async def sessions_expire(
    r: Any, t: str, *, now_ms: int, older_than_s: int | None = None, chunk: int = EXPIRE_CHUNK
) -> list[ExpiredSession]:
    """Remove sessions of tenant ``t`` and return them (each re-checked atomically by the script).

    - default: offline persistent sessions whose expiry time has passed;
    - ``older_than_s > 0``: every offline session disconnected at least that long ago;
    - ``older_than_s == 0``: every session, online ones included (their ``worker`` is set: signal it).
    """
    removed: list[ExpiredSession] = []
    if older_than_s is None:
        while True:
            due = await r.zrangebyscore(keys.sexp(t), "-inf", now_ms, start=0, num=chunk, withscores=True)
            if not due:
                return removed
            removed.extend(await _expire_chunk(r, t, "expired", now_ms, 0,
                                               [(_s(c), str(int(score))) for c, score in due]))
    mode = "all" if older_than_s <= 0 else "idle"
    threshold = now_ms - older_than_s * 1000
    after = ""
    while True:
        page = await sessions_page(r, t, after=after, limit=chunk)
        if not page:
            return removed
        gens = await r.hmget(keys.sessgen(t), page)
        removed.extend(await _expire_chunk(r, t, mode, now_ms, threshold,
                                           [(c, _s(g) if g is not None else "") for c, g in zip(page, gens,
                                                                                                  strict=True)]))
        after = page[-1]


async def tenants_add(r: Any, t: str) -> None:
    """Remember tenant ``t`` in the global tenant set (idempotent)."""
    await r.sadd(keys.tenants(), t)


async def tenants_prune(r: Any, t: str) -> bool:
    """Forget tenant ``t`` in the sweeper's index when it has no session, no pending will and no retained
    message left (retained messages may expire: the sweeper drops them); True if it was removed. A session
    that connects meanwhile adds it again with its next connect (every CONNECT adds its tenant, and so does
    a retained message set through the API), and sessions ending on a worker also have that worker's expiry
    timer."""
    pipe = r.pipeline(transaction=False)
    pipe.zcard(keys.sessidx(t))
    pipe.zcard(keys.wills(t))
    pipe.exists(keys.retain(t))
    sessions, wills, retained = await pipe.execute()
    if int(sessions) or int(wills) or int(retained):
        return False
    return bool(await r.srem(keys.tenants(), t))


async def tenants_list(r: Any) -> list[str]:
    return sorted(_s(x) for x in await r.smembers(keys.tenants()))
