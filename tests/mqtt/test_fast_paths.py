"""The hot paths give what the generic paths give: same packets, same events, same bytes, same errors.

``Decoder`` decodes an MQTT 3 PUBLISH and the two-byte acknowledgements without a ``Reader``;
``ServerConnection.receive_data`` handles PUBLISH and PUBACK of a connected MQTT 3 client inline;
``codec.encode_publish`` / ``encode_ack`` encode without building a packet. Each is compared here with the
generic path it short-cuts (the per-type decoders of ``codec_decode``, ``ServerConnection._handle``,
``codec.encode``) on random and edge-case input.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidemq.mqtt import codec
from tidemq.mqtt import session as sm
from tidemq.mqtt.codec_decode import DECODERS, decode_publish
from tidemq.mqtt.errors import MQTTError
from tidemq.mqtt.packets import Connect, Disconnect, Packet, Puback, Pubcomp, Publish, Pubrec, Pubrel
from tidemq.mqtt.primitives import Reader, encode_varint

# ---------------------------------------------------------------- decoder


def _generic(first: int, body: bytes, level: int) -> Packet:
    """What the per-type decoder makes of ``body`` (the path the fast ones short-cut)."""
    r = Reader(bytearray(body), 0, len(body))
    if first >> 4 == 3:
        return decode_publish(r, first & 0x0F, level)
    return DECODERS[first >> 4](r, first & 0x0F, level)


def _fast(first: int, body: bytes, level: int) -> Packet | None:
    d = codec.Decoder(protocol_level=level, server_side=False)
    d.feed(bytes((first,)) + encode_varint(len(body)) + body)
    return d.next_packet()


def _outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except MQTTError as exc:
        return "error", (type(exc), str(exc), exc.rule, exc.reason_code)


def _publish_body(topic: bytes, pid: int | None, payload: bytes) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic
    if pid is not None:
        body += pid.to_bytes(2, "big")
    return body + payload


TOPICS = st.one_of(
    st.text(max_size=20).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.binary(max_size=12),
    st.sampled_from([b"", b"a\x00b", b"\xc3\x28", b"\xed\xa0\x80", b"sensors/dev1/temp", b"\xe2\x82\xac/x"]),
)


@settings(max_examples=1500, deadline=None)
@given(level=st.sampled_from([3, 4]), first=st.sampled_from([0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x3A, 0x3B, 0x3C]),
       topic=TOPICS, pid=st.one_of(st.none(), st.integers(0, 0xFFFF)), payload=st.binary(max_size=40),
       cut=st.integers(0, 6))
def test_v3_publish_decodes_as_decode_publish(level: int, first: int, topic: bytes, pid: int | None,
                                              payload: bytes, cut: int) -> None:
    body = _publish_body(topic, pid, payload)
    body = body[: max(0, len(body) - cut)] if cut > 3 else body  # also truncated bodies
    assert _outcome(_fast, first, body, level) == _outcome(_generic, first, body, level)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=8), st.sampled_from([3, 4]))
def test_v3_publish_random_bodies(body: bytes, level: int) -> None:
    assert _outcome(_fast, 0x32, body, level) == _outcome(_generic, 0x32, body, level)


def test_large_payload_is_bytes() -> None:
    p = _fast(0x30, _publish_body(b"t", None, b"x" * 10_000), 4)
    assert isinstance(p, Publish) and type(p.payload) is bytes and p.payload == b"x" * 10_000


@pytest.mark.parametrize("level", [3, 4, 5])
@pytest.mark.parametrize("first", [0x40, 0x50, 0x62, 0x70])
@pytest.mark.parametrize("pid", [0, 1, 0x1234, 0xFFFF])
def test_two_byte_acks_decode_as_the_generic_decoder(level: int, first: int, pid: int) -> None:
    body = pid.to_bytes(2, "big")
    fast = _outcome(_fast, first, body, level)
    assert fast == _outcome(_generic, first, body, level)
    if fast[0] == "ok":
        assert type(fast[1]) is {0x40: Puback, 0x50: Pubrec, 0x62: Pubrel, 0x70: Pubcomp}[first]


def test_remaining_length_forms() -> None:
    d = codec.Decoder(protocol_level=4, server_side=False)
    d.feed(b"\x30\x80\x00")  # two length bytes for 0: not minimal
    with pytest.raises(MQTTError, match="not minimally encoded"):
        d.next_packet()
    d = codec.Decoder(protocol_level=4, server_side=False)
    d.feed(b"\x30\xff\xff\xff\xff\x01")
    with pytest.raises(MQTTError, match="longer than four bytes"):
        d.next_packet()
    body = _publish_body(b"a/b", None, b"y" * 200)  # two length bytes
    d = codec.Decoder(protocol_level=4, server_side=False)
    wire = b"\x30" + encode_varint(len(body)) + body
    for i in range(len(wire) - 1):  # byte by byte: None until the last one
        d.feed(wire[i : i + 1])
        assert d.next_packet() is None
    d.feed(wire[-1:])
    assert d.next_packet() == Publish("a/b", b"y" * 200, 0, False, False, None, {})


def test_lone_bad_first_byte_fails_at_once() -> None:
    d = codec.Decoder(protocol_level=4, server_side=False)
    d.feed(b"\x00")
    with pytest.raises(MQTTError, match="reserved packet type"):
        d.next_packet()


# ---------------------------------------------------------------- state machine


def _connected(level: int) -> sm.ServerConnection:
    m = sm.ServerConnection()
    m.receive_data(codec.encode(Connect("c", level, True, 0), level), 0.0)
    m.accept(session_present=False)
    m.take_output()
    # outbound flows for the acknowledgements to meet: ids 1, 2 (QoS 1) and 3 (QoS 2)
    m.send_publish("o", b"", qos=1, tag="t1")
    m.send_publish("o", b"", qos=1, tag="t2")
    m.send_publish("o", b"", qos=2, tag="t3")
    m.take_output()
    return m


INBOUND = st.one_of(
    st.builds(lambda qos, pid: Publish("a/b", b"p", qos, False, False, pid if qos else None, {}),
              st.integers(0, 2), st.integers(1, 4)),
    st.builds(Puback, st.integers(1, 5)),
    st.builds(Pubrel, st.integers(1, 4)),
    st.builds(Pubrec, st.integers(1, 4)),
    st.builds(Pubcomp, st.integers(1, 4)),
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([3, 4, 5]), st.lists(INBOUND, max_size=12), st.lists(st.integers(1, 4), max_size=3))
def test_inline_receive_gives_the_events_of_handle(level: int, packets: list[Packet], acked: list[int]) -> None:
    """One ``receive_data`` of a whole stream (the inline loop) against ``_handle`` packet by packet."""
    fast, slow = _connected(level), _connected(level)
    for m in (fast, slow):
        for pid in acked:  # some inbound ids already acknowledged by the worker
            m.ack_publish(pid, 1)
        m.take_output()
    wire = b"".join(codec.encode(p, level) for p in packets)
    got = fast.receive_data(wire, 1.0)
    want: list[sm.Event] = []
    d = codec.Decoder(protocol_level=level, server_side=False)
    d.feed(wire)
    while (p := d.next_packet()) is not None:
        slow._handle(p, want)  # the reference path
    assert got == want
    assert fast.take_output() == slow.take_output()
    assert fast.inflight_count == slow.inflight_count
    assert fast.pending_releases() == slow.pending_releases()


def test_disconnect_inside_a_stream_stops_it() -> None:
    m = _connected(4)
    wire = b"".join(codec.encode(p, 4) for p in (Publish("a", b"1"), Disconnect(), Publish("a", b"2")))
    events = m.receive_data(wire, 1.0)
    assert [type(e) for e in events] == [sm.PublishReceived, sm.DisconnectReceived]
    assert m.closed


# ---------------------------------------------------------------- encoders


@settings(max_examples=600, deadline=None)
@given(level=st.sampled_from([3, 4, 5]), topic=st.text(min_size=1, max_size=30).filter(lambda t: "\x00" not in t),
       payload=st.binary(max_size=300), qos=st.integers(0, 2), retain=st.booleans(), dup=st.booleans(),
       pid=st.integers(1, 0xFFFF))
def test_encode_publish_is_encode(level: int, topic: str, payload: bytes, qos: int, retain: bool, dup: bool,
                                  pid: int) -> None:
    dup = dup and qos > 0
    packet_id = pid if qos else None
    props: dict[str, Any] = {"message_expiry_interval": 5} if level == 5 and retain else {}
    try:
        want: Any = codec.encode(Publish(topic, payload, qos, retain, dup, packet_id, props), level)
    except ValueError as exc:
        want = ("ValueError", str(exc))
    try:
        got: Any = codec.encode_publish(topic, payload, qos, retain, dup, packet_id, props, level)
    except ValueError as exc:
        got = ("ValueError", str(exc))
    assert got == want


@pytest.mark.parametrize("level", [3, 4, 5])
@pytest.mark.parametrize("cls,first", [(Puback, 0x40), (Pubrec, 0x50), (Pubrel, 0x62), (Pubcomp, 0x70)])
@pytest.mark.parametrize("pid,rc", [(1, 0), (0xFFFF, 0), (300, 0x80), (7, 0x10)])
def test_encode_ack_is_encode(level: int, cls: type[Puback | Pubrec | Pubrel | Pubcomp], first: int, pid: int,
                              rc: int) -> None:
    if cls in (Pubrel, Pubcomp) and rc not in (0, 0x92):
        rc = 0x92 if rc else 0
    want = codec.encode(cls(pid, rc if level == 5 else 0, {}), level)
    assert codec.encode_ack(first, pid, rc if level == 5 else 0, level) == want


@pytest.mark.parametrize("args", [
    ("t", b"x", 3, False, False, 1, {}, 4),  # QoS 3
    ("t", b"x", 0, False, True, None, {}, 4),  # DUP at QoS 0
    ("t", "text", 0, False, False, None, {}, 4),  # not bytes
    ("a\x00b", b"x", 0, False, False, None, {}, 4),  # U+0000 in the topic
    ("t", b"x", 1, False, False, 0, {}, 4),  # packet id 0
    ("t", b"x", 2, False, False, None, {}, 5),  # no packet id
    ("t", b"x", 0, False, False, None, {}, 6),  # no such level
])
def test_encode_publish_errors_are_encode_errors(args: tuple[Any, ...]) -> None:
    topic, payload, qos, retain, dup, pid, props, level = args
    with pytest.raises(ValueError) as want:
        codec.encode(Publish(topic, payload, qos, retain, dup, pid, props), level)
    with pytest.raises(ValueError) as got:
        codec.encode_publish(topic, payload, qos, retain, dup, pid, props, level)
    assert str(got.value) == str(want.value)
