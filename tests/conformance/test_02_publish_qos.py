"""02 publish: QoS 0/1/2 flows on raw bytes, inbound (client -> broker) and outbound (broker -> client).

PUBACK/PUBREC/PUBCOMP carry the publisher's packet identifier; a QoS 2
PUBLISH retransmitted before PUBREL is delivered once; delivery QoS is the
minimum of publish and subscription QoS.
"""

from __future__ import annotations

import pytest

from tests.conformance import wire
from tests.fixtures.brokers import Broker


async def _subscriber(broker: Broker, cid: str, topic: str, qos: int, version: int = 4) -> wire.RawClient:
    c = await wire.RawClient.connected(broker.host, broker.port, cid, version=version)
    await c.send(wire.subscribe(7, (topic, qos), version=version))
    ack = await c.read()
    assert ack.type == wire.SUBACK and ack.pid == 7
    return c


async def test_qos0_round_trip(broker: Broker, uid: str) -> None:
    topic = f"q0/{uid}"
    sub = await _subscriber(broker, f"s-{uid}", topic, 0)
    async with sub, await wire.RawClient.connected(broker.host, broker.port, f"p-{uid}") as pub:
        await pub.send(wire.publish(topic, b"\x00zero\xff", qos=0))
        p = await sub.read()
        assert p.raw == wire.publish(topic, b"\x00zero\xff", qos=0)  # exact bytes: flags 0, no packet id


@pytest.mark.parametrize("version", [4, 5])
async def test_qos1_puback_same_packet_id(broker: Broker, uid: str, version: int) -> None:
    async with await wire.RawClient.connected(broker.host, broker.port, f"p1-{uid}", version=version) as c:
        await c.send(wire.publish(f"q1/{uid}", b"x", qos=1, pid=0x1234, version=version))
        ack = await c.read()
        assert ack.type == wire.PUBACK and ack.flags == 0
        assert ack.pid == 0x1234  # [MQTT-2.3.1-6]
        if version == 4:
            assert ack.raw == b"\x40\x02\x12\x34"
        else:  # reason code may be omitted when 0; 0x10 = no matching subscribers
            assert len(ack.body) == 2 or ack.body[2] in (0x00, 0x10)


@pytest.mark.parametrize("version", [4, 5])
async def test_qos2_inbound_flow(broker: Broker, uid: str, version: int) -> None:
    async with await wire.RawClient.connected(broker.host, broker.port, f"p2-{uid}", version=version) as c:
        await c.send(wire.publish(f"q2/{uid}", b"x", qos=2, pid=0x0102, version=version))
        rec = await c.read()
        assert rec.type == wire.PUBREC and rec.flags == 0 and rec.pid == 0x0102
        await c.send(wire.pubrel(0x0102, version=version))
        comp = await c.read()
        assert comp.type == wire.PUBCOMP and comp.flags == 0 and comp.pid == 0x0102
        if version == 4:
            assert (rec.raw, comp.raw) == (b"\x50\x02\x01\x02", b"\x70\x02\x01\x02")


async def test_qos1_outbound_delivery(broker: Broker, uid: str) -> None:
    topic = f"o1/{uid}"
    sub = await _subscriber(broker, f"s-{uid}", topic, 1)
    async with sub, await wire.RawClient.connected(broker.host, broker.port, f"p-{uid}") as pub:
        await pub.send(wire.publish(topic, b"one", qos=1, pid=5))
        assert (await pub.read()).raw == b"\x40\x02\x00\x05"
        p = await sub.read()
        assert p.type == wire.PUBLISH
        t, payload, qos, pid, retain = wire.parse_publish(p)
        assert (t, payload, qos, retain) == (topic, b"one", 1, False)
        assert pid and not p.flags & 0x08  # a first delivery is not DUP
        await sub.send(wire.puback(pid))


async def test_qos2_outbound_flow(broker: Broker, uid: str) -> None:
    topic = f"o2/{uid}"
    sub = await _subscriber(broker, f"s-{uid}", topic, 2)
    async with sub, await wire.RawClient.connected(broker.host, broker.port, f"p-{uid}") as pub:
        await pub.send(wire.publish(topic, b"two", qos=2, pid=9))
        assert (await pub.read()).raw == b"\x50\x02\x00\x09"
        await pub.send(wire.pubrel(9))
        assert (await pub.read()).raw == b"\x70\x02\x00\x09"
        p = await sub.read()
        t, payload, qos, pid, _ = wire.parse_publish(p)
        assert (t, payload, qos) == (topic, b"two", 2)
        assert pid is not None
        await sub.send(wire.pubrec(pid))
        rel = await sub.read()
        assert rel.raw == wire.pubrel(pid)  # PUBREL has fixed-header flags 0b0010 [MQTT-3.6.1-1]
        await sub.send(wire.pubcomp(pid))
        await sub.send(wire.pingreq())  # nothing else (no redelivery) before the PINGRESP
        assert (await sub.read()).raw == b"\xd0\x00"


async def test_qos2_retransmitted_publish_delivered_once(broker: Broker, uid: str) -> None:
    topic = f"once/{uid}"
    sub = await _subscriber(broker, f"s-{uid}", topic, 0)
    async with sub, await wire.RawClient.connected(broker.host, broker.port, f"p-{uid}") as pub:
        await pub.send(wire.publish(topic, b"exactly-once", qos=2, pid=3))
        assert (await pub.read()).type == wire.PUBREC
        await pub.send(wire.publish(topic, b"exactly-once", qos=2, pid=3, dup=True))  # [MQTT-4.3.3-2]
        assert (await pub.read()).raw == b"\x50\x02\x00\x03"
        await pub.send(wire.pubrel(3))
        assert (await pub.read()).raw == b"\x70\x02\x00\x03"
        await pub.send(wire.publish(topic, b"sentinel", qos=0))
        got = [wire.parse_publish(await sub.read())[1] for _ in range(2)]
        assert got == [b"exactly-once", b"sentinel"]


async def test_delivery_qos_is_minimum(broker: Broker, uid: str) -> None:
    topic = f"min/{uid}"
    sub = await _subscriber(broker, f"s-{uid}", topic, 0)
    async with sub, await wire.RawClient.connected(broker.host, broker.port, f"p-{uid}") as pub:
        await pub.send(wire.publish(topic, b"down", qos=2, pid=1))
        assert (await pub.read()).type == wire.PUBREC
        await pub.send(wire.pubrel(1))
        assert (await pub.read()).type == wire.PUBCOMP
        p = await sub.read()
        assert p.raw == wire.publish(topic, b"down", qos=0)


async def test_v5_publish_delivery_keeps_user_properties(broker: Broker, uid: str) -> None:
    topic = f"up/{uid}"
    sub = await _subscriber(broker, f"s-{uid}", topic, 1, version=5)
    user = wire.props((wire.P_USER_PROPERTY, ("k", "v1")), (wire.P_USER_PROPERTY, ("k", "v2")))
    async with sub, await wire.RawClient.connected(broker.host, broker.port, f"p-{uid}", version=5) as pub:
        await pub.send(wire.publish(topic, b"props", qos=1, pid=2, version=5, properties=user))
        assert (await pub.read()).type == wire.PUBACK
        p = await sub.read()
        n = int.from_bytes(p.body[:2], "big")
        props, _ = wire.parse_props(p.body, 2 + n + 2)
        assert props.get(wire.P_USER_PROPERTY) == [("k", "v1"), ("k", "v2")]  # order and repeats kept
        await sub.send(wire.puback(wire.parse_publish(p, 5)[3] or 0, version=5))
