"""``Coalescer``: the calls of one loop turn share one pipeline; results and errors stay per call.

Also the CONNECT / session-end steps sent through it (``calls=``): the same outcomes as alone, including
the takeover of a session by a second connect in the same turn.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.store.helpers import NOW, connect
from tidemq.store import SubOpts, load_routes, scripts, session_disconnect, session_get, sessions_page, subscribe
from tidemq.store import keys as K
from tidemq.store.coalesce import Coalescer
from tidemq.store.indexes import TenantOps
from tidemq.store.scripts import Batch, get

T = "co{al}esce"


def _count_pipelines(r: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the number of commands of every pipeline ``r`` executes."""
    sizes: list[int] = []
    inner = r.pipeline

    def pipeline(*a: Any, **kw: Any) -> Any:
        pipe = inner(*a, **kw)
        execute = pipe.execute

        async def counted(*ea: Any, **ekw: Any) -> Any:
            sizes.append(len(pipe))
            return await execute(*ea, **ekw)

        pipe.execute = counted
        return pipe

    monkeypatch.setattr(r, "pipeline", pipeline)
    return sizes


async def test_one_turn_one_pipeline_results_per_call(r: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = _count_pipelines(r, monkeypatch)
    calls = Coalescer(r)

    def setget(i: int) -> Any:
        def queue(batch: Batch) -> None:
            batch.pipe.set(f"{K.PREFIX}co:{i}", str(i))
            batch.pipe.get(f"{K.PREFIX}co:{i}")
        return queue

    results = await asyncio.gather(*(calls.run(setget(i)) for i in range(20)))
    assert results == [[True, str(i).encode()] for i in range(20)]
    assert sizes == [40]  # 20 calls of 2 commands: one pipeline, one round trip


async def test_calls_made_while_a_pipeline_is_in_flight_go_together_next(r: Any,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = _count_pipelines(r, monkeypatch)
    calls = Coalescer(r)
    later: list[asyncio.Future[list[Any]]] = []

    def incr(i: int) -> Any:
        return lambda b: b.pipe.incr(f"{K.PREFIX}co:later:{i}")

    def first(batch: Batch) -> None:  # runs as the first pipeline is built: it is in flight from here on
        later.extend(calls.submit(incr(i)) for i in range(5))
        batch.pipe.incr(f"{K.PREFIX}co:first")

    assert await calls.run(first) == [1]
    assert [await f for f in later] == [[1]] * 5
    assert sizes == [1, 5]


async def test_an_error_stays_with_its_call(r: Any) -> None:
    calls = Coalescer(r)
    await r.set(f"{K.PREFIX}co:str", "x")

    def wrong_type(batch: Batch) -> None:
        batch.pipe.incr(f"{K.PREFIX}co:n")
        batch.pipe.hget(f"{K.PREFIX}co:str", "f")  # WRONGTYPE

    out: list[Any] = await asyncio.gather(
        calls.run(lambda b: b.pipe.incr(f"{K.PREFIX}co:a")), calls.run(wrong_type),
        calls.run(lambda b: b.pipe.incr(f"{K.PREFIX}co:a")), return_exceptions=True)
    ok, bad, ok2 = out
    assert ok == [1] and ok2 == [2]
    assert isinstance(bad, Exception) and "WRONGTYPE" in str(bad)
    assert await r.get(f"{K.PREFIX}co:n") == b"1"  # the rest of the failing call ran, as in a pipeline


async def test_a_queue_that_raises_sends_nothing_of_its_own(r: Any) -> None:
    calls = Coalescer(r)

    def broken(batch: Batch) -> None:
        raise ValueError("bad argument")

    out: list[Any] = await asyncio.gather(calls.run(lambda b: b.pipe.incr(f"{K.PREFIX}co:b")),
                                          calls.run(broken), return_exceptions=True)
    good, bad = out
    assert good == [1] and isinstance(bad, ValueError)


async def test_noscript_reloads_inside_a_coalesced_pipeline(r: Any, store_url: str) -> None:
    if store_url.startswith("memory"):
        pytest.skip("the embedded store has no SCRIPT FLUSH")
    await r.script_flush()
    calls = Coalescer(r)
    results = await asyncio.gather(*(connect(r, T, f"u1/c{i}", calls=calls) for i in range(5)))
    assert all(not res.present for res in results)
    await scripts.load_all(r)


async def test_connects_and_ends_through_the_coalescer(r: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = _count_pipelines(r, monkeypatch)
    calls = Coalescer(r)
    names = [f"u1/c{i}" for i in range(10)]
    results = await asyncio.gather(*(connect(r, T, c, calls=calls, track=True, clean_start=True) for c in names))
    # the session steps in one round trip, the tenant steps in a second one, merged into one tenant_apply
    assert sizes == [30, 1]
    assert await sessions_page(r, T) == sorted(names)
    assert await r.smembers(K.worker_sessions("w1")) == {(T + "\0" + c).encode() for c in names}
    for c, res in zip(names, results, strict=True):
        rec = await session_get(r, T, c)
        assert rec is not None and rec["worker"] == "w1" and rec["epoch"] == res.epoch
    sizes.clear()
    ended = await asyncio.gather(*(session_disconnect(r, T, c, res.epoch, now_ms=NOW + 1, expiry=0,
                                                      untrack_worker="w1", calls=calls)
                                   for c, res in zip(names, results, strict=True)))
    assert ended == ["removed"] * 10
    assert sizes == [20, 1]
    assert await sessions_page(r, T) == []
    assert await r.smembers(K.worker_sessions("w1")) == set()


async def test_takeover_within_one_turn(r: Any) -> None:
    """Two connects of one session in the same pipeline: the second takes it over from the first, and the
    first's end is stale (it no longer owns the session)."""
    calls = Coalescer(r)
    first, second = await asyncio.gather(connect(r, T, "u1/x", calls=calls, worker="w1"),
                                         connect(r, T, "u1/x", calls=calls, worker="w2"))
    assert second.prev_worker == "w1" and second.prev_epoch == first.epoch and second.epoch > first.epoch
    assert second.present  # the first created it (clean start 0), the second resumed it
    assert await session_disconnect(r, T, "u1/x", first.epoch, now_ms=NOW + 1, calls=calls) == "stale"
    rec = await session_get(r, T, "u1/x")
    assert rec is not None and rec["worker"] == "w2"


async def test_merged_tenant_changes_one_call_per_tenant_in_call_order(r: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = _count_pipelines(r, monkeypatch)
    calls = Coalescer(r)
    other = T + "-2"
    ops = []
    for t, c, gen in ((T, "u1/a", "1"), (other, "u1/a", "5"), (T, "u1/b", "2"), (T, "u1/a", "3")):
        o = TenantOps(t)
        o.index_add(c, gen)
        ops.append(o)
    await asyncio.gather(*(calls.merge_tenant(o) for o in ops), calls.run(lambda b: b.pipe.incr(f"{K.PREFIX}co:m")))
    assert sizes == [3]  # the INCR, then one tenant_apply per tenant
    assert await r.hgetall(K.sessgen(T)) == {b"u1/a": b"3", b"u1/b": b"2"}  # the later "A" of u1/a won
    assert await r.hgetall(K.sessgen(other)) == {b"u1/a": b"5"}
    assert ops[0].args == ["A", "u1/a", "1"]  # the callers' own changes are left as they were


async def test_resumes_with_a_shared_group_limit_are_told_apart(r: Any) -> None:
    """Resumed sessions whose shared route must pass MaxSharedGroupMembers are not merged: each learns whether
    its own filter was refused (the group has one place; a crash had kept both routes from being written)."""
    group = "$share/g/a/#"
    calls = Coalescer(r)
    for c in ("u1/x", "u1/y"):
        res = await connect(r, T, c)
        await get("subscribe")(r, [K.sess(T, c), K.subs(T, c)], [res.epoch, "", group, SubOpts().encode()])
    x, y = await asyncio.gather(connect(r, T, "u1/x", calls=calls, max_group_members=1),
                                connect(r, T, "u1/y", calls=calls, max_group_members=1))
    assert (group in x.subscriptions, group in y.subscriptions) == (True, False)
    assert group not in (await session_get(r, T, "u1/y") or {})["subscriptions"]
    assert [(rt.client_id, rt.topic_filter) for rt in (await load_routes(r, T))[1]] == [("u1/x", group)]
    await subscribe(r, T, "u1/y", [("plain", SubOpts())])  # y lives on, without the group
