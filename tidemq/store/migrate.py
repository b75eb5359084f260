"""The key-layout migration: sessions keyed by their tenant (layout 1) to sessions with their own tag (2).

Layout 1 (TideMQ before per-session tags) named a session by its client id
and kept every key of a tenant on the tenant's slot:
``tidemq:<kind>:{<tenant>}:<client>``. Layout 2 names a session by its user
and client id, ``<user>/<client>`` (sessions of different users are
independent, as in BifroMQ), and gives each session its own hash tag,
``tidemq:<kind>:{<tenant>|<user>/<client>}``, so one tenant spreads over a
cluster (docs/redis-keys.md). ``migrate`` moves the five per-session keys of
every session listed in a tenant's session index (``DUMP``/``RESTORE``:
works across slots and nodes) to its new name, renames its entries in the
tenant's indexes and routes, gives each record the fields layout 2 reads
(``gen``, ``expire_at``), writes the generation into every route, fills the
generation index (``sessgen``), drops the tenant epoch counter, and finally
writes the layout marker ``tidemq:layout``.

Run it with every worker and API node of the old version stopped
(``tidemq migrate``, docs/deploy.md "Upgrading"); processes of this version
refuse to start on a store that still needs it. It is idempotent: a run
that was interrupted is simply run again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tidemq.store import keys
from tidemq.store.indexes import SEP
from tidemq.store.models import text as _s

LAYOUT = 2
_KINDS = ("sess", "subs", "inbox", "rel", "q2in")


class MigrationNeeded(RuntimeError):
    """The store holds sessions in an older key layout: run ``tidemq migrate`` first."""


def layout_key() -> str:
    return keys.PREFIX + "layout"


def _old_key(kind: str, t: str, c: str) -> str:
    return f"{keys.PREFIX}{kind}:{keys.tag(t)}:{c}"



@dataclass(slots=True)
class MigrationReport:
    tenants: int = 0
    sessions: int = 0
    keys_moved: int = 0
    routes_rewritten: int = 0
    routes_dropped: int = 0


async def needs_migration(r: Any) -> bool:
    """True when the store has layout-1 sessions and no layout marker (a fresh store needs nothing)."""
    if await r.get(layout_key()) is not None:
        return False
    for t in (_s(x) for x in await r.smembers(keys.tenants())):
        first = await r.zrange(keys.sessidx(t), 0, 0)
        if first and await r.exists(_old_key("sess", t, _s(first[0]))):
            return True
        if await r.exists(f"{keys.PREFIX}epoch:{keys.tag(t)}"):
            return True
    return False


async def ensure_layout(r: Any) -> None:
    """Raise ``MigrationNeeded`` when the store must be migrated; mark a fresh store with this layout."""
    if await needs_migration(r):
        raise MigrationNeeded("the Redis store holds sessions in the old key layout: stop every TideMQ process "
                              "of the old version and run `tidemq migrate` (docs/deploy.md, Upgrading)")
    await r.set(layout_key(), LAYOUT, nx=True)


async def _move(r: Any, old: str, new: str) -> bool:
    blob = await r.dump(old)
    if blob is None:
        return False
    await r.restore(new, 0, blob, replace=True)
    await r.delete(old)
    return True


async def _rename_member(r: Any, key: str, old: str, new: str) -> None:
    score = await r.zscore(key, old)
    if score is not None:
        await r.zadd(key, {new: score})
        await r.zrem(key, old)


async def migrate(r: Any) -> MigrationReport:
    """Move every layout-1 session to layout 2 (see the module docstring); idempotent."""
    report = MigrationReport()
    for t in sorted(_s(x) for x in await r.smembers(keys.tenants())):
        report.tenants += 1
        renamed: dict[str, str] = {}  # layout-1 client id -> the session's name "<user>/<client id>"
        for m in [_s(c) for c in await r.zrange(keys.sessidx(t), 0, -1)]:
            user = await r.hget(_old_key("sess", t, m), "user")
            if user is None:
                continue  # moved by an earlier run (or written by this version): already a name
            name = keys.session_name(_s(user), m)
            renamed[m] = name
            moved = [await _move(r, _old_key(kind, t, m), getattr(keys, kind)(t, name)) for kind in _KINDS]
            report.keys_moved += sum(moved)
            await r.zadd(keys.sessidx(t), {name: 0})
            await r.zrem(keys.sessidx(t), m)
            await _rename_member(r, keys.sexp(t), m, name)
            await _rename_member(r, keys.wills(t), m, name)
        gens: dict[str, str] = {}
        for name in [_s(c) for c in await r.zrange(keys.sessidx(t), 0, -1)]:
            epoch, gen, worker = await r.hmget(keys.sess(t, name), "epoch", "gen", "worker")
            if epoch is None:
                continue
            report.sessions += 1
            gens[name] = _s(gen) if gen is not None else _s(epoch)
            await r.hset(keys.sess(t, name), "gen", gens[name])
            expire_at = await r.zscore(keys.sexp(t), name)
            if worker is not None and _s(worker) == "" and expire_at is not None:
                await r.hset(keys.sess(t, name), "expire_at", str(int(expire_at)))
            await r.hset(keys.sessgen(t), name, gens[name])
        routes = await r.hgetall(keys.routes(t))
        changed = False
        for f, v in routes.items():
            client, _, topic_filter = _s(f).partition(SEP)
            parts = _s(v).split(SEP)
            name = renamed.get(client, client)
            if name not in gens:
                await r.hdel(keys.routes(t), f)
                report.routes_dropped += 1
                changed = True
            elif name != client or len(parts) == 3:
                await r.hset(keys.routes(t), name + SEP + topic_filter, SEP.join([*parts[:3], gens[name]]))
                if name != client:
                    await r.hdel(keys.routes(t), f)
                report.routes_rewritten += 1
                changed = True
        if changed:
            await r.incr(keys.rver(t))
        await r.delete(f"{keys.PREFIX}epoch:{keys.tag(t)}")
    await r.set(layout_key(), LAYOUT)
    return report
