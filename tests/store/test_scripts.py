"""The script registry: headers, Lua hygiene, NOSCRIPT recovery (direct and pipelined), no other retry."""

from __future__ import annotations

import re
from typing import Any

import pytest
from redis.exceptions import ResponseError

from tests.store.helpers import connect
from tidemq.store import InboxAppend, InboxOp, InboxTarget, inbox_append_many, inbox_apply_many, inbox_read, session_get
from tidemq.store import keys as K
from tidemq.store.scripts import LUA_DIR, SCRIPTS, Batch, Script, get

T = "scr-tenant"


def test_every_lua_file_is_registered_with_a_header() -> None:
    files = sorted(p.stem for p in LUA_DIR.glob("*.lua"))
    assert files == sorted(SCRIPTS) and len(files) >= 8
    for name, script in SCRIPTS.items():
        lines = script.source.split("\n")
        assert lines[0].startswith(f"-- {name}:"), name
        header = []
        for line in lines:  # the leading comment block is the header
            if not line.startswith("--"):
                break
            header.append(line)
        text = "\n".join(header)
        for word in ("KEYS:", "ARGV:", "Returns:"):
            assert word in text, f"{name}: header lacks {word}"


_ASSIGN = re.compile(r"^\s*([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*=[^=]")
_LOCAL = re.compile(r"\blocal\s+([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)")
_FOR = re.compile(r"\bfor\s+([A-Za-z_]\w*)")


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_lua_uses_locals_only_and_builds_no_keys(name: str) -> None:
    source = SCRIPTS[name].source
    declared: set[str] = set()
    for line in source.splitlines():
        code = line.split("--", 1)[0]
        for m in _LOCAL.finditer(code):
            declared.update(x.strip() for x in m.group(1).split(","))
        for m in _FOR.finditer(code):
            declared.add(m.group(1))
        m = _ASSIGN.match(code)
        if m and not code.lstrip().startswith("local"):
            for var in (x.strip() for x in m.group(1).split(",")):
                assert var in declared, f"{name}: assignment to global {var!r}: {line!r}"
    assert "cmsgpack" not in source
    assert "tidemq:" not in source, f"{name} builds a key name"


async def test_noscript_recovery_direct(r: Any) -> None:
    await r.script_flush()
    res = await connect(r, T, "c1")
    assert res.epoch >= 1  # the script ran (loaded again after NOSCRIPT): a first epoch was issued
    assert (await session_get(r, T, "c1"))["worker"] == "w1"


async def test_noscript_recovery_in_a_pipeline(r: Any) -> None:
    await connect(r, T, "c1")
    await r.script_flush()
    batch = Batch(r)
    batch.pipe.set("plain", "1")
    from tidemq.store.inbox import queue_appends
    [[(i1, k1, _, _)]] = queue_appends(batch, [InboxAppend(T, b"a", [InboxTarget("c1", 1, ())], 10, True)],
                                    cluster=False, now_ms=1)
    batch.pipe.get("plain")
    [[(i2, k2, _, _)]] = queue_appends(batch, [InboxAppend(T, b"b", [InboxTarget("c1", 1, ())], 10, True)],
                                    cluster=False, now_ms=1)
    results = await batch.execute()
    assert results[1 + 1] == b"1"
    assert [results[i1][k1], results[i2][k2]] == [1, 1]  # queued by every target (the compact reply)
    assert [e.blob for e in await inbox_read(r, T, "c1")] == [b"a", b"b"]


async def test_other_errors_are_not_retried(r: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    await connect(r, T, "c1")
    loads: list[str] = []
    orig = Script.load

    async def counting_load(self: Script, client: Any) -> None:
        loads.append(self.name)
        await orig(self, client)

    monkeypatch.setattr(Script, "load", counting_load)
    mark = get("inbox_mark")
    keys = [K.sess(T, "c1"), K.inbox(T, "c1"), K.rel(T, "c1"), K.q2in(T, "c1")]
    with pytest.raises(ResponseError, match="unknown kind"):
        await mark(r, keys, ["bogus", 0, 0])
    batch = Batch(r)
    batch.script(mark, keys, ["q2add", 0, 5])
    batch.script(mark, keys, ["bogus", 0, 0])
    batch.script(mark, keys, ["q2add", 0, 6])
    with pytest.raises(ResponseError, match="unknown kind"):
        await batch.execute()
    assert loads == []
    # the calls around the failing one did run, exactly once
    assert await r.smembers(K.q2in(T, "c1")) == {b"5", b"6"}
    await inbox_apply_many(r, [InboxOp("q2del", T, "c1", pid=5)])
    assert await r.smembers(K.q2in(T, "c1")) == {b"6"}
    assert await Batch(r).execute() == []


async def test_load_all_is_idempotent(r: Any) -> None:
    from tidemq.store import load_all
    await load_all(r)
    await load_all(r)
    exists = await r.script_exists(*(s.sha for s in SCRIPTS.values()))
    assert all(exists)


async def test_inbox_append_after_flush_in_bulk(r: Any) -> None:
    await connect(r, T, "c1")
    await r.script_flush()
    res = await inbox_append_many(r, [InboxAppend(T, b"%d" % i, [InboxTarget("c1", 1, ())], 100, True)
                                      for i in range(20)])
    assert len(res) == 20 and all(x.owners == {"w1"} for x in res)
    assert [e.seq for e in await inbox_read(r, T, "c1")] == list(range(1, 21))
