"""The tenant's indexes, written after the session step that made them necessary (``lua/tenant_apply.lua``).

A session's keys live on the session's slot and a tenant's indexes (routes,
the session index, expiry and will hints) on the tenant's slot, so an
operation that changes both is two steps. The rule (docs/redis-keys.md,
"Two slots"): the session is written first and is the truth; the indexes
follow and are verified against the session wherever they are used:

- a route carries the generation of the session it was written for, and an
  inbox append skips a target whose session is missing or of another
  generation (``inbox_append_batch``);
- the expiry and will hints are re-checked against the record
  (``session_expire``, ``will_take``), and removed only when their score is
  still the one read;
- the session index entry is removed only for the generation that ended.

A crash between the steps leaves an index that says too much (harmless, and
pruned by ``reconcile``) or, for a SUBSCRIBE that was never acknowledged, a
subscription without its route (re-put at the session's next connect and by
``reconcile``).
"""

from __future__ import annotations

from typing import Any

from tidemq.store import keys, route_watch
from tidemq.store.models import text as _s
from tidemq.store.route_watch import Notice
from tidemq.store.scripts import Arg, Batch, get

_APPLY = get("tenant_apply")

SEP = "\0"


def route_value(worker: str, persistent: bool, opts: str, gen: str) -> str:
    """A route's value: ``worker \\0 persistent \\0 opts \\0 gen`` (worker "" for a persistent session)."""
    return f"{'' if persistent else worker}{SEP}{'1' if persistent else '0'}{SEP}{opts}{SEP}{gen}"


def is_shared(topic_filter: str) -> bool:
    """A shared subscription's filter (``$share/<group>/<f>``, ``$oshare/<group>/<f>``), as tenant_apply tells."""
    return topic_filter.startswith(("$share/", "$oshare/"))


class TenantOps:
    """Changes to one tenant's indexes, applied by one ``tenant_apply`` call (see its header)."""

    __slots__ = ("args", "notice", "refused", "tenant", "writer")

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.writer = ""  # set by ``queue``: the node whose route watch collects the acknowledgements
        self.args: list[Arg] = []
        self.refused: list[str] = []  # after ``apply``: the filters a ``shared_put`` was refused for
        self.notice: Notice | None = None  # after ``apply``: the route change, when a watch waited for it

    def __bool__(self) -> bool:
        return bool(self.args)

    def route_put(self, client: str, topic_filter: str, value: str) -> None:
        self.args += ["P", client, topic_filter, value]

    def shared_put(self, client: str, topic_filter: str, value: str, max_members: int) -> None:
        """Put the route of a shared filter only if ``client`` is a member already or the shared filter has
        fewer than ``max_members`` members (MaxSharedGroupMembers), counted in Redis with the write."""
        self.args += ["G", client, topic_filter, value, max_members]

    def route_put_checked(self, client: str, topic_filter: str, value: str, max_members: int) -> None:
        """``shared_put`` for a shared filter when ``max_members`` is set (> 0), else ``route_put``."""
        if max_members > 0 and is_shared(topic_filter):
            self.shared_put(client, topic_filter, value, max_members)
        else:
            self.route_put(client, topic_filter, value)

    def route_drop(self, client: str, topic_filter: str, gen: str) -> None:
        """Drop the route if it still belongs to generation ``gen`` ("" = whatever it holds)."""
        self.args += ["D", client, topic_filter, gen]

    def index_add(self, client: str, gen: str) -> None:
        self.args += ["A", client, gen]

    def index_remove(self, client: str, gen: str) -> None:
        self.args += ["R", client, gen]

    def expiry_hint(self, client: str, at_ms: int) -> None:
        self.args += ["X", client, at_ms]

    def expiry_unhint(self, client: str, at_ms: int | str) -> None:
        self.args += ["x", client, at_ms]

    def will_hint(self, client: str, at_ms: int) -> None:
        self.args += ["W", client, at_ms]

    def will_unhint(self, client: str, at_ms: int | str) -> None:
        self.args += ["w", client, at_ms]

    def queue(self, batch: Batch) -> int:
        """Queue the call on ``batch``; returns its index in the results."""
        t = self.tenant
        ks = [keys.routes(t), keys.rver(t), keys.sessidx(t), keys.sessgen(t), keys.sexp(t), keys.wills(t),
              keys.shared_members(t)]
        args = self.args
        if route_watch.enabled(batch.client):  # route caches are told of every change (route_watch.py)
            watch = route_watch.watch_of(batch.client)  # this process's watch collects the acknowledgements
            self.writer = watch.node_id if watch is not None else ""
            ks.append(keys.route_watchers())
            args = [*args, "N", keys.route_channel(), t, self.writer]
        return batch.script(_APPLY, ks, args)

    async def settle(self, r: Any, reply: list[Any]) -> None:
        """After a ``tenant_apply`` reply: when the routes changed, note the change (``self.notice``) and wait
        until every worker's route cache dropped the old routes (``RouteWatch.settle``), so whatever the caller
        acknowledges next (a SUBACK, a CONNACK, an API answer) is never followed by a stale route."""
        if len(reply) > 3:  # sent with this process's watch as the writer (``queue``): it collects the acks
            self.notice = Notice.parse(self.tenant, reply[3:])
            watch = route_watch.watch_of(r)
            if watch is not None:
                await watch.settle(self.notice)

    async def apply(self, r: Any) -> dict[str, str]:
        """Apply the changes (nothing when there are none); returns the routes dropped, filter -> former
        value (to put back when the step that follows fails). The filters a ``shared_put`` was refused
        for are left in ``self.refused``."""
        if not self.args:
            return {}
        batch = Batch(r)
        self.queue(batch)
        reply = (await batch.execute())[0]
        _changed, dropped, refused = reply[:3]
        await self.settle(r, reply)
        self.refused = [_s(f) for f in refused]
        return {_s(dropped[i]): _s(dropped[i + 1]) for i in range(0, len(dropped) - 1, 2)}

