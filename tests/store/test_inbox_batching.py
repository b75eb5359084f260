"""The compact forms of the inbox hot paths: runs of same-target appends, per-session op and q2_begin calls,
raw replies (``RawBatch``) and their decoding, on every backend the store suite runs on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tests.store.helpers import connect
from tidemq.store import InboxAppend, InboxOp, InboxTarget, inbox_append_many, inbox_apply_many, inbox_read
from tidemq.store import keys as K
from tidemq.store.connection import close_redis
from tidemq.store.inbox import decode_entries, inbox_read_raw_many, q2_begin_many
from tidemq.store.scripts import RawBatch, get, raw_capable, run_commands

T = "batching-tenant"


async def test_runs_of_same_targets_and_mixed_outcomes_in_one_call(r: Any) -> None:
    """Messages for the same targets pass ``-1``; a change of targets, a drop and a missing session in the
    middle of a run come back in the full form, and every inbox keeps publish order."""
    await connect(r, T, "a", worker="w1")
    await connect(r, T, "b", worker="w2")
    a, b, ghost = InboxTarget("a", 1, (7,)), InboxTarget("b", 1, (1, 2)), InboxTarget("ghost", 1)
    plan = [[a], [a], [a, b], [a, b], [b], [a, ghost], [a], [a], [a]]  # a's limit (4) is hit by the last ones
    items = [InboxAppend(T, b"m%d" % i, targets, 4, False) for i, targets in enumerate(plan)]
    results = await inbox_append_many(r, items)
    assert [(x.queued, x.missing, x.owners) for x in results] == [
        (1, 0, {"w1"}), (1, 0, {"w1"}), (2, 0, {"w1", "w2"}), (2, 0, {"w1", "w2"}), (1, 0, {"w2"}),
        (0, 1, set()), (0, 0, set()), (0, 0, set()), (0, 0, set())]
    assert [x.drops for x in results[5:]] == [[("a", "inbox_full")]] * 4
    got_a = await inbox_read(r, T, "a")
    assert [(e.seq, e.blob, e.sub_ids) for e in got_a] == [(1, b"m0", (7,)), (2, b"m1", (7,)), (3, b"m2", (7,)),
                                                          (4, b"m3", (7,))]
    assert [(e.blob, e.sub_ids) for e in await inbox_read(r, T, "b")] == [(b"m2", (1, 2)), (b"m3", (1, 2)),
                                                                         (b"m4", (1, 2))]


async def test_owner_sets_of_a_run_are_the_targets_owners(r: Any) -> None:
    await connect(r, T, "on", worker="w1")
    await connect(r, T, "off", worker="w1")
    await r.hset(K.sess(T, "off"), "worker", "")  # offline: nobody to notify
    items = [InboxAppend(T, b"x", [InboxTarget("on", 1), InboxTarget("off", 0, (), True)], 10, True)
             for _ in range(3)]
    results = await inbox_append_many(r, items)
    assert [(x.owners, x.queued) for x in results] == [({"w1"}, 2)] * 3
    entries = await inbox_read(r, T, "off")
    assert [(e.qos, e.retain) for e in entries] == [(0, True)] * 3


async def test_ops_of_one_session_keep_their_order(r: Any) -> None:
    """comp then rec of the same packet id (a new flow reusing it) leaves it in rel: the per-session call
    applies its triples in order."""
    await connect(r, T, "a")
    await inbox_append_many(r, [InboxAppend(T, b"x", [InboxTarget("a", 2)], 10, True) for _ in range(2)])
    await inbox_apply_many(r, [InboxOp("rec", T, "a", seq=1, pid=5)])
    await inbox_apply_many(r, [InboxOp("comp", T, "a", pid=5), InboxOp("rec", T, "a", seq=2, pid=5),
                               InboxOp("sent", T, "a", seq=2)], {(T, "a"): []})
    assert await r.smembers(K.rel(T, "a")) == {b"5"}
    assert await inbox_read(r, T, "a") == []


async def test_unknown_kind_in_a_call_writes_nothing(r: Any) -> None:
    await connect(r, T, "a")
    mark = get("inbox_mark")
    keys = [K.sess(T, "a"), K.inbox(T, "a"), K.rel(T, "a"), K.q2in(T, "a")]
    with pytest.raises(ResponseError, match="unknown kind bogus"):
        await mark(r, keys, ["q2add", 0, 1, "bogus", 0, 0])
    assert not await r.exists(K.q2in(T, "a"))


async def test_acks_as_one_xdel_per_inbox(r: Any) -> None:
    await connect(r, T, "a")
    await connect(r, T, "b")
    await inbox_append_many(r, [InboxAppend(T, b"%d" % i, [InboxTarget("a", 1), InboxTarget("b", 1)], 20, True)
                                for i in range(6)])
    await inbox_apply_many(r, [InboxOp("ack", T, "a", seq=1)], {(T, "a"): [2, 3], (T, "b"): [6, 1]})
    assert [e.seq for e in await inbox_read(r, T, "a")] == [4, 5, 6]
    assert [e.seq for e in await inbox_read(r, T, "b")] == [2, 3, 4, 5]


async def test_q2_begin_groups_per_publisher_and_keeps_item_order(r: Any) -> None:
    await connect(r, T, "p1")
    await connect(r, T, "p2")
    items = [(T, "p1", 1), (T, "p2", 1), (T, "p1", 2), (T, "p1", 1), (T, "nobody", 3)]
    answers = await q2_begin_many(r, items)
    assert [dup for dup, _tok in answers] == [0, 0, 0, 2, 0]
    assert answers[3][1] == answers[0][1] != answers[1][1]  # the resend in the same batch gets the first token
    assert answers[4] == (0, "")  # no session: nothing recorded
    await inbox_apply_many(r, [InboxOp("q2done", T, "p1", pid=2)])
    again = await q2_begin_many(r, [(T, "p1", 2), (T, "p2", 1)])
    assert again == [(1, answers[2][1]), (2, answers[1][1])]


def test_decode_entries_takes_raw_and_parsed_replies() -> None:
    raw = [[b"3-0", [b"q", b"1r", b"i", b"4,5", b"m", b"blob"]], [b"12-0", [b"q", b"0", b"i", b"", b"m", b""]]]
    parsed = [(b"3-0", {b"q": b"1r", b"i": b"4,5", b"m": b"blob"}), (b"12-0", {b"q": b"0", b"i": b"", b"m": b""})]
    odd = [[b"3-0", [b"m", b"blob", b"q", b"1r", b"i", b"4,5"]], [b"12-0", [b"q", b"0"]]]
    want = [(3, 1, True, (4, 5), b"blob"), (12, 0, False, (), b"")]
    assert decode_entries(raw) == decode_entries(parsed) == decode_entries(odd) == want
    assert decode_entries(None) == []


async def test_raw_reads_and_error_replies_keep_the_connection_in_sync(r: Any) -> None:
    await connect(r, T, "a")
    await inbox_append_many(r, [InboxAppend(T, b"m", [InboxTarget("a", 1, (9,))], 10, True)])
    assert await inbox_read_raw_many(r, [(T, "a", 0, 10), (T, "none", 0, 10)]) == [[(1, 1, False, (9,), b"m")], []]
    batch = RawBatch(r)
    batch.command("SET", "k", "v")
    batch.command("INCR", "k")  # an error reply in the middle
    batch.command("GET", "k")
    with pytest.raises(ResponseError):
        await batch.execute()
    results = await run_commands(r, [("SET", "k", 1.5), ("INCR", "k"), ("GET", "k"), ("XLEN", K.inbox(T, "a"))])
    assert isinstance(results[1], ResponseError) and results[2] == b"1.5" and results[3] == 1


async def test_raw_batch_reloads_scripts_after_noscript(r: Any) -> None:
    await connect(r, T, "a")
    await r.script_flush()
    batch = RawBatch(r)
    batch.command("SET", "plain", "1")
    at = batch.script(get("inbox_mark"), [K.sess(T, "a"), K.inbox(T, "a"), K.rel(T, "a"), K.q2in(T, "a")],
                      ["q2add", 0, 4])
    results = await batch.execute()
    assert results[at] == 1 and await r.smembers(K.q2in(T, "a")) == {b"4"}


async def test_raw_round_trip_times_out_and_the_pool_recovers(redis_server: Any) -> None:
    """A reply that does not come within the connection's socket_timeout fails the round trip (and closes that
    connection); the next round trip works. Redis is held up by CLIENT PAUSE, not by a sleep of ours."""
    client = Redis.from_url(redis_server.url, socket_timeout=0.2)
    admin: Any = Redis.from_url(redis_server.url)
    assert raw_capable(client)
    try:
        await client.ping()
        await admin.execute_command("CLIENT", "PAUSE", 5000, "WRITE")
        with pytest.raises(RedisTimeoutError):
            await run_commands(client, [("SET", "x", 0), ("GET", "x")])
        await admin.execute_command("CLIENT", "UNPAUSE")
        assert await asyncio.wait_for(run_commands(client, [("SET", "x", 1), ("GET", "x")]), 5) == [b"OK", b"1"]
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")
        await close_redis(client)
        await close_redis(admin)


async def test_q2seen_is_trimmed_once_per_call(r: Any) -> None:
    """The tokens of the last 24 h, at most 10,000: what a call adds is trimmed at its end."""
    await connect(r, T, "a")
    now = 1_900_000_000_000
    key = K.q2seen(T, "a")
    await r.zadd(key, {f"old{i}": now - 86_400_001 for i in range(5)})
    await r.zadd(key, {f"t{i:05}": now - 1000 + i for i in range(9_999)})
    items = [InboxAppend(T, b"m%d" % i, [InboxTarget("a", 2)], 100, True, dedupe=("p", i)) for i in range(3)]
    results = await inbox_append_many(r, items, now_ms=now, q2={i: (0, f"new{i}") for i in range(3)})
    assert [x.queued for x in results] == [1, 1, 1]
    assert await r.zcard(key) == 10_000
    assert await r.zscore(key, "old0") is None and await r.zscore(key, "t00001") is None  # aged out, then oldest
    assert await r.zscore(key, "new2") == now
    again = await inbox_append_many(r, items[:1], now_ms=now, q2={0: (2, "new0")})  # a resend routed again
    assert (again[0].queued, again[0].missing) == (0, 0) and len(await inbox_read(r, T, "a")) == 3


async def test_raw_round_trip_on_a_connection_redis_closed(redis_server: Any) -> None:
    """A pooled connection Redis closed meanwhile fails its round trip with a ConnectionError (nothing is
    half-read) or is retried by the connection's own retry; the round trip after it works on a new one."""
    client = Redis.from_url(redis_server.url, max_connections=1)
    admin: Any = Redis.from_url(redis_server.url)
    try:
        [cid] = await run_commands(client, [("CLIENT", "ID")])
        assert await admin.execute_command("CLIENT", "KILL", "ID", cid) == 1
        try:
            await run_commands(client, [("SET", "y", 1), ("GET", "y")])
        except RedisConnectionError:
            pass
        assert await run_commands(client, [("SET", "y", 2), ("GET", "y")]) == [b"OK", b"2"]
        [again] = await run_commands(client, [("CLIENT", "ID")])
        assert again != cid
    finally:
        await close_redis(client)
        await close_redis(admin)
