"""Negative tests: every validation rule raises the right error class, reason code and rule id.

Packets are built with the tiny builder below, not with the codec's encoder, so an
encoder bug cannot hide a decoder one.
"""

from __future__ import annotations

import pytest

from tidemq.mqtt.codec import Decoder
from tidemq.mqtt.errors import (
    MalformedPacket,
    MQTTError,
    PacketTooLarge,
    ProtocolViolation,
    UnsupportedProtocolVersion,
)
from tidemq.mqtt.packets import Auth, Connect, Publish

MAL, PROTO = 0x81, 0x82


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, b = divmod(n, 128)
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def frame(first: int, body: bytes) -> bytes:
    return bytes((first,)) + varint(len(body)) + body


def u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def s(v: str | bytes) -> bytes:
    data = v.encode() if isinstance(v, str) else v
    return u16(len(data)) + data


def connect_body(level: int = 4, flags: int = 0x02, tail: bytes = b"", name: str = "MQTT",
                 props: bytes = b"\x00", cid: bytes = b"cid") -> bytes:
    return s(name) + bytes((level, flags)) + u16(60) + (props if level == 5 else b"") + s(cid) + tail


def connect(*args: object, **kw: object) -> bytes:
    return frame(0x10, connect_body(*args, **kw))  # type: ignore[arg-type]


def fail(wire: bytes, level: int | None = 4, **kw: object) -> MQTTError:
    """Decode ``wire`` and return the MQTTError it raises (any other outcome fails the test)."""
    decoder = Decoder(protocol_level=level, server_side=level is None, **kw)  # type: ignore[arg-type]
    decoder.feed(wire)
    with pytest.raises(MQTTError) as info:
        while decoder.next_packet() is not None:
            pass
    return info.value


def check(err: MQTTError, cls: type, code: int, rule: str) -> None:
    assert type(err) is cls, err
    assert err.reason_code == code, err
    assert err.rule == rule, err


def ok(wire: bytes, level: int | None = 4) -> list:
    decoder = Decoder(protocol_level=level, server_side=level is None)
    decoder.feed(wire)
    out = []
    while (p := decoder.next_packet()) is not None:
        out.append(p)
    return out


# ------------------------------------------------------------------ framing


@pytest.mark.parametrize("wire", [b"\x30\xff\xff\xff\xff\x7f", b"\x30\xff\xff\xff\xff"])
def test_varint_longer_than_four_bytes(wire: bytes) -> None:
    check(fail(wire), MalformedPacket, MAL, "MQTT-1.5.5-1")


def test_varint_not_minimal() -> None:
    check(fail(b"\xc0\x80\x00"), MalformedPacket, MAL, "MQTT-1.5.5-1")


@pytest.mark.parametrize(("first", "body", "rule"), [
    (0x60, u16(1), "MQTT-3.6.1-1"),  # PUBREL must be 0010
    (0x63, u16(1), "MQTT-3.6.1-1"),
    (0x80, u16(1) + s("a") + b"\x00", "MQTT-3.8.1-1"),  # SUBSCRIBE
    (0xA0, u16(1) + s("a"), "MQTT-3.10.1-1"),  # UNSUBSCRIBE
    (0x42, u16(1), "MQTT-2.1.3-1"),  # PUBACK must be 0000
    (0xC1, b"", "MQTT-2.1.3-1"),  # PINGREQ
    (0xE8, b"", "MQTT-2.1.3-1"),  # DISCONNECT
])
def test_reserved_fixed_header_flags(first: int, body: bytes, rule: str) -> None:
    check(fail(frame(first, body)), MalformedPacket, MAL, rule)


def test_reserved_flags_fail_before_the_body_arrives() -> None:
    check(fail(b"\x60\x02"), MalformedPacket, MAL, "MQTT-3.6.1-1")


@pytest.mark.parametrize(("first", "level"), [(0x00, 4), (0x00, 5), (0xF0, 4), (0xF0, 3)])
def test_reserved_packet_types(first: int, level: int) -> None:
    check(fail(frame(first, b""), level), MalformedPacket, MAL, "MQTT-2.1.2")


def test_publish_qos3() -> None:
    check(fail(frame(0x36, s("t") + u16(1))), MalformedPacket, MAL, "MQTT-3.3.1-4")


def test_publish_dup_with_qos0() -> None:
    check(fail(frame(0x38, s("t"))), MalformedPacket, MAL, "MQTT-3.3.1-2")


@pytest.mark.parametrize("wire", [
    frame(0x32, s("t") + u16(0)),  # PUBLISH QoS 1
    frame(0x40, u16(0)),  # PUBACK
    frame(0x62, u16(0)),  # PUBREL
    frame(0x82, u16(0) + s("a") + b"\x00"),  # SUBSCRIBE
    frame(0xA2, u16(0) + s("a")),  # UNSUBSCRIBE
])
def test_packet_id_zero(wire: bytes) -> None:
    check(fail(wire), MalformedPacket, MAL, "MQTT-2.2.1-3")


@pytest.mark.parametrize("wire", [
    frame(0x40, u16(1) + b"\x00"),  # v3 PUBACK with a reason code
    frame(0xC0, b"\x00"),  # PINGREQ with a body
    frame(0xE0, b"\x00"),  # v3 DISCONNECT with a body
    frame(0xB0, u16(1) + b"\x00"),  # v3 UNSUBACK with a payload
    frame(0x20, b"\x00\x00\x00"),  # CONNACK too long
])
def test_leftover_bytes(wire: bytes) -> None:
    check(fail(wire), MalformedPacket, MAL, "MQTT-2.1.4")


@pytest.mark.parametrize("wire", [
    frame(0x30, u16(50) + b"short"),  # topic runs past the packet
    frame(0x32, s("a")),  # QoS 1 without packet id
    frame(0x40, b"\x01"),  # half a packet id
    frame(0x82, u16(1) + s("a")),  # filter without options byte
    frame(0x20, b"\x00"),  # CONNACK without return code
])
def test_missing_bytes(wire: bytes) -> None:
    check(fail(wire), MalformedPacket, MAL, "MQTT-2.1.4")


def test_connect_missing_bytes() -> None:
    check(fail(frame(0x10, connect_body()[:-1]), None), MalformedPacket, MAL, "MQTT-2.1.4")
    check(fail(frame(0x10, connect_body(flags=0x82)), None), MalformedPacket, MAL, "MQTT-2.1.4")
    check(fail(connect(tail=b"\x00"), None), MalformedPacket, MAL, "MQTT-2.1.4")


# ------------------------------------------------------------------ UTF-8


@pytest.mark.parametrize(("raw", "rule"), [
    (b"a/\xff\xfe", "MQTT-1.5.4-1"),  # not UTF-8
    (b"a/\xc0\xaf", "MQTT-1.5.4-1"),  # overlong '/'
    (b"\xed\xa0\x80", "MQTT-1.5.4-1"),  # UTF-8 encoded surrogate U+D800
    (b"\xe2\x82", "MQTT-1.5.4-1"),  # truncated sequence
    (b"a/\x00b", "MQTT-1.5.4-2"),  # U+0000
])
def test_bad_utf8(raw: bytes, rule: str) -> None:
    check(fail(frame(0x30, s(raw) + b"x")), MalformedPacket, MAL, rule)
    check(fail(frame(0xA2, u16(1) + s(raw))), MalformedPacket, MAL, rule)
    check(fail(connect(cid=raw), None), MalformedPacket, MAL, rule)
    check(fail(connect(4, 0x82, s(raw)), None), MalformedPacket, MAL, rule)  # user name


def test_utf8_length_counts_bytes_not_characters() -> None:
    # "é" is two bytes: a length of 1 cuts it in half
    check(fail(frame(0x30, u16(1) + "\u00e9".encode())), MalformedPacket, MAL, "MQTT-1.5.4-1")
    assert ok(frame(0x30, u16(2) + "\u00e9".encode())) == [Publish("\u00e9")]


# ------------------------------------------------------------------ CONNECT


def test_first_packet_must_be_connect() -> None:
    check(fail(frame(0x82, u16(1) + s("a") + b"\x00"), None), ProtocolViolation, PROTO, "MQTT-3.1.0-1")
    check(fail(b"\xc0", None), ProtocolViolation, PROTO, "MQTT-3.1.0-1")  # fails on the first byte
    check(fail(b"GET / HTTP/1.1\r\n", None), ProtocolViolation, PROTO, "MQTT-3.1.0-1")


def test_second_connect() -> None:
    check(fail(connect() + connect(), None), ProtocolViolation, PROTO, "MQTT-3.1.0-2")


def test_connect_reserved_flag() -> None:
    check(fail(connect(flags=0x03), None), MalformedPacket, MAL, "MQTT-3.1.2-3")


@pytest.mark.parametrize(("flags", "rule"), [
    (0x02 | 0x08, "MQTT-3.1.2-11"),  # will QoS 1 without will flag
    (0x02 | 0x10, "MQTT-3.1.2-11"),  # will QoS 2 without will flag
    (0x02 | 0x20, "MQTT-3.1.2-13"),  # will retain without will flag
    (0x02 | 0x04 | 0x18, "MQTT-3.1.2-12"),  # will QoS 3
])
@pytest.mark.parametrize("level", [4, 5])
def test_connect_will_flags(flags: int, rule: str, level: int) -> None:
    tail = (b"\x00" if level == 5 else b"") + s("w") + s(b"x")
    check(fail(connect(level, flags, tail), None), MalformedPacket, MAL, rule)


@pytest.mark.parametrize("level", [3, 4])
def test_password_without_username_before_v5(level: int) -> None:
    name = "MQIsdp" if level == 3 else "MQTT"
    check(fail(connect(level, 0x42, s(b"pw"), name=name), None), ProtocolViolation, PROTO, "MQTT-3.1.2-22")


def test_password_without_username_allowed_in_v5() -> None:
    [c] = ok(connect(5, 0x42, s(b"pw")), None)
    assert isinstance(c, Connect) and c.password == b"pw" and c.username is None


@pytest.mark.parametrize(("name", "level", "rule"), [
    ("MQTT", 3, "MQTT-3.1.2-2"),
    ("MQTT", 6, "MQTT-3.1.2-2"),
    ("MQIsdp", 4, "MQTT-3.1.2-2"),
    ("HTTP", 4, "MQTT-3.1.2-1"),
    ("mqtt", 4, "MQTT-3.1.2-1"),
])
def test_unsupported_protocol(name: str, level: int, rule: str) -> None:
    err = fail(connect(level, name=name), None)
    check(err, UnsupportedProtocolVersion, 0x84, rule)
    assert err.protocol_level == level  # type: ignore[attr-defined]


def test_auth_data_without_method() -> None:
    props = frame(0, b"\x16" + s(b"d"))[1:]  # property length + authentication_data
    check(fail(connect(5, props=props), None), ProtocolViolation, PROTO, "MQTT-3.1.2.11.10")


def test_connack_reserved_flags() -> None:
    check(fail(frame(0x20, b"\x02\x00")), MalformedPacket, MAL, "MQTT-3.2.2-1")


# ------------------------------------------------------------------ PUBLISH topics


@pytest.mark.parametrize("level", [3, 4, 5])
def test_empty_topic_without_alias(level: int) -> None:
    body = s("") + (b"\x00" if level == 5 else b"") + b"x"
    check(fail(frame(0x30, body), level), ProtocolViolation, PROTO, "MQTT-4.7.3-1")


def test_empty_topic_with_alias_v5() -> None:
    [p] = ok(frame(0x30, s("") + b"\x03\x23" + u16(4) + b"x"), 5)
    assert p == Publish("", b"x", properties={"topic_alias": 4})


# ------------------------------------------------------------------ SUBSCRIBE / UNSUBSCRIBE


@pytest.mark.parametrize("level", [3, 4, 5])
def test_subscribe_without_filters(level: int) -> None:
    body = u16(1) + (b"\x00" if level == 5 else b"")
    check(fail(frame(0x82, body), level), ProtocolViolation, PROTO, "MQTT-3.8.3-3")


@pytest.mark.parametrize("level", [3, 4, 5])
def test_unsubscribe_without_filters(level: int) -> None:
    body = u16(1) + (b"\x00" if level == 5 else b"")
    check(fail(frame(0xA2, body), level), ProtocolViolation, PROTO, "MQTT-3.10.3-2")


@pytest.mark.parametrize("opts", [0x03, 0x04, 0x80, 0x10])
def test_v3_subscribe_requested_qos(opts: int) -> None:
    check(fail(frame(0x82, u16(1) + s("a") + bytes((opts,)))), MalformedPacket, MAL, "MQTT-3.8.3-4")


@pytest.mark.parametrize(("opts", "cls", "code", "rule"), [
    (0x40, MalformedPacket, MAL, "MQTT-3.8.3-5"),  # reserved bits
    (0x80, MalformedPacket, MAL, "MQTT-3.8.3-5"),
    (0x30, ProtocolViolation, PROTO, "MQTT-3.8.3.1"),  # retain handling 3
    (0x03, ProtocolViolation, PROTO, "MQTT-3.8.3.1"),  # QoS 3
])
def test_v5_subscription_options(opts: int, cls: type, code: int, rule: str) -> None:
    check(fail(frame(0x82, u16(1) + b"\x00" + s("a") + bytes((opts,))), 5), cls, code, rule)


def test_v5_subscription_options_all_valid_bits() -> None:
    [sub] = ok(frame(0x82, u16(1) + b"\x00" + s("a") + bytes((0x2E,))), 5)
    [opt] = sub.subscriptions
    assert (opt.qos, opt.no_local, opt.retain_as_published, opt.retain_handling) == (2, True, True, 2)


# ------------------------------------------------------------------ reason codes


@pytest.mark.parametrize("wire", [
    frame(0x40, u16(1) + b"\x05"),  # not a PUBACK reason code
    frame(0x62, u16(1) + b"\x10"),  # PUBREL allows only 0x00 / 0x92
    frame(0xE0, b"\x01"),  # DISCONNECT
    frame(0xF0, b"\x01\x00"),  # AUTH allows 0x00 / 0x18 / 0x19
    frame(0x90, u16(1) + b"\x00\x03"),  # SUBACK
    frame(0x20, b"\x00\x01\x00"),  # CONNACK 0x01 is not an MQTT 5 reason code
])
def test_v5_invalid_reason_codes(wire: bytes) -> None:
    check(fail(wire, 5), MalformedPacket, MAL, "MQTT-2.4")


def test_v3_suback_return_codes() -> None:
    check(fail(frame(0x90, u16(1) + b"\x03")), MalformedPacket, MAL, "MQTT-3.9.3-2")


def test_v3_connack_return_codes() -> None:
    check(fail(frame(0x20, b"\x00\x06")), MalformedPacket, MAL, "MQTT-3.2.2.3")


def test_v5_auth_decodes() -> None:
    assert ok(frame(0xF0, b""), 5) == [Auth()]
    assert ok(frame(0xF0, b"\x18\x00"), 5) == [Auth(0x18)]


# ------------------------------------------------------------------ size limits and stickiness


def test_packet_too_large_is_raised_from_the_header() -> None:
    decoder = Decoder(max_packet_size=100, protocol_level=4, server_side=False)
    decoder.feed(b"\x30\xc8\x01")  # announces 200 bytes; none of them sent
    with pytest.raises(PacketTooLarge) as info:
        decoder.next_packet()
    check(info.value, PacketTooLarge, 0x95, "MQTT-3.1.2-24")


def test_packet_too_large_counts_the_fixed_header() -> None:
    body = s("t") + b"x" * 7  # 10 bytes of body + 2 bytes of fixed header
    assert len(ok(frame(0x30, body))) == 1
    decoder = Decoder(max_packet_size=12, protocol_level=4, server_side=False)
    decoder.feed(frame(0x30, body))
    assert decoder.next_packet() == Publish("t", b"x" * 7)
    decoder.max_packet_size = 11
    decoder.feed(frame(0x30, body))
    with pytest.raises(PacketTooLarge):
        decoder.next_packet()


def test_server_side_packet_too_large_rule() -> None:
    check(fail(connect() + b"\x30\xff\x7f", None, max_packet_size=1000), PacketTooLarge, 0x95, "MQTT-3.2.2-15")


def test_errors_are_sticky() -> None:
    decoder = Decoder(protocol_level=4, server_side=False)
    decoder.feed(b"\x36\x00")
    with pytest.raises(MalformedPacket) as first:
        decoder.next_packet()
    decoder.feed(b"\xc0\x00")
    with pytest.raises(MalformedPacket) as again:
        decoder.next_packet()
    assert again.value is first.value


def test_client_publish_with_subscription_identifier() -> None:
    publish = frame(0x30, s("t") + b"\x02\x0b\x01" + b"x")
    check(fail(connect(5) + publish, None), ProtocolViolation, PROTO, "MQTT-3.3.4-6")
    assert ok(publish, 5) == [Publish("t", b"x", properties={"subscription_identifier": [1]})]
