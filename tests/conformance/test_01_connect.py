"""01 connect: CONNECT/CONNACK on raw bytes for MQTT 3.1, 3.1.1 and 5.0.

Checks the exact CONNACK bytes where the spec fixes them, the assigned client
identifier for an empty v5 client id, the refusals (identifier rejected,
unacceptable protocol level) followed by a close, session-present on resume,
PINGREQ/PINGRESP and a clean DISCONNECT.
"""

from __future__ import annotations

from tests.conformance import wire
from tests.conformance.conftest import Bystander
from tests.fixtures.brokers import Broker


async def test_v311_connect_connack_bytes(broker: Broker, uid: str) -> None:
    async with await wire.RawClient.open(broker.host, broker.port) as c:
        await c.send(wire.connect(f"c-{uid}"))
        assert (await c.read()).raw == b"\x20\x02\x00\x00"  # [MQTT-3.2.2-1] session present 0 on clean


async def test_v31_connect_connack_bytes(broker: Broker, uid: str) -> None:
    async with await wire.RawClient.open(broker.host, broker.port, version=3) as c:
        await c.send(wire.connect(f"c31-{uid}", version=3))
        assert (await c.read()).raw == b"\x20\x02\x00\x00"


async def test_v5_connect_connack_with_properties(broker: Broker, uid: str) -> None:
    async with await wire.RawClient.open(broker.host, broker.port, version=5) as c:
        await c.send(wire.connect(f"c5-{uid}", version=5))
        ack = await c.read()
        assert ack.type == wire.CONNACK and ack.flags == 0
        assert ack.body[0] == 0x00  # session present 0
        assert ack.body[1] == 0x00  # success
        _, end = wire.parse_props(ack.body, 2)  # a well-formed property block follows
        assert end == len(ack.body)


async def test_v5_empty_client_id_gets_assigned_identifier(broker: Broker) -> None:
    async with await wire.RawClient.open(broker.host, broker.port, version=5) as c:
        await c.send(wire.connect("", version=5))
        ack = await c.read()
        assert ack.type == wire.CONNACK and ack.body[1] == 0x00
        properties, _ = wire.parse_props(ack.body, 2)
        assigned = properties.get(wire.P_ASSIGNED_CLIENT_ID)  # [MQTT-3.2.2-16]
        assert assigned and isinstance(assigned[0], str) and assigned[0]


async def test_v311_empty_client_id_clean_session_accepted(broker: Broker) -> None:
    async with await wire.RawClient.open(broker.host, broker.port) as c:
        await c.send(wire.connect("", clean=True))
        assert (await c.read()).raw == b"\x20\x02\x00\x00"  # [MQTT-3.1.3-6]


async def test_v311_empty_client_id_persistent_rejected(broker: Broker, bystander: Bystander) -> None:
    async with await wire.RawClient.open(broker.host, broker.port) as c:
        await c.send(wire.connect("", clean=False))
        assert (await c.read()).raw == b"\x20\x02\x00\x02"  # [MQTT-3.1.3-8] identifier rejected
        await c.expect_close()  # [MQTT-3.2.2-5]
    await bystander.check()


async def test_unknown_protocol_level_refused_then_closed(broker: Broker, bystander: Bystander, uid: str) -> None:
    async with await wire.RawClient.open(broker.host, broker.port) as c:
        await c.send(wire.connect(f"lvl-{uid}", version=6))
        ack = await c.read()
        assert ack.raw == b"\x20\x02\x00\x01"  # [MQTT-3.1.2-2] unacceptable protocol level
        await c.expect_close()
    await bystander.check()


async def test_v311_session_present_on_resume(broker: Broker, uid: str) -> None:
    cid = f"sp-{uid}"
    async with await wire.RawClient.open(broker.host, broker.port) as c:
        await c.send(wire.connect(cid, clean=False))
        assert (await c.read()).raw == b"\x20\x02\x00\x00"  # no session yet
        await c.send(wire.disconnect())
        await c.expect_close()
    async with await wire.RawClient.open(broker.host, broker.port) as c:
        await c.send(wire.connect(cid, clean=False))
        assert (await c.read()).raw == b"\x20\x02\x01\x00"  # [MQTT-3.2.2-2] session present
        await c.send(wire.disconnect())
    async with await wire.RawClient.open(broker.host, broker.port) as c:
        await c.send(wire.connect(cid, clean=True))
        assert (await c.read()).raw == b"\x20\x02\x00\x00"  # clean session discards it


async def test_v5_session_present_on_resume(broker: Broker, uid: str) -> None:
    cid = f"sp5-{uid}"
    expiry = wire.props((wire.P_SESSION_EXPIRY, 300))
    async with await wire.RawClient.open(broker.host, broker.port, version=5) as c:
        await c.send(wire.connect(cid, version=5, clean=True, properties=expiry))
        ack = await c.read()
        assert ack.body[:2] == b"\x00\x00"
        await c.send(wire.disconnect(version=5))
        await c.expect_close()
    async with await wire.RawClient.open(broker.host, broker.port, version=5) as c:
        await c.send(wire.connect(cid, version=5, clean=False, properties=expiry))
        ack = await c.read()
        assert ack.body[:2] == b"\x01\x00"  # session present, success
        # end the session: session expiry 0 on DISCONNECT is allowed when CONNECT set a non-zero one
        await c.send(wire.packet(wire.DISCONNECT, 0, b"\x00" + wire.props((wire.P_SESSION_EXPIRY, 0))))
        await c.expect_close()


async def test_pingreq_pingresp(broker: Broker, uid: str) -> None:
    async with await wire.RawClient.connected(broker.host, broker.port, f"ping-{uid}") as c:
        await c.send(wire.pingreq())
        assert (await c.read()).raw == b"\xd0\x00"


async def test_disconnect_closes(broker: Broker, uid: str) -> None:
    async with await wire.RawClient.connected(broker.host, broker.port, f"bye-{uid}") as c:
        await c.send(wire.disconnect())
        assert await c.expect_close() == []  # [MQTT-3.14.4-1] the server closes after DISCONNECT


async def test_v5_disconnect_closes(broker: Broker, uid: str) -> None:
    async with await wire.RawClient.connected(broker.host, broker.port, f"bye5-{uid}", version=5) as c:
        await c.send(wire.disconnect(version=5))
        assert await c.expect_close() == []
