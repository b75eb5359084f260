"""A delayed will is ACL-checked again when it fires, with the identity that set it: a rule change made
while the will waits stops it (the delayed-will path used to skip the ACL and could even retain it)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.limits.helpers import open5, redis_url, uid, worker_with_env
from tidemq.auth.passwd import hash_password
from tidemq.mqtt import codec
from tidemq.mqtt.packets import Connect, Will

pytestmark = pytest.mark.redis


def write(path: Path, alice_may_publish: bool) -> None:
    acl = [{"permission": "allow" if alice_may_publish else "deny", "action": "all", "topics": ["alice/#"]}]
    doc = {"default_tenant": "acme", "tenants": {"acme": {"users": {
        "alice": {"password": hash_password("alice-pw", iterations=1000), "acl": acl},
        "root": {"password": hash_password("root-pw", iterations=1000), "superuser": True}}}}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


async def _connect_with_delayed_will(host: str, port: int, topic: str, payload: bytes) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection(host, port)
    will = Will(topic, payload, 1, True, {"will_delay_interval": 1})
    writer.write(codec.encode(Connect(protocol_level=5, client_id=f"w{uid()}", clean_start=True, keep_alive=0,
                                      username="alice", password=b"alice-pw", will=will,
                                      properties={"session_expiry_interval": 30}), 5))
    head = await asyncio.wait_for(reader.readexactly(4), 10)
    assert head[0] == 0x20 and head[3] == 0, head  # CONNACK, success
    return writer


async def test_delayed_will_is_checked_again_when_it_fires(tmp_path: Path, redis_server: Any) -> None:
    path = tmp_path / "auth.json"
    write(path, alice_may_publish=True)
    env = {"TIDEMQ_AUTH_PROVIDER": "file", "TIDEMQ_AUTH_FILE": str(path)}
    with worker_with_env(tmp_path, redis_url(redis_server), env) as (_proc, broker):
        watcher = await open5(broker, f"root{uid()}", username="root", password=b"root-pw")
        assert await watcher.subscribe(("alice/#", 1)) == [1]
        # control: allowed at fire time, the delayed will arrives
        w = await _connect_with_delayed_will(broker.host, broker.port, "alice/will", b"first")
        w.transport.abort()  # an abnormal end: the will waits its delay
        got = await watcher.get(within=10)
        assert (got.topic, got.payload) == ("alice/will", b"first")
        # now the rules change while the will waits: it must not be published (nor retained)
        w = await _connect_with_delayed_will(broker.host, broker.port, "alice/will", b"second")
        write(path, alice_may_publish=False)
        w.transport.abort()
        await asyncio.sleep(0)
        root = await open5(broker, f"r{uid()}", username="root", password=b"root-pw")
        await asyncio.sleep(3)  # the will's delay (1 s) and the file poll (1 s) pass: nothing may come
        # (no event marks "a will was not published"; the sentinel below proves the watcher is live)
        rest = await watcher.until_sentinel(root, "alice/end")
        assert [m.payload for m in rest] == []
        fresh = await open5(broker, f"f{uid()}", username="root", password=b"root-pw", clean=True)
        assert await fresh.subscribe(("alice/will", 1)) == [1]
        kept = await fresh.get(within=10)  # the retained message is still the first will's
        assert (kept.topic, kept.payload, kept.retain) == ("alice/will", b"first", True)
        await fresh.close()
        await root.close()
        await watcher.close()
