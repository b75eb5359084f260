"""Session connect / disconnect / takeover epochs, clean start wiping, expiry sweeps, tenants."""

from __future__ import annotations

from typing import Any

from tests.store.helpers import NOW, connect
from tidemq.store import (
    InboxAppend,
    InboxOp,
    InboxTarget,
    SubOpts,
    inbox_append_many,
    inbox_apply_many,
    inbox_len,
    load_routes,
    route_versions,
    session_disconnect,
    session_get,
    session_owner,
    sessions_count,
    sessions_expire,
    sessions_page,
    subscribe,
    tenants_add,
    tenants_list,
)
from tidemq.store import keys as K

T = "ten{a}nt%"


async def _append(r: Any, t: str, c: str, blob: bytes = b"m") -> None:
    await inbox_append_many(r, [InboxAppend(t, blob, [InboxTarget(c, 1, ())], 100, True)])


async def test_new_session_record(r: Any) -> None:
    res = await connect(r, T, "c1", clean_start=True, ver=4, expiry=30)
    assert (res.present, res.prev_worker, res.prev_epoch, res.sent) == (False, "", 0, 0)
    assert res.subscriptions == {} and res.rel_ids == [] and res.q2in_ids == []
    rec = await session_get(r, T, "c1")
    assert rec is not None
    assert rec["user"] == "u1" and rec["ver"] == 4 and rec["persistent"] is True and rec["expiry"] == 30
    assert rec["worker"] == "w1" and rec["online"] and rec["epoch"] == res.epoch
    assert rec["connected_at"] == NOW and rec["disconnected_at"] == 0
    assert rec["address"] == "127.0.0.1:5000" and rec["client_type"] == "mqtt"
    assert rec["seq"] == 0 and rec["sent"] == 0 and rec["inbox_len"] == 0 and rec["subscriptions"] == {}
    assert await session_get(r, T, "nobody") is None
    assert await session_owner(r, T, "c1") == ("w1", res.epoch)
    assert await session_owner(r, T, "nobody") is None


async def test_resume_keeps_state_and_reports_previous_owner(r: Any) -> None:
    first = await connect(r, T, "c1", worker="w1")
    await subscribe(r, T, "c1", [("a/+", SubOpts(qos=2, subscription_id=7))])
    await _append(r, T, "c1")
    await _append(r, T, "c1")
    await inbox_apply_many(r, [InboxOp("sent", T, "c1", seq=2), InboxOp("rec", T, "c1", seq=1, pid=11),
                               InboxOp("q2add", T, "c1", pid=5), InboxOp("q2done", T, "c1", pid=5)])
    second = await connect(r, T, "c1", worker="w2")
    assert second.present
    assert (second.prev_worker, second.prev_epoch) == ("w1", first.epoch)
    assert second.epoch > first.epoch
    assert second.subscriptions == {"a/+": SubOpts(qos=2, subscription_id=7)}
    assert second.rel_ids == [11] and second.q2in_ids == [5] and second.sent == 2
    assert await inbox_len(r, T, "c1") == 1
    # the taken-over connection's disconnect is stale and touches nothing
    assert await session_disconnect(r, T, "c1", first.epoch, now_ms=NOW) == "stale"
    assert (await session_owner(r, T, "c1")) == ("w2", second.epoch)


async def test_clean_start_wipes_everything_but_reports_owner(r: Any) -> None:
    first = await connect(r, T, "c1", worker="w1")
    await subscribe(r, T, "c1", [("x", SubOpts(qos=1))])
    await _append(r, T, "c1")
    await inbox_apply_many(r, [InboxOp("rec", T, "c1", seq=1, pid=3), InboxOp("q2add", T, "c1", pid=4)])
    v0 = (await route_versions(r, [T]))[T]
    res = await connect(r, T, "c1", worker="w2", clean_start=True)
    assert not res.present and res.subscriptions == {} and res.rel_ids == [] and res.q2in_ids == []
    assert (res.prev_worker, res.prev_epoch) == ("w1", first.epoch)
    rec = await session_get(r, T, "c1")
    assert rec["inbox_len"] == 0 and rec["seq"] == 0 and rec["subscriptions"] == {}
    _, routes = await load_routes(r, T)
    assert routes == []
    assert (await route_versions(r, [T]))[T] > v0


async def test_resume_of_offline_session_has_no_previous_owner(r: Any) -> None:
    first = await connect(r, T, "c1")
    assert await session_disconnect(r, T, "c1", first.epoch, now_ms=NOW + 5) == "offline"
    rec = await session_get(r, T, "c1")
    assert rec["worker"] == "" and not rec["online"] and rec["disconnected_at"] == NOW + 5
    again = await connect(r, T, "c1", worker="w9")
    assert again.present and again.prev_worker == "" and again.prev_epoch == 0


async def test_disconnect_non_persistent_removes(r: Any) -> None:
    res = await connect(r, T, "c1", persistent=False, expiry=0, clean_start=True)
    await subscribe(r, T, "c1", [("a/b", SubOpts())])
    v0 = (await route_versions(r, [T]))[T]
    assert await session_disconnect(r, T, "c1", res.epoch, now_ms=NOW) == "removed"
    assert await session_get(r, T, "c1") is None
    assert (await load_routes(r, T))[1] == []
    assert (await route_versions(r, [T]))[T] == v0 + 1
    assert await sessions_page(r, T) == []
    assert await session_disconnect(r, T, "c1", res.epoch, now_ms=NOW) == "stale"


async def test_disconnect_expiry_override(r: Any) -> None:
    res = await connect(r, T, "c1", expiry=60)
    assert await session_disconnect(r, T, "c1", res.epoch, now_ms=NOW, expiry=0) == "removed"
    res = await connect(r, T, "c2", expiry=60)
    assert await session_disconnect(r, T, "c2", res.epoch, now_ms=NOW, expiry=5) == "offline"
    assert (await session_get(r, T, "c2"))["expiry"] == 5
    assert [e.client_id for e in await sessions_expire(r, T, now_ms=NOW + 4999)] == []
    assert [e.client_id for e in await sessions_expire(r, T, now_ms=NOW + 5000)] == ["c2"]


async def test_epochs_are_never_reused(r: Any) -> None:
    a = await connect(r, T, "c1", persistent=False, expiry=0, clean_start=True)
    assert await session_disconnect(r, T, "c1", a.epoch, now_ms=NOW) == "removed"
    b = await connect(r, T, "c1", persistent=False, expiry=0, clean_start=True)
    assert b.epoch != a.epoch
    # a late disconnect of the first connection must not end the second
    assert await session_disconnect(r, T, "c1", a.epoch, now_ms=NOW) == "stale"
    assert await session_owner(r, T, "c1") == ("w1", b.epoch)


async def test_expire_sweep(r: Any) -> None:
    for i in range(5):
        res = await connect(r, T, f"c{i}", expiry=10 + i)
        await subscribe(r, T, f"c{i}", [(f"t/{i}", SubOpts(qos=1))])
        await _append(r, T, f"c{i}")
        assert await session_disconnect(r, T, f"c{i}", res.epoch, now_ms=NOW) == "offline"
    await connect(r, T, "online", expiry=1)
    v0 = (await route_versions(r, [T]))[T]
    gone = await sessions_expire(r, T, now_ms=NOW + 11_000, chunk=1)
    assert sorted(e.client_id for e in gone) == ["c0", "c1"]
    assert all(e.worker == "" for e in gone)
    assert await session_get(r, T, "c0") is None and await inbox_len(r, T, "c0") == 0
    assert sorted(rt.client_id for rt in (await load_routes(r, T))[1]) == ["c2", "c3", "c4"]
    assert (await route_versions(r, [T]))[T] > v0
    # a reconnected session is no longer due even though its old expiry passed
    await connect(r, T, "c2", worker="w3")
    gone = await sessions_expire(r, T, now_ms=NOW + 100_000)
    assert sorted(e.client_id for e in gone) == ["c3", "c4"]
    assert await sessions_page(r, T) == ["c2", "online"]


async def test_expire_idle_and_all(r: Any) -> None:
    for i, at in enumerate((NOW, NOW + 10_000)):
        res = await connect(r, T, f"off{i}", expiry=3600)
        await session_disconnect(r, T, f"off{i}", res.epoch, now_ms=at)
    online = await connect(r, T, "on", worker="w5", expiry=3600)
    gone = await sessions_expire(r, T, now_ms=NOW + 20_000, older_than_s=15)
    assert [e.client_id for e in gone] == ["off0"]
    gone = await sessions_expire(r, T, now_ms=NOW + 20_000, older_than_s=0, chunk=1)
    assert sorted((e.client_id, e.worker) for e in gone) == [("off1", ""), ("on", "w5")]
    # the epoch names the connection to close, so a later reconnect is never hit by the signal
    assert [e.epoch for e in gone if e.client_id == "on"] == [online.epoch]
    assert await sessions_count(r, T) == 0


async def test_sessions_page(r: Any) -> None:
    for c in ["b", "a", "d", "c"]:
        await connect(r, T, c)
    assert await sessions_page(r, T, limit=3) == ["a", "b", "c"]
    assert await sessions_page(r, T, after="c", limit=3) == ["d"]
    assert await sessions_count(r, T) == 4


async def test_tenants(r: Any) -> None:
    assert await tenants_list(r) == []
    await tenants_add(r, "b")
    await tenants_add(r, "a{x}")
    await tenants_add(r, "b")
    assert await tenants_list(r) == ["a{x}", "b"]


async def test_tenants_are_isolated(r: Any) -> None:
    await connect(r, "t1", "c1")
    await subscribe(r, "t1", "c1", [("a", SubOpts())])
    assert await session_get(r, "t2", "c1") is None
    assert (await load_routes(r, "t2"))[1] == []
    assert await sessions_page(r, "t2") == []


async def test_never_expiring_session_score_is_exact(r: Any) -> None:
    res = await connect(r, T, "forever", expiry=0xFFFFFFFF)
    assert await session_disconnect(r, T, "forever", res.epoch, now_ms=NOW) == "offline"
    assert await r.zscore(K.sexp(T), "forever") == NOW + 0xFFFFFFFF * 1000
    assert await sessions_expire(r, T, now_ms=NOW + 10**12) == []


async def test_epochs_grow_per_client_id_also_after_removal(r: Any) -> None:
    """Epochs come from the server clock (us) above the session's previous one: a session removed and
    created again never gets an epoch an older connection of that client id still holds."""
    first = await connect(r, T, "fo1", now_ms=NOW)
    assert first.epoch > 10**15  # microseconds since 1970
    second = await connect(r, T, "fo1", now_ms=NOW + 1)
    assert second.epoch > first.epoch
    await r.hset(K.sess(T, "fo1"), "epoch", str(second.epoch + 10**12))  # a clock that went back
    third = await connect(r, T, "fo1", now_ms=NOW + 2)
    assert third.epoch == second.epoch + 10**12 + 1
    assert await session_disconnect(r, T, "fo1", third.epoch, now_ms=NOW + 3, expiry=0) == "removed"
    fourth = await connect(r, T, "fo1", now_ms=NOW + 4)
    assert fourth.epoch > second.epoch


async def test_the_sweep_keeps_a_tenant_with_retained_messages(r: Any) -> None:
    """A tenant without sessions or wills leaves the sweep's index, unless it still holds retained messages
    (they may expire, and the sweep drops them)."""
    from tidemq.message import Message, pack
    from tidemq.store import retain_set
    from tidemq.store.sessions import tenants_add, tenants_list, tenants_prune

    await tenants_add(r, "kept")
    await tenants_add(r, "gone")
    await retain_set(r, "kept", "a/b", pack(Message(topic="a/b", payload=b"x", retain=True, expire_at_ms=NOW)),
                     limit=10)
    assert not await tenants_prune(r, "kept")
    assert await tenants_prune(r, "gone")
    assert await tenants_list(r) == ["kept"]
