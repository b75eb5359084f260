"""A tenant's cluster-wide connection limits in Redis: ``TotalConnections`` and ``TotalConnectPerSecond``.

Both are leases, so a CONNECT under the limit costs no round trip of its own
(the worker side is ``workers/services.py``, ``ClusterAdmission``):

- connections: every worker keeps its own field in ``tenant_connections(t)``,
  ``<held>:<valid until ms>``, where *held* is the connections open on it
  plus the places it leased and has not used yet. ``conns_sync`` writes the
  field and sums the other live fields in one script (``tenant_conns``), and
  with ``want`` > 0 leases up to that many more places, never past the limit:
  the fields' sum is at most the limit at every moment. A field is valid for
  ``ttl_ms`` (the lease TTL) and renewed every lease period; one that was not
  renewed (its worker died or lost Redis) stops counting and is deleted by
  the next call, so no reaper is needed.
- connect rate: ``tenant_connect_rate(t)`` counts the CONNECTs of the
  current second of the Redis clock (``tenant_crate``); ``rate_lease``
  counts what the worker admitted without a place (``taken``) and leases up
  to ``want`` more places of that second, valid for ``ms_left``.

Every script touches one key on the tenant's slot. The Redis clock (``TIME``)
decides validity and seconds, so workers' clocks never need to agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tidemq.store import keys
from tidemq.store.scripts import Batch, get

_CONNS = get("tenant_conns")
_CRATE = get("tenant_crate")


@dataclass(frozen=True, slots=True)
class ConnsAnswer:
    granted: int  # places leased now (already part of the worker's field)
    others: int  # connections and places the other live workers hold
    workers: int  # live workers holding a field, this one included


@dataclass(frozen=True, slots=True)
class RateAnswer:
    granted: int  # places of the current second leased now
    count: int  # the second's count, granted and taken included
    ms_left: int  # until the second ends: the grant is valid that long


@dataclass(frozen=True, slots=True)
class ConnsRequest:
    tenant: str
    held: int
    want: int
    limit: int


async def conns_sync(r: Any, worker: str, requests: Sequence[ConnsRequest], *, ttl_ms: int) -> list[ConnsAnswer]:
    """Write this worker's field of each tenant (and lease ``want`` places), in one pipelined round trip."""
    if not requests:
        return []
    batch = Batch(r)
    for q in requests:
        batch.script(_CONNS, [keys.tenant_connections(q.tenant)], [worker, q.held, q.want, q.limit, ttl_ms])
    return [ConnsAnswer(int(g), int(o), int(w)) for g, o, w in await batch.execute()]


async def conns_total(r: Any, t: str, *, now_ms: int) -> int:
    """Connections (and leased places) the live workers hold for ``t`` (read-only: tests, inspection)."""
    total = 0
    for raw in (await r.hgetall(keys.tenant_connections(t))).values():
        held, _, until = (raw.decode() if isinstance(raw, bytes) else str(raw)).partition(":")
        if until.isdigit() and int(until) > now_ms:
            total += int(held)
    return total


async def live_workers(r: Any) -> int:
    """Workers in the heartbeat set (sizes the leases: a share of the limit per worker)."""
    return int(await r.zcard(keys.workers()))


async def rate_lease(r: Any, t: str, *, want: int, limit: int, taken: int) -> RateAnswer:
    """Count ``taken`` CONNECTs of ``t`` in the current second and lease up to ``want`` more places of it."""
    granted, count, ms_left = await _CRATE(r, [keys.tenant_connect_rate(t)], [want, limit, taken])
    return RateAnswer(int(granted), int(count), int(ms_left))
