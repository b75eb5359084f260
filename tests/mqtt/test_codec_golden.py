"""Golden bytes: captures from mosquitto_pub/mosquitto_sub/mosquitto 2.0 and examples from the spec.

Each capture decodes to the expected packet, and re-encoding that packet gives the
same bytes back (property order is kept in wire order, so this is exact).
"""

from __future__ import annotations

import pytest

from tidemq.mqtt.codec import Decoder, encode
from tidemq.mqtt.packets import (
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    Pubrec,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Will,
)
from tidemq.mqtt.primitives import Reader, encode_utf8, encode_varint

# mosquitto_pub -V mqttv311 -i mosq-pub -t test/topic -m hello -q 1 -u user -P pass
# (CONNECT, PUBLISH QoS 1, DISCONNECT as sent on the wire)
MOSQ_PUB_V311 = bytes.fromhex(
    "102000044d51545404c2003c00086d6f73712d7075620004757365720004706173733213000a746573742f746f7069630001"
    "68656c6c6fe000"
)
# mosquitto_pub -V mqttv5 -i mosq-v5 -t a/b -m hi -q 1 -x 3600 -D connect user-property k v
#   -D publish content-type text/plain -D publish user-property p q
#   --will-topic w --will-payload gone -D will will-delay-interval 300
MOSQ_PUB_V5 = bytes.fromhex(
    "103200044d5154540506003c0f2600016b0001761100000e1021001400076d6f73712d763505180000012c0001770004676f"
    "6e65321e0003612f6200011403000a746578742f706c61696e260001700001716869e000"
)
# mosquitto_sub -V mqttv311 -i mosq-sub -t sensors/+/temp -t a/# -q 2
MOSQ_SUB_V311 = bytes.fromhex(
    "101400044d5154540402003c00086d6f73712d73756282190001000e73656e736f72732f2b2f74656d70020003612f2302e000"
)
# mosquitto_sub -V mqttv31 -i sub31 -t x/y -q 1
MOSQ_SUB_V31 = bytes.fromhex("101300064d51497364700302003c00057375623331820800010003782f7901e000")

CLIENT_STREAMS = [
    pytest.param(MOSQ_PUB_V311, [
        Connect("mosq-pub", 4, True, 60, "user", b"pass", protocol_name="MQTT"),
        Publish("test/topic", b"hello", qos=1, packet_id=1),
        Disconnect(),
    ], id="mosquitto_pub-3.1.1"),
    pytest.param(MOSQ_PUB_V5, [
        Connect("mosq-v5", 5, True, 60, will=Will("w", b"gone", properties={"will_delay_interval": 300}),
                properties={"user_property": [("k", "v")], "session_expiry_interval": 3600,
                            "receive_maximum": 20},
                protocol_name="MQTT"),
        Publish("a/b", b"hi", qos=1, packet_id=1,
                properties={"content_type": "text/plain", "user_property": [("p", "q")]}),
        Disconnect(),
    ], id="mosquitto_pub-5.0"),
    pytest.param(MOSQ_SUB_V311, [
        Connect("mosq-sub", 4, True, 60, protocol_name="MQTT"),
        Subscribe(1, [Subscription("sensors/+/temp", 2), Subscription("a/#", 2)]),
        Disconnect(),
    ], id="mosquitto_sub-3.1.1"),
    pytest.param(MOSQ_SUB_V31, [
        Connect("sub31", 3, True, 60, protocol_name="MQIsdp"),
        Subscribe(1, [Subscription("x/y", 1)]),
        Disconnect(),
    ], id="mosquitto_sub-3.1"),
]


@pytest.mark.parametrize(("wire", "expected"), CLIENT_STREAMS)
def test_client_captures(wire: bytes, expected: list[Packet]) -> None:
    decoder = Decoder()
    decoder.feed(wire)
    got = []
    while (p := decoder.next_packet()) is not None:
        got.append(p)
    assert got == expected
    level = expected[0].protocol_level
    assert b"".join(encode(p, level) for p in expected) == wire


def test_will_delay_interval_is_four_bytes() -> None:
    # in the v5 capture the will properties are 05 18 0000012c: length 5, id 0x18, u32 300
    assert bytes.fromhex("0518 0000012c") in MOSQ_PUB_V5


# Broker -> client bytes from mosquitto 2.0 (client side decoding)
SERVER_PACKETS = [
    ("200900000622000a210014", 5, Connack(False, 0, {"topic_alias_maximum": 10, "receive_maximum": 20})),
    ("90050001000101", 5, Suback(1, [1, 1])),
    ("b0050002000011", 5, Unsuback(2, [0x00, 0x11])),
    ("50020003", 5, Pubrec(3)),
    ("20020000", 4, Connack()),
    ("20020100", 4, Connack(session_present=True)),
    ("9003000102", 4, Suback(1, [2])),
    ("b0020002", 4, Unsuback(2)),
    ("d000", 4, Pingresp()),
]


@pytest.mark.parametrize(("hexstr", "level", "expected"), SERVER_PACKETS)
def test_broker_captures(hexstr: str, level: int, expected: Packet) -> None:
    wire = bytes.fromhex(hexstr)
    decoder = Decoder(protocol_level=level, server_side=False)
    decoder.feed(wire)
    assert decoder.next_packet() == expected
    assert encode(expected, level) == wire


@pytest.mark.parametrize(("packet", "level", "hexstr"), [
    (Pingreq(), 4, "c000"),
    (Pingresp(), 5, "d000"),
    (Disconnect(), 4, "e000"),
    (Disconnect(0x8E), 4, "e000"),  # v3: no reason code at all
    (Disconnect(), 5, "e000"),  # v5 short form
    (Disconnect(0x8E), 5, "e0018e"),
    (Puback(7), 4, "40020007"),
    (Puback(7, 0x10), 4, "40020007"),  # v3 acks carry no reason code
    (Puback(7), 5, "40020007"),  # v5 short form
    (Puback(7, 0x10), 5, "4003000710"),
    (Puback(7, 0x10, {"reason_string": "x"}), 5, "4008000710041f000178"),
    (Connack(True, 5), 4, "20020105"),
    (Connack(True, 5), 3, "20020005"),  # 3.1 has no session present flag
    (Suback(9, [0, 1, 2, 0x80]), 4, "9006000900010280"),
    (Unsuback(9, [0, 0]), 4, "b0020009"),  # v3 UNSUBACK has no payload
])
def test_encoded_forms(packet: Packet, level: int, hexstr: str) -> None:
    assert encode(packet, level).hex() == hexstr


@pytest.mark.parametrize("hexstr", ["4002000a", "4003000a00", "4004000a0000"])
def test_v5_ack_short_forms_decode(hexstr: str) -> None:
    decoder = Decoder(protocol_level=5, server_side=False)
    decoder.feed(bytes.fromhex(hexstr))
    assert decoder.next_packet() == Puback(10)


@pytest.mark.parametrize("hexstr", ["e000", "e00100", "e0020000"])
def test_v5_disconnect_short_forms_decode(hexstr: str) -> None:
    decoder = Decoder(protocol_level=5, server_side=False)
    decoder.feed(bytes.fromhex(hexstr))
    assert decoder.next_packet() == Disconnect()


# Spec 1.5.5 (3.1.1: 2.2.3) table of remaining length encodings
VARINTS = [(0, "00"), (127, "7f"), (128, "8001"), (16383, "ff7f"), (16384, "808001"), (2097151, "ffff7f"),
           (2097152, "80808001"), (268435455, "ffffff7f")]


@pytest.mark.parametrize(("value", "hexstr"), VARINTS)
def test_varint_spec_table(value: int, hexstr: str) -> None:
    assert encode_varint(value).hex() == hexstr
    assert Reader(bytes.fromhex(hexstr)).varint() == value


def test_utf8_spec_example() -> None:
    # 3.1.1 figure 1.3: U+2A6D4 is four bytes; the length prefix counts bytes
    assert encode_utf8("A\U0002a6d4") == bytes.fromhex("000541f0aa9b94")
    assert Reader(bytes.fromhex("000541f0aa9b94")).utf8() == "A\U0002a6d4"


def test_topic_length_is_utf8_byte_length() -> None:
    wire = encode(Publish("\u00e9/\u20ac", b""), 4)
    assert wire == bytes.fromhex("30080006c3a92fe282ac")
