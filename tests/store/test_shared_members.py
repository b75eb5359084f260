"""MaxSharedGroupMembers in Redis: tenant_apply's G op counts a shared filter's members with the route's write.

Runs on a single node, the cluster and the embedded store (the ``r`` fixture). Covers the limit, concurrent
joins (exactly the limit get in), the count following unsubscribe, session removal and the reconciler's drop,
the one-time count of routes written before the count existed, and the crash between SUBSCRIBE's two steps
(a subscription without its route is re-checked at the next CONNECT, not trusted).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.store.helpers import NOW, connect
from tidemq.store import SubOpts, keys, load_routes, session_disconnect, session_get, subscribe, unsubscribe
from tidemq.store.indexes import TenantOps, route_value
from tidemq.store.scripts import get
from tidemq.store.subscriptions import SharedGroupFull, subscribe_checked

T = "shm-tenant"
G = "$share/g/sensors/#"


async def members(r: Any, topic_filter: str = G) -> set[str]:
    _, routes = await load_routes(r, T)
    return {x.client_id for x in routes if x.topic_filter == topic_filter}


async def count(r: Any, topic_filter: str = G) -> int:
    raw = await r.hget(keys.shared_members(T), topic_filter)
    return int(raw or 0)


async def test_limit_refuses_a_newcomer_and_keeps_nothing(r: Any) -> None:
    for c in ("a", "b", "c"):
        await connect(r, T, c)
    assert await subscribe(r, T, "a", [(G, SubOpts(qos=1))], max_group_members=2) == [False]
    assert await subscribe(r, T, "b", [(G, SubOpts())], max_group_members=2) == [False]
    with pytest.raises(SharedGroupFull):
        await subscribe(r, T, "c", [(G, SubOpts())], max_group_members=2)
    assert G not in (await session_get(r, T, "c"))["subscriptions"]  # taken out of the session again
    assert await members(r) == {"a", "b"} and await count(r) == 2
    # a member may re-subscribe (new options); other groups, other filters and the $oshare kind are separate
    assert await subscribe(r, T, "a", [(G, SubOpts(qos=2))], max_group_members=2) == [True]
    res = await subscribe_checked(r, T, "c", [("$share/h/sensors/#", SubOpts()), (G, SubOpts()),
                                              ("$oshare/g/sensors/#", SubOpts()), ("plain/#", SubOpts())],
                                  max_group_members=2)
    assert res.refused == {G} and res.existed == [False, False, False, False]
    assert set((await session_get(r, T, "c"))["subscriptions"]) == {"$share/h/sensors/#", "$oshare/g/sensors/#",
                                                                     "plain/#"}
    assert await count(r, "$share/h/sensors/#") == 1 and await count(r, "plain/#") == 0
    # unlimited (0) writes plain routes, still counted
    await subscribe(r, T, "c", [(G, SubOpts())])
    assert await count(r) == 3


async def test_concurrent_joins_take_exactly_the_free_places(r: Any) -> None:
    names = [f"j{i}" for i in range(12)]
    for c in names:
        await connect(r, T, c)
    results = await asyncio.gather(*(subscribe_checked(r, T, c, [(G, SubOpts())], max_group_members=5)
                                     for c in names))
    joined = {c for c, res in zip(names, results, strict=True) if not res.refused}
    assert len(joined) == 5
    assert await members(r) == joined and await count(r) == 5
    for c in set(names) - joined:
        assert G not in (await session_get(r, T, c))["subscriptions"]


async def test_count_follows_unsubscribe_and_session_removal(r: Any) -> None:
    a = await connect(r, T, "a", persistent=False, expiry=0, clean_start=True)
    await connect(r, T, "b")
    await connect(r, T, "c")
    await subscribe(r, T, "a", [(G, SubOpts())], max_group_members=2)
    await subscribe(r, T, "b", [(G, SubOpts())], max_group_members=2)
    assert (await subscribe_checked(r, T, "c", [(G, SubOpts())], max_group_members=2)).refused == {G}
    await unsubscribe(r, T, "b", [G])
    assert await count(r) == 1
    assert await unsubscribe(r, T, "b", [G]) == [False]  # twice: counted once
    assert await count(r) == 1
    assert (await subscribe_checked(r, T, "c", [(G, SubOpts())], max_group_members=2)).refused == set()
    await session_disconnect(r, T, "a", a.epoch, now_ms=NOW)  # transient: removed with its routes (D op)
    assert await members(r) == {"c"} and await count(r) == 1
    await subscribe(r, T, "b", [(G, SubOpts())], max_group_members=2)
    assert await count(r) == 2


async def test_routes_written_before_the_count_are_counted_once(r: Any) -> None:
    ops = TenantOps(T)  # routes as an older version wrote them: no count kept
    for c in ("old1", "old2"):
        res = await connect(r, T, c)
        gen = (await session_get(r, T, c))["gen"]
        await r.hset(keys.subs(T, c), G, SubOpts().encode())
        ops.route_put(c, G, route_value("", True, SubOpts().encode(), gen))
        assert res.epoch
    await ops.apply(r)
    await r.delete(keys.shared_members(T))
    await connect(r, T, "new")
    assert (await subscribe_checked(r, T, "new", [(G, SubOpts())], max_group_members=2)).refused == {G}
    assert await count(r) == 2 and await r.hget(keys.shared_members(T), keys.SHARED_BUILT) == b"1"


async def test_a_crash_between_the_steps_is_rechecked_at_connect(r: Any) -> None:
    """The session step ran (the subscription is in the session) but the tenant step did not: no route, no
    SUBACK. The next CONNECT routes it only through the group check, and drops it from the session if full."""
    lost = await connect(r, T, "lost")
    await get("subscribe")(r, [keys.sess(T, "lost"), keys.subs(T, "lost")], [lost.epoch, "", G, SubOpts().encode()])
    assert "lost" not in await members(r)
    for c in ("m1", "m2"):
        await connect(r, T, c)
        await subscribe(r, T, c, [(G, SubOpts())], max_group_members=2)
    again = await connect(r, T, "lost", max_group_members=2)  # resume: group full
    assert G not in again.subscriptions
    assert G not in (await session_get(r, T, "lost"))["subscriptions"]
    assert await members(r) == {"m1", "m2"} and await count(r) == 2
    # with room, the same situation comes back as a route
    await get("subscribe")(r, [keys.sess(T, "lost"), keys.subs(T, "lost")], [again.epoch, "", G,
                                                                              SubOpts().encode()])
    await unsubscribe(r, T, "m1", [G])
    third = await connect(r, T, "lost", max_group_members=2)
    assert G in third.subscriptions and await members(r) == {"m2", "lost"} and await count(r) == 2
    # a resume of a member (route present) never counts it twice
    await connect(r, T, "m2", max_group_members=2)
    assert await count(r) == 2
