"""MQTT 5 properties (spec section 2.2.2), driven by one table.

``PROPERTIES`` maps each property identifier to its snake_case name, wire
type, the packet kinds it may appear in and the kinds where it may repeat.
Decoding and encoding both read that table and nothing else. Decoding
enforces the "allowed in this packet" column (an identifier not valid for
the packet is a Malformed Packet), rejects duplicates of non-repeatable
properties and checks value ranges (Protocol Errors). The will properties of
CONNECT are their own kind, ``WILL``. Repeatable properties are always lists
in the decoded dict: ``user_property`` as ``(key, value)`` tuples in wire
order, ``subscription_identifier`` as ints (repeatable only in PUBLISH).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .errors import MalformedPacket, ProtocolViolation
from .packets import PacketType, Properties
from .primitives import (
    VARINT_MAX,
    Reader,
    encode_binary,
    encode_u8,
    encode_u16,
    encode_u32,
    encode_utf8,
    encode_varint,
)
from .reason_codes import RC

WILL = "will"  # the property kind of the will properties inside CONNECT
Kind = PacketType | str

RULE_PROPERTY = "MQTT-2.2.2.2"


class Wire(Enum):
    BYTE = "byte"
    U16 = "two byte integer"
    U32 = "four byte integer"
    VARINT = "variable byte integer"
    UTF8 = "UTF-8 string"
    PAIR = "UTF-8 string pair"
    BINARY = "binary data"


@dataclass(frozen=True, slots=True)
class PropertySpec:
    id: int
    name: str
    wire: Wire
    allowed: frozenset[Kind]
    repeatable_in: frozenset[Kind] = frozenset()  # kinds where it may appear more than once
    multi: bool = False  # the decoded value is a list (user_property, subscription_identifier)
    valid: tuple[int, int] | None = None  # inclusive range of legal values
    rule: str = ""  # the statement/section the range check enforces
    reason_code: int = RC.PROTOCOL_ERROR


P = PacketType
_ALL: frozenset[Kind] = frozenset(
    {P.CONNECT, P.CONNACK, P.PUBLISH, WILL, P.PUBACK, P.PUBREC, P.PUBREL, P.PUBCOMP, P.SUBSCRIBE,
     P.SUBACK, P.UNSUBSCRIBE, P.UNSUBACK, P.DISCONNECT, P.AUTH}
)
_PUB_WILL: frozenset[Kind] = frozenset({P.PUBLISH, WILL})
_FLAG = (0, 1)


def _spec(id_: int, name: str, wire: Wire, allowed: set[Kind] | frozenset[Kind], **kw: Any) -> PropertySpec:
    return PropertySpec(id_, name, wire, frozenset(allowed), **kw)


PROPERTIES: dict[int, PropertySpec] = {
    s.id: s
    for s in (
        _spec(0x01, "payload_format_indicator", Wire.BYTE, _PUB_WILL, valid=_FLAG, rule="MQTT-3.3.2.3.2"),
        _spec(0x02, "message_expiry_interval", Wire.U32, _PUB_WILL),
        _spec(0x03, "content_type", Wire.UTF8, _PUB_WILL),
        _spec(0x08, "response_topic", Wire.UTF8, _PUB_WILL),
        _spec(0x09, "correlation_data", Wire.BINARY, _PUB_WILL),
        _spec(0x0B, "subscription_identifier", Wire.VARINT, {P.PUBLISH, P.SUBSCRIBE},
              repeatable_in=frozenset({P.PUBLISH}), multi=True, valid=(1, VARINT_MAX),
              rule="MQTT-3.8.2.1.2"),
        _spec(0x11, "session_expiry_interval", Wire.U32, {P.CONNECT, P.CONNACK, P.DISCONNECT}),
        _spec(0x12, "assigned_client_identifier", Wire.UTF8, {P.CONNACK}),
        _spec(0x13, "server_keep_alive", Wire.U16, {P.CONNACK}),
        _spec(0x15, "authentication_method", Wire.UTF8, {P.CONNECT, P.CONNACK, P.AUTH}),
        _spec(0x16, "authentication_data", Wire.BINARY, {P.CONNECT, P.CONNACK, P.AUTH}),
        _spec(0x17, "request_problem_information", Wire.BYTE, {P.CONNECT}, valid=_FLAG,
              rule="MQTT-3.1.2.11.7"),
        _spec(0x18, "will_delay_interval", Wire.U32, {WILL}),
        _spec(0x19, "request_response_information", Wire.BYTE, {P.CONNECT}, valid=_FLAG,
              rule="MQTT-3.1.2.11.6"),
        _spec(0x1A, "response_information", Wire.UTF8, {P.CONNACK}),
        _spec(0x1C, "server_reference", Wire.UTF8, {P.CONNACK, P.DISCONNECT}),
        _spec(0x1F, "reason_string", Wire.UTF8,
              {P.CONNACK, P.PUBACK, P.PUBREC, P.PUBREL, P.PUBCOMP, P.SUBACK, P.UNSUBACK, P.DISCONNECT,
               P.AUTH}),
        _spec(0x21, "receive_maximum", Wire.U16, {P.CONNECT, P.CONNACK}, valid=(1, 0xFFFF),
              rule="MQTT-3.1.2.11.3"),
        _spec(0x22, "topic_alias_maximum", Wire.U16, {P.CONNECT, P.CONNACK}),
        _spec(0x23, "topic_alias", Wire.U16, {P.PUBLISH}, valid=(1, 0xFFFF), rule="MQTT-3.3.2-8",
              reason_code=RC.TOPIC_ALIAS_INVALID),
        _spec(0x24, "maximum_qos", Wire.BYTE, {P.CONNACK}, valid=_FLAG, rule="MQTT-3.2.2.3.4"),
        _spec(0x25, "retain_available", Wire.BYTE, {P.CONNACK}, valid=_FLAG, rule="MQTT-3.2.2.3.5"),
        _spec(0x26, "user_property", Wire.PAIR, _ALL, repeatable_in=_ALL, multi=True),
        _spec(0x27, "maximum_packet_size", Wire.U32, {P.CONNECT, P.CONNACK}, valid=(1, 0xFFFF_FFFF),
              rule="MQTT-3.1.2.11.4"),
        _spec(0x28, "wildcard_subscription_available", Wire.BYTE, {P.CONNACK}, valid=_FLAG,
              rule="MQTT-3.2.2.3.11"),
        _spec(0x29, "subscription_identifier_available", Wire.BYTE, {P.CONNACK}, valid=_FLAG,
              rule="MQTT-3.2.2.3.12"),
        _spec(0x2A, "shared_subscription_available", Wire.BYTE, {P.CONNACK}, valid=_FLAG,
              rule="MQTT-3.2.2.3.13"),
    )
}
BY_NAME: dict[str, PropertySpec] = {s.name: s for s in PROPERTIES.values()}

_READERS: dict[Wire, Callable[[Reader, str], Any]] = {
    Wire.BYTE: Reader.u8,
    Wire.U16: Reader.u16,
    Wire.U32: Reader.u32,
    Wire.VARINT: Reader.varint,
    Wire.UTF8: Reader.utf8,
    Wire.BINARY: Reader.binary,
    Wire.PAIR: lambda r, what: (r.utf8(what), r.utf8(what)),
}


def _kind_name(kind: Kind) -> str:
    return kind.name if isinstance(kind, PacketType) else f"{kind} properties"


def decode_properties(r: Reader, kind: Kind) -> Properties:
    """Read a property length and the properties after it, validating against the table."""
    length = r.varint("the property length")
    if length == 0:
        return {}
    end = r.pos + length
    if end > r.end:
        raise MalformedPacket("property length runs past the end of the packet", rule=RULE_PROPERTY)
    outer_end, r.end = r.end, end
    props: Properties = {}
    while r.pos < end:
        ident = r.varint("a property identifier")
        spec = PROPERTIES.get(ident)
        if spec is None:
            raise MalformedPacket(f"unknown property identifier 0x{ident:02x}", rule=RULE_PROPERTY)
        if kind not in spec.allowed:
            raise MalformedPacket(f"property {spec.name} is not allowed in {_kind_name(kind)}",
                                  rule=RULE_PROPERTY)
        value = _READERS[spec.wire](r, spec.name)
        if spec.valid is not None and not spec.valid[0] <= value <= spec.valid[1]:
            raise ProtocolViolation(f"property {spec.name} has an invalid value {value}",
                                    rule=spec.rule, reason_code=spec.reason_code)
        if spec.multi:
            values = props.setdefault(spec.name, [])
            if values and kind not in spec.repeatable_in:
                raise ProtocolViolation(f"property {spec.name} appears more than once in {_kind_name(kind)}",
                                        rule=RULE_PROPERTY)
            values.append(value)
        elif spec.name in props:
            raise ProtocolViolation(f"property {spec.name} appears more than once", rule=RULE_PROPERTY)
        else:
            props[spec.name] = value
    r.end = outer_end
    return props


def _encode_value(spec: PropertySpec, value: Any) -> bytes:
    wire = spec.wire
    try:
        if wire is Wire.BYTE:
            return encode_u8(value)
        if wire is Wire.U16:
            return encode_u16(value)
        if wire is Wire.U32:
            return encode_u32(value)
        if wire is Wire.VARINT:
            return encode_varint(value)
        if wire is Wire.UTF8:
            return encode_utf8(value)
        if wire is Wire.BINARY:
            return encode_binary(value)
        key, val = value
        return encode_utf8(key) + encode_utf8(val)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"property {spec.name}: {exc}") from None


def encode_properties(props: Properties | None, kind: Kind) -> bytes:
    """Encode ``props`` (property length included); ``ValueError`` for anything the table refuses."""
    if not props:
        return b"\x00"
    out = bytearray()
    for name, value in props.items():
        spec = BY_NAME.get(name)
        if spec is None:
            raise ValueError(f"unknown property name {name!r}")
        if kind not in spec.allowed:
            raise ValueError(f"property {name} is not allowed in {_kind_name(kind)}")
        if spec.multi:
            values = [value] if isinstance(value, int) else list(value)
            if len(values) > 1 and kind not in spec.repeatable_in:
                raise ValueError(f"property {name} may appear only once in {_kind_name(kind)}")
        else:
            values = [value]
        for v in values:
            out += encode_varint(spec.id)
            out += _encode_value(spec, v)
    return encode_varint(len(out)) + out
