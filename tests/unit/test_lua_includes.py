"""The ``--#include`` step of the Lua script registry: expansion, include-once, cycles, missing blocks."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from tidemq.store import scripts
from tidemq.store.scripts import INCLUDE, LUA_DIR, SCRIPTS, Script, ScriptIncludeError, expand_includes


def _blocks(tmp_path: Path, **files: str) -> Path:
    inc = tmp_path / "include"
    inc.mkdir()
    for name, text in files.items():
        (inc / f"{name}.lua").write_text(text)
    return inc


def test_an_include_line_is_replaced_by_the_block(tmp_path: Path) -> None:
    inc = _blocks(tmp_path, helper="-- helper (include): x\nlocal function helper() return 1 end\n")
    source = "-- s: header\n--#include helper\nreturn helper()\n"
    assert expand_includes("s", source, inc) == (
        "-- s: header\n-- helper (include): x\nlocal function helper() return 1 end\nreturn helper()\n")


def test_nested_blocks_expand_and_each_block_lands_once(tmp_path: Path) -> None:
    inc = _blocks(tmp_path, a="--#include base\nlocal function a() return base() end",
                  b="--#include base\nlocal function b() return base() end",
                  base="local function base() return 0 end")
    out = expand_includes("s", "--#include a\n--#include b\n--#include a\nreturn a() + b()", inc)
    assert out.split("\n") == [
        "local function base() return 0 end",
        "local function a() return base() end",
        "local function b() return base() end",
        "return a() + b()",
    ]


def test_missing_block_names_the_script_and_line(tmp_path: Path) -> None:
    inc = _blocks(tmp_path, a="--#include nope\n")
    with pytest.raises(ScriptIncludeError, match=r"^a:1: no include 'nope'"):
        expand_includes("s", "--#include a", inc)
    with pytest.raises(ScriptIncludeError, match=r"^s:2: no include 'zzz'"):
        expand_includes("s", "-- s: x\n--#include zzz", inc)


def test_cycles_are_errors(tmp_path: Path) -> None:
    inc = _blocks(tmp_path, a="--#include b", b="--#include c", c="--#include a", self_="--#include self_")
    with pytest.raises(ScriptIncludeError, match=r"include cycle s -> a -> b -> c -> a"):
        expand_includes("s", "--#include a", inc)
    with pytest.raises(ScriptIncludeError, match=r"include cycle s -> self_ -> self_"):
        expand_includes("s", "--#include self_", inc)
    with pytest.raises(ScriptIncludeError, match="include cycle"):
        expand_includes("a", "--#include b", inc)  # a script named like a block it pulls in


@pytest.mark.parametrize("line", ["--#include", "--#include a b", "--#include ../x", "--#includes"])
def test_malformed_include_lines_are_errors(tmp_path: Path, line: str) -> None:
    with pytest.raises(ScriptIncludeError, match="malformed include line"):
        expand_includes("s", line, _blocks(tmp_path))


def test_only_a_whole_comment_line_is_a_directive(tmp_path: Path) -> None:
    inc = _blocks(tmp_path)
    text = "  --#include a\nlocal x = 1 --#include a\n-- #include a"
    assert expand_includes("s", text, inc) == text
    assert INCLUDE.match("--#include a_b9 \t")


def test_sha_is_of_the_expanded_source() -> None:
    for name, script in SCRIPTS.items():
        assert "--#include" not in script.source, name
        assert script.sha == hashlib.sha1(script.source.encode()).hexdigest()
    raw = (LUA_DIR / "session_connect.lua").read_text()
    assert "--#include session_wipe" in raw
    assert SCRIPTS["session_connect"].sha != Script("session_connect", raw).sha


def test_registry_reads_a_lua_dir_with_includes(tmp_path: Path) -> None:
    (tmp_path / "one.lua").write_text("-- one: x\n--#include blk\nreturn blk()\n")
    _blocks(tmp_path, blk="local function blk() return 1 end")
    got = scripts._read_all(tmp_path)
    assert list(got) == ["one"]  # blocks under include/ are not scripts of their own
    assert got["one"].source == "-- one: x\nlocal function blk() return 1 end\nreturn blk()\n"
    (tmp_path / "two.lua").write_text("--#include missing\n")
    with pytest.raises(ScriptIncludeError, match="two:1"):
        scripts._read_all(tmp_path)


def test_every_shipped_block_has_a_header_and_a_user() -> None:
    """(Locals only and no key names: tests/store/test_scripts.py checks the expanded scripts.)"""
    blocks = sorted((LUA_DIR / "include").glob("*.lua"))
    assert blocks, "lua/include/ holds the shared blocks"
    raw_scripts = [p.read_text() for p in LUA_DIR.glob("*.lua")] + [p.read_text() for p in blocks]
    for path in blocks:
        text = path.read_text()
        assert text.startswith(f"-- {path.stem} (include):"), path.name
        assert re.search(r"^local function ", text, re.M), f"{path.name} defines no local function"
        assert "KEYS[" not in text and "ARGV[" not in text, f"{path.name}: keys come from the caller"
        users = [t for t in raw_scripts if f"--#include {path.stem}\n" in t]
        assert users, f"{path.name} is included nowhere"
