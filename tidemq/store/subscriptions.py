"""Subscriptions of a session and the tenant's route table (what every worker's trie replicates).

``subs(t, c)`` (the session's slot) holds filter -> options for one session;
``routes(t)`` (the tenant's slot) holds one entry per subscription of the
tenant: field ``client \\0 filter``, value ``worker \\0 persistent \\0 opts \\0
gen`` (worker is the owner of a transient session; "" for a persistent one,
whose messages go to its inbox and whose owner the inbox script reports; gen
the generation of the session, checked when the route is used). The session
is written first, the route second, and both before the SUBACK
(docs/redis-keys.md "Two slots"); ``rver(t)`` is bumped whenever a route
changes, so a worker trusts its trie replica only while the version it
loaded is still current.

``MaxSharedGroupMembers`` is checked where the route is written: a shared
filter's route goes through ``tenant_apply``'s ``G`` op, which counts the
shared filter's members (``shcount(t)``) and writes the route in one script on
the tenant's slot, so two joins on two workers cannot both take the last
place. The session step still comes first (it is the truth, "Two slots"); a
refused filter is then taken out of the session again (``unsubscribe``, at the
same epoch) before the caller answers. A crash between the steps leaves a
subscription without a route and without a SUBACK: nothing delivers through
it, and the session's next CONNECT re-puts its routes through the same check
(``sessions.session_connect(max_group_members=...)``), dropping it from the
session when the group is full. No route is ever written past the limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tidemq.routing.trie import Route
from tidemq.store import keys
from tidemq.store.indexes import SEP, TenantOps, route_value
from tidemq.store.models import NoSession, SubOpts, SubscriptionLimit
from tidemq.store.models import text as _s
from tidemq.store.scripts import get

_SUBSCRIBE = get("subscribe")
_UNSUBSCRIBE = get("unsubscribe")

def _check(res: Any, t: str, c: str) -> list[Any]:
    if res == -3:
        raise SubscriptionLimit(f"too many topic filters: tenant={t!r} client={c!r}")
    if isinstance(res, int):
        why = "no session" if res == -1 else "session owned by a newer connection"
        raise NoSession(f"{why}: tenant={t!r} client={c!r}")
    return list(res)



class SharedGroupFull(SubscriptionLimit):
    """The shared subscription has ``MaxSharedGroupMembers`` members already (nothing was kept)."""


@dataclass(slots=True)
class Subscribed:
    """Per filter whether it existed before; and the shared filters refused because their group is full
    (taken out of the session again: they are not subscriptions)."""

    existed: list[bool]
    refused: set[str] = field(default_factory=set)


async def subscribe(
    r: Any, t: str, c: str, subs: Sequence[tuple[str, SubOpts]], *, epoch: int | None = None,
    max_filters: int | None = None, max_group_members: int = 0,
) -> list[bool]:
    """Add or replace subscriptions; returns, per filter, whether it existed before.

    Raises NoSession when the session is absent (or ``epoch`` no longer owns it),
    SubscriptionLimit (nothing written) when the new filters would take the session past
    ``max_filters`` — checked atomically with the write — and SharedGroupFull when a shared
    filter's group has ``max_group_members`` members (> 0; that filter is not kept).
    It returns once every worker's route cache has the new routes (``TenantOps.settle``), so the caller
    may acknowledge.
    """
    res = await subscribe_checked(r, t, c, subs, epoch=epoch, max_filters=max_filters,
                                  max_group_members=max_group_members)
    if res.refused:
        raise SharedGroupFull(f"shared group full: tenant={t!r} client={c!r} filters={sorted(res.refused)}")
    return res.existed


async def subscribe_checked(
    r: Any, t: str, c: str, subs: Sequence[tuple[str, SubOpts]], *, epoch: int | None = None,
    max_filters: int | None = None, max_group_members: int = 0,
) -> Subscribed:
    """``subscribe``, reporting the shared filters refused by ``max_group_members`` instead of raising."""
    if not subs:
        return Subscribed([])
    args: list[Any] = ["" if epoch is None else epoch, "" if max_filters is None else max_filters]
    for topic_filter, opts in subs:
        args.append(topic_filter)
        args.append(opts.encode())
    res = _check(await _SUBSCRIBE(r, [keys.sess(t, c), keys.subs(t, c)], args), t, c)
    worker, persistent, gen = _s(res[0]), _s(res[1]) == "1", _s(res[2])
    ops = TenantOps(t)  # the routes, second, before the caller acknowledges
    for topic_filter, opts in subs:
        ops.route_put_checked(c, topic_filter, route_value(worker, persistent, opts.encode(), gen),
                              max_group_members)
    await ops.apply(r)
    if ops.refused:  # not a member: the subscription goes again (at the same epoch: never a newer owner's)
        await drop_refused(r, t, c, ops.refused, epoch)
    return Subscribed([bool(x) for x in res[3:]], set(ops.refused))


async def drop_refused(r: Any, t: str, c: str, filters: Sequence[str], epoch: int | None) -> None:
    """Take subscriptions whose route a full shared group refused out of the session (no route exists
    for them, so there is nothing to drop on the tenant's side). When a newer connection owns the
    session now (the script answers -2 and changes nothing), that connection's CONNECT re-checked
    them itself."""
    await _UNSUBSCRIBE(r, [keys.sess(t, c), keys.subs(t, c)], ["" if epoch is None else epoch, *filters])


async def unsubscribe(
    r: Any, t: str, c: str, filters: Iterable[str], *, epoch: int | None = None, gen: str = "",
) -> list[bool]:
    """Remove subscriptions; returns, per filter, whether it existed. Raises NoSession.

    ``gen``: the session's generation when the caller knows it (the connection that owns the session:
    one round trip less); else it is read first."""
    filters = list(filters)
    if not filters:
        return []
    if not gen:
        stored = await r.hget(keys.sess(t, c), "gen")
        if stored is None:
            raise NoSession(f"no session: tenant={t!r} client={c!r}")
        gen = _s(stored)
    # the routes first (only this generation's), the subscriptions second: a failure in between leaves a
    # subscription without its route (no UNSUBACK was sent; the session's next connect puts it back),
    # never a route without a subscription
    ops = TenantOps(t)
    for topic_filter in filters:
        ops.route_drop(c, topic_filter, gen)
    dropped = await ops.apply(r)
    try:
        res = _check(await _UNSUBSCRIBE(r, [keys.sess(t, c), keys.subs(t, c)],
                                        ["" if epoch is None else epoch, *filters]), t, c)
    except NoSession:  # another connection owns the session now (or it is gone): its routes go back
        undo = TenantOps(t)
        for topic_filter, value in dropped.items():
            undo.route_put(c, topic_filter, value)
        await undo.apply(r)
        raise
    return [bool(x) for x in res[1:]]


async def route_versions(r: Any, tenants: Sequence[str]) -> dict[str, int]:
    """Current route version of each tenant (0 when never set), in one pipelined round trip."""
    if not tenants:
        return {}
    pipe = r.pipeline(transaction=False)
    for t in tenants:
        pipe.get(keys.rver(t))
    values = await pipe.execute()
    return {t: int(v or 0) for t, v in zip(tenants, values, strict=True)}


def decode_route(field: bytes, value: bytes) -> Route:
    client, _, topic_filter = field.decode().partition(SEP)
    return decode_route_str(client, topic_filter, value.decode())


def decode_route_str(client: str, topic_filter: str, value: str) -> Route:
    """The route of ``client`` for ``topic_filter`` from its stored value (see ``route_value``)."""
    worker, persistent, raw_opts, *rest = value.split(SEP, 3)
    opts = SubOpts.decode(raw_opts)
    return Route(
        client_id=client,
        topic_filter=topic_filter,
        qos=opts.qos,
        no_local=opts.no_local,
        retain_as_published=opts.retain_as_published,
        retain_handling=opts.retain_handling,
        subscription_id=opts.subscription_id,
        worker=worker,
        persistent=persistent == "1",
        gen=rest[0] if rest else "",
    )


async def load_routes(r: Any, t: str) -> tuple[int, list[Route]]:
    """``(version, routes)`` of tenant ``t``.

    The version is read before the routes (same pipeline, same node, in order):
    a change in between makes the version look older than the routes, which
    only costs one more reload later, never a missed route.
    """
    pipe = r.pipeline(transaction=False)
    pipe.get(keys.rver(t))
    pipe.hgetall(keys.routes(t))
    version, raw = await pipe.execute()
    return int(version or 0), [decode_route(f, v) for f, v in raw.items()]
