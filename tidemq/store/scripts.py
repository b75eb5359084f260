"""The Lua script registry: SCRIPT LOAD once, EVALSHA always, reload only on NOSCRIPT.

Every ``lua/<name>.lua`` file is read once at import, its includes expanded,
and the SHA1 of the expanded source computed locally. A line
``--#include <name>`` (a Lua comment, alone on its line) is replaced by
``lua/include/<name>.lua``, itself expanded the same way; a block is pulled
into one script at most once (a second include of it is dropped), and a
missing file or an include cycle fails the import with ``ScriptIncludeError``.
Included blocks define ``local function``s only; every key still comes from
the calling script's KEYS. ``await load_all(client)`` runs SCRIPT LOAD (redis-py sends it to
every primary of a cluster). A call uses EVALSHA; on a NOSCRIPT error (a
restarted or flushed node) it loads the script and retries exactly once. Any
other error is raised as is and never retried: the script may have done part
of its work.

``Batch`` is the pipelined form used on the hot path: queue script calls and
plain commands on one non-transactional pipeline, execute it, and re-run only
the script calls that failed with NOSCRIPT (after loading them), in their
original order. The first other error is raised after the whole batch ran.

``RawBatch`` is the same for the per-message hot paths (inbox appends, reads, acks) with raw replies:
on a plain single-node client (``raw_capable``) it packs the commands itself and makes the round trip on
a pooled connection directly, with the connection's own retry on connection errors (as a redis-py
pipeline does) and no response callbacks (an ``XRANGE`` is the nested list Redis sent); on any other
client (cluster, Sentinel, the embedded store) it is a redis-py pipeline and replies go through its
callbacks, so callers decode both shapes. Its round trips are timed by the worker's metrics when the
client carries a ``tidemq_observe_pipeline`` hook (``workers/metrics.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import math
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


def _lua_dir() -> Path:
    """The Lua scripts: ``TIDEMQ_LUA_DIR``, else the source tree's top-level ``lua/``, else the copy
    an installed wheel ships as the ``tidemq.lua`` package data (pyproject maps ``lua/`` there)."""
    override = os.environ.get("TIDEMQ_LUA_DIR")
    if override:
        return Path(override)
    source = Path(__file__).resolve().parents[2] / "lua"
    if source.is_dir():
        return source
    return Path(__file__).resolve().parents[1] / "lua"


LUA_DIR = _lua_dir()

KeyArg = str | bytes
Arg = str | bytes | int | float


class Script:
    """One Lua file: its source, its SHA1, and how to call it."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __repr__(self) -> str:
        return f"Script({self.name!r}, sha={self.sha[:8]})"

    async def load(self, client: Any) -> None:
        loaded = await client.script_load(self.source)
        if isinstance(loaded, bytes):
            loaded = loaded.decode()
        if loaded != self.sha:  # pragma: no cover - would mean a hashing bug
            raise RuntimeError(f"SCRIPT LOAD of {self.name} returned {loaded}, expected {self.sha}")

    async def __call__(self, client: Any, keys: Sequence[KeyArg], args: Sequence[Arg] = ()) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.load(client)
            return await client.evalsha(self.sha, len(keys), *keys, *args)

    def queue(self, pipe: Any, keys: Sequence[KeyArg], args: Sequence[Arg] = ()) -> None:
        """Queue an EVALSHA on a pipeline (see ``Batch`` for the NOSCRIPT handling)."""
        # execute_command: redis-py blocks the evalsha() helper on cluster pipelines, not the command
        pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)


INCLUDE = re.compile(r"^--#include[ \t]+([A-Za-z0-9_]+)[ \t]*$")


class ScriptIncludeError(ValueError):
    """An ``--#include`` names a missing block, or blocks include each other in a cycle."""


def expand_includes(name: str, source: str, include_dir: Path) -> str:
    """``source`` (of script ``name``) with every ``--#include <block>`` line replaced by the block."""
    return _expand(name, source, include_dir, stack=[name], done=set())


def _expand(name: str, source: str, include_dir: Path, *, stack: list[str], done: set[str]) -> str:
    out: list[str] = []
    for lineno, line in enumerate(source.split("\n"), 1):
        m = INCLUDE.match(line)
        if m is None:
            if line.startswith("--#include"):
                raise ScriptIncludeError(f"{name}:{lineno}: malformed include line {line!r}")
            out.append(line)
            continue
        block = m.group(1)
        if block in stack:
            raise ScriptIncludeError(f"{name}:{lineno}: include cycle {' -> '.join([*stack, block])}")
        if block in done:
            continue
        path = include_dir / f"{block}.lua"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ScriptIncludeError(f"{name}:{lineno}: no include {block!r} ({path})") from None
        done.add(block)
        out.append(_expand(block, text, include_dir, stack=[*stack, block], done=done).rstrip("\n"))
    return "\n".join(out)


def _read_all(directory: Path) -> dict[str, Script]:
    scripts: dict[str, Script] = {}
    include_dir = directory / "include"
    for path in sorted(directory.glob("*.lua")):
        source = expand_includes(path.stem, path.read_text(encoding="utf-8"), include_dir)
        scripts[path.stem] = Script(path.stem, source)
    return scripts


SCRIPTS: dict[str, Script] = _read_all(LUA_DIR)


def get(name: str) -> Script:
    """The script loaded from ``lua/<name>.lua``."""
    try:
        return SCRIPTS[name]
    except KeyError:
        raise KeyError(f"no Lua script {name!r} in {LUA_DIR}") from None


async def load_all(client: Any) -> None:
    """SCRIPT LOAD every script (on every primary of a cluster)."""
    for script in SCRIPTS.values():
        await script.load(client)


class Batch:
    """One non-transactional pipeline mixing script calls and plain commands.

    Use ``batch.pipe`` to queue plain commands and ``batch.script(...)`` for
    script calls; ``await batch.execute()`` returns the results in order.
    """

    __slots__ = ("_client", "_scripts", "pipe")

    def __init__(self, client: Any) -> None:
        self._client = client
        self.pipe = client.pipeline(transaction=False)
        self._scripts: dict[int, tuple[Script, Sequence[KeyArg], Sequence[Arg]]] = {}

    def __len__(self) -> int:
        return len(self.pipe)

    @property
    def client(self) -> Any:
        return self._client

    def script(self, script: Script, keys: Sequence[KeyArg], args: Sequence[Arg] = ()) -> int:
        """Queue a script call; returns its index in the results."""
        index = len(self.pipe)
        script.queue(self.pipe, keys, args)
        self._scripts[index] = (script, keys, args)
        return index

    async def execute(self, *, raise_on_error: bool = True) -> list[Any]:
        """The results in order; ``raise_on_error=False`` leaves each failed command's error in its place."""
        if not len(self.pipe):
            return []
        results = list(await self.pipe.execute(raise_on_error=False))
        retry = [i for i, res in enumerate(results) if isinstance(res, NoScriptError) and i in self._scripts]
        if retry:
            for script in {self._scripts[i][0].name: self._scripts[i][0] for i in retry}.values():
                await script.load(self._client)
            again = self._client.pipeline(transaction=False)
            for i in retry:
                script, keys, args = self._scripts[i]
                script.queue(again, keys, args)
            for i, res in zip(retry, await again.execute(raise_on_error=False), strict=True):
                results[i] = res
        if raise_on_error:
            for res in results:
                if isinstance(res, Exception):
                    raise res
        return results


# connection classes whose round trip RawBatch makes itself (Sentinel's and fakeredis' connections are not)
_RAW_CONNECTIONS = (Connection, SSLConnection, UnixDomainSocketConnection)


def raw_capable(client: Any) -> bool:
    """Whether ``client`` is a plain single-node ``redis.asyncio.Redis`` on TCP, TLS or a Unix socket."""
    return (type(client) is Redis and client.connection is None
            and client.connection_pool.connection_class in _RAW_CONNECTIONS)


_OPTIONAL_COMMAND_NAME: dict[Any, bool] = {}


def _optional_command_name(pool_class: Any) -> bool:
    """Whether ``get_connection`` of this pool class takes no command name (redis-py >= 5.1; 5.0 needs one)."""
    known = _OPTIONAL_COMMAND_NAME.get(pool_class)
    if known is None:
        param = inspect.signature(pool_class.get_connection).parameters.get("command_name")
        known = _OPTIONAL_COMMAND_NAME[pool_class] = param is None or param.default is not inspect.Parameter.empty
    return known


# the RESP encoding of recent str arguments (key names, script SHAs, command names repeat on every round trip);
# emptied when it reaches _SEGMENTS_MAX (one-off values are passed as bytes, never cached)
_SEGMENTS: dict[str, bytes] = {}
_SEGMENTS_MAX = 8192


def pack_commands(commands: Sequence[Sequence[Any]]) -> bytes:
    """The RESP encoding of ``commands`` (arguments: bytes, str, int or float), one buffer."""
    out: list[bytes] = []
    add = out.append
    segments = _SEGMENTS
    for args in commands:
        add(b"*%d\r\n" % len(args))
        for a in args:
            t = type(a)
            if t is str:
                seg = segments.get(a)
                if seg is None:
                    raw = a.encode()
                    seg = b"$%d\r\n%b\r\n" % (len(raw), raw)
                    if len(segments) >= _SEGMENTS_MAX:
                        segments.clear()
                    segments[a] = seg
                add(seg)
            elif t is bytes:
                add(b"$%d\r\n%b\r\n" % (len(a), a))
            else:
                raw = b"%d" % a if t is int else repr(a).encode()
                add(b"$%d\r\n%b\r\n" % (len(raw), raw))
    return b"".join(out)


async def _round_trip(conn: Any, data: bytes, n: int) -> list[Any]:
    """Send ``data`` and read its ``n`` replies within one ``socket_timeout`` (one timer per round trip, not
    one per reply, and no task per write as redis-py's ``send_packed_command`` makes with a timeout). Any
    failure on the way closes the connection, as redis-py does; error replies are returned in place."""
    timeout = conn.socket_timeout
    if not conn.is_connected:
        await conn.send_packed_command(data)  # connects first
        data = b""
    else:
        await conn.check_health()  # a PING when idle for health_check_interval, as send_packed_command does
    results: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            if data:
                writer = conn._writer
                writer.write(data)
                await writer.drain()
            for _ in range(n):
                try:
                    results.append(await conn.read_response(timeout=math.inf))
                except ResponseError as exc:  # an error reply: the others are still read (the socket stays in sync)
                    results.append(exc)
    except TimeoutError:  # asyncio's (builtin)
        await conn.disconnect(nowait=True)
        raise RedisTimeoutError(f"Timeout sending or reading {n} commands") from None
    except OSError as exc:
        await conn.disconnect(nowait=True)
        raise RedisConnectionError(f"Error while writing to Redis: {exc}") from exc
    except BaseException:
        await conn.disconnect(nowait=True)
        raise
    return results


async def run_commands(client: Any, commands: Sequence[Sequence[Any]]) -> list[Any]:
    """One pipelined round trip of ``commands``; error replies are returned in place (see ``RawBatch``)."""
    if not commands:
        return []
    if not raw_capable(client):
        pipe = client.pipeline(transaction=False)
        for args in commands:
            pipe.execute_command(*args)
        return list(await pipe.execute(raise_on_error=False))
    data = pack_commands(commands)
    pool = client.connection_pool
    observe = getattr(client, "tidemq_observe_pipeline", None)
    start = time.perf_counter() if observe is not None else 0.0
    conn = await (pool.get_connection() if _optional_command_name(type(pool)) else pool.get_connection("PIPELINE"))
    try:
        async def disconnect(_error: Exception) -> None:
            await conn.disconnect()

        # like a redis-py pipeline: a connection error closes the connection and sends everything again
        return await conn.retry.call_with_retry(lambda: _round_trip(conn, data, len(commands)), disconnect)  # type: ignore[no-any-return]
    finally:
        await pool.release(conn)
        if observe is not None:
            observe(time.perf_counter() - start)


class RawBatch:
    """Script calls and plain commands for one round trip, replies raw where possible (module doc)."""

    __slots__ = ("_client", "_pipe", "_scripts", "commands")

    def __init__(self, client: Any) -> None:
        self._client = client
        self.commands: list[Sequence[Any]] = []
        self._scripts: dict[int, Script] = {}
        # not raw: everything is queued on a redis-py pipeline as well (replies through its callbacks)
        self._pipe = None if raw_capable(client) else client.pipeline(transaction=False)

    def __len__(self) -> int:
        return len(self.commands)

    def execute_command(self, *args: Any) -> None:
        """Queue ``args`` (what ``Script.queue`` calls on a pipeline)."""
        self.commands.append(args)
        if self._pipe is not None:
            self._pipe.execute_command(*args)

    def command(self, *args: Any) -> int:
        """Queue a plain command; returns its index in the results."""
        self.execute_command(*args)
        return len(self.commands) - 1

    def script(self, script: Script, keys: Sequence[KeyArg], args: Sequence[Arg] = ()) -> int:
        """Queue a script call; returns its index in the results."""
        index = len(self.commands)
        self._scripts[index] = script
        if self._pipe is None:
            script.queue(self, keys, args)
        else:
            self.commands.append(("EVALSHA", script.sha, len(keys), *keys, *args))
            script.queue(self._pipe, keys, args)
        return index

    async def execute(self) -> list[Any]:
        """Every reply in order; raises the first error reply after a NOSCRIPT retry of the script calls."""
        client = self._client
        if self._pipe is None:
            results = await run_commands(client, self.commands)
        else:
            results = list(await self._pipe.execute(raise_on_error=False)) if self.commands else []
        retry = [i for i, res in enumerate(results) if isinstance(res, NoScriptError) and i in self._scripts]
        if retry:
            for script in {self._scripts[i].name: self._scripts[i] for i in retry}.values():
                await script.load(client)
            for i, res in zip(retry, await run_commands(client, [self.commands[i] for i in retry]), strict=True):
                results[i] = res
        for res in results:
            if isinstance(res, Exception):
                raise res
        return results
