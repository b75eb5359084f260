"""``tidemq.publish``: the pure fan-out plan, the route cache's freshness check, and the one-message
publish path, on the in-process fakeredis store (no server needed)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tidemq import publish as pub
from tidemq import signals
from tidemq.message import Message, unpack
from tidemq.publish import FanoutLimits, RouteCache, fan_out, plan_routes, sub_ids
from tidemq.routing.trie import Route
from tidemq.store import SignalListener, SubOpts, inbox_read, load_all, session_connect, subscribe
from tidemq.store import subscriptions as sub_store
from tidemq.store.connection import close_redis, open_redis
from tidemq.store.models import InboxAppend, InboxTarget

T = "pub{t}"
_names = itertools.count()


# ------------------------------------------------------------------ the pure plan


def test_fanout_limits_cut_groups_and_persistent_sessions_in_match_order() -> None:
    routes = [Route(f"p{i}", "t", 1, persistent=True) for i in range(4)]
    routes += [Route("x", "t", 1, worker="w")]  # transient, non-shared: never cut
    routes += [Route(f"g{i}", f"$share/g{i}/t", 1, worker="" if i == 0 else "w", persistent=i == 0)
               for i in range(3)]
    plan = plan_routes(routes, 1, limits=FanoutLimits(2, 3, 2**63 - 1), size=10)
    assert [t.client_id for t in plan.inbox] == ["p0", "p1", "p2", "g0"]  # a group member is not counted twice
    assert [t.client_id for t in plan.remote["w"]] == ["x", "g1"]
    assert plan.cut == (1, 1, 0)
    by_bytes = plan_routes(routes[:4], 1, limits=FanoutLimits(100, 100, 25), size=10)
    assert [t.client_id for t in by_bytes.inbox] == ["p0", "p1", "p2"] and by_bytes.cut == (0, 0, 1)
    untouched = plan_routes(routes, 1, limits=FanoutLimits(100, 100, 2**63 - 1), size=10)
    assert untouched.cut == (0, 0, 0) and len(untouched.inbox) == 5


def test_no_routes_is_no_match() -> None:
    plan = plan_routes([], 2)
    assert (plan.matched, plan.inbox, plan.remote, plan.local) == (False, [], {}, [])


def test_persistent_routes_go_to_inboxes_at_the_lower_qos() -> None:
    routes = [Route("a", "x/#", 2, persistent=True, subscription_id=4),
              Route("b", "x/y", 0, persistent=True),
              Route("c", "+/y", 1, persistent=True, subscription_ids=(1, 2))]
    plan = plan_routes(routes, 1)
    assert plan.matched and plan.remote == {} and plan.local == []
    assert plan.inbox == [InboxTarget("a", 1, (4,)), InboxTarget("b", 0, ()), InboxTarget("c", 1, (1, 2))]


def test_retain_as_published_marks_inbox_targets_only_when_the_publish_retained() -> None:
    rap = Route("a", "x", 2, persistent=True, retain_as_published=True)
    plain = Route("b", "x", 2, persistent=True)
    assert plan_routes([rap, plain], 2, retain=True).inbox == [InboxTarget("a", 2, (), True), InboxTarget("b", 2, ())]
    assert plan_routes([rap, plain], 1, retain=False).inbox == [InboxTarget("a", 1, ()), InboxTarget("b", 1, ())]


def test_transient_routes_split_into_local_and_per_worker() -> None:
    mine = Route("m", "x", 2, worker="me")
    w2a = Route("a", "x", 1, worker="w2", retain_as_published=True, subscription_id=9)
    w2b = Route("b", "#", 0, worker="w2")
    w3 = Route("c", "x", 2, worker="w3")
    nowhere = Route("gone", "x", 1)  # transient without an owner: nobody to deliver to
    plan = plan_routes([mine, w2a, w2b, w3, nowhere], 1, local_worker="me")
    assert plan.matched and plan.inbox == []
    assert plan.local == [(mine, 1)]
    assert plan.remote == {
        "w2": [signals.DeliverTarget("a", 1, (9,), True), signals.DeliverTarget("b", 0, (), False)],
        "w3": [signals.DeliverTarget("c", 1, (), False)],
    }
    # a caller that is not a worker has no local sessions: its own worker id means nothing
    assert plan_routes([mine], 2).remote == {"me": [signals.DeliverTarget("m", 2, (), False)]}
    only_nowhere = plan_routes([nowhere], 1)
    assert only_nowhere.matched and (only_nowhere.inbox, only_nowhere.remote, only_nowhere.local) == ([], {}, [])


def test_sub_ids_reads_every_identifier() -> None:
    assert sub_ids(Route("a", "x", 0)) == ()
    assert sub_ids(Route("a", "x", 0, subscription_id=3)) == (3,)
    assert sub_ids(Route("a", "x", 0, subscription_id=3, subscription_ids=(3, 5))) == (3, 5)


# ------------------------------------------------------------------ against the in-process store


@pytest.fixture
async def r() -> AsyncIterator[Any]:
    client = await open_redis(f"memory://unit-publish-{next(_names)}")
    await load_all(client)
    try:
        yield client
    finally:
        await close_redis(client)


async def _session(r: Any, c: str, *, worker: str, persistent: bool, subs: dict[str, SubOpts]) -> None:
    await session_connect(r, T, c, user="u", ver=5, clean_start=True, persistent=persistent,
                          expiry=60 if persistent else 0, worker=worker, address="a", client_type="mqtt",
                          now_ms=1)
    await subscribe(r, T, c, list(subs.items()))


async def test_route_cache_reloads_only_when_the_version_moved(r: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[str] = []
    real_load = sub_store.load_routes

    async def counting_load(client: Any, t: str) -> tuple[int, list[Route]]:
        loads.append(t)
        return await real_load(client, t)

    monkeypatch.setattr(sub_store, "load_routes", counting_load)  # tidemq.publish calls it through the module
    cache = RouteCache()
    assert cache.match(T, "a/b") == []  # never refreshed: nothing is trusted
    await _session(r, "s1", worker="w1", persistent=False, subs={"a/+": SubOpts(qos=1)})
    await cache.refresh(r, [T])
    await cache.refresh(r, [T])
    assert loads == [T]
    assert [(rt.client_id, rt.worker, rt.qos) for rt in cache.match(T, "a/b")] == [("s1", "w1", 1)]
    await subscribe(r, T, "s1", [("a/#", SubOpts(qos=2))])  # acknowledged: bumps the route version
    await cache.refresh(r, [T])
    assert loads == [T, T]
    assert {rt.topic_filter for rt in cache.match(T, "a/b/c")} == {"a/#"}


async def test_route_cache_drops_everything_past_its_bound(r: Any) -> None:
    cache = RouteCache(max_tenants=2)
    await cache.refresh(r, ["t1", "t2"])
    assert set(cache.tenants) == {"t1", "t2"}
    await cache.refresh(r, ["t3"])
    assert set(cache.tenants) == {"t3"}


async def _listen(r: Any, worker: str) -> SignalListener:
    return await SignalListener(r, worker).open()


async def test_publish_appends_signals_and_notifies(r: Any) -> None:
    await _session(r, "p", worker="w1", persistent=True, subs={"x/#": SubOpts(qos=1, subscription_id=7)})
    await _session(r, "t", worker="w2", persistent=False, subs={"x/y": SubOpts(qos=2)})
    w1, w2 = await _listen(r, "w1"), await _listen(r, "w2")
    try:
        cache = RouteCache()
        msg = Message("x/y", b"payload", qos=2, sender="pub")
        res = await pub.publish(r, cache, T, msg, inbox_limit=10, drop_oldest=False)
        assert (res.matched, res.inbox_targets, res.remote_targets, res.dropped) == (True, 1, 1, 0)
        (entry,) = await inbox_read(r, T, "p")
        assert (entry.qos, entry.sub_ids, unpack(entry.blob).payload) == (1, (7,), b"payload")
        async with asyncio.timeout(5):
            sig = signals.decode(await w2.get())
            assert isinstance(sig, signals.Deliver)
            (d,) = sig.items
            assert d.tenant == T and d.targets == [signals.DeliverTarget("t", 2, (), False)]
            assert unpack(d.blob).topic == "x/y" and d.blob == entry.blob  # packed once
            assert signals.decode(await w1.get()) == signals.Notify([(T, ["p"])])
        miss = await pub.publish(r, cache, T, Message("other", b""), inbox_limit=10, drop_oldest=False)
        assert miss == pub.PublishResult(False)
    finally:
        await w1.close()
        await w2.close()


async def test_fan_out_wakes_local_inboxes_itself_and_signals_other_owners(r: Any) -> None:
    await _session(r, "mine", worker="me", persistent=True, subs={})
    await _session(r, "theirs", worker="w9", persistent=True, subs={})
    w9 = await _listen(r, "w9")
    try:
        targets = [InboxTarget("mine", 1, ()), InboxTarget("theirs", 0, ()), InboxTarget("nobody", 1, ())]
        appends = [InboxAppend(T, b"blob", targets, 10, False)]
        results, local = await fan_out(r, appends, {}, local_worker="me")
        assert (results[0].owners, results[0].missing) == ({"me", "w9"}, 1)
        # today the wake-up is per append, not per owner: every owner hears every target of the
        # append (a worker skips the sessions it does not hold), the caller's own included
        assert local == [(T, "mine"), (T, "theirs"), (T, "nobody")]
        async with asyncio.timeout(5):
            sig = signals.decode(await w9.get())
        assert sig == signals.Notify([(T, ["mine", "nobody", "theirs"])])
    finally:
        await w9.close()
    assert await fan_out(r, [], {}) == ([], [])
