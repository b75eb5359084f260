"""Repair of a tenant's indexes after a crash between a session step and its tenant step.

The sweeper runs one ``Reconciler.step`` per tenant and sweep: a chunk of the
routes and a chunk of the session index, cursors kept between steps, so a
whole tenant is covered in ``max(routes / ROUTES_CHUNK, sessions /
SESSIONS_CHUNK)`` sweeps at a bounded cost per sweep. What it repairs
(docs/redis-keys.md, "Two slots"):

- a route of a session that is gone, or of an older generation of its
  client id, is dropped (never one of the current generation: a generation
  that ended never comes back, so this cannot race a SUBSCRIBE);
- an index entry of a session that is gone is dropped, one whose generation
  is not the session's is rewritten;
- an offline session's expiry and will hints are written again (ZADD of
  the record's own deadlines: idempotent, and a hint that no longer holds
  is dropped by the sweep that finds it).

Every change goes through ``tenant_apply``'s conditional operations, so a
session that changes meanwhile is never harmed by what was read before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tidemq.store import keys
from tidemq.store.indexes import SEP, TenantOps
from tidemq.store.models import text as _s

ROUTES_CHUNK = 200
SESSIONS_CHUNK = 100



@dataclass(slots=True)
class Repairs:
    """What one step changed (for logs and tests)."""

    routes_dropped: int = 0
    index_dropped: int = 0
    index_fixed: int = 0
    hints: int = 0

    def __bool__(self) -> bool:
        return bool(self.routes_dropped or self.index_dropped or self.index_fixed or self.hints)


@dataclass(slots=True)
class _Cursor:
    routes: int = 0  # HSCAN cursor of the tenant's routes (0: start a new pass)
    after: str = ""  # the last client id of the session index seen ("": start a new pass)


@dataclass
class Reconciler:
    """Per-tenant cursors of one process's reconciliation passes."""

    routes_chunk: int = ROUTES_CHUNK
    sessions_chunk: int = SESSIONS_CHUNK
    _cursors: dict[str, _Cursor] = field(default_factory=dict)

    def forget(self, tenant: str) -> None:
        self._cursors.pop(tenant, None)

    async def step(self, r: Any, t: str) -> Repairs:
        """Check the next chunk of ``t``'s routes and session index; apply the repairs."""
        cur = self._cursors.setdefault(t, _Cursor())
        ops = TenantOps(t)
        out = Repairs()
        cur.routes = await self._routes(r, t, cur.routes, ops, out)
        cur.after = await self._sessions(r, t, cur.after, ops, out)
        await ops.apply(r)
        return out

    async def _routes(self, r: Any, t: str, cursor: int, ops: TenantOps, out: Repairs) -> int:
        nxt, raw = await r.hscan(keys.routes(t), cursor, count=self.routes_chunk)
        by_client: dict[str, list[tuple[str, str]]] = {}
        for f, v in raw.items():
            client, _, topic_filter = _s(f).partition(SEP)
            by_client.setdefault(client, []).append((topic_filter, _s(v).rsplit(SEP, 1)[-1]))
        if by_client:
            pipe = r.pipeline(transaction=False)
            for client in by_client:
                pipe.hmget(keys.sess(t, client), "epoch", "gen")
            records = await pipe.execute()
            for (client, routes), (epoch, gen) in zip(by_client.items(), records, strict=True):
                live = _s(gen) if epoch is not None and gen is not None else None
                for topic_filter, route_gen in routes:
                    if route_gen and route_gen != live:  # the session is gone, or is a later one
                        ops.route_drop(client, topic_filter, route_gen)
                        out.routes_dropped += 1
        return int(nxt)

    async def _sessions(self, r: Any, t: str, after: str, ops: TenantOps, out: Repairs) -> str:
        low = b"(" + after.encode() if after else b"-"
        page = [_s(c) for c in await r.zrangebylex(keys.sessidx(t), low, b"+", start=0, num=self.sessions_chunk)]
        if not page:
            return ""  # the pass is over: the next one starts from the beginning
        indexed = await r.hmget(keys.sessgen(t), page)
        pipe = r.pipeline(transaction=False)
        for client in page:
            pipe.hmget(keys.sess(t, client), "epoch", "gen", "worker", "expire_at", "will_at")
        records = await pipe.execute()
        for client, index_gen, (epoch, gen, worker, expire_at, will_at) in zip(page, indexed, records, strict=True):
            if epoch is None:
                ops.index_remove(client, _s(index_gen) if index_gen is not None else "")
                out.index_dropped += 1
                continue
            if gen is not None and (index_gen is None or _s(index_gen) != _s(gen)):
                ops.index_add(client, _s(gen))
                out.index_fixed += 1
            if worker is not None and _s(worker) == "":
                if expire_at is not None:
                    ops.expiry_hint(client, int(expire_at))
                    out.hints += 1
                if will_at is not None:
                    ops.will_hint(client, int(will_at))
                    out.hints += 1
        return page[-1]
