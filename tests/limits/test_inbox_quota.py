"""No silent loss at a full inbox, over real sockets on a real Redis (one worker, tenant settings).

An offline persistent subscriber with a small inbox (``SessionInboxSize``) and more QoS 1 messages than
it holds: an MQTT 5 publisher gets PUBACK 0x97 (Quota exceeded) for the overflow, an MQTT 3.1.1
publisher still gets its PUBACK (the drop is counted and logged), and on reconnect the subscriber gets
exactly the messages acknowledged with success, in order. ``QoS0DropOldest`` drops QoS 0 entries only.
Every drop is counted in the worker's published counters. (The script's cluster behaviour is covered by
tests/store/test_inbox_quota.py on the 3-master cluster; the worker path does not differ.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from redis import Redis

from tests.conformance import wire
from tests.fixtures.brokers import Broker
from tests.limits.helpers import SESSION_EXPIRY, connect311, uid, until, until_async, worker_stats
from tidemq.store import keys
from tidemq.store.keys import session_name

pytestmark = pytest.mark.redis

EXPIRY = wire.props((SESSION_EXPIRY, 600))
Settings = Callable[..., None]


async def _offline_subscriber(c5: Any, r: Any, tenant: str, topic: str, qos: int = 1) -> str:
    cid = f"p{uid()}"
    sub = await c5(cid, clean=False, props=EXPIRY)
    assert await sub.subscribe((topic, qos)) == [qos]
    await sub.bye()
    await until_async(lambda: r.hget(keys.sess(tenant, session_name("u", cid)), "worker") in (b"", None), 5.0,
                      "session offline")
    return cid


async def _drain(c5: Any, cid: str, n: int) -> list[bytes]:
    again = await c5(cid, clean=False, props=EXPIRY)
    assert again.connack.session_present
    got = [(await again.get()).payload for _ in range(n)]
    assert not again.received
    return got


async def test_mqtt5_overflow_gets_quota_exceeded_and_acked_are_delivered(
        worker: Broker, tenant: str, settings: Settings, c5: Any, r: Redis, worker_id: str,
) -> None:
    settings(SessionInboxSize=5, QoS0DropOldest=True)
    cid = await _offline_subscriber(c5, r, tenant, "q/t")
    pub = await c5()
    codes = {i: await pub.publish("q/t", b"%d" % i, qos=1) for i in range(12)}
    acked = [i for i, rc in codes.items() if rc == 0]
    assert acked == [0, 1, 2, 3, 4] and all(codes[i] == 0x97 for i in range(5, 12))
    # QoS 2: PUBREC 0x97 ends the flow (no PUBREL expected)
    await pub.send(wire.publish("q/t", b"qos2", qos=2, pid=900, version=5))
    rec = await pub._until(wire.PUBREC)
    assert (rec.pid, rec.body[2]) == (900, 0x97)
    assert await _drain(c5, cid, 5) == [b"%d" % i for i in acked]
    until(lambda: worker_stats(r, worker_id).get("refused_inbox_full", 0) >= 8, 10.0, "refused_inbox_full counted")


async def test_mqtt311_overflow_is_acknowledged_and_counted(
        worker: Broker, tenant: str, settings: Settings, c5: Any, r: Redis,
) -> None:
    settings(SessionInboxSize=3)
    cid = await _offline_subscriber(c5, r, tenant, "q/t")
    pub, code = await connect311(worker, f"v3{uid()}", username=f"{tenant}/u")
    assert code == 0
    for i in range(1, 6):
        await pub.send(wire.publish("q/t", b"%d" % i, qos=1, pid=i, version=4))
        ack = await pub.read_type(wire.PUBACK)
        assert ack.pid == i  # MQTT 3 has no failure PUBACK: the connection stays, the drop is logged
    await pub.close()
    assert await _drain(c5, cid, 3) == [b"1", b"2", b"3"]


async def test_one_target_with_room_is_success(
        worker: Broker, tenant: str, settings: Settings, c5: Any, r: Redis,
) -> None:
    settings(SessionInboxSize=1)
    full = await _offline_subscriber(c5, r, tenant, "q/t")
    pub = await c5()
    assert await pub.publish("q/t", b"first", qos=1) == 0
    roomy = await _offline_subscriber(c5, r, tenant, "q/t")
    assert await pub.publish("q/t", b"second", qos=1) == 0  # queued for roomy, refused for full
    assert await _drain(c5, full, 1) == [b"first"]
    assert await _drain(c5, roomy, 1) == [b"second"]


async def test_qos0_drop_oldest_drops_only_qos0(
        worker: Broker, tenant: str, settings: Settings, c5: Any, r: Redis, worker_id: str,
) -> None:
    settings(SessionInboxSize=4, QoS0DropOldest=True)
    cid = await _offline_subscriber(c5, r, tenant, "q/t")
    pub = await c5()
    assert await pub.publish("q/t", b"a1", qos=1) == 0
    await pub.publish("q/t", b"z1", qos=0)
    assert await pub.publish("q/t", b"a2", qos=1) == 0
    await pub.publish("q/t", b"z2", qos=0)
    for z in (b"z3", b"z4", b"z5"):  # each replaces the oldest QoS 0 entry
        await pub.publish("q/t", z, qos=0)
    assert await pub.publish("q/t", b"a3", qos=1) == 0x97  # never makes room by trimming QoS 1
    await until_async(lambda: r.xlen(keys.inbox(tenant, session_name("u", cid))) == 4, 5.0, "four entries")
    got = await _drain(c5, cid, 4)
    assert got == [b"a1", b"a2", b"z4", b"z5"]
    until(lambda: worker_stats(r, worker_id).get("dropped_qos0_oldest", 0) >= 3, 10.0, "dropped_qos0_oldest")
