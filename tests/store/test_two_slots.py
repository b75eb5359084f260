"""Two slots, one invariant: a crash between a session step and its tenant step leaves nothing trusted wrongly.

Each test fails the second step (``TenantOps.apply``, or the session script) and checks what the rule in
docs/redis-keys.md "Two slots" promises: an index that says too much is verified on use (a route of a gone
or older session delivers nothing) and repaired by the reconciler; a subscription that lost its route before
its SUBACK is put back at the session's next connect; a late tenant step of an older session never harms a
newer session of the same client id.
"""

from __future__ import annotations

from typing import Any

import pytest

from tidemq.store import (
    InboxAppend,
    InboxTarget,
    NoSession,
    SubOpts,
    inbox_append_many,
    inbox_read,
    load_routes,
    session_disconnect,
    sessions_expire,
    sessions_page,
    subscribe,
    unsubscribe,
)
from tidemq.store import keys as K
from tidemq.store import subscriptions as subs_store
from tidemq.store.indexes import TenantOps
from tidemq.store.reconcile import Reconciler
from tidemq.store.wills import will_take, wills_due

from .helpers import NOW, connect

T = "two-slots"


class StepFailed(ConnectionError):
    pass


@pytest.fixture
def fail_tenant_step(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """While ``armed[0]`` is true, the next tenant step raises (and disarms)."""
    armed = [False]
    orig = TenantOps.apply

    async def apply(self: TenantOps, r: Any) -> dict[str, str]:
        if armed[0] and self:
            armed[0] = False
            raise StepFailed("tenant step lost")
        return await orig(self, r)

    monkeypatch.setattr(TenantOps, "apply", apply)
    return armed


async def _routes(r: Any) -> dict[tuple[str, str], str]:
    return {(rt.client_id, rt.topic_filter): rt.gen for rt in (await load_routes(r, T))[1]}


async def _append(r: Any, client: str, gen: str, blob: bytes = b"m") -> Any:
    return (await inbox_append_many(r, [InboxAppend(T, blob, [InboxTarget(client, 1, gen=gen)], 100, False)]))[0]


async def _repair(r: Any) -> None:
    rec = Reconciler()
    for _ in range(3):  # one pass covers these small tenants; more steps are harmless
        await rec.step(r, T)


async def test_subscribe_without_its_route_is_repaired_at_resume(r: Any, fail_tenant_step: list[bool]) -> None:
    first = await connect(r, T, "c")
    fail_tenant_step[0] = True
    with pytest.raises(StepFailed):  # no SUBACK: the client cannot rely on it
        await subscribe(r, T, "c", [("a/#", SubOpts(qos=1))], epoch=first.epoch)
    assert ("c", "a/#") not in await _routes(r)
    again = await connect(r, T, "c")  # the client resumes: its subscription gets its route back
    assert again.subscriptions == {"a/#": SubOpts(qos=1)}
    assert ("c", "a/#") in await _routes(r)


async def test_unsubscribe_drops_routes_first_and_puts_them_back_for_another_owner(r: Any) -> None:
    old = await connect(r, T, "c")
    await subscribe(r, T, "c", [("a/#", SubOpts(qos=1))], epoch=old.epoch)
    await connect(r, T, "c")  # taken over: `old` is no longer the owner
    with pytest.raises(NoSession):
        await unsubscribe(r, T, "c", ["a/#"], epoch=old.epoch)
    assert ("c", "a/#") in await _routes(r)  # the new owner's route is back


async def test_unsubscribe_failing_after_its_route_step_leaves_the_subscription(
    r: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await connect(r, T, "c")
    await subscribe(r, T, "c", [("a/#", SubOpts(qos=1))], epoch=first.epoch)

    async def lost(*_a: Any, **_k: Any) -> Any:
        raise StepFailed("session step lost")

    monkeypatch.setattr(subs_store, "_UNSUBSCRIBE", lost)
    with pytest.raises(StepFailed):  # no UNSUBACK
        await unsubscribe(r, T, "c", ["a/#"], epoch=first.epoch)
    monkeypatch.undo()
    assert ("c", "a/#") not in await _routes(r)  # no route without its subscription, ever
    again = await connect(r, T, "c")
    assert again.subscriptions == {"a/#": SubOpts(qos=1)}
    assert ("c", "a/#") in await _routes(r)


async def test_routes_of_a_removed_session_deliver_nothing_and_are_pruned(r: Any, fail_tenant_step: list[bool]) -> None:
    first = await connect(r, T, "c", persistent=False, expiry=0)
    await subscribe(r, T, "c", [("a/#", SubOpts(qos=1))], epoch=first.epoch)
    gen = (await _routes(r))[("c", "a/#")]
    fail_tenant_step[0] = True
    with pytest.raises(StepFailed):
        await session_disconnect(r, T, "c", first.epoch, now_ms=NOW)
    assert ("c", "a/#") in await _routes(r)  # the tenant step never ran
    assert "c" in await sessions_page(r, T)
    res = await _append(r, "c", gen)
    assert (res.missing, res.queued) == (1, 0)  # verified on use: the session is gone
    assert not await r.exists(K.inbox(T, "c"))  # and nothing was recreated
    await _repair(r)
    assert await _routes(r) == {}
    assert "c" not in await sessions_page(r, T)


async def test_routes_of_an_older_session_never_reach_a_newer_one(r: Any, fail_tenant_step: list[bool]) -> None:
    first = await connect(r, T, "c")
    await subscribe(r, T, "c", [("old/#", SubOpts(qos=1))], epoch=first.epoch)
    old_gen = (await _routes(r))[("c", "old/#")]
    fail_tenant_step[0] = True
    with pytest.raises(StepFailed):  # a clean start wipes the session; dropping its routes fails
        await connect(r, T, "c", clean_start=True)
    second = await connect(r, T, "c")
    await subscribe(r, T, "c", [("new/#", SubOpts(qos=1))], epoch=second.epoch)
    routes = await _routes(r)
    assert routes[("c", "old/#")] == old_gen != routes[("c", "new/#")]
    res = await _append(r, "c", old_gen)
    assert (res.missing, res.queued) == (1, 0)
    assert (await _append(r, "c", routes[("c", "new/#")])).queued == 1
    await _repair(r)
    assert set(await _routes(r)) == {("c", "new/#")}


async def test_a_late_tenant_step_of_an_older_session_harms_no_newer_one(r: Any) -> None:
    from tidemq.store import sessions as sess_store

    first = await connect(r, T, "c", persistent=False, expiry=0)
    await subscribe(r, T, "c", [("a/#", SubOpts(qos=1))], epoch=first.epoch)
    old_gen = (await _routes(r))[("c", "a/#")]
    # the old session's session step ran, its tenant step is late
    res = await sess_store._DISCONNECT(r, K.session_keys(T, "c"), [first.epoch, NOW, "", ""])
    assert res[0] == b"removed"
    second = await connect(r, T, "c")
    await subscribe(r, T, "c", [("a/#", SubOpts(qos=1))], epoch=second.epoch)
    late = TenantOps(T)
    late.route_drop("c", "a/#", old_gen)
    late.index_remove("c", old_gen)
    await late.apply(r)
    assert ("c", "a/#") in await _routes(r)
    assert "c" in await sessions_page(r, T)


async def test_offline_session_without_its_expiry_hint_still_expires(r: Any, fail_tenant_step: list[bool]) -> None:
    first = await connect(r, T, "c", expiry=10)
    fail_tenant_step[0] = True
    with pytest.raises(StepFailed):
        await session_disconnect(r, T, "c", first.epoch, now_ms=NOW)
    assert await r.zscore(K.sexp(T), "c") is None
    await _repair(r)
    assert await r.zscore(K.sexp(T), "c") == NOW + 10_000
    assert [s.client_id for s in await sessions_expire(r, T, now_ms=NOW + 10_001)] == ["c"]


async def test_expiry_whose_tenant_step_failed_is_finished_by_the_next_sweep(
    r: Any, fail_tenant_step: list[bool]
) -> None:
    first = await connect(r, T, "c", expiry=10)
    await subscribe(r, T, "c", [("a/#", SubOpts(qos=1))], epoch=first.epoch)
    await session_disconnect(r, T, "c", first.epoch, now_ms=NOW)
    fail_tenant_step[0] = True
    with pytest.raises(StepFailed):
        await sessions_expire(r, T, now_ms=NOW + 10_001)
    assert not await r.exists(K.sess(T, "c"))
    assert await sessions_expire(r, T, now_ms=NOW + 10_002) == []  # the hint leads nowhere: dropped
    assert await r.zscore(K.sexp(T), "c") is None
    await _repair(r)
    assert await _routes(r) == {}
    assert await sessions_page(r, T) == []


async def test_delayed_will_without_its_hint_still_fires(r: Any, fail_tenant_step: list[bool]) -> None:
    first = await connect(r, T, "c", will=b"will-blob", will_delay=5)
    fail_tenant_step[0] = True
    with pytest.raises(StepFailed):
        await session_disconnect(r, T, "c", first.epoch, now_ms=NOW, will_at=NOW + 5_000)
    assert await wills_due(r, T, now_ms=NOW + 6_000) == []
    await _repair(r)
    assert await wills_due(r, T, now_ms=NOW + 6_000) == [("c", NOW + 5_000)]
    assert await will_take(r, T, "c", now_ms=NOW + 6_000, hint_at=NOW + 5_000) == b"will-blob"
    assert await wills_due(r, T, now_ms=NOW + 6_000) == []


async def test_a_will_hint_of_a_session_that_came_back_is_dropped(r: Any) -> None:
    first = await connect(r, T, "c", will=b"w", will_delay=5)
    await session_disconnect(r, T, "c", first.epoch, now_ms=NOW, will_at=NOW + 5_000)
    await connect(r, T, "c")  # back before the delay ran out: no will [MQTT-3.1.3-9]
    due = await wills_due(r, T, now_ms=NOW + 6_000)
    assert due == [("c", NOW + 5_000)]
    assert await will_take(r, T, "c", now_ms=NOW + 6_000, hint_at=due[0][1]) is None
    assert await wills_due(r, T, now_ms=NOW + 6_000) == []


async def test_qos2_resend_reaches_each_inbox_once(r: Any) -> None:
    a, b = await connect(r, T, "a"), await connect(r, T, "b")
    await connect(r, T, "pub")
    ga, gb = (await _gen(r, "a")), (await _gen(r, "b"))
    assert a.epoch and b.epoch
    first = InboxAppend(T, b"q2", [InboxTarget("a", 2, gen=ga)], 100, False, dedupe=("pub", 7))
    [res] = await inbox_append_many(r, [first])  # as if the worker died before the append to b
    assert (res.duplicate, res.queued) == (0, 1)
    resend = InboxAppend(T, b"q2", [InboxTarget("a", 2, gen=ga), InboxTarget("b", 2, gen=gb)], 100, False,
                         dedupe=("pub", 7))
    [res] = await inbox_append_many(r, [resend])
    assert (res.duplicate, res.queued) == (2, 1)  # routed again: only b gets it
    assert [e.blob for e in await inbox_read(r, T, "a")] == [b"q2"]
    assert [e.blob for e in await inbox_read(r, T, "b")] == [b"q2"]


async def _gen(r: Any, client: str) -> str:
    gen = await r.hget(K.sess(T, client), "gen")
    return gen.decode() if isinstance(gen, bytes) else str(gen)
