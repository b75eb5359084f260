"""Per-packet body decoders: one function per MQTT control packet type.

Each decoder gets a ``Reader`` bounded to exactly the packet's remaining
length, the fixed-header flags (already checked against the reserved values
by ``codec.Decoder``) and the protocol level (``None`` only before CONNECT
set it; decoders only compare it with 3 and 5), and returns the packet
dataclass. Every check names its spec statement; problems raise
``MalformedPacket``, ``ProtocolViolation`` or ``UnsupportedProtocolVersion``
only. A decoder must consume the body exactly: leftover or missing bytes are
malformed.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import MalformedPacket, ProtocolViolation, UnsupportedProtocolVersion
from .packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
)
from .primitives import Reader
from .properties import WILL, decode_properties

P = PacketType
RULE_REASON_CODE = "MQTT-2.4"

PROTOCOLS = {("MQIsdp", 3), ("MQTT", 4), ("MQTT", 5)}

# Reason codes each MQTT 5 packet may carry (spec sections 3.x.2.1).
_PUBACK_CODES = frozenset({0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99})
_PUBREL_CODES = frozenset({0x00, 0x92})
REASON_CODES: dict[PacketType, frozenset[int]] = {
    P.CONNACK: frozenset({0x00, *range(0x80, 0x8D), 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F})
    - {0x8B},
    P.PUBACK: _PUBACK_CODES,
    P.PUBREC: _PUBACK_CODES,
    P.PUBREL: _PUBREL_CODES,
    P.PUBCOMP: _PUBREL_CODES,
    P.SUBACK: frozenset({0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2}),
    P.UNSUBACK: frozenset({0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91}),
    P.DISCONNECT: frozenset({0x00, 0x04, *range(0x80, 0xA3)} - {0x84, 0x85, 0x86, 0x88, 0x8A, 0x8C, 0x91,
                                                                0x92}),
    P.AUTH: frozenset({0x00, 0x18, 0x19}),
}
SUBACK_CODES_V3 = frozenset({0x00, 0x01, 0x02, 0x80})


def _reason(ptype: PacketType, code: int) -> int:
    if code not in REASON_CODES[ptype]:
        raise MalformedPacket(f"0x{code:02x} is not a valid {ptype.name} reason code", rule=RULE_REASON_CODE)
    return code


def _packet_id(r: Reader) -> int:
    pid = r.u16("the packet identifier")
    if pid == 0:
        raise MalformedPacket("packet identifier is zero", rule="MQTT-2.2.1-3")
    return pid


# --------------------------------------------------------------------------- CONNECT / CONNACK


def decode_connect(r: Reader, flags: int, level: int | None) -> Connect:
    name_len = r.u16("the protocol name")
    raw_name = r.raw(name_len, "the protocol name")
    proto_level = r.u8("the protocol level")
    name = raw_name.decode("utf-8", "replace")
    if (name, proto_level) not in PROTOCOLS:
        rule = "MQTT-3.1.2-1" if name not in ("MQTT", "MQIsdp") else "MQTT-3.1.2-2"
        err = UnsupportedProtocolVersion(f"unsupported protocol {name!r} level {proto_level}", rule=rule)
        # the worker needs the requested level to pick the CONNACK form (0x01 for v3/v4, 0x84 for v5)
        err.protocol_level = proto_level
        raise err
    v5 = proto_level == 5
    cflags = r.u8("the connect flags")
    if cflags & 0x01:
        raise MalformedPacket("CONNECT reserved flag is not 0", rule="MQTT-3.1.2-3")
    will_flag = bool(cflags & 0x04)
    will_qos = (cflags >> 3) & 0x03
    will_retain = bool(cflags & 0x20)
    has_password = bool(cflags & 0x40)
    has_username = bool(cflags & 0x80)
    if will_qos == 3:
        raise MalformedPacket("will QoS is 3", rule="MQTT-3.1.2-12")
    if not will_flag:
        if will_qos:
            raise MalformedPacket("will QoS set without the will flag", rule="MQTT-3.1.2-11")
        if will_retain:
            raise MalformedPacket("will retain set without the will flag", rule="MQTT-3.1.2-13")
    if has_password and not has_username and not v5:
        raise ProtocolViolation("password flag set without the user name flag", rule="MQTT-3.1.2-22")
    keep_alive = r.u16("the keep alive")
    props = decode_properties(r, P.CONNECT) if v5 else {}
    if "authentication_data" in props and "authentication_method" not in props:
        raise ProtocolViolation("authentication data without an authentication method", rule="MQTT-3.1.2.11.10")
    client_id = r.utf8("the client identifier")
    will = None
    if will_flag:
        will_props = decode_properties(r, WILL) if v5 else {}
        will_topic = r.utf8("the will topic")
        will_payload = r.binary("the will payload")
        will = Will(will_topic, will_payload, will_qos, will_retain, will_props)
    username = r.utf8("the user name") if has_username else None
    password = r.binary("the password") if has_password else None
    r.expect_end("CONNECT")
    return Connect(client_id, proto_level, bool(cflags & 0x02), keep_alive, username, password, will, props,
                   name)


def decode_connack(r: Reader, flags: int, level: int | None) -> Connack:
    ack = r.u8("the connect acknowledge flags")
    if level == 3:
        ack = 0  # MQTT 3.1: an unused byte, no session present flag
    if ack & 0xFE:
        raise MalformedPacket("CONNACK reserved acknowledge flags are not 0", rule="MQTT-3.2.2-1")
    code = r.u8("the CONNACK reason code")
    if level == 5:
        _reason(P.CONNACK, code)
        props = decode_properties(r, P.CONNACK)
    else:
        if code > 5:
            raise MalformedPacket(f"0x{code:02x} is not a CONNACK return code", rule="MQTT-3.2.2.3")
        props = {}
    r.expect_end("CONNACK")
    return Connack(bool(ack & 0x01), code, props)


# --------------------------------------------------------------------------- PUBLISH and its acks


def decode_publish(r: Reader, flags: int, level: int | None) -> Publish:
    qos = (flags >> 1) & 0x03  # QoS 3 and DUP with QoS 0 are rejected with the fixed header
    topic = r.utf8("the topic name")
    pid = _packet_id(r) if qos else None
    props = decode_properties(r, P.PUBLISH) if level == 5 else {}
    if not topic and "topic_alias" not in props:
        raise ProtocolViolation("zero-length topic name without a topic alias", rule="MQTT-4.7.3-1")
    return Publish(topic, r.rest(), qos, bool(flags & 0x01), bool(flags & 0x08), pid, props)


def _pub_response(cls: type[Puback | Pubrec | Pubrel | Pubcomp]) -> Callable[[Reader, int, int | None], Packet]:
    ptype = cls.type

    def decode(r: Reader, flags: int, level: int | None) -> Packet:
        pid = _packet_id(r)
        code = 0
        props = {}
        if level == 5:
            if r.remaining:
                code = _reason(ptype, r.u8("the reason code"))
            if r.remaining:
                props = decode_properties(r, ptype)
        r.expect_end(ptype.name)
        return cls(pid, code, props)

    return decode


# --------------------------------------------------------------------------- SUBSCRIBE / UNSUBSCRIBE


def decode_subscribe(r: Reader, flags: int, level: int | None) -> Subscribe:
    pid = _packet_id(r)
    props = decode_properties(r, P.SUBSCRIBE) if level == 5 else {}
    subs = []
    while r.remaining:
        topic_filter = r.utf8("a topic filter")
        opts = r.u8("the subscription options")
        qos = opts & 0x03
        if level == 5:
            if opts & 0xC0:
                raise MalformedPacket("subscription options reserved bits are not 0", rule="MQTT-3.8.3-5")
            if qos == 3:
                raise ProtocolViolation("subscription requests QoS 3", rule="MQTT-3.8.3.1")
            rh = (opts >> 4) & 0x03
            if rh == 3:
                raise ProtocolViolation("retain handling is 3", rule="MQTT-3.8.3.1")
            subs.append(Subscription(topic_filter, qos, bool(opts & 0x04), bool(opts & 0x08), rh))
        else:
            if opts & 0xFC or qos == 3:
                raise MalformedPacket(f"invalid requested QoS byte 0x{opts:02x}", rule="MQTT-3.8.3-4")
            subs.append(Subscription(topic_filter, qos))
    if not subs:
        raise ProtocolViolation("SUBSCRIBE without a topic filter", rule="MQTT-3.8.3-3")
    return Subscribe(pid, subs, props)


def decode_suback(r: Reader, flags: int, level: int | None) -> Suback:
    pid = _packet_id(r)
    props = decode_properties(r, P.SUBACK) if level == 5 else {}
    codes = list(r.rest())
    if not codes:
        raise MalformedPacket("SUBACK without a return code", rule="MQTT-3.9.3-1")
    for code in codes:
        if level == 5:
            _reason(P.SUBACK, code)
        elif code not in SUBACK_CODES_V3:
            raise MalformedPacket(f"0x{code:02x} is not a SUBACK return code", rule="MQTT-3.9.3-2")
    return Suback(pid, codes, props)


def decode_unsubscribe(r: Reader, flags: int, level: int | None) -> Unsubscribe:
    pid = _packet_id(r)
    props = decode_properties(r, P.UNSUBSCRIBE) if level == 5 else {}
    filters = []
    while r.remaining:
        filters.append(r.utf8("a topic filter"))
    if not filters:
        raise ProtocolViolation("UNSUBSCRIBE without a topic filter", rule="MQTT-3.10.3-2")
    return Unsubscribe(pid, filters, props)


def decode_unsuback(r: Reader, flags: int, level: int | None) -> Unsuback:
    pid = _packet_id(r)
    if level != 5:
        r.expect_end("UNSUBACK")
        return Unsuback(pid)
    props = decode_properties(r, P.UNSUBACK)
    codes = [_reason(P.UNSUBACK, c) for c in r.rest()]
    if not codes:
        raise MalformedPacket("UNSUBACK without a reason code", rule="MQTT-3.11.3")
    return Unsuback(pid, codes, props)


# --------------------------------------------------------------------------- the rest


def decode_pingreq(r: Reader, flags: int, level: int | None) -> Pingreq:
    r.expect_end("PINGREQ")
    return Pingreq()


def decode_pingresp(r: Reader, flags: int, level: int | None) -> Pingresp:
    r.expect_end("PINGRESP")
    return Pingresp()


def decode_disconnect(r: Reader, flags: int, level: int | None) -> Disconnect:
    code = 0
    props = {}
    if level == 5:
        if r.remaining:
            code = _reason(P.DISCONNECT, r.u8("the reason code"))
        if r.remaining:
            props = decode_properties(r, P.DISCONNECT)
    r.expect_end("DISCONNECT")
    return Disconnect(code, props)


def decode_auth(r: Reader, flags: int, level: int | None) -> Auth:
    code = 0
    props = {}
    if r.remaining:
        code = _reason(P.AUTH, r.u8("the reason code"))
    if r.remaining:
        props = decode_properties(r, P.AUTH)
    r.expect_end("AUTH")
    return Auth(code, props)


DECODERS: dict[int, Callable[[Reader, int, int | None], Packet]] = {
    P.CONNECT: decode_connect,
    P.CONNACK: decode_connack,
    P.PUBLISH: decode_publish,
    P.PUBACK: _pub_response(Puback),
    P.PUBREC: _pub_response(Pubrec),
    P.PUBREL: _pub_response(Pubrel),
    P.PUBCOMP: _pub_response(Pubcomp),
    P.SUBSCRIBE: decode_subscribe,
    P.SUBACK: decode_suback,
    P.UNSUBSCRIBE: decode_unsubscribe,
    P.UNSUBACK: decode_unsuback,
    P.PINGREQ: decode_pingreq,
    P.PINGRESP: decode_pingresp,
    P.DISCONNECT: decode_disconnect,
    P.AUTH: decode_auth,
}
