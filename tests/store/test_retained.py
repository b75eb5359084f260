"""Retained messages: set/replace/clear, the per-tenant topic limit, matching, admin listing."""

from __future__ import annotations

from typing import Any

from tidemq.store import retain_clear, retain_count, retain_get, retain_list, retain_match, retain_set

T = "ret-tenant"


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


async def test_match(r: Any) -> None:
    topics = ["a/b", "a/c", "a/b/c", "b", "$SYS/x", "/lead", "a"]
    for topic in topics:
        assert await retain_set(r, T, topic, topic.encode() + b"\0", limit=100) == "RETAINED"
    assert await retain_match(r, T, "a/b") == [b"a/b\0"]
    assert await retain_match(r, T, "zz") == []
    assert sorted(await retain_match(r, T, "a/+")) == [b"a/b\0", b"a/c\0"]
    assert sorted(await retain_match(r, T, "a/#")) == [b"a\0", b"a/b\0", b"a/b/c\0", b"a/c\0"]
    everything = sorted(await retain_match(r, T, "#"))
    assert b"$SYS/x\0" not in everything and len(everything) == len(topics) - 1
    assert await retain_match(r, T, "+/x") == []
    assert await retain_match(r, T, "$SYS/#") == [b"$SYS/x\0"]
    assert await retain_match(r, T, "+/lead") == [b"/lead\0"]


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
