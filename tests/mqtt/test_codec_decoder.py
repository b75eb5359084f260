"""Decoder behaviour: buffering, linear decoding, direction handling, encode errors."""

from __future__ import annotations

import time

import pytest

from tidemq.mqtt.codec import MAX_PACKET_SIZE, Decoder, encode, packet_size
from tidemq.mqtt.errors import PacketTooLarge, ProtocolViolation
from tidemq.mqtt.packets import (
    Auth,
    Connack,
    Connect,
    Pingreq,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
)


def test_defaults() -> None:
    d = Decoder()
    assert d.protocol_level is None and d.max_packet_size == MAX_PACKET_SIZE == 268435460
    assert d.buffered == 0 and d.next_packet() is None


def test_feed_never_parses() -> None:
    d = Decoder()
    d.feed(b"\xff\xff\xff\xff\xff\xff")  # garbage is only buffered
    assert d.buffered == 6
    with pytest.raises(ProtocolViolation):
        d.next_packet()


def test_buffered_and_partial_packets() -> None:
    wire = encode(Publish("a/b", b"payload", 1, packet_id=3), 4)
    d = Decoder(protocol_level=4, server_side=False)
    d.feed(wire[:1])
    assert d.next_packet() is None and d.buffered == 1
    d.feed(wire[1:5])
    assert d.next_packet() is None and d.buffered == 5
    d.feed(wire[5:] + b"\xc0")
    assert d.next_packet() == Publish("a/b", b"payload", 1, packet_id=3)
    assert d.buffered == 1 and d.next_packet() is None
    d.feed(b"\x00")
    assert d.next_packet() == Pingreq() and d.buffered == 0


def test_protocol_level_comes_from_connect() -> None:
    d = Decoder()
    d.feed(encode(Connect("c", 5), 5) + encode(Publish("t", b"x", properties={"topic_alias": 1}), 5))
    assert d.next_packet() == Connect("c", 5, protocol_name="MQTT")
    assert d.protocol_level == 5
    assert d.next_packet() == Publish("t", b"x", properties={"topic_alias": 1})


def test_protocol_level_is_settable() -> None:
    d = Decoder()
    d.feed(encode(Connect("c", 4), 4))
    d.next_packet()
    d.protocol_level = 5  # e.g. the caller decides; later packets decode as v5
    d.feed(encode(Puback(1, 0x10), 5))
    assert d.next_packet() == Puback(1, 0x10)


def test_client_side_decoder_needs_a_level() -> None:
    with pytest.raises(ValueError):
        Decoder(server_side=False)
    with pytest.raises(ValueError):
        Decoder(protocol_level=6)


def test_client_side_decodes_server_packets_without_connect() -> None:
    d = Decoder(protocol_level=5, server_side=False)
    d.feed(encode(Connack(True, 0, {"maximum_qos": 1}), 5) + encode(Suback(1, [0, 0x87]), 5))
    assert d.next_packet() == Connack(True, 0, {"maximum_qos": 1})
    assert d.next_packet() == Suback(1, [0, 0x87])


def test_packet_too_large_without_waiting_for_the_body() -> None:
    d = Decoder(max_packet_size=1024)
    d.feed(encode(Connect("c"), 4))
    d.next_packet()
    d.feed(b"\x30\xff\xff\x7f")  # announces ~2 MB; nothing more is buffered
    with pytest.raises(PacketTooLarge):
        d.next_packet()
    assert d.buffered == 4


def test_many_small_publishes_decode_linearly() -> None:
    """100k packets in one feed: an O(n^2) buffer would take minutes here."""
    one = encode(Publish("t/1", b"x" * 8, 1, packet_id=1), 4)
    n = 100_000
    d = Decoder(protocol_level=4, server_side=False)
    d.feed(one * n)
    start = time.perf_counter()
    count = 0
    while d.next_packet() is not None:
        count += 1
    elapsed = time.perf_counter() - start
    assert count == n and d.buffered == 0
    assert elapsed < 5.0, elapsed


def test_interleaved_feed_and_decode_keeps_memory_bounded() -> None:
    one = encode(Publish("t", b"y" * 100), 4)
    d = Decoder(protocol_level=4, server_side=False)
    for _ in range(2000):
        d.feed(one * 3 + one[:50])
        for _ in range(3):
            assert d.next_packet() is not None
        d.feed(one[50:])
        assert d.next_packet() is not None
    assert d.buffered == 0
    assert len(d._buf) <= 4 * len(one)  # consumed bytes are dropped on the next feed


def test_large_payload() -> None:
    payload = bytes(range(256)) * 4000  # ~1 MB: a three-byte remaining length
    wire = encode(Publish("big", payload, 2, packet_id=9), 5)
    d = Decoder(protocol_level=5, server_side=False)
    for i in range(0, len(wire), 65536):
        d.feed(wire[i : i + 65536])
    p = d.next_packet()
    assert isinstance(p, Publish) and p.payload == payload and isinstance(p.payload, bytes)


# ------------------------------------------------------------------ encode


@pytest.mark.parametrize(("packet", "level"), [
    (Publish("t", b"", 3, packet_id=1), 4),  # QoS 3
    (Publish("t", b"", 1), 4),  # QoS 1 without packet id
    (Publish("t", b"", 1, packet_id=0), 4),
    (Publish("t", b"", 0, dup=True), 4),
    (Publish("t", "text"), 4),  # type: ignore[arg-type]
    (Publish("t" * 70000), 4),  # topic longer than 65535 bytes
    (Publish("t\x00"), 4),
    (Publish("t", properties={"nope": 1}), 5),
    (Publish("t", properties={"session_expiry_interval": 1}), 5),
    (Puback(70000), 4),
    (Puback(1, 300), 5),
    (Connect("c", 4), 5),  # level mismatch
    (Connect("c", 7), 7),
    (Connect("c", 4, password=b"p"), 4),  # password without user name before v5
    (Connect("c", 4, will=Will("w", b"", 3)), 4),
    (Connect("c", 5, will=Will("w", b"", properties={"session_expiry_interval": 1})), 5),
    (Subscribe(1, []), 4),
    (Subscribe(1, [Subscription("a", 1, retain_handling=3)]), 5),
    (Connack(False, 0x87), 4),  # a v5 reason code where a v3 return code is due
    (Suback(1, []), 4),
    (Suback(1, [0x87]), 4),  # not a v3 return code
    (Unsubscribe(1, []), 4),
    (Unsuback(1, []), 5),
    (Auth(), 4),
    (Subscription("a"), 4),  # type: ignore[arg-type]
    (Pingreq(), 6),
])
def test_encode_refuses(packet: object, level: int) -> None:
    with pytest.raises(ValueError):
        encode(packet, level)  # type: ignore[arg-type]


def test_v3_drops_properties() -> None:
    p = Publish("t", b"x", properties={"message_expiry_interval": 5})
    assert encode(p, 4) == encode(Publish("t", b"x"), 4)
    assert encode(Unsubscribe(1, ["a"], {"user_property": [("a", "b")]}), 3) == bytes.fromhex("a20500010001" "61")


def test_packet_size() -> None:
    p = Publish("a", b"x" * 200, 1, packet_id=1)
    assert packet_size(p, 4) == 1 + 2 + (2 + 1 + 2 + 200)
    assert packet_size(Unsuback(1, [0]), 5) == 6
