"""Per-packet encoders: packet dataclass + protocol level -> wire bytes.

Each encoder returns the fixed-header first byte and the list of body
chunks; ``codec.encode`` adds the remaining length. Version rules live here:
MQTT 3.1/3.1.1 carry no properties (any given are dropped) and no reason
codes on acknowledgements; MQTT 5 uses the short forms the spec allows
(acks without reason code/properties when the reason is 0 and there are no
properties). Anything that cannot be put on the wire raises ``ValueError``:
that is a programming error in the caller, never a protocol error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    PacketType,
    Publish,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)
from .primitives import encode_binary, encode_u8, encode_u16, encode_utf8
from .properties import WILL, encode_properties

P = PacketType
Chunks = list[bytes]

_NAMES = {3: "MQIsdp", 4: "MQTT", 5: "MQTT"}
_SUBACK_V3 = frozenset({0x00, 0x01, 0x02, 0x80})


def _pid(pid: int | None) -> bytes:
    if pid is None or not 1 <= pid <= 0xFFFF:
        raise ValueError(f"packet identifier must be 1..65535, got {pid!r}")
    return encode_u16(pid)


def _qos(qos: int) -> int:
    if qos not in (0, 1, 2):
        raise ValueError(f"QoS must be 0, 1 or 2, got {qos!r}")
    return qos


def encode_connect(p: Connect, level: int) -> tuple[int, Chunks]:
    if p.protocol_level != level:
        raise ValueError(f"Connect.protocol_level {p.protocol_level} differs from the encoding level {level}")
    name = p.protocol_name or _NAMES[level]
    v5 = level == 5
    flags = 0x02 if p.clean_start else 0
    chunks: Chunks = [encode_utf8(name), bytes((level,)), b"", encode_u16(p.keep_alive)]
    if v5:
        chunks.append(encode_properties(p.properties, P.CONNECT))
    chunks.append(encode_utf8(p.client_id))
    if p.will is not None:
        w = p.will
        flags |= 0x04 | (_qos(w.qos) << 3) | (0x20 if w.retain else 0)
        if v5:
            chunks.append(encode_properties(w.properties, WILL))
        chunks += [encode_utf8(w.topic), encode_binary(w.payload)]
    if p.username is not None:
        flags |= 0x80
        chunks.append(encode_utf8(p.username))
    if p.password is not None:
        if p.username is None and not v5:
            raise ValueError("a password without a user name is not allowed before MQTT 5")
        flags |= 0x40
        chunks.append(encode_binary(p.password))
    chunks[2] = bytes((flags,))
    return 0x10, chunks


def encode_connack(p: Connack, level: int) -> tuple[int, Chunks]:
    if level < 5 and not 0 <= p.reason_code <= 5:
        raise ValueError(f"an MQTT 3 CONNACK return code is 0..5, got {p.reason_code!r} (see v5_to_v3_connack)")
    present = 1 if p.session_present and level >= 4 else 0
    chunks = [bytes((present,)), encode_u8(p.reason_code)]
    if level == 5:
        chunks.append(encode_properties(p.properties, P.CONNACK))
    return 0x20, chunks


def encode_publish(p: Publish, level: int) -> tuple[int, Chunks]:
    qos = _qos(p.qos)
    if p.dup and not qos:
        raise ValueError("DUP must be 0 for QoS 0 [MQTT-3.3.1-2]")
    first = 0x30 | (0x08 if p.dup else 0) | (qos << 1) | (0x01 if p.retain else 0)
    chunks = [encode_utf8(p.topic)]
    if qos:
        chunks.append(_pid(p.packet_id))
    if level == 5:
        chunks.append(encode_properties(p.properties, P.PUBLISH))
    if not isinstance(p.payload, bytes | bytearray | memoryview):
        raise ValueError(f"payload must be bytes, not {type(p.payload).__name__}")
    chunks.append(p.payload)
    return first, chunks


def _ack(first: int, ptype: PacketType) -> Callable[[Any, int], tuple[int, Chunks]]:
    def encode(p: Any, level: int) -> tuple[int, Chunks]:
        chunks = [_pid(p.packet_id)]
        if level == 5 and (p.reason_code or p.properties):
            chunks.append(encode_u8(p.reason_code))
            if p.properties:
                chunks.append(encode_properties(p.properties, ptype))
        return first, chunks

    return encode


def encode_subscribe(p: Subscribe, level: int) -> tuple[int, Chunks]:
    if not p.subscriptions:
        raise ValueError("SUBSCRIBE needs at least one subscription [MQTT-3.8.3-3]")
    chunks = [_pid(p.packet_id)]
    if level == 5:
        chunks.append(encode_properties(p.properties, P.SUBSCRIBE))
    for s in p.subscriptions:
        opts = _qos(s.qos)
        if level == 5:
            if s.retain_handling not in (0, 1, 2):
                raise ValueError(f"retain handling must be 0, 1 or 2, got {s.retain_handling!r}")
            opts |= (0x04 if s.no_local else 0) | (0x08 if s.retain_as_published else 0)
            opts |= s.retain_handling << 4
        chunks += [encode_utf8(s.topic_filter), bytes((opts,))]
    return 0x82, chunks


def encode_suback(p: Suback, level: int) -> tuple[int, Chunks]:
    if not p.reason_codes:
        raise ValueError("SUBACK needs at least one reason code")
    chunks = [_pid(p.packet_id)]
    if level == 5:
        chunks.append(encode_properties(p.properties, P.SUBACK))
    elif not _SUBACK_V3.issuperset(p.reason_codes):
        raise ValueError(f"MQTT 3 SUBACK return codes are 0, 1, 2 or 0x80: {p.reason_codes!r}")
    chunks.append(bytes(p.reason_codes))
    return 0x90, chunks


def encode_unsubscribe(p: Unsubscribe, level: int) -> tuple[int, Chunks]:
    if not p.topic_filters:
        raise ValueError("UNSUBSCRIBE needs at least one topic filter [MQTT-3.10.3-2]")
    chunks = [_pid(p.packet_id)]
    if level == 5:
        chunks.append(encode_properties(p.properties, P.UNSUBSCRIBE))
    chunks += [encode_utf8(f) for f in p.topic_filters]
    return 0xA2, chunks


def encode_unsuback(p: Unsuback, level: int) -> tuple[int, Chunks]:
    chunks = [_pid(p.packet_id)]
    if level == 5:
        if not p.reason_codes:
            raise ValueError("an MQTT 5 UNSUBACK needs one reason code per topic filter")
        chunks += [encode_properties(p.properties, P.UNSUBACK), bytes(p.reason_codes)]
    return 0xB0, chunks


def encode_disconnect(p: Disconnect, level: int) -> tuple[int, Chunks]:
    chunks: Chunks = []
    if level == 5 and (p.reason_code or p.properties):
        chunks.append(encode_u8(p.reason_code))
        if p.properties:
            chunks.append(encode_properties(p.properties, P.DISCONNECT))
    return 0xE0, chunks


def encode_auth(p: Auth, level: int) -> tuple[int, Chunks]:
    if level != 5:
        raise ValueError("AUTH exists only in MQTT 5")
    chunks: Chunks = []
    if p.reason_code or p.properties:
        chunks += [encode_u8(p.reason_code), encode_properties(p.properties, P.AUTH)]
    return 0xF0, chunks


def _empty(first: int) -> Callable[[Any, int], tuple[int, Chunks]]:
    return lambda p, level: (first, [])


ENCODERS: dict[int, Callable[[Any, int], tuple[int, Chunks]]] = {
    P.CONNECT: encode_connect,
    P.CONNACK: encode_connack,
    P.PUBLISH: encode_publish,
    P.PUBACK: _ack(0x40, P.PUBACK),
    P.PUBREC: _ack(0x50, P.PUBREC),
    P.PUBREL: _ack(0x62, P.PUBREL),
    P.PUBCOMP: _ack(0x70, P.PUBCOMP),
    P.SUBSCRIBE: encode_subscribe,
    P.SUBACK: encode_suback,
    P.UNSUBSCRIBE: encode_unsubscribe,
    P.UNSUBACK: encode_unsuback,
    P.PINGREQ: _empty(0xC0),
    P.PINGRESP: _empty(0xD0),
    P.DISCONNECT: encode_disconnect,
    P.AUTH: encode_auth,
}
