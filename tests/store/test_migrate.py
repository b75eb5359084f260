"""The layout-1 -> layout-2 migration: a store written by the previous version, migrated, then used."""

from __future__ import annotations

from typing import Any

import pytest

from tidemq.message import Message, pack
from tidemq.store import (
    InboxAppend,
    InboxTarget,
    inbox_append_many,
    inbox_read,
    load_routes,
    sessions_expire,
    sessions_page,
)
from tidemq.store import keys as K
from tidemq.store.migrate import MigrationNeeded, ensure_layout, layout_key, migrate, needs_migration

from .helpers import NOW, connect

T = "legacy"
M1, M2 = (pack(Message("a/1", payload, qos=1)) for payload in (b"m1", b"m2"))


def old(kind: str, client: str) -> str:
    return f"tidemq:{kind}:{{{T}}}:{client}"


async def _write_layout_1(r: Any, now: int = NOW) -> None:
    """What the previous version left: an offline persistent session with a subscription and two queued
    messages, an online transient one, their routes (3 parts), the index, an expiry entry, the epoch counter."""
    await r.sadd(K.tenants(), T)
    await r.hset(old("sess", "p"), mapping={"user": "u1", "ver": 5, "persistent": 1, "expiry": 60, "worker": "",
                                            "epoch": 41, "connected_at": now, "disconnected_at": now, "seq": 2,
                                            "sent": 0, "address": "x", "client_type": "MQTT"})
    await r.hset(old("subs", "p"), "a/#", "1,0,0,0,0")
    await r.xadd(old("inbox", "p"), {"q": "1", "i": "", "m": M1}, id="1-0")
    await r.xadd(old("inbox", "p"), {"q": "1", "i": "", "m": M2}, id="2-0")
    await r.sadd(old("q2in", "p"), "9", "d9")
    await r.hset(old("sess", "t"), mapping={"user": "u1", "ver": 4, "persistent": 0, "expiry": 0, "worker": "w9",
                                            "epoch": 42, "seq": 0, "sent": 0})
    await r.hset(old("subs", "t"), "b", "0,0,0,0,0")
    await r.hset(K.routes(T), mapping={"p\0a/#": "\x001\x001,0,0,0,0", "t\0b": "w9\x000\x000,0,0,0,0",
                                       "gone\0c": "\x001\x001,0,0,0,0"})
    await r.zadd(K.sessidx(T), {"p": 0, "t": 0})
    await r.zadd(K.sexp(T), {"p": now + 60_000})
    await r.set(f"tidemq:epoch:{{{T}}}", 42)


async def test_a_fresh_store_needs_nothing_and_is_marked(r: Any) -> None:
    assert not await needs_migration(r)
    await ensure_layout(r)
    assert int(await r.get(layout_key())) == 2


async def test_layout_1_is_refused_then_migrated_and_resumed(r: Any) -> None:
    await _write_layout_1(r)
    assert await needs_migration(r)
    with pytest.raises(MigrationNeeded):
        await ensure_layout(r)
    report = await migrate(r)
    assert (report.tenants, report.sessions, report.keys_moved) == (1, 2, 6)
    assert (report.routes_rewritten, report.routes_dropped) == (2, 1)
    assert not await needs_migration(r)
    await ensure_layout(r)
    assert not await r.exists(old("sess", "p"), old("inbox", "p"), f"tidemq:epoch:{{{T}}}")
    again = await migrate(r)  # idempotent
    assert (again.keys_moved, again.routes_rewritten) == (0, 0)

    # sessions are named "<user>/<client id>" now, in keys, routes and indexes
    routes = {rt.client_id: rt for rt in (await load_routes(r, T))[1]}
    assert set(routes) == {"u1/p", "u1/t"} and routes["u1/p"].gen == "41" and routes["u1/t"].worker == "w9"
    assert await sessions_page(r, T) == ["u1/p", "u1/t"]
    assert await r.zscore(K.sexp(T), "u1/p") is not None and await r.zscore(K.sexp(T), "p") is None
    # a publish through the migrated route reaches the migrated inbox
    [res] = await inbox_append_many(r, [InboxAppend(T, b"m3", [InboxTarget("u1/p", 1, gen=routes["u1/p"].gen)],
                                                    10, False)])
    assert res.queued == 1
    resumed = await connect(r, T, "u1/p", now_ms=NOW + 1)
    assert resumed.present and resumed.epoch > 41
    assert list(resumed.subscriptions) == ["a/#"] and resumed.q2in_ids == [9]
    assert [e.blob for e in await inbox_read(r, T, "u1/p")] == [M1, M2, b"m3"]


async def test_migrated_offline_session_expires_on_time(r: Any) -> None:
    await _write_layout_1(r)
    await migrate(r)
    assert await sessions_expire(r, T, now_ms=NOW + 59_999) == []
    assert [s.client_id for s in await sessions_expire(r, T, now_ms=NOW + 60_000)] == ["u1/p"]
