"""13 malformed: broken and out-of-order packets close only the connection that sent them.

Each case runs on 3.1.1 and 5.0. The offending connection must be closed
(for 5.0 a DISCONNECT with the named reason code may come first: 0x81
malformed packet, 0x82 protocol error); a bystander connected beforehand must
still exchange messages afterwards, and a new client must still connect.
"""

from __future__ import annotations

import pytest

from tests.conformance import wire
from tests.conformance.conftest import Bystander
from tests.fixtures.brokers import Broker

MALFORMED, PROTOCOL_ERROR = 0x81, 0x82
VERSIONS = pytest.mark.parametrize("version", [4, 5])


def assert_disconnect_reason(sent: list[wire.Packet], version: int, allowed: set[int]) -> None:
    """Before closing the broker may send a DISCONNECT (v5 only) with an allowed reason code."""
    for p in sent:
        assert p.type == wire.DISCONNECT, f"unexpected packet before close: {p}"
        assert version == 5, "a DISCONNECT from the server exists only in MQTT 5"
        reason = p.body[0] if p.body else 0
        assert reason in allowed, f"DISCONNECT reason {reason:#x}, expected one of {sorted(map(hex, allowed))}"


async def _connected(broker: Broker, uid: str, version: int) -> wire.RawClient:
    return await wire.RawClient.connected(broker.host, broker.port, f"bad-{uid}", version=version)


@VERSIONS
async def test_truncated_packet_then_client_close(broker: Broker, uid: str, version: int,
                                                  bystander: Bystander) -> None:
    c = await _connected(broker, uid, version)
    await c.send(wire.publish(f"t/{uid}", b"0123456789", qos=1, pid=1, version=version)[:-4])
    await c.close()  # the broker is left holding half a packet
    await bystander.check()


@VERSIONS
async def test_topic_length_beyond_remaining_length(broker: Broker, uid: str, version: int,
                                                    bystander: Bystander) -> None:
    c = await _connected(broker, uid, version)
    await c.send(wire.packet(wire.PUBLISH, 0, wire.u16(50) + b"short"))  # string runs past the packet
    assert_disconnect_reason(await c.expect_close(), version, {MALFORMED})
    await c.close()
    await bystander.check()


@VERSIONS
async def test_remaining_length_five_bytes(broker: Broker, uid: str, version: int, bystander: Bystander) -> None:
    c = await _connected(broker, uid, version)
    await c.send(b"\x30\xff\xff\xff\xff\x7f")  # [MQTT-2.2.3] at most four varint bytes
    assert_disconnect_reason(await c.expect_close(), version, {MALFORMED})
    await c.close()
    await bystander.check()


@VERSIONS
@pytest.mark.parametrize("topic", [b"a/\xff\xfe", b"a/\xc0\xaf", b"a/\x00b"], ids=["invalid", "overlong", "nul"])
async def test_bad_utf8_topic(broker: Broker, uid: str, version: int, topic: bytes, bystander: Bystander) -> None:
    c = await _connected(broker, uid, version)
    await c.send(wire.publish(topic, b"x", qos=0, version=version))  # [MQTT-1.5.4-1] [MQTT-1.5.4-2]
    assert_disconnect_reason(await c.expect_close(), version, {MALFORMED, 0x90})  # 0x90: topic name invalid
    await c.close()
    await bystander.check()


@VERSIONS
async def test_publish_qos3(broker: Broker, uid: str, version: int, bystander: Bystander) -> None:
    c = await _connected(broker, uid, version)
    body = wire.s(f"t/{uid}") + wire.u16(1) + (b"\x00" if version == 5 else b"") + b"x"
    await c.send(wire.packet(wire.PUBLISH, 0x06, body))  # [MQTT-3.3.1-4] both QoS bits set
    assert_disconnect_reason(await c.expect_close(), version, {MALFORMED})
    await c.close()
    await bystander.check()


@VERSIONS
async def test_subscribe_wrong_fixed_header_flags(broker: Broker, uid: str, version: int,
                                                  bystander: Bystander) -> None:
    c = await _connected(broker, uid, version)
    await c.send(wire.subscribe(1, (f"t/{uid}", 0), version=version, flags=0x00))  # [MQTT-3.8.1-1] must be 0010
    assert_disconnect_reason(await c.expect_close(), version, {MALFORMED})
    await c.close()
    await bystander.check()


@VERSIONS
async def test_first_packet_not_connect(broker: Broker, uid: str, version: int, bystander: Bystander) -> None:
    c = await wire.RawClient.open(broker.host, broker.port, version)
    await c.send(wire.subscribe(1, (f"t/{uid}", 0), version=version))  # [MQTT-3.1.0-1]
    sent = await c.expect_close()
    assert sent == [], f"nothing may be sent before a CONNECT was accepted: {sent}"
    await c.close()
    await bystander.check()


@VERSIONS
async def test_second_connect(broker: Broker, uid: str, version: int, bystander: Bystander) -> None:
    c = await _connected(broker, uid, version)
    await c.send(wire.connect(f"bad-{uid}", version=version))  # [MQTT-3.1.0-2]
    assert_disconnect_reason(await c.expect_close(), version, {PROTOCOL_ERROR})
    await c.close()
    await bystander.check()


@VERSIONS
async def test_pubrel_wrong_flags(broker: Broker, uid: str, version: int, bystander: Bystander) -> None:
    c = await _connected(broker, uid, version)
    await c.send(wire.packet(wire.PUBREL, 0x00, wire.u16(1)))  # [MQTT-3.6.1-1] flags must be 0010
    assert_disconnect_reason(await c.expect_close(), version, {MALFORMED})
    await c.close()
    await bystander.check()


@VERSIONS
async def test_subscribe_without_filters(broker: Broker, uid: str, version: int, bystander: Bystander) -> None:
    c = await _connected(broker, uid, version)
    await c.send(wire.subscribe(1, version=version))  # [MQTT-3.8.3-3] at least one filter
    assert_disconnect_reason(await c.expect_close(), version, {MALFORMED, PROTOCOL_ERROR})
    await c.close()
    await bystander.check()


async def test_connect_with_garbage_protocol_name(broker: Broker, uid: str, bystander: Bystander) -> None:
    c = await wire.RawClient.open(broker.host, broker.port)
    await c.send(wire.connect(f"bad-{uid}", protocol_name="HTTP"))  # [MQTT-3.1.2-1]
    sent = await c.expect_close()
    assert all(p.type == wire.CONNACK for p in sent), sent
    await c.close()
    await bystander.check()


async def test_http_request_instead_of_mqtt(broker: Broker, bystander: Bystander) -> None:
    c = await wire.RawClient.open(broker.host, broker.port)
    await c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await c.expect_close()
    await c.close()
    await bystander.check()
