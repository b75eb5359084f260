"""Inbox quota (lua/inbox_append.lua): queued QoS 1/2 entries are never trimmed; only QoS 0 is dropped.

Runs on a single node, the 3-master cluster and the in-memory store (the script must run on all).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.store.helpers import connect
from tidemq.mqtt.reason_codes import RC
from tidemq.publish import DROP_METRICS, InboxDrops, fan_out, publish_code
from tidemq.store import InboxAppend, InboxOp, InboxTarget, inbox_append_many, inbox_apply_many, inbox_read
from tidemq.store import keys as K

T = "quota-tenant"


def _append(blob: bytes, qos: int | str, limit: int = 3, drop_oldest: bool = True,
            targets: tuple[str, ...] = ("a",)) -> InboxAppend:
    return InboxAppend(T, blob, [InboxTarget(c, qos, ()) for c in targets], limit, drop_oldest)


async def _contents(r: Any, c: str = "a") -> list[tuple[int, bytes]]:
    return [(e.qos, e.blob) for e in await inbox_read(r, T, c, 0, 1000)]


async def test_qos1_refused_when_full_and_nothing_trimmed(r: Any) -> None:
    await connect(r, T, "a")
    res = await inbox_append_many(r, [_append(b"q0", 0), _append(b"a", 1), _append(b"b", 2), _append(b"c", 1)])
    assert [x.queued for x in res] == [1, 1, 1, 0]
    assert res[3].drops == [("a", "inbox_full")] and res[3].refused == 1
    # QoS 1/2 never make room for themselves, even with drop-oldest on and a QoS 0 entry present
    assert await _contents(r) == [(0, b"q0"), (1, b"a"), (2, b"b")]


@pytest.mark.parametrize("drop_oldest", [True, False])
async def test_qos0_drops_only_qos0(r: Any, drop_oldest: bool) -> None:
    await connect(r, T, "a")
    await inbox_append_many(r, [_append(b"x1", 1, 4), _append(b"z1", 0, 4), _append(b"x2", 2, 4),
                                _append(b"z2", "0r", 4)])
    res = await inbox_append_many(r, [_append(b"z3", 0, 4, drop_oldest), _append(b"z4", 0, 4, drop_oldest)])
    if drop_oldest:
        assert [x.drops for x in res] == [[("a", "qos0_oldest")]] * 2
        assert [x.queued for x in res] == [1, 1] and res[0].refused == 0
        assert await _contents(r) == [(1, b"x1"), (2, b"x2"), (0, b"z3"), (0, b"z4")]
    else:
        assert [x.drops for x in res] == [[("a", "qos0_inbox_full")]] * 2
        assert await _contents(r) == [(1, b"x1"), (0, b"z1"), (2, b"x2"), (0, b"z2")]
    # the QoS 1/2 entries are still there, and a QoS 1 message is still refused
    more = await inbox_append_many(r, [_append(b"x3", 1, 4, drop_oldest)])
    assert more[0].drops == [("a", "inbox_full")]


async def test_qos0_dropped_when_inbox_holds_only_qos12(r: Any) -> None:
    await connect(r, T, "a")
    await inbox_append_many(r, [_append(b"x%d" % i, 1) for i in range(3)])
    res = await inbox_append_many(r, [_append(b"z", 0), _append(b"z", 0)])
    assert [x.drops for x in res] == [[("a", "qos0_inbox_full")]] * 2
    assert [q for q, _b in await _contents(r)] == [1, 1, 1]
    # the scan hint moved past the QoS 1 entries; an ack frees a slot and QoS 0 flows again
    assert int(await r.hget(K.sess(T, "a"), "q0lo")) == 4
    await inbox_apply_many(r, [InboxOp("ack", T, "a", seq=1)])
    res = await inbox_append_many(r, [_append(b"z5", 0), _append(b"z6", 0)])
    assert [x.drops for x in res] == [[], [("a", "qos0_oldest")]]
    assert await _contents(r) == [(1, b"x1"), (1, b"x2"), (0, b"z6")]


async def test_oldest_qos0_after_acks_and_a_long_inbox(r: Any) -> None:
    """The scan finds the oldest live QoS 0 entry past acked holes and many QoS 1 entries."""
    await connect(r, T, "a")
    n = 300
    items = [_append(b"x%d" % i, 1, n) for i in range(n - 2)] + [_append(b"z1", 0, n), _append(b"z2", 0, n)]
    await inbox_append_many(r, items)
    await inbox_apply_many(r, [InboxOp("ack", T, "a", seq=s) for s in range(1, 50)])
    await inbox_append_many(r, [_append(b"x-new%d" % i, 1, n) for i in range(49)])
    res = await inbox_append_many(r, [_append(b"z3", 0, n)])
    assert res[0].drops == [("a", "qos0_oldest")]
    got = await _contents(r)
    assert len(got) == n and [b for q, b in got if q == 0] == [b"z2", b"z3"]


async def test_per_target_report_and_publish_code(r: Any) -> None:
    await connect(r, T, "full")
    await connect(r, T, "roomy", worker="w2")
    await inbox_append_many(r, [_append(b"x", 1, 1, targets=("full",))])
    drops = InboxDrops()
    res, _local = await fan_out(r, [_append(b"m", 1, 1, targets=("full", "ghost"))], {}, drops=drops)
    assert (res[0].queued, res[0].missing, res[0].owners, res[0].drops) == (0, 1, set(), [("full", "inbox_full")])
    assert publish_code(True, False, res[0]) == RC.QUOTA_EXCEEDED
    assert publish_code(True, True, res[0]) == RC.SUCCESS  # a transient subscriber got it
    assert publish_code(False, False, None) == RC.NO_MATCHING_SUBSCRIBERS
    # one target queued is enough for success; the refusal is still counted
    res, _local = await fan_out(r, [_append(b"m", 1, 1, targets=("full", "roomy"))], {}, drops=drops)
    assert (res[0].queued, res[0].owners, res[0].refused) == (1, {"w2"}, 1)
    assert publish_code(True, False, res[0]) == RC.SUCCESS
    assert await _contents(r, "roomy") == [(1, b"m")]
    await fan_out(r, [_append(b"z", 0, 1, targets=("full",))], {}, drops=drops)
    assert drops.tenant(T)[DROP_METRICS["inbox_full"]] == 2
    assert drops.totals() == {"refused_inbox_full": 2, "dropped_qos0_inbox_full": 1, "dropped_qos0_oldest": 0}
    assert drops.tenant("other") == dict.fromkeys(DROP_METRICS.values(), 0)


async def test_qos2_resend_is_recognised_atomically(r: Any) -> None:
    """The publisher's QoS 2 packet id is recorded by the append itself: a resend after a lost reply or a
    crash appends nothing; without a publisher session nothing is recorded."""
    await connect(r, T, "pub2")
    await connect(r, T, "sub2")
    first = InboxAppend(T, b"once", [InboxTarget("sub2", 2)], 10, False, dedupe=("pub2", 7))
    (res,) = await inbox_append_many(r, [first])
    assert (res.queued, res.duplicate) == (1, 0)
    (again,) = await inbox_append_many(r, [first])
    assert (again.queued, again.duplicate) == (0, 2)  # routed before; its clean-session copies unconfirmed
    await inbox_apply_many(r, [InboxOp("q2done", T, "pub2", pid=7)])
    (third,) = await inbox_append_many(r, [first])
    assert (third.queued, third.duplicate) == (0, 1)  # ... and now confirmed: nothing to send again
    assert [e.blob for e in await inbox_read(r, T, "sub2")] == [b"once"]
    assert (await connect(r, T, "pub2", clean_start=False)).q2in_ids == [7]  # "d7" is not a packet id
    await inbox_apply_many(r, [InboxOp("q2del", T, "pub2", pid=7)])
    assert await r.smembers(K.q2in(T, "pub2")) == set()
    (nobody,) = await inbox_append_many(r, [InboxAppend(T, b"", [], 10, False, dedupe=("pub2", 8))])
    assert nobody.duplicate == 0 and await r.sismember(K.q2in(T, "pub2"), "8")  # no target: recorded
    (gone,) = await inbox_append_many(r, [InboxAppend(T, b"x", [InboxTarget("sub2", 2)], 10, False,
                                                      dedupe=("ghost", 1))])
    assert (gone.queued, gone.duplicate) == (1, 0) and not await r.exists(K.q2in(T, "ghost"))
