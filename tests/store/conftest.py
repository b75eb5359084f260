"""Store-suite fixtures: ``r`` is a client on a flushed store (single node, cluster or memory).

Every script call made through the registry is checked to touch keys of one
hash slot only (the cluster rule), whichever backend the test runs on. Two
exceptions, never on a cluster: ``inbox_append_batch`` groups its targets by
slot on a cluster and by tenant on a single node (one call per flush and tenant
there); ``tenant_apply`` also reads the route watchers' hash on a single node
or the memory store (tidemq/store/route_watch.py: route caches are only
push-invalidated there).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.crc import key_slot

from tidemq.store import scripts
from tidemq.store.connection import close_redis, open_redis

SPANS_SLOTS_OFF_CLUSTER = {"inbox_append_batch", "tenant_apply"}


def assert_one_slot(name: str, keys: Any, target: Any = None) -> None:
    if name in SPANS_SLOTS_OFF_CLUSTER and target is not None and "Cluster" not in type(target).__name__:
        return
    slots = {key_slot(k.encode() if isinstance(k, str) else k) for k in keys}
    assert len(slots) <= 1, f"script {name} touches several slots: {list(keys)}"


@pytest.fixture(autouse=True)
def _single_slot_scripts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the names of every script called and check their keys share one slot."""
    called: list[str] = []
    orig_call = scripts.Script.__call__
    orig_queue = scripts.Script.queue

    async def call(self: scripts.Script, client: Any, keys: Any, args: Any = ()) -> Any:
        assert_one_slot(self.name, keys, client)
        called.append(self.name)
        return await orig_call(self, client, keys, args)

    def queue(self: scripts.Script, pipe: Any, keys: Any, args: Any = ()) -> None:
        assert_one_slot(self.name, keys, pipe)
        called.append(self.name)
        orig_queue(self, pipe, keys, args)

    monkeypatch.setattr(scripts.Script, "__call__", call)
    monkeypatch.setattr(scripts.Script, "queue", queue)
    return called


@pytest.fixture
async def r(store_url: str) -> AsyncIterator[Any]:
    client = await open_redis(store_url)
    await scripts.load_all(client)
    try:
        yield client
    finally:
        await close_redis(client)
