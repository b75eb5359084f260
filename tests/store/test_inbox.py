"""Inboxes: batched appends, ordering, drop policies, reads, delivery-state ops."""

from __future__ import annotations

from typing import Any

import pytest

from tests.store.helpers import NOW, connect
from tidemq.store import (
    InboxAppend,
    InboxEntry,
    InboxOp,
    InboxTarget,
    inbox_append_many,
    inbox_apply_many,
    inbox_len,
    inbox_read,
    inbox_read_many,
    session_disconnect,
    session_get,
)
from tidemq.store import keys as K

T = "inbox-tenant"


async def test_append_many_orders_and_reports_owners(r: Any) -> None:
    a = await connect(r, T, "a", worker="w1")
    await connect(r, T, "b", worker="w2")
    await connect(r, T, "c", worker="w1")
    await session_disconnect(r, T, "a", a.epoch, now_ms=NOW)  # offline: stored, no owner to notify
    items = [InboxAppend(T, f"msg{i}".encode() + b"\0\xff", [
        InboxTarget("a", 1, (1, 2)), InboxTarget("b", 2, ()), InboxTarget("c", 0, (9,)), InboxTarget("ghost", 1, ())],
        100, True)
             for i in range(5)]
    results = await inbox_append_many(r, items)
    assert [(x.owners, x.dropped, x.missing) for x in results] == [({"w1", "w2"}, 0, 1)] * 5
    entries = await inbox_read(r, T, "a", 0, 10)
    assert entries == [InboxEntry(i + 1, 1, (1, 2), f"msg{i}".encode() + b"\0\xff") for i in range(5)]
    assert [e.sub_ids for e in await inbox_read(r, T, "b")] == [()] * 5
    assert [e.qos for e in await inbox_read(r, T, "c")] == [0] * 5
    assert (await session_get(r, T, "a"))["seq"] == 5
    assert await inbox_len(r, T, "ghost") == 0
    assert not await r.exists(K.sess(T, "ghost"))


async def test_read_after_and_count(r: Any) -> None:
    await connect(r, T, "a")
    await inbox_append_many(r, [InboxAppend(T, bytes([i]), [InboxTarget("a", 1, ())], 100, True) for i in range(10)])
    page = await inbox_read(r, T, "a", after_seq=3, count=4)
    assert [e.seq for e in page] == [4, 5, 6, 7]
    many = await inbox_read_many(r, [(T, "a", 8, 10), (T, "a", 10, 10), (T, "nobody", 0, 10)])
    assert [[e.seq for e in x] for x in many] == [[9, 10], [], []]
    assert await inbox_read_many(r, []) == []


@pytest.mark.parametrize("drop_oldest", [True, False])
async def test_limit_and_drop_policy(r: Any, drop_oldest: bool) -> None:
    """A full inbox refuses new QoS 1 messages whatever the QoS 0 policy (tests/store/test_inbox_quota.py)."""
    await connect(r, T, "a")
    results = await inbox_append_many(
        r, [InboxAppend(T, f"m{i}".encode(), [InboxTarget("a", 1, ())], 3, drop_oldest) for i in range(5)])
    assert [x.dropped for x in results] == [0, 0, 0, 1, 1]
    assert [x.drops for x in results[3:]] == [[("a", "inbox_full")]] * 2
    blobs = [e.blob for e in await inbox_read(r, T, "a")]
    assert blobs == [b"m0", b"m1", b"m2"]
    assert await inbox_len(r, T, "a") == 3
    # a full inbox that is not notified has no owner to notify
    assert results[-1].owners == set()
    zero = await inbox_append_many(r, [InboxAppend(T, b"x", [InboxTarget("a", 1, ())], 0, True)])
    assert zero[0].dropped == 1 and await inbox_len(r, T, "a") == 3


async def test_ops(r: Any) -> None:
    await connect(r, T, "a")
    await inbox_append_many(r, [InboxAppend(T, bytes([i]), [InboxTarget("a", 2, ())], 100, True) for i in range(4)])
    await inbox_apply_many(r, [
        InboxOp("ack", T, "a", seq=1),
        InboxOp("rec", T, "a", seq=2, pid=20),
        InboxOp("rec", T, "a", seq=3, pid=30),
        InboxOp("comp", T, "a", pid=20),
        InboxOp("sent", T, "a", seq=4),
        InboxOp("sent", T, "a", seq=2),  # never lowers
        InboxOp("q2add", T, "a", pid=7),
        InboxOp("q2add", T, "a", pid=8),
        InboxOp("q2add", T, "a", pid=9),
        InboxOp("q2done", T, "a", pid=8),  # 8 routed everywhere; 9 recorded but never confirmed
        InboxOp("q2done", T, "a", pid=7),
        InboxOp("q2del", T, "a", pid=7),  # drops 7 and its mark
    ])
    assert [e.seq for e in await inbox_read(r, T, "a")] == [4]
    assert await r.smembers(K.rel(T, "a")) == {b"30"}
    assert await r.smembers(K.q2in(T, "a")) == {b"8", b"d8", b"9"}
    assert (await session_get(r, T, "a"))["sent"] == 4
    again = await connect(r, T, "a", worker="w2")
    assert again.rel_ids == [30] and again.q2in_ids == [8] and again.sent == 4  # only confirmed ids resume
    await inbox_apply_many(r, [])


async def test_ops_never_recreate_a_removed_session(r: Any) -> None:
    await inbox_apply_many(r, [InboxOp("rec", T, "gone", seq=1, pid=1), InboxOp("sent", T, "gone", seq=3),
                               InboxOp("q2add", T, "gone", pid=2), InboxOp("ack", T, "gone", seq=1),
                               InboxOp("comp", T, "gone", pid=1), InboxOp("q2del", T, "gone", pid=2)])
    for key in K.session_keys(T, "gone"):
        assert not await r.exists(key)
    with pytest.raises(ValueError):
        await inbox_apply_many(r, [InboxOp("bogus", T, "a")])


async def test_empty_targets_and_empty_batch(r: Any) -> None:
    assert await inbox_append_many(r, []) == []
    res = await inbox_append_many(r, [InboxAppend(T, b"x", [], 10, True)])
    assert (res[0].owners, res[0].dropped, res[0].missing) == (set(), 0, 0)


async def test_append_across_tenants_in_one_batch(r: Any) -> None:
    tenants = [f"tenant-{i}" for i in range(12)]
    for t in tenants:
        await connect(r, t, "c", worker=f"w-{t}")
    items = [InboxAppend(t, t.encode(), [InboxTarget("c", 1, ())], 10, True) for t in tenants for _ in range(2)]
    results = await inbox_append_many(r, items)
    assert [x.owners for x in results] == [{f"w-{t}"} for t in tenants for _ in range(2)]
    for t in tenants:
        assert [(e.seq, e.blob) for e in await inbox_read(r, t, "c")] == [(1, t.encode()), (2, t.encode())]
