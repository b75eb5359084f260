"""Attacks on a worker's MQTT edge, over real sockets against a worker process on the real Redis: another
user's session, a will the ACL forbids, an oversized packet before authentication, a flood of connections
that never send CONNECT. Each asserts the attack fails, nothing is lost, and a fresh client is still served.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conformance import wire
from tests.fixtures.brokers import Broker, BrokerProcess
from tests.limits.helpers import connect311, open5, redis_url, uid, worker_with_env
from tidemq.auth.passwd import hash_password

pytestmark = pytest.mark.redis

EXPIRY_300 = b"\x05\x11\x00\x00\x01\x2c"  # properties: Session Expiry Interval 300 s


@pytest.fixture
def worker(tmp_path: Path, redis_server: Any) -> Iterator[tuple[BrokerProcess, Broker]]:
    with worker_with_env(tmp_path, redis_url(redis_server), {"TIDEMQ_MAX_PENDING_CONNECTS": "8"}) as w:
        yield w


async def _served(broker: Broker) -> None:
    fresh = await open5(broker, f"fresh{uid()}")
    assert await fresh.subscribe((f"fresh/{uid()}", 1)) == [1]
    await fresh.close()


async def test_another_user_cannot_resume_wipe_or_kick_a_session(worker: tuple[BrokerProcess, Broker]) -> None:
    """Sessions belong to (tenant, user, client id) [BifroMQ]: mallory using alice's client id gets a session of
    her own, and alice's session (its subscription, its queued message, her live connection) is untouched."""
    _, broker = worker
    tenant, cid = f"t{uid()}", f"shared{uid()}"
    alice = await open5(broker, cid, username=f"{tenant}/alice", clean=False, props=EXPIRY_300)
    assert await alice.subscribe(("inbox/#", 1)) == [1]
    await alice.bye()
    pub = await open5(broker, f"p{uid()}", username=f"{tenant}/alice")
    assert await pub.publish("inbox/1", b"for alice", qos=1) == 0
    # mallory, same tenant and client id: a resume finds no session of hers; clean start and 3.1.1 wipe nothing
    mallory = await open5(broker, cid, username=f"{tenant}/mallory", clean=False, props=EXPIRY_300)
    assert not mallory.connack.session_present
    await mallory.close()
    mallory = await open5(broker, cid, username=f"{tenant}/mallory", clean=True)
    await mallory.close()
    raw, code = await connect311(broker, cid, username=f"{tenant}/mallory", clean=False)
    assert code == 0x00
    await raw.close()
    alice = await open5(broker, cid, username=f"{tenant}/alice", clean=False, props=EXPIRY_300)
    assert alice.connack.session_present
    got = await alice.get()
    assert (got.topic, got.payload) == ("inbox/1", b"for alice")
    # while alice is online, mallory connecting with her client id does not kick her: both stay connected
    mallory = await open5(broker, cid, username=f"{tenant}/mallory", clean=True)
    assert await mallory.subscribe(("inbox/#", 1)) == [1]
    assert await alice.subscribe(("still/here", 0)) == [0]
    assert await pub.publish("inbox/2", b"for both", qos=1) == 0
    assert (await alice.get()).payload == b"for both"
    assert (await mallory.get()).payload == b"for both"
    await mallory.close()
    await alice.close()
    await pub.close()
    await _served(broker)


async def test_oversized_packet_before_connack_is_refused_at_the_header(
        worker: tuple[BrokerProcess, Broker]) -> None:
    _, broker = worker
    reader, writer = await asyncio.open_connection(broker.host, broker.port)
    body = 8 * 1024 * 1024  # an 8 MiB CONNECT: only its fixed header is ever read
    writer.write(bytes([0x10, 0x80 | (body & 0x7F), 0x80 | ((body >> 7) & 0x7F), 0x80 | ((body >> 14) & 0x7F),
                        body >> 21]))
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), wire.TIMEOUT) == b""  # closed without waiting for the body
    writer.close()
    await _served(broker)


async def test_connections_that_never_connect_are_capped(worker: tuple[BrokerProcess, Broker]) -> None:
    _, broker = worker
    idle = [await asyncio.open_connection(broker.host, broker.port) for _ in range(8)]
    reader, writer = await asyncio.open_connection(broker.host, broker.port)  # the ninth: over the cap
    assert await asyncio.wait_for(reader.read(), wire.TIMEOUT) == b""
    writer.close()
    for _r, w in idle:
        w.close()
    for r, _w in idle:
        await asyncio.wait_for(r.read(), wire.TIMEOUT)
    await _served(broker)  # the slots are free again once the idle sockets are gone


@pytest.fixture
def file_worker(tmp_path: Path, redis_server: Any) -> Iterator[tuple[BrokerProcess, Broker]]:
    doc = {"default_tenant": "acme", "tenants": {"acme": {"users": {"alice": {
        "password": hash_password("alice-pw", iterations=1000),
        "acl": [{"permission": "allow", "action": "all", "topics": ["alice/#"]}]}}}}}
    path = tmp_path / "auth.json"
    path.write_text(json.dumps(doc))
    env = {"TIDEMQ_AUTH_PROVIDER": "file", "TIDEMQ_AUTH_FILE": str(path)}
    with worker_with_env(tmp_path, redis_url(redis_server), env) as w:
        yield w


async def test_will_topic_is_acl_checked_at_connect(file_worker: tuple[BrokerProcess, Broker]) -> None:
    _, broker = file_worker
    await open5(broker, f"c{uid()}", username="alice", password=b"alice-pw",
                will=("elsewhere/x", b"bye", 0, False), expect=0x87)
    await open5(broker, f"c{uid()}", username="alice", password=b"alice-pw",
                will=("$SYS/broker/x", b"bye", 0, False), expect=0x87)
    raw = await wire.RawClient.open(broker.host, broker.port, 4)
    await raw.send(wire.connect(f"c{uid()}", version=4, username="alice", password=b"alice-pw",
                                will=("elsewhere/x", b"bye", 1, True)))
    ack = await raw.read()
    assert ack.type == wire.CONNACK and ack.body[1] == 5  # MQTT 3: not authorized
    await raw.close()
    ok = await open5(broker, f"c{uid()}", username="alice", password=b"alice-pw", will=("alice/will", b"bye", 1, False))
    await ok.close()
