"""Retained messages: set/replace/clear, the per-tenant topic limit, matching through the topic-name
index (bounded by the limit, expired names skipped), the index kept by every writer, and the upgrade
of retained data written before the index existed."""

from __future__ import annotations

from typing import Any

import pytest

from tidemq.message import Message, pack
from tidemq.store import keys, retain_clear, retain_count, retain_get, retain_list, retain_match, retain_set
from tidemq.store.admin import retain_delete_if_same
from tidemq.store.retained import MATCH_HARD_CAP, SCAN_COUNT, lex_range, match_cap

T = "ret-tenant"
NOW = 1_700_000_000_000


def blob(topic: str, payload: bytes = b"", *, expire_at_ms: int = 0, **props: Any) -> bytes:
    return pack(Message(topic=topic, payload=payload or topic.encode(), qos=1, retain=True,
                        expire_at_ms=expire_at_ms, properties=props))


async def index_of(r: Any, t: str = T) -> dict[str, int]:
    """The index as ``{topic: expire-at}``."""
    out: dict[str, int] = {}
    for m in await r.zrange(keys.retain_index(t), 0, -1):
        name, _, exp = bytes(m).partition(b"\0")
        assert name.decode() not in out, "one member per topic"
        out[name.decode()] = int(exp)
    return out


async def assert_index_in_step(r: Any, t: str = T) -> None:
    names = {k.decode() for k in await r.hkeys(keys.retain(t))}
    assert set(await index_of(r, t)) == names


def test_lex_range() -> None:
    assert lex_range("a/b") is None
    assert lex_range("#") == (b"-", b"+")
    assert lex_range("+/x") == (b"-", b"+")
    assert lex_range("a/+/c") == (b"[a/", b"[a/\xff")
    assert lex_range("a/b/#") == (b"[a/b", b"[a/b\xff")
    assert lex_range("/+") == (b"[/", b"[/\xff")
    assert lex_range("$SYS/#") == (b"[$SYS", b"[$SYS\xff")
    assert lex_range("é/#") == (b"[\xc3\xa9", b"[\xc3\xa9\xff")


def test_match_cap() -> None:
    assert match_cap(0) == 0 and match_cap(-1) == 0 and match_cap(10) == 10
    assert match_cap(2**31 - 1) == MATCH_HARD_CAP  # "unlimited" is the hard cap


async def test_set_replace_clear_and_limit(r: Any) -> None:
    assert await retain_set(r, T, "a/1", b"one", limit=2) == "RETAINED"
    assert await retain_set(r, T, "a/2", b"two", limit=2) == "RETAINED"
    assert await retain_set(r, T, "a/3", b"three", limit=2) == "EXCEED_LIMIT"
    assert await retain_set(r, T, "a/1", b"uno", limit=2) == "RETAINED"  # replacing is always fine
    assert await retain_get(r, T, "a/1") == b"uno"
    assert await retain_get(r, T, "a/3") is None
    assert await retain_set(r, T, "a/2", b"", limit=2) == "CLEARED"
    assert await retain_set(r, T, "nope", b"", limit=2) == "CLEARED"
    assert await retain_set(r, T, "a/3", b"three", limit=2) == "RETAINED"
    assert await retain_count(r, T) == 2
    assert await retain_set(r, "other", "a/1", b"x", limit=0) == "EXCEED_LIMIT"
    await assert_index_in_step(r)
    assert not await r.exists(keys.retain_index("other"))


async def test_match(r: Any) -> None:
    topics = ["a/b", "a/c", "a/b/c", "b", "$SYS/x", "/lead", "a", "ab/c"]
    for topic in topics:
        assert await retain_set(r, T, topic, topic.encode() + b"\0", limit=100) == "RETAINED"
    many = 100
    assert await retain_match(r, T, "a/b", many) == [b"a/b\0"]
    assert await retain_match(r, T, "zz", many) == []
    assert sorted(await retain_match(r, T, "a/+", many)) == [b"a/b\0", b"a/c\0"]
    assert sorted(await retain_match(r, T, "a/#", many)) == [b"a\0", b"a/b\0", b"a/b/c\0", b"a/c\0"]
    everything = sorted(await retain_match(r, T, "#", many))
    assert b"$SYS/x\0" not in everything and len(everything) == len(topics) - 1
    assert await retain_match(r, T, "+/x", many) == []
    assert await retain_match(r, T, "$SYS/#", many) == [b"$SYS/x\0"]
    assert await retain_match(r, T, "+/lead", many) == [b"/lead\0"]
    assert await retain_match(r, T, "+/+/c", many) == [b"a/b/c\0"]
    assert await retain_match(r, "nobody", "#", many) == []
    # the limit bounds what is returned; 0 returns nothing (BifroMQ: nothing to match)
    assert len(await retain_match(r, T, "#", 3)) == 3
    assert len(await retain_match(r, T, "a/#", 1)) == 1
    assert await retain_match(r, T, "#", 0) == []
    assert await retain_match(r, T, "a/b", 0) == []


async def test_match_stops_at_the_limit_across_pages(r: Any) -> None:
    n = SCAN_COUNT * 2 + 7
    for i in range(n):
        assert await retain_set(r, T, f"p/{i:05d}", b"v%d" % i, limit=n) == "RETAINED"
    await retain_set(r, T, "q/x", b"other prefix", limit=n + 1)
    got = await retain_match(r, T, "p/+", SCAN_COUNT + 3)
    assert got == [b"v%d" % i for i in range(SCAN_COUNT + 3)]  # lex order, across a page boundary
    assert len(await retain_match(r, T, "p/#", 2**31 - 1)) == min(n, MATCH_HARD_CAP)
    assert await retain_match(r, T, "+/x", 10) == [b"other prefix"]  # every name read, one matched


async def test_expired_names_are_skipped_and_do_not_count(r: Any) -> None:
    for i in range(6):
        exp = NOW - 1 if i % 2 == 0 else (NOW + 60_000 if i == 1 else 0)
        await retain_set(r, T, f"e/{i}", blob(f"e/{i}", expire_at_ms=exp), limit=100)
    assert (await index_of(r))["e/1"] == NOW + 60_000
    assert (await index_of(r))["e/0"] == NOW - 1
    assert (await index_of(r))["e/3"] == 0
    live = await retain_match(r, T, "e/+", 3, now_ms=NOW)
    assert live == [blob("e/1", expire_at_ms=NOW + 60_000), blob("e/3"), blob("e/5")]
    assert len(await retain_match(r, T, "e/+", 2, now_ms=NOW)) == 2
    assert len(await retain_match(r, T, "e/#", 100)) == 6  # now_ms=0: nothing skipped
    # a replace moves the topic's expiry in the index; a clear drops its entry
    await retain_set(r, T, "e/0", blob("e/0", expire_at_ms=NOW + 5), limit=100)
    await retain_set(r, T, "e/1", b"", limit=100)
    idx = await index_of(r)
    assert idx["e/0"] == NOW + 5 and "e/1" not in idx
    await assert_index_in_step(r)


async def test_expiry_read_from_the_header_only(r: Any) -> None:
    """Header strings that look like an expiry field, or a payload that does, never fool the index."""
    tricky = blob("x/1", b'{"e":1,"e":2}', expire_at_ms=NOW + 7, content_type='","e":3,{"e":4',
                  user_property=[("e", "5"), ('"e":6', ',"e":7')])
    await retain_set(r, T, "x/1", tricky, limit=10)
    await retain_set(r, T, "x/2", blob("x/2", b',"e":9', content_type='{"e":8}'), limit=10)
    await retain_set(r, T, "x/3", b"not a message blob", limit=10)
    assert await index_of(r) == {"x/1": NOW + 7, "x/2": 0, "x/3": 0}
    assert await retain_match(r, T, "x/+", 10, now_ms=NOW + 7) == [blob("x/2", b',"e":9', content_type='{"e":8}'),
                                                                   b"not a message blob"]


async def test_admin_delete_and_clear_keep_the_index(r: Any) -> None:
    for i in range(4):
        await retain_set(r, T, f"d/{i}", blob(f"d/{i}"), limit=10)
    seen = [(f"d/{i}", blob(f"d/{i}")) for i in range(3)]
    await retain_set(r, T, "d/2", blob("d/2", expire_at_ms=NOW), limit=10)  # re-retained since seen: kept
    assert await retain_delete_if_same(r, T, seen) == 2
    assert set(await index_of(r)) == {"d/2", "d/3"}
    await assert_index_in_step(r)
    assert await retain_clear(r, T) == 2
    assert not await r.exists(keys.retain_index(T)) and not await r.exists(keys.retain(T))
    assert await retain_match(r, T, "#", 10) == []


async def test_list_and_clear(r: Any) -> None:
    for i in range(25):
        await retain_set(r, T, f"t/{i}", b"v%d" % i, limit=100)
    seen: dict[str, bytes] = {}
    cursor = 0
    for _ in range(100):
        cursor, page = await retain_list(r, T, cursor, 10)
        seen.update(page)
        if cursor == 0:
            break
    assert seen == {f"t/{i}": b"v%d" % i for i in range(25)}
    assert await retain_clear(r, T) == 25
    assert await retain_count(r, T) == 0
    assert await retain_clear(r, T) == 0


# --- upgrade: retained hashes written by the previous version have no index --------------------


async def write_old_way(r: Any, n: int, t: str = T) -> dict[str, bytes]:
    """What the previous retain_set.lua left behind: the hash only."""
    items = {f"old/{i:04d}": blob(f"old/{i:04d}", expire_at_ms=NOW - 1 if i == 0 else 0) for i in range(n)}
    await r.hset(keys.retain(t), mapping=items)
    assert not await r.exists(keys.retain_index(t))
    return items


async def test_match_builds_the_missing_index(r: Any, _single_slot_scripts: list[str]) -> None:
    items = await write_old_way(r, 1203)  # several HSCAN chunks
    assert await retain_match(r, T, "old/0001", 5) == [items["old/0001"]]  # exact: one HGET, no index
    assert not await r.exists(keys.retain_index(T))
    got = await retain_match(r, T, "old/+", 5, now_ms=NOW)
    assert got == [items[f"old/{i:04d}"] for i in range(1, 6)]  # old/0000 expired: skipped
    assert "retain_reindex" in _single_slot_scripts
    await assert_index_in_step(r)
    assert (await index_of(r))["old/0000"] == NOW - 1
    calls = len(_single_slot_scripts)
    assert len(await retain_match(r, T, "#", 2000)) == MATCH_HARD_CAP
    assert len(_single_slot_scripts) == calls  # built once


@pytest.mark.parametrize("writer", ["set", "clear", "admin_delete"])
async def test_writers_build_the_missing_index_first(r: Any, writer: str) -> None:
    items = await write_old_way(r, 30)
    if writer == "set":
        assert await retain_set(r, T, "new/1", blob("new/1"), limit=100) == "RETAINED"
        assert await retain_set(r, T, "old/0100", blob("old/0100"), limit=31) == "EXCEED_LIMIT"
    elif writer == "clear":
        assert await retain_set(r, T, "old/0003", b"", limit=100) == "CLEARED"
    else:
        assert await retain_delete_if_same(r, T, [("old/0004", items["old/0004"])]) == 1
    await assert_index_in_step(r)
    expected = 31 if writer == "set" else 29
    assert len(await retain_match(r, T, "#", 100)) == expected


async def test_expired_retained_messages_are_dropped_a_page_at_a_time(r: Any) -> None:
    from tidemq.store.retained import retain_expire_step

    n = 25
    for i in range(n):  # every third one expired, one expiring later, the rest never
        exp = NOW - 1 if i % 3 == 0 else (NOW + 60_000 if i == 1 else 0)
        await retain_set(r, T, f"x/{i:02d}", blob(f"x/{i:02d}", expire_at_ms=exp), limit=100)
    await retain_set(r, T, "x/03", blob("x/03", expire_at_ms=NOW + 5), limit=100)  # re-retained: not expired
    cursor, dropped_total, calls = b"", 0, 0
    while True:
        cursor, dropped = await retain_expire_step(r, T, cursor, NOW, count=10)
        dropped_total += dropped
        calls += 1
        if not cursor:
            break
    assert calls == 3  # 25 names, 10 a page
    expired = {f"x/{i:02d}" for i in range(n) if i % 3 == 0} - {"x/03"}
    assert dropped_total == len(expired)
    left = {k.decode() for k in await r.hkeys(keys.retain(T))}
    assert left == {f"x/{i:02d}" for i in range(n)} - expired
    await assert_index_in_step(r)
    _, later = await retain_expire_step(r, T, b"", NOW + 60_000, count=100)
    assert later == 2  # x/01 and x/03 expired by then
    assert await retain_get(r, T, "x/01") is None


async def test_retained_expiry_builds_the_missing_index_first(r: Any) -> None:
    from tidemq.store.retained import retain_expire_step

    await r.hset(keys.retain(T), mapping={"o/1": blob("o/1", expire_at_ms=NOW - 1), "o/2": blob("o/2")})
    _, dropped = await retain_expire_step(r, T, b"", NOW)
    assert dropped == 1
    assert set(await index_of(r)) == {"o/2"}
    await assert_index_in_step(r)
