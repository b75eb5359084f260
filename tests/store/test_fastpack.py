"""``fast_pack``: hiredis packs exactly the bytes redis-py's asyncio packer would, and raises the same errors."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import DataError

from tidemq.store import keys as K
from tidemq.store import scripts
from tidemq.store.connection import close_redis, open_redis
from tidemq.store.fastpack import fast_pack

CASES: list[tuple[Any, ...]] = [
    ("EVALSHA", "a" * 40, 6, *K.session_keys("t{x}|", "u/c%1"), "u/c%1", "1", "u", 4, "0", 0, "w-1", "127.0.0.1:5",
     "MQTT", 1_700_000_000_000, b"", 0),
    ("SET", "k", -5), ("SET", "k", 2**70), ("SET", "k", 1.5), ("SET", "k", 0.1), ("SET", "k", float("inf")),
    ("SET", "k", "é\u2603"), ("SET", "k", b"\x00\xff\r\n"), ("SET", "k", b"x" * 100_000), ("SET", "k", ""),
    (b"SET", b"k", b"v"), ("CONFIG GET", "maxmemory"), (b"CLIENT SETNAME", b"n"), ("SET", "k", memoryview(b"mv")),
]


@pytest.mark.parametrize("args", CASES, ids=range(len(CASES)))
def test_same_bytes_as_redis_py(args: tuple[Any, ...]) -> None:
    plain, fast = Connection(), fast_pack(Connection)()
    assert b"".join(bytes(x) for x in fast.pack_command(*args)) == b"".join(bytes(x) for x in plain.pack_command(*args))
    cmds = [args, ("PING",), args]
    assert b"".join(fast.pack_commands(cmds)) == b"".join(plain.pack_commands(cmds))


@pytest.mark.parametrize("bad", [True, None, object()])
def test_same_errors_as_redis_py(bad: Any) -> None:
    with pytest.raises(DataError):
        fast_pack(Connection)().pack_command("SET", "k", bad)


def test_one_subclass_per_class() -> None:
    assert fast_pack(Connection) is fast_pack(Connection)
    assert issubclass(fast_pack(UnixDomainSocketConnection), UnixDomainSocketConnection)


async def test_the_store_client_uses_it(store_url: str) -> None:
    if not store_url.startswith("redis://"):
        pytest.skip("single-node client only")
    r = await open_redis(store_url)
    try:
        assert r.connection_pool.connection_class is fast_pack(Connection)
        await scripts.load_all(r)
        await r.set(f"{K.PREFIX}fp", "é" * 10_000)
        assert await r.get(f"{K.PREFIX}fp") == ("é" * 10_000).encode()
    finally:
        await close_redis(r)
