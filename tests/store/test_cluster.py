"""Cluster-only checks: per-tenant slots, batches across nodes, NOSCRIPT on one primary only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.crc import key_slot

from tests.store.helpers import NOW, connect
from tidemq.store import (
    InboxAppend,
    InboxOp,
    InboxTarget,
    SubOpts,
    close_redis,
    inbox_append_many,
    inbox_apply_many,
    inbox_read,
    is_cluster,
    load_all,
    open_redis,
    retain_set,
    session_disconnect,
    sessions_expire,
    subscribe,
    unsubscribe,
)
from tidemq.store import keys as K
from tidemq.store.scripts import SCRIPTS

pytestmark = pytest.mark.cluster

STORE_SCRIPTS = {"session_connect", "session_disconnect", "session_expire", "subscribe", "unsubscribe",
                 "q2_begin", "inbox_append_batch", "inbox_mark", "retain_set", "tenant_apply"}


@pytest.fixture
async def rc(redis_cluster: Any) -> AsyncIterator[Any]:
    from tests.fixtures.redis_servers import flush_port

    for port in redis_cluster.ports:
        flush_port(port)
    client = await open_redis(redis_cluster.url)
    await load_all(client)
    try:
        yield client
    finally:
        await close_redis(client)


def _node_name(rc: Any, tenant: str) -> str:
    return rc.get_node_from_key(K.routes(tenant)).name


def _tenants_on_every_node(rc: Any, per_node: int = 2) -> list[str]:
    by_node: dict[str, list[str]] = {}
    i = 0
    while len(by_node) < 3 or min(len(v) for v in by_node.values()) < per_node:
        t = f"tenant{{{i}}}"
        by_node.setdefault(_node_name(rc, t), []).append(t)
        i += 1
    return [t for v in by_node.values() for t in v[:per_node]]


async def test_cluster_client(rc: Any) -> None:
    assert is_cluster(rc)
    assert len(rc.get_primaries()) == 3


async def test_every_script_runs_single_slot(rc: Any, _single_slot_scripts: list[str]) -> None:
    t = "we{ird}%ten}ant{"
    first = await connect(rc, t, "c{1}")
    await subscribe(rc, t, "c{1}", [("a/#", SubOpts(qos=1))])
    await unsubscribe(rc, t, "c{1}", ["a/#"])
    await inbox_append_many(rc, [InboxAppend(t, b"x", [InboxTarget("c{1}", 1, ())], 5, True),
                                 InboxAppend(t, b"y", [InboxTarget("c{1}", 2, ())], 5, True, dedupe=("c{1}", 7))])
    await inbox_apply_many(rc, [InboxOp("sent", t, "c{1}", seq=1)])
    await retain_set(rc, t, "a", b"x", limit=10)
    await session_disconnect(rc, t, "c{1}", first.epoch, now_ms=NOW)
    await sessions_expire(rc, t, now_ms=NOW + 10**9)
    assert STORE_SCRIPTS <= set(_single_slot_scripts)
    assert len({key_slot(k.encode()) for k in K.session_keys(t, "c{1}")}) == 1
    assert len({key_slot(k.encode()) for k in K.tenant_keys(t)}) == 1


async def test_batch_of_appends_spans_every_primary(rc: Any) -> None:
    tenants = _tenants_on_every_node(rc)
    assert len({_node_name(rc, t) for t in tenants}) == 3
    for t in tenants:
        await connect(rc, t, "c", worker=f"w-{t}")
    items = [InboxAppend(t, b"%d" % n, [InboxTarget("c", 1, ()), InboxTarget("none", 1, ())], 10, False)
             for n in range(3) for t in tenants]
    results = await inbox_append_many(rc, items)
    assert [(x.owners, x.missing) for x in results] == [({f"w-{t}"}, 1) for _ in range(3) for t in tenants]
    for t in tenants:
        assert [e.blob for e in await inbox_read(rc, t, "c")] == [b"0", b"1", b"2"]


async def test_noscript_on_one_primary_only(rc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from tidemq.store.scripts import Script

    loads: list[str] = []
    orig = Script.load

    async def counting_load(self: Script, client: Any) -> None:
        loads.append(self.name)
        await orig(self, client)

    monkeypatch.setattr(Script, "load", counting_load)
    tenants = _tenants_on_every_node(rc, per_node=1)
    for t in tenants:
        await connect(rc, t, "c")
    victim = rc.get_node_from_key(K.routes(tenants[0]))
    await rc.execute_command("SCRIPT", "FLUSH", target_nodes=victim)
    assert await rc.execute_command("SCRIPT", "EXISTS", SCRIPTS["inbox_append_batch"].sha, target_nodes=victim) == [0]
    items = [InboxAppend(t, t.encode() + b"%d" % n, [InboxTarget("c", 1, ())], 10, True)
             for n in range(2) for t in tenants]
    await inbox_append_many(rc, items)
    assert loads == ["inbox_append_batch"]
    for t in tenants:
        assert [e.blob for e in await inbox_read(rc, t, "c")] == [t.encode() + b"0", t.encode() + b"1"]


async def test_one_tenant_spreads_over_every_primary(rc: Any) -> None:
    """Per-session hash tags: the sessions, inboxes and appends of ONE tenant land on all three primaries,
    each with a fair share (25-45 %); what stays per tenant (routes, index) is on the tenant's primary."""
    t = "one-big-tenant"
    n = 300
    for i in range(n):
        res = await connect(rc, t, f"dev-{i}")
        await subscribe(rc, t, f"dev-{i}", [(f"d/{i}/#", SubOpts(qos=1))], epoch=res.epoch)
    items = [InboxAppend(t, b"m", [InboxTarget(f"dev-{i}", 1, ()) for i in range(n)], 10, False)]
    [res] = await inbox_append_many(rc, items)
    assert (res.queued, res.missing) == (n, 0)
    per_node: dict[str, int] = {}
    for i in range(n):
        per_node[rc.get_node_from_key(K.inbox(t, f"dev-{i}")).name] = per_node.get(
            rc.get_node_from_key(K.inbox(t, f"dev-{i}")).name, 0) + 1
    assert len(per_node) == 3
    assert all(0.25 * n <= v <= 0.45 * n for v in per_node.values()), per_node
    for node in rc.get_primaries():  # the keys themselves, counted on each primary
        assert await rc.execute_command("DBSIZE", target_nodes=node) > 0.25 * n


async def test_many_concurrent_pipelines_lose_nothing(rc: Any) -> None:
    """150 CONNECT + DISCONNECT pairs in flight at once: more than a small per-node pool, which redis-py's cluster
    client does not wait on (a full pool raised MaxConnectionsError, taken for a node failure, and the
    connections of other requests were closed under them: 'Connection closed by server')."""
    import asyncio

    errors: list[str] = []

    async def one(i: int) -> None:
        try:
            res = await connect(rc, "busy", f"u/c{i}", persistent=False, expiry=0, clean_start=True)
            assert await session_disconnect(rc, "busy", f"u/c{i}", res.epoch, now_ms=NOW) == "removed"
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    for _ in range(3):
        await asyncio.gather(*(one(i) for i in range(150)))
    assert errors == []
