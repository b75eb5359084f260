"""The MQTT 5 property table: allowed-in-packet, duplicates, ranges, wire types, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidemq.mqtt.errors import MalformedPacket, ProtocolViolation
from tidemq.mqtt.packets import PacketType
from tidemq.mqtt.primitives import Reader
from tidemq.mqtt.properties import BY_NAME, PROPERTIES, WILL, Kind, Wire, decode_properties, encode_properties

from .codec_strategies import properties

P = PacketType
KINDS: list[Kind] = [
    P.CONNECT, P.CONNACK, P.PUBLISH, WILL, P.PUBACK, P.PUBREC, P.PUBREL, P.PUBCOMP, P.SUBSCRIBE, P.SUBACK,
    P.UNSUBSCRIBE, P.UNSUBACK, P.DISCONNECT, P.AUTH,
]


def decode(raw: bytes, kind: Kind) -> dict:
    """Decode a property block given without its length prefix."""
    r = Reader(bytes((len(raw),)) + raw)
    props = decode_properties(r, kind)
    r.expect_end("properties")
    return props


def test_table_is_consistent() -> None:
    assert len(PROPERTIES) == 27
    assert len(BY_NAME) == len(PROPERTIES)
    assert {s.id for s in PROPERTIES.values()} == set(PROPERTIES)
    for spec in PROPERTIES.values():
        assert spec.allowed and spec.repeatable_in <= spec.allowed
        assert spec.multi == bool(spec.repeatable_in)


def test_will_properties_are_their_own_set() -> None:
    will = {s.name for s in PROPERTIES.values() if WILL in s.allowed}
    assert will == {"will_delay_interval", "payload_format_indicator", "message_expiry_interval",
                    "content_type", "response_topic", "correlation_data", "user_property"}


def test_wire_types() -> None:
    assert BY_NAME["will_delay_interval"].wire is Wire.U32
    assert BY_NAME["subscription_identifier"].wire is Wire.VARINT
    assert BY_NAME["user_property"].wire is Wire.PAIR
    assert BY_NAME["correlation_data"].wire is Wire.BINARY
    assert BY_NAME["receive_maximum"].wire is Wire.U16


def test_will_delay_interval_is_four_bytes() -> None:
    assert encode_properties({"will_delay_interval": 300}, WILL) == bytes.fromhex("05180000012c")
    assert decode(bytes.fromhex("180000012c"), WILL) == {"will_delay_interval": 300}
    with pytest.raises(MalformedPacket):  # a one-byte will delay (a known peer bug) is short
        decode(bytes.fromhex("1805"), WILL)


def test_user_properties_all_kept_in_wire_order() -> None:
    pairs = [("b", "1"), ("a", "2"), ("b", "1"), ("", "")]
    raw = encode_properties({"user_property": pairs}, P.PUBLISH)
    assert decode(raw[1:], P.PUBLISH) == {"user_property": pairs}


def test_subscription_identifier_repeatable_only_in_publish() -> None:
    raw = bytes.fromhex("0b01" "0b02")
    assert decode(raw, P.PUBLISH) == {"subscription_identifier": [1, 2]}
    with pytest.raises(ProtocolViolation) as info:
        decode(raw, P.SUBSCRIBE)
    assert info.value.rule == "MQTT-2.2.2.2"
    assert decode(bytes.fromhex("0b7f"), P.SUBSCRIBE) == {"subscription_identifier": [127]}


def test_subscription_identifier_multi_byte_varint() -> None:
    assert decode(bytes.fromhex("0bffffff7f"), P.PUBLISH) == {"subscription_identifier": [268435455]}


@pytest.mark.parametrize(("raw", "kind"), [
    ("1100000001" "1100000002", P.CONNECT),  # session_expiry_interval twice
    ("210001" "210001", P.CONNECT),  # receive_maximum twice
    ("0100" "0100", P.PUBLISH),  # payload_format_indicator twice
    ("1f0000" "1f0000", P.PUBACK),  # reason_string twice
])
def test_duplicates_are_protocol_errors(raw: str, kind: Kind) -> None:
    with pytest.raises(ProtocolViolation) as info:
        decode(bytes.fromhex(raw), kind)
    assert info.value.reason_code == 0x82
    assert info.value.rule == "MQTT-2.2.2.2"


@pytest.mark.parametrize(("raw", "kind"), [
    ("230001", P.CONNECT),  # topic_alias only in PUBLISH
    ("180000012c", P.CONNECT),  # will_delay_interval only in the will properties
    ("1100000001", WILL),  # session_expiry_interval not a will property
    ("0b01", P.CONNACK),  # subscription_identifier
    ("1f0000", P.PUBLISH),  # reason_string
    ("150000", P.PUBACK),  # authentication_method
    ("2601", P.PINGREQ),  # nothing is allowed where no properties exist
    ("7f00", P.PUBLISH),  # unknown identifier
    ("00", P.PUBLISH),  # identifier 0 does not exist
])
def test_not_allowed_or_unknown_is_malformed(raw: str, kind: Kind) -> None:
    with pytest.raises(MalformedPacket) as info:
        decode(bytes.fromhex(raw), kind)
    assert info.value.reason_code == 0x81
    assert info.value.rule == "MQTT-2.2.2.2"


RANGE_CASES = [
    ("payload_format_indicator", "0102", P.PUBLISH, 0x82),
    ("request_problem_information", "1702", P.CONNECT, 0x82),
    ("request_response_information", "19ff", P.CONNECT, 0x82),
    ("receive_maximum", "210000", P.CONNACK, 0x82),
    ("maximum_packet_size", "2700000000", P.CONNECT, 0x82),
    ("maximum_qos", "2402", P.CONNACK, 0x82),
    ("retain_available", "2502", P.CONNACK, 0x82),
    ("wildcard_subscription_available", "2802", P.CONNACK, 0x82),
    ("subscription_identifier_available", "2902", P.CONNACK, 0x82),
    ("shared_subscription_available", "2a02", P.CONNACK, 0x82),
    ("subscription_identifier", "0b00", P.SUBSCRIBE, 0x82),
    ("topic_alias", "230000", P.PUBLISH, 0x94),
]


@pytest.mark.parametrize(("name", "raw", "kind", "code"), RANGE_CASES)
def test_value_ranges(name: str, raw: str, kind: Kind, code: int) -> None:
    with pytest.raises(ProtocolViolation) as info:
        decode(bytes.fromhex(raw), kind)
    assert info.value.reason_code == code
    assert info.value.rule == BY_NAME[name].rule and info.value.rule


def test_every_ranged_property_has_a_negative_case() -> None:
    ranged = {s.name for s in PROPERTIES.values() if s.valid}
    assert ranged == {name for name, *_ in RANGE_CASES}


@pytest.mark.parametrize("raw", [
    "0300",  # content_type without its length
    "0300057878",  # content_type shorter than its length
    "26000178",  # user_property without a value
    "0b",  # subscription_identifier without a value
    "0b80",  # unfinished variable byte integer
])
def test_truncated_values(raw: str) -> None:
    with pytest.raises(MalformedPacket):
        decode(bytes.fromhex(raw), P.PUBLISH)


def test_property_length_past_end() -> None:
    with pytest.raises(MalformedPacket):
        decode_properties(Reader(bytes.fromhex("05" "0100")), P.PUBLISH)


def test_bad_utf8_in_property() -> None:
    with pytest.raises(MalformedPacket) as info:
        decode(bytes.fromhex("030002c0af"), P.PUBLISH)
    assert info.value.rule == "MQTT-1.5.4-1"
    with pytest.raises(MalformedPacket) as info:
        decode(bytes.fromhex("26000100000178"), P.PUBLISH)
    assert info.value.rule == "MQTT-1.5.4-2"


@pytest.mark.parametrize(("props", "kind"), [
    ({"no_such_property": 1}, P.PUBLISH),
    ({"topic_alias": 1}, P.CONNECT),
    ({"subscription_identifier": [1, 2]}, P.SUBSCRIBE),
    ({"receive_maximum": 70000}, P.CONNECT),
    ({"session_expiry_interval": -1}, P.CONNECT),
    ({"content_type": b"bytes"}, P.PUBLISH),
    ({"correlation_data": "text"}, P.PUBLISH),
    ({"user_property": [("k",)]}, P.PUBLISH),
    ({"content_type": "nul\x00"}, P.PUBLISH),
    ({"content_type": "\ud800"}, P.PUBLISH),
    ({"subscription_identifier": [268435456]}, P.PUBLISH),
])
def test_encode_refuses(props: dict, kind: Kind) -> None:
    with pytest.raises(ValueError):
        encode_properties(props, kind)


def test_encode_empty() -> None:
    assert encode_properties({}, P.PUBLISH) == b"\x00"
    assert encode_properties(None, P.CONNACK) == b"\x00"


def test_encode_subscription_identifier_as_int() -> None:
    assert encode_properties({"subscription_identifier": 5}, P.SUBSCRIBE) == bytes.fromhex("020b05")


@pytest.mark.parametrize("kind", KINDS, ids=str)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_roundtrip(kind: Kind, data: st.DataObject) -> None:
    props = data.draw(properties(kind))
    raw = encode_properties(props, kind)
    r = Reader(raw)
    assert decode_properties(r, kind) == props
    assert r.remaining == 0
