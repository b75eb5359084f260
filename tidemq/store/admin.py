"""Store reads and clean-ups that only the admin API needs: scoped owner lookups, pages, inbox state.

Everything here is either a read (pipelined, one round trip per page, never
one per session) or a change made by one Lua script that re-checks what it
deletes (``admin_retain_delete``), so a concurrent client write is never
undone. Sessions are found through the tenant's session index; owners are
what the session records say (``worker`` non-empty = online on that worker).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tidemq.message import MAGIC
from tidemq.store import keys
from tidemq.store.models import text as _s
from tidemq.store.scripts import get, load_all
from tidemq.store.sessions import sessions_page, tenants_list

_RETAIN_DELETE = get("admin_retain_delete")

PAGE = 500
RETAIN_CHUNK = 200
SUMMARY_FIELDS = ("user", "worker", "persistent", "ver", "connected_at", "disconnected_at", "expiry", "epoch")



def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True, slots=True)
class Owner:
    client_id: str
    user_id: str
    worker: str
    epoch: int = 0  # the owning connection (a kill signal closes that one, not a later reconnect)


async def online_owners(
    r: Any, t: str, *, user: str | None = None, name: str | None = None, page: int = PAGE
) -> list[Owner]:
    """Online sessions of tenant ``t`` (narrowed to ``user``, or to the session ``name``) and their owner
    workers; ``Owner.client_id`` is the session's name (what the workers' registries hold)."""
    if name is not None:
        worker, u, epoch = await r.hmget(keys.sess(t, name), "worker", "user", "epoch")
        if worker and (user is None or _s(u or b"") == user):
            return [Owner(name, _s(u or b""), _s(worker), int(epoch or 0))]
        return []
    out: list[Owner] = []
    after = ""
    while True:
        ids = await sessions_page(r, t, after=after, limit=page)
        if not ids:
            return out
        pipe = r.pipeline(transaction=False)
        for c in ids:
            pipe.hmget(keys.sess(t, c), "worker", "user", "epoch")
        for c, (worker, u, epoch) in zip(ids, await pipe.execute(), strict=True):
            uid = _s(u or b"")
            if worker and (user is None or uid == user):
                out.append(Owner(c, uid, _s(worker), int(epoch or 0)))
        if len(ids) < page:
            return out
        after = ids[-1]


async def session_summaries(r: Any, t: str, client_ids: Sequence[str]) -> list[dict[str, Any]]:
    """One record summary per client id that still has a record (one pipelined round trip)."""
    if not client_ids:
        return []
    pipe = r.pipeline(transaction=False)
    for c in client_ids:
        pipe.hmget(keys.sess(t, c), *SUMMARY_FIELDS)
    out: list[dict[str, Any]] = []
    for c, values in zip(client_ids, await pipe.execute(), strict=True):
        rec = dict(zip(SUMMARY_FIELDS, values, strict=True))
        if rec["epoch"] is None:
            continue  # removed since the index was read
        rec = {k: _s(v) if v is not None else "" for k, v in rec.items()}
        out.append({
            "client_id": c,
            "user": rec["user"],
            "worker": rec["worker"],
            "persistent": rec["persistent"] == "1",
            "ver": _int(rec["ver"]),
            "connected_at": _int(rec["connected_at"]),
            "disconnected_at": _int(rec["disconnected_at"]),
            "expiry": _int(rec["expiry"]),
            "epoch": _int(rec["epoch"]),
        })
    return out


async def sessions_list(r: Any, t: str, *, after: str = "", limit: int = 100) -> tuple[list[dict[str, Any]], str]:
    """A page of session summaries in client-id order and the cursor of the next page ("" at the end)."""
    ids = await sessions_page(r, t, after=after, limit=limit)
    items = await session_summaries(r, t, ids)
    return items, (ids[-1] if len(ids) == limit else "")


async def inbox_state(r: Any, t: str, c: str, sent: int, *, cap: int = 65535) -> tuple[int, int]:
    """``(queued, inflight)`` of a session's inbox: entries not yet sent, and sent but unacknowledged
    (entries with seq <= ``sent`` plus QoS 2 releases awaiting PUBCOMP)."""
    pipe = r.pipeline(transaction=False)
    pipe.xlen(keys.inbox(t, c))
    pipe.scard(keys.rel(t, c))
    if sent > 0:
        pipe.xrange(keys.inbox(t, c), "-", f"{sent}-0", count=cap)
    res = await pipe.execute()
    total, rel = int(res[0]), int(res[1])
    sent_entries = len(res[2]) if sent > 0 else 0
    return total - sent_entries, sent_entries + rel


def blob_header(blob: bytes) -> bytes:
    """The ``M1`` + length + header prefix of a message blob (what identifies one retained version)."""
    if blob[:2] != MAGIC or len(blob) < 6:
        return blob
    n = int.from_bytes(blob[2:6], "big")
    return blob[: 6 + n]


async def retain_delete_if_same(r: Any, t: str, items: Sequence[tuple[str, bytes]]) -> int:
    """Delete each ``(topic, blob)`` retained message unless it was replaced since it was read."""
    total = 0
    for i in range(0, len(items), RETAIN_CHUNK):
        args: list[Any] = []
        for topic, blob in items[i : i + RETAIN_CHUNK]:
            args.append(topic)
            args.append(blob_header(blob))
        total += int(await _RETAIN_DELETE(r, [keys.retain(t), keys.retain_index(t)], args))
    return total


async def scripts_loaded(r: Any) -> bool:
    """True when every Lua script is cached on the server (SCRIPT EXISTS)."""
    from tidemq.store.scripts import SCRIPTS

    shas = [s.sha for s in SCRIPTS.values()]
    found = await r.script_exists(*shas)
    if isinstance(found, dict):  # a cluster client may answer per node
        found = [all(v) for v in zip(*found.values(), strict=False)]
    return all(bool(x) for x in found)


async def ensure_scripts(r: Any) -> None:
    """SCRIPT LOAD every script (idempotent; NOSCRIPT would reload them on demand anyway)."""
    await load_all(r)


async def inbox_depths(r: Any, *, max_sessions: int = 10000, page: int = PAGE) -> dict[str, int]:
    """Queued inbox entries per tenant (XLEN summed over sessions), reading at most ``max_sessions``
    sessions in all (a bounded scrape; tenants past the bound are left out, never guessed)."""
    out: dict[str, int] = {}
    budget = max_sessions
    for t in sorted(await tenants_list(r)):
        after, total = "", 0
        while budget > 0:
            ids = await sessions_page(r, t, after=after, limit=min(page, budget))
            if not ids:
                break
            pipe = r.pipeline(transaction=False)
            for c in ids:
                pipe.xlen(keys.inbox(t, c))
            total += sum(int(n) for n in await pipe.execute())
            budget -= len(ids)
            after = ids[-1]
        out[t] = total
        if budget <= 0:
            break
    return out
