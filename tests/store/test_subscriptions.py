"""Subscriptions and routes: subscribe/unsubscribe, route values, versions, NoSession."""

from __future__ import annotations

from typing import Any

import pytest

from tests.store.helpers import NOW, connect
from tidemq.routing.trie import Route
from tidemq.store import (
    NoSession,
    SubOpts,
    load_routes,
    route_versions,
    session_disconnect,
    session_get,
    subscribe,
    unsubscribe,
)
from tidemq.store.subscriptions import decode_route

T = "subs-tenant"


def test_subopts_encoding_roundtrip() -> None:
    for opts in [SubOpts(), SubOpts(2, True, True, 2, 268435455), SubOpts(1, subscription_id=None)]:
        assert SubOpts.decode(opts.encode()) == opts
    assert SubOpts(1, False, True, 1, 9).encode() == "1,0,1,1,9"


def test_decode_route() -> None:
    route = decode_route(b"c1\0a/+/c", b"w1\x000\x002,1,0,2,5")
    assert route == Route(client_id="c1", topic_filter="a/+/c", qos=2, no_local=True, retain_as_published=False,
                          retain_handling=2, subscription_id=5, worker="w1", persistent=False)


async def test_subscribe_writes_subs_and_routes(r: Any) -> None:
    transient = await connect(r, T, "tc", persistent=False, expiry=0, clean_start=True, worker="wA")
    await connect(r, T, "pc", persistent=True, worker="wB")
    v0 = (await route_versions(r, [T]))[T]
    assert await subscribe(r, T, "tc", [("a/#", SubOpts(qos=1, no_local=True)), ("$share/g/x", SubOpts())],
                           epoch=transient.epoch) == [False, False]
    assert await subscribe(r, T, "pc", [("a/#", SubOpts(qos=2, subscription_id=3))]) == [False]
    assert await subscribe(r, T, "pc", [("a/#", SubOpts(qos=1, subscription_id=3))]) == [True]
    version, routes = await load_routes(r, T)
    assert version > v0
    gens = {c: (await session_get(r, T, c))["gen"] for c in ("pc", "tc")}  # routes carry their session's generation
    assert sorted(routes, key=lambda x: (x.client_id, x.topic_filter)) == [
        Route(client_id="pc", topic_filter="a/#", qos=1, subscription_id=3, worker="", persistent=True, gen=gens["pc"]),
        Route(client_id="tc", topic_filter="$share/g/x", qos=0, worker="wA", persistent=False, gen=gens["tc"]),
        Route(client_id="tc", topic_filter="a/#", qos=1, no_local=True, worker="wA", persistent=False,
              gen=gens["tc"]),
    ]
    assert (await session_get(r, T, "pc"))["subscriptions"] == {"a/#": SubOpts(qos=1, subscription_id=3)}


async def test_identical_resubscribe_keeps_version(r: Any) -> None:
    await connect(r, T, "c")
    await subscribe(r, T, "c", [("a", SubOpts(qos=1))])
    v1 = (await route_versions(r, [T]))[T]
    assert await subscribe(r, T, "c", [("a", SubOpts(qos=1))]) == [True]
    assert (await route_versions(r, [T]))[T] == v1


async def test_unsubscribe(r: Any) -> None:
    await connect(r, T, "c")
    await subscribe(r, T, "c", [("a", SubOpts()), ("b", SubOpts())])
    v1 = (await route_versions(r, [T]))[T]
    assert await unsubscribe(r, T, "c", ["a", "zzz"]) == [True, False]
    assert (await route_versions(r, [T]))[T] == v1 + 1
    assert await unsubscribe(r, T, "c", ["zzz"]) == [False]
    assert (await route_versions(r, [T]))[T] == v1 + 1
    assert [rt.topic_filter for rt in (await load_routes(r, T))[1]] == ["b"]
    assert await unsubscribe(r, T, "c", []) == []


async def test_no_session_and_stale_epoch(r: Any) -> None:
    with pytest.raises(NoSession):
        await subscribe(r, T, "ghost", [("a", SubOpts())])
    with pytest.raises(NoSession):
        await unsubscribe(r, T, "ghost", ["a"])
    old = await connect(r, T, "c")
    await connect(r, T, "c", worker="w2")
    with pytest.raises(NoSession):
        await subscribe(r, T, "c", [("a", SubOpts())], epoch=old.epoch)
    with pytest.raises(NoSession):
        await unsubscribe(r, T, "c", ["a"], epoch=old.epoch)
    assert (await load_routes(r, T))[1] == []


async def test_takeover_of_transient_session_moves_routes(r: Any) -> None:
    first = await connect(r, T, "c", persistent=False, expiry=0, worker="w1")
    await subscribe(r, T, "c", [("a", SubOpts())])
    v1 = (await route_versions(r, [T]))[T]
    second = await connect(r, T, "c", persistent=False, expiry=0, worker="w2")
    assert second.present and second.prev_worker == "w1"
    assert [rt.worker for rt in (await load_routes(r, T))[1]] == ["w2"]
    assert (await route_versions(r, [T]))[T] == v1 + 1
    # the old connection ending changes nothing; the new one ending removes the routes
    assert await session_disconnect(r, T, "c", first.epoch, now_ms=NOW) == "stale"
    assert await session_disconnect(r, T, "c", second.epoch, now_ms=NOW) == "removed"
    assert (await load_routes(r, T))[1] == []


async def test_persistent_reconnect_does_not_bump_version(r: Any) -> None:
    first = await connect(r, T, "p", worker="w1")
    await subscribe(r, T, "p", [("a", SubOpts(qos=1))])
    v1 = (await route_versions(r, [T]))[T]
    assert await session_disconnect(r, T, "p", first.epoch, now_ms=NOW) == "offline"
    await connect(r, T, "p", worker="w2")
    assert (await route_versions(r, [T]))[T] == v1
    # the persistent -> transient switch on resume does change the route value
    await connect(r, T, "p", worker="w3", persistent=False, expiry=0)
    assert (await route_versions(r, [T]))[T] == v1 + 1
    assert [(rt.worker, rt.persistent) for rt in (await load_routes(r, T))[1]] == [("w3", False)]


async def test_route_versions_many_tenants(r: Any) -> None:
    tenants = [f"t{i}" for i in range(8)]
    for i, t in enumerate(tenants[:4]):
        await connect(r, t, "c")
        for j in range(i + 1):
            await subscribe(r, t, "c", [(f"f{j}", SubOpts())])
    versions = await route_versions(r, tenants)
    assert versions == {"t0": 1, "t1": 2, "t2": 3, "t3": 4, "t4": 0, "t5": 0, "t6": 0, "t7": 0}
    assert await route_versions(r, []) == {}


async def test_subscribe_filter_limit_is_atomic(r: Any) -> None:
    from tidemq.store.models import SubscriptionLimit

    await connect(r, T, "lim")
    assert await subscribe(r, T, "lim", [("a", SubOpts(1)), ("b", SubOpts(1))], max_filters=2) == [False, False]
    with pytest.raises(SubscriptionLimit):  # one more filter: refused, nothing written
        await subscribe(r, T, "lim", [("a", SubOpts(2)), ("c", SubOpts(1))], max_filters=2)
    assert await subscribe(r, T, "lim", [("a", SubOpts(2))], max_filters=2) == [True]  # replacing is fine
    _version, routes = await load_routes(r, T)
    assert sorted(rt.topic_filter for rt in routes if rt.client_id == "lim") == ["a", "b"]
