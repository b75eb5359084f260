"""Shared subscriptions (MQTT 5 4.8.2): ``$share`` round-robin and ``$oshare`` sticky groups.

- ``$share/g/t``: each message goes to exactly one member, spread evenly over
  the members — also when they are connected to different worker processes on
  one Redis;
- ``$oshare/g/t``: every message of one publisher goes to the same member;
- an offline persistent member keeps its share: messages routed to it queue
  in its inbox and arrive when it reconnects (docs/mqtt5.md);
- no-local on a shared subscription is a protocol error [MQTT-3.8.3-4];
- retained messages are not sent for a shared subscription (4.8.2).
Each member also holds a plain subscription on a control topic: a sentinel
published there after the burst arrives at every member after everything the
burst brought it, so "exactly one" is checked without waiting on time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tests.conformance import wire
from tests.fixtures.brokers import Broker
from tests.mqtt5.conftest import Paho5
from tests.mqtt5.v5wire import SESSION_EXPIRY, V5, sub_options


async def _members(raw5: Any, uid: str, flt: str, control: str, brokers: list[Broker]) -> list[V5]:
    out = []
    for i, b in enumerate(brokers):
        m = await raw5(f"m{i}{uid}", on=b)
        assert await m.subscribe((flt, sub_options(1))) == [1]
        await m.subscribe((control, sub_options(1)))
        out.append(m)
    return out


async def _collect(members: list[V5], pub: V5, control: str) -> list[list[bytes]]:
    """What each member got before the control sentinel."""
    await pub.publish(control, b"sentinel", qos=1)
    got = []
    for m in members:
        mine = []
        while (msg := await m.get()).payload != b"sentinel":
            mine.append(msg.payload)
        got.append(mine)
    return got


def _check_exactly_once(got: list[list[bytes]], n: int) -> Counter[int]:
    every = [p for mine in got for p in mine]
    assert sorted(every) == sorted(f"m{i}".encode() for i in range(n))  # each one exactly once
    return Counter({k: len(mine) for k, mine in enumerate(got)})


async def test_share_round_robin_one_worker(raw5: Any, uid: str, broker: Broker) -> None:
    topic, control = f"sh/{uid}", f"ctl/{uid}"
    members = await _members(raw5, uid, f"$share/g/{topic}", control, [broker] * 3)
    pub = await raw5(f"p{uid}")
    for i in range(30):
        await pub.publish(topic, f"m{i}".encode(), qos=1)
    counts = _check_exactly_once(await _collect(members, pub, control), 30)
    assert sorted(counts.values()) == [10, 10, 10]  # round-robin over three members


async def test_share_across_worker_processes(raw5: Any, uid: str, broker: Broker,
                                             worker_factory: Callable[..., Broker]) -> None:
    if broker.kind != "worker":
        pytest.skip("several processes share state only through Redis: worker kind only")
    w1, w2 = worker_factory(), worker_factory()
    topic, control = f"sh/{uid}", f"ctl/{uid}"
    members = await _members(raw5, uid, f"$share/g/{topic}", control, [w1, w2, w2])
    pubs = [await raw5(f"p{uid}", on=w1), await raw5(f"q{uid}", on=w2)]
    for i in range(30):
        await pubs[i % 2].publish(topic, f"m{i}".encode(), qos=1)
    # each publisher's sentinel closes its own messages (the two publishers are not ordered)
    first = await _collect(members, pubs[0], control)
    second = await _collect(members, pubs[1], control)
    got = [a + b for a, b in zip(first, second, strict=True)]
    counts = _check_exactly_once(got, 30)
    assert all(c >= 5 for c in counts.values()), counts  # every member, on either process, gets a share


async def test_oshare_sticky_per_publisher(raw5: Any, uid: str, broker: Broker) -> None:
    topic, control = f"osh/{uid}", f"ctl/{uid}"
    members = await _members(raw5, uid, f"$oshare/g/{topic}", control, [broker] * 3)
    pub = await raw5(f"p{uid}")
    for i in range(12):
        await pub.publish(topic, f"m{i}".encode(), qos=1)
    got = await _collect(members, pub, control)
    counts = _check_exactly_once(got, 12)
    assert sorted(counts.values()) == [0, 0, 12]  # one member got all of this publisher's messages
    owner = max(counts, key=lambda k: counts[k])
    assert got[owner] == [f"m{i}".encode() for i in range(12)]  # and in order


async def test_offline_persistent_member_gets_its_share_on_reconnect(raw5: Any, uid: str) -> None:
    topic, cid = f"sh/{uid}", f"a{uid}"
    flt = f"$share/g/{topic}"
    away = await raw5(cid, props=wire.props((SESSION_EXPIRY, 300)))
    await away.subscribe((flt, sub_options(1)))
    await away.bye()
    online = await raw5(f"b{uid}")
    await online.subscribe((flt, sub_options(1)))
    pub = await raw5(f"p{uid}")
    for i in range(10):
        await pub.publish(topic, f"m{i}".encode(), qos=1)
    back = await raw5(cid, props=wire.props((SESSION_EXPIRY, 300)), clean=False)
    assert back.connack.session_present
    queued = [(await back.get()).payload for _ in range(5)]  # round-robin: half were routed to it
    live = [(await online.get()).payload for _ in range(5)]
    assert sorted(queued + live) == sorted(f"m{i}".encode() for i in range(10))
    assert queued == sorted(queued, key=lambda p: int(p[1:]))  # in publish order


async def test_no_local_on_shared_is_protocol_error(raw5: Any, uid: str) -> None:
    c = await raw5(f"n{uid}")
    await c.send(wire.subscribe(1, (f"$share/g/nl/{uid}", sub_options(1, no_local=True)), version=5))
    assert await c.disconnect_reason() == 0x82  # [MQTT-3.8.3-4]


async def test_no_retained_on_shared_subscribe(raw5: Any, uid: str) -> None:
    topic = f"shr/{uid}"
    pub = await raw5(f"p{uid}")
    await pub.publish(topic, b"retained", qos=1, retain=True)
    try:
        m = await raw5(f"m{uid}")
        await m.subscribe((f"$share/g/{topic}", sub_options(1)))
        await pub.publish(topic, b"live", qos=1)
        assert (await m.get()).payload == b"live"  # not the retained one first
        plain = await raw5(f"q{uid}")  # while a plain subscription does get it
        await plain.subscribe((topic, sub_options(1)))
        assert (await plain.get()).payload == b"retained"
    finally:
        await pub.publish(topic, b"", qos=1, retain=True)


def test_paho_shared_group(paho5: Callable[..., Paho5], uid: str) -> None:
    topic = f"shp/{uid}"
    a, b = paho5(), paho5()
    for c in (a, b):
        c.connect()
        assert c.sub(f"$share/grp/{topic}", 1) == [1]
    pub = paho5()
    pub.connect()
    for i in range(10):
        pub.pub(topic, f"m{i}".encode(), qos=1)
    got = [m.payload for m in a.get_many(5)] + [m.payload for m in b.get_many(5)]
    assert sorted(got) == sorted(f"m{i}".encode() for i in range(10))
