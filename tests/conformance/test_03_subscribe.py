"""03 subscribe: SUBACK codes per filter, invalid filters, UNSUBSCRIBE, retained delivery on subscribe.

An invalid filter in a SUBSCRIBE fails only that filter (0x80 in 3.1.1, 0x8F in
5.0); the connection and the other filters of the same packet are unaffected.
"""

from __future__ import annotations

import pytest

from tests.conformance import wire
from tests.conformance.conftest import Bystander
from tests.fixtures.brokers import Broker


async def test_suback_grants_requested_qos(broker: Broker, uid: str) -> None:
    async with await wire.RawClient.connected(broker.host, broker.port, f"s-{uid}") as c:
        await c.send(wire.subscribe(0x0A0B, (f"a/{uid}", 0), (f"b/{uid}/+", 1), (f"c/{uid}/#", 2)))
        assert (await c.read()).raw == b"\x90\x05\x0a\x0b\x00\x01\x02"  # [MQTT-3.8.4-5] one code per filter


async def test_v5_suback_reason_codes(broker: Broker, uid: str) -> None:
    async with await wire.RawClient.connected(broker.host, broker.port, f"s5-{uid}", version=5) as c:
        await c.send(wire.subscribe(3, (f"a/{uid}", 0), (f"b/{uid}", 1), (f"c/{uid}", 2), version=5))
        ack = await c.read()
        assert ack.type == wire.SUBACK and ack.pid == 3
        _, pos = wire.parse_props(ack.body, 2)
        assert ack.body[pos:] == b"\x00\x01\x02"


@pytest.mark.mosquitto_deviates("disconnects on an invalid filter instead of a failure SUBACK")
async def test_v311_invalid_filter_fails_only_that_filter(broker: Broker, uid: str, bystander: Bystander) -> None:
    async with await wire.RawClient.connected(broker.host, broker.port, f"inv-{uid}") as c:
        await c.send(wire.subscribe(4, (f"ok/{uid}", 1), ("a/#/b", 1), (f"x/{uid}+", 0)))
        assert (await c.read()).raw == b"\x90\x05\x00\x04\x01\x80\x80"
        await c.send(wire.pingreq())  # still connected
        assert (await c.read()).raw == b"\xd0\x00"
    await bystander.check()


@pytest.mark.mosquitto_deviates("disconnects on an invalid filter instead of a failure SUBACK")
async def test_v5_invalid_filter_reason_0x8f(broker: Broker, uid: str) -> None:
    async with await wire.RawClient.connected(broker.host, broker.port, f"inv5-{uid}", version=5) as c:
        await c.send(wire.subscribe(4, (f"ok/{uid}", 1), ("a/#/b", 1), version=5))
        ack = await c.read()
        assert ack.type == wire.SUBACK and ack.pid == 4
        _, pos = wire.parse_props(ack.body, 2)
        assert ack.body[pos:] == b"\x01\x8f"  # topic filter invalid
        await c.send(wire.pingreq())
        assert (await c.read()).raw == b"\xd0\x00"


async def test_unsubscribe_stops_delivery(broker: Broker, uid: str) -> None:
    topic = f"uns/{uid}"
    async with await wire.RawClient.connected(broker.host, broker.port, f"u-{uid}") as c:
        await c.send(wire.subscribe(1, (topic, 0)))
        assert (await c.read()).type == wire.SUBACK
        await c.send(wire.unsubscribe(2, topic))
        assert (await c.read()).raw == b"\xb0\x02\x00\x02"  # [MQTT-3.10.4-4] UNSUBACK, same packet id
        await c.send(wire.publish(topic, b"gone", qos=1, pid=3))
        assert (await c.read()).type == wire.PUBACK
        await c.send(wire.pingreq())  # the PINGRESP comes before any (wrong) delivery would
        assert (await c.read()).raw == b"\xd0\x00"


async def test_retained_sent_on_subscribe_with_retain_flag(broker: Broker, uid: str) -> None:
    topic = f"ret/{uid}"
    async with await wire.RawClient.connected(broker.host, broker.port, f"rp-{uid}") as pub:
        await pub.send(wire.publish(topic, b"kept", qos=1, pid=1, retain=True))
        assert (await pub.read()).raw == b"\x40\x02\x00\x01"
    async with await wire.RawClient.connected(broker.host, broker.port, f"rs-{uid}") as sub:
        await sub.send(wire.subscribe(1, (topic, 0)))
        assert (await sub.read()).type == wire.SUBACK
        p = await sub.read()
        assert p.raw == wire.publish(topic, b"kept", qos=0, retain=True)  # [MQTT-3.3.1-8]
        await sub.send(wire.publish(topic, b"", qos=1, pid=2, retain=True))  # clear it
        assert (await sub.read_type(wire.PUBACK)).pid == 2


async def test_subscribe_replaces_existing_subscription(broker: Broker, uid: str) -> None:
    topic = f"rep/{uid}"
    async with await wire.RawClient.connected(broker.host, broker.port, f"r-{uid}") as c:
        await c.send(wire.subscribe(1, (topic, 0)))
        assert (await c.read()).raw == b"\x90\x03\x00\x01\x00"
        await c.send(wire.subscribe(2, (topic, 1)))  # [MQTT-3.8.4-3] replaces, does not add
        assert (await c.read()).raw == b"\x90\x03\x00\x02\x01"
        await c.send(wire.publish(topic, b"once", qos=1, pid=3))
        got = []
        while len(got) < 2:
            p = await c.read()
            got.append(p.type)
            if p.type == wire.PUBLISH:
                t, payload, qos, pid, _ = wire.parse_publish(p)
                assert (t, payload, qos) == (topic, b"once", 1)
                await c.send(wire.puback(pid or 0))
        assert sorted(got) == [wire.PUBLISH, wire.PUBACK]
        await c.send(wire.pingreq())
        assert (await c.read()).raw == b"\xd0\x00"  # exactly one copy was delivered
