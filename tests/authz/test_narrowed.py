"""Issue 15: a deny rule narrows a wildcard subscription instead of refusing it — over real sockets, on a
worker with the static-file provider on the real Redis: live, queued (offline persistent session) and
retained messages under the denied subtree are never delivered; a filter wholly inside the deny is
refused; a rule change in the auth file applies to existing subscriptions once the file is reloaded.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.brokers import Broker, BrokerProcess
from tests.limits.helpers import open5, redis_url, uid, worker_with_env
from tidemq.auth.passwd import hash_password

pytestmark = pytest.mark.redis

ALICE, ROOT = b"alice-pw", b"root-pw"
EXPIRY_300 = b"\x05\x11\x00\x00\x01\x2c"  # properties: Session Expiry Interval 300 s


def document(deny: bool) -> dict[str, Any]:
    acl = [{"permission": "allow", "action": "all", "topics": ["sensors/#"]}]
    if deny:
        acl.insert(0, {"permission": "deny", "action": "subscribe", "topics": ["sensors/secret/#"]})
    return {"default_tenant": "acme", "tenants": {"acme": {"users": {
        "alice": {"password": hash_password("alice-pw", iterations=1000), "acl": acl},
        "root": {"password": hash_password("root-pw", iterations=1000), "superuser": True},
    }}}}


def write(path: Path, deny: bool) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document(deny)))
    os.replace(tmp, path)


@pytest.fixture
def narrowed(tmp_path: Path, redis_server: Any) -> Iterator[tuple[BrokerProcess, Broker, Path]]:
    path = tmp_path / "auth.json"
    write(path, deny=True)
    env = {"TIDEMQ_AUTH_PROVIDER": "file", "TIDEMQ_AUTH_FILE": str(path)}
    with worker_with_env(tmp_path, redis_url(redis_server), env) as (proc, broker):
        yield proc, broker, path


async def test_live_messages_under_the_deny_are_filtered(narrowed: tuple[BrokerProcess, Broker, Path]) -> None:
    _, broker, _ = narrowed
    alice = await open5(broker, f"a{uid()}", username="alice", password=ALICE)
    root = await open5(broker, f"r{uid()}", username="root", password=ROOT)
    assert await alice.subscribe(("sensors/#", 1), ("+/+", 0)) == [1, 0x87]  # +/+: no allow rule covers it
    assert await alice.subscribe(("sensors/secret/#", 1)) == [0x87]  # wholly inside the deny: refused
    for topic in ("sensors/a", "sensors/secret/b", "sensors/secret", "sensors/x/y"):
        assert await root.publish(topic, b"m", qos=1) in (0, 0x10)
    got = await alice.until_sentinel(root, "sensors/end")
    assert sorted(m.topic for m in got) == ["sensors/a", "sensors/x/y"]  # "#" covers its parent level too
    await alice.close()
    await root.close()


async def test_queued_messages_of_an_offline_session_are_filtered(
        narrowed: tuple[BrokerProcess, Broker, Path]) -> None:
    _, broker, _ = narrowed
    cid = f"a{uid()}"
    alice = await open5(broker, cid, username="alice", password=ALICE, props=EXPIRY_300)
    assert await alice.subscribe(("sensors/#", 1)) == [1]
    await alice.bye()
    root = await open5(broker, f"r{uid()}", username="root", password=ROOT)
    for topic in ("sensors/secret/1", "sensors/a", "sensors/secret/2", "sensors/b"):
        assert await root.publish(topic, b"q", qos=1) == 0
    alice = await open5(broker, cid, username="alice", password=ALICE, clean=False, props=EXPIRY_300)
    assert alice.connack.session_present
    got = await alice.until_sentinel(root, "sensors/end")
    assert [m.topic for m in got] == ["sensors/a", "sensors/b"]
    await alice.close()
    await root.close()


async def test_retained_messages_under_the_deny_are_not_replayed(
        narrowed: tuple[BrokerProcess, Broker, Path]) -> None:
    _, broker, _ = narrowed
    root = await open5(broker, f"r{uid()}", username="root", password=ROOT)
    base = f"sensors/r{uid()}"
    secret = f"sensors/secret/{uid()}"
    assert await root.publish(f"{base}/ok", b"r1", qos=1, retain=True) == 0
    assert await root.publish(secret, b"r2", qos=1, retain=True) == 0
    alice = await open5(broker, f"a{uid()}", username="alice", password=ALICE)
    assert await alice.subscribe(("sensors/#", 1)) == [1]
    got = await alice.until_sentinel(root, "sensors/end")
    topics = [m.topic for m in got]
    assert f"{base}/ok" in topics
    assert not [t for t in topics if t.startswith("sensors/secret/")]
    for topic in (f"{base}/ok", secret):  # the other tests of the tenant get no retained replays
        await root.publish(topic, b"", qos=1, retain=True)
    await alice.close()
    await root.close()


async def test_rule_change_applies_to_existing_subscriptions(tmp_path: Path, redis_server: Any) -> None:
    path = tmp_path / "auth.json"
    write(path, deny=False)
    env = {"TIDEMQ_AUTH_PROVIDER": "file", "TIDEMQ_AUTH_FILE": str(path)}
    with worker_with_env(tmp_path, redis_url(redis_server), env) as (_proc, broker):
        alice = await open5(broker, f"a{uid()}", username="alice", password=ALICE)
        root = await open5(broker, f"r{uid()}", username="root", password=ROOT)
        assert await alice.subscribe(("sensors/#", 1)) == [1]
        await root.publish("sensors/secret/1", b"before", qos=1)
        assert [m.topic for m in await alice.until_sentinel(root, "sensors/end")] == ["sensors/secret/1"]
        write(path, deny=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while True:  # the worker polls the file about once a second: wait for the first filtered round
            await root.publish("sensors/secret/2", b"after", qos=1)
            got = [m.topic for m in await alice.until_sentinel(root, "sensors/end")]
            if got == []:
                break
            assert got == ["sensors/secret/2"]
            assert loop.time() < deadline, "the reloaded deny rule never applied"
        await root.publish("sensors/ok", b"still", qos=1)
        assert [m.topic for m in await alice.until_sentinel(root, "sensors/end")] == ["sensors/ok"]
        await alice.close()
        await root.close()
