"""The sans-IO MQTT codec: ``Decoder`` (bytes in, packets out) and ``encode``.

``Decoder.feed`` only buffers; ``Decoder.next_packet`` returns one complete,
validated packet or ``None`` when more bytes are needed. It reads straight out
of one ``bytearray`` with a read offset (consumed bytes are dropped on the
next ``feed``), so decoding many packets from one large feed is linear. The
fixed header is checked as soon as it is buffered: a reserved packet type or
flag, a non-CONNECT first packet (server side) and a remaining length above
``max_packet_size`` (fixed header included) fail at once, without waiting
for the body. Only ``MQTTError`` subclasses ever escape, and the first one
is sticky: the decoder re-raises it on every later call (the connection is
to be closed). ``encode`` raises ``ValueError`` for packets that cannot be
put on the wire.

Hot paths: an MQTT 3 PUBLISH and the two-byte PUBACK/PUBREC/PUBREL/PUBCOMP are
decoded inline in ``Decoder._next`` (no ``Reader``), and ``encode_publish`` /
``encode_ack`` encode from the values (no packet object). Each gives exactly
the packet, bytes and error of the generic path it short-cuts
(``tests/mqtt/test_fast_paths.py`` compares them).
"""

from __future__ import annotations

import struct
from typing import Any

from .codec_decode import DECODERS, decode_connect, decode_publish
from .codec_encode import ENCODERS
from .errors import MalformedPacket, MQTTError, PacketTooLarge, ProtocolViolation
from .packets import Connect, Packet, PacketType, Puback, Pubcomp, Publish, Pubrec, Pubrel
from .primitives import (
    RULE_LENGTH,
    RULE_UTF8,
    RULE_UTF8_NULL,
    RULE_VARINT,
    Reader,
    encode_utf8,
    encode_varint,
)
from .properties import encode_properties

__all__ = ["MAX_PACKET_SIZE", "Decoder", "encode", "encode_ack", "encode_publish", "packet_size"]

MAX_PACKET_SIZE = 268_435_460  # 1 type byte + 4 length bytes + 268435455 bytes of body

_CONNECT = PacketType.CONNECT
_AUTH = PacketType.AUTH
_PUBLISH = PacketType.PUBLISH
# Fixed-header flags each packet type must carry (PUBLISH is checked on its own).
_FLAGS: dict[int, int] = {t: 0 for t in PacketType}
_FLAGS[PacketType.PUBREL] = _FLAGS[PacketType.SUBSCRIBE] = _FLAGS[PacketType.UNSUBSCRIBE] = 0b0010
_FLAG_RULES: dict[int, str] = {
    PacketType.PUBREL: "MQTT-3.6.1-1",
    PacketType.SUBSCRIBE: "MQTT-3.8.1-1",
    PacketType.UNSUBSCRIBE: "MQTT-3.10.1-1",
}


# first bytes that ``Decoder._check_type`` accepts whatever the level once CONNECT was seen: PUBLISH without
# QoS 3 and without DUP at QoS 0, the acks, SUBSCRIBE/UNSUBSCRIBE with their 0010 flags, PINGREQ, DISCONNECT
_ALWAYS_VALID_AFTER_CONNECT = frozenset(
    {b for b in range(0x30, 0x40) if (b >> 1) & 0x03 != 3 and not (b & 0x08 and not (b >> 1) & 0x03)}
    | {0x40, 0x50, 0x62, 0x70, 0x82, 0xA2, 0xC0, 0xE0})
# first byte -> packet class of the two-byte acknowledgements decoded without a ``Reader``
_ACKS: dict[int, type[Puback | Pubrec | Pubrel | Pubcomp]] = {0x40: Puback, 0x50: Pubrec, 0x62: Pubrel, 0x70: Pubcomp}


class Decoder:
    """Incremental packet decoder for one connection direction."""

    __slots__ = ("_buf", "_connect_seen", "_error", "_pos", "max_packet_size", "protocol_level", "server_side")

    def __init__(
        self,
        *,
        max_packet_size: int = MAX_PACKET_SIZE,
        protocol_level: int | None = None,
        server_side: bool = True,
    ) -> None:
        if protocol_level not in (None, 3, 4, 5):
            raise ValueError(f"protocol_level must be None, 3, 4 or 5, got {protocol_level!r}")
        if protocol_level is None and not server_side:
            raise ValueError("a client-side Decoder needs the protocol_level it connected with")
        self.max_packet_size = max_packet_size
        self.protocol_level = protocol_level
        self.server_side = server_side
        self._buf = bytearray()
        self._pos = 0
        self._error: MQTTError | None = None
        self._connect_seen = False

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as packets."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer ``data``; parsing happens in ``next_packet``."""
        if self._pos:
            del self._buf[: self._pos]  # amortised O(1) in CPython: bytearray drops its head in place
            self._pos = 0
        self._buf += data

    def next_packet(self) -> Packet | None:
        """Return the next complete packet, or ``None`` if more bytes are needed."""
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except MQTTError as exc:
            self._error = exc
            raise

    def _check_type(self, ptype: int, flags: int) -> None:
        if self.server_side:
            if ptype == _CONNECT:
                if self._connect_seen:
                    raise ProtocolViolation("second CONNECT on one connection", rule="MQTT-3.1.0-2")
            elif self.protocol_level is None and not self._connect_seen:
                raise ProtocolViolation("the first packet must be CONNECT", rule="MQTT-3.1.0-1")
        if ptype == 0 or (ptype == _AUTH and self.protocol_level != 5):
            raise MalformedPacket(f"reserved packet type {ptype}", rule="MQTT-2.1.2")
        if ptype == PacketType.PUBLISH:
            qos = (flags >> 1) & 0x03
            if qos == 3:
                raise MalformedPacket("PUBLISH with QoS 3", rule="MQTT-3.3.1-4")
            if flags & 0x08 and not qos:
                raise MalformedPacket("PUBLISH with DUP set and QoS 0", rule="MQTT-3.3.1-2")
        elif flags != _FLAGS[ptype]:
            raise MalformedPacket(
                f"{PacketType(ptype).name} fixed header flags are 0b{flags:04b}",
                rule=_FLAG_RULES.get(ptype, "MQTT-2.1.3-1"),
            )

    def _next(self) -> Packet | None:
        buf = self._buf
        pos = self._pos
        n = len(buf)
        if pos + 1 >= n:
            if pos < n:  # a lone first byte: checked at once (a bad packet type fails before its length)
                b0 = buf[pos]
                if not (self._connect_seen and b0 in _ALWAYS_VALID_AFTER_CONNECT):
                    self._check_type(b0 >> 4, b0 & 0x0F)
            return None
        b0 = buf[pos]
        ptype = b0 >> 4
        flags = b0 & 0x0F
        if not (self._connect_seen and b0 in _ALWAYS_VALID_AFTER_CONNECT):
            self._check_type(ptype, flags)
        length = buf[pos + 1]
        i = pos + 2
        if length & 0x80:  # a remaining length of more than one byte
            length &= 0x7F
            shift = 7
            while True:
                if i >= n:
                    return None
                b = buf[i]
                i += 1
                length |= (b & 0x7F) << shift
                if not b & 0x80:
                    break
                shift += 7
                if shift == 28:
                    raise MalformedPacket("remaining length is longer than four bytes", rule=RULE_VARINT)
            if b == 0:
                raise MalformedPacket("remaining length is not minimally encoded", rule=RULE_VARINT)
        end = i + length
        if end - pos > self.max_packet_size:
            raise PacketTooLarge(
                f"packet of {end - pos} bytes exceeds the maximum packet size {self.max_packet_size}",
                rule="MQTT-3.2.2-15" if self.server_side else "MQTT-3.1.2-24",
            )
        if end > n:
            return None
        if ptype == _PUBLISH and self.protocol_level in (3, 4):
            # the hot path, inline: an MQTT 3.1/3.1.1 PUBLISH (no properties), read straight from the buffer,
            # with the checks and errors of ``decode_publish``
            qos = (flags >> 1) & 0x03
            if i + 2 > end:
                raise _short("the topic name")
            p = i + 2 + ((buf[i] << 8) | buf[i + 1])
            if p > end:
                raise _short("the topic name")
            if p == i + 2:
                topic = ""
            else:
                try:
                    topic = buf[i + 2 : p].decode()
                except UnicodeDecodeError as exc:
                    raise MalformedPacket(f"the topic name is not well-formed UTF-8: {exc.reason}",
                                          rule=RULE_UTF8) from None
                if "\x00" in topic:
                    raise MalformedPacket("the topic name contains U+0000", rule=RULE_UTF8_NULL)
            pid = None
            if qos:
                if p + 2 > end:
                    raise _short("the packet identifier")
                pid = (buf[p] << 8) | buf[p + 1]
                if pid == 0:
                    raise MalformedPacket("packet identifier is zero", rule="MQTT-2.2.1-3")
                p += 2
            if not topic:
                raise ProtocolViolation("zero-length topic name without a topic alias", rule="MQTT-4.7.3-1")
            self._pos = end
            return Publish(topic, bytes(buf[p:end]) if end - p < 4096 else bytes(memoryview(buf)[p:end]), qos,
                           bool(flags & 0x01), bool(flags & 0x08), pid, {})
        if length == 2 and b0 in _ACKS:
            # PUBACK / PUBREC / PUBREL / PUBCOMP of two bytes (any level: MQTT 5 omits reason 0 and no properties)
            pid = (buf[i] << 8) | buf[i + 1]
            if pid == 0:
                raise MalformedPacket("packet identifier is zero", rule="MQTT-2.2.1-3")
            self._pos = end
            return _ACKS[b0](pid, 0, {})
        r = Reader(buf, i, end)
        packet: Packet
        if ptype == _CONNECT:
            packet = connect = decode_connect(r, flags, self.protocol_level)
            self.protocol_level = connect.protocol_level
            self._connect_seen = True
        elif ptype == _PUBLISH:
            packet = publish = decode_publish(r, flags, self.protocol_level)
            if self.server_side and "subscription_identifier" in publish.properties:
                raise ProtocolViolation("PUBLISH from a client carries a subscription identifier",
                                        rule="MQTT-3.3.4-6")
        else:
            packet = DECODERS[ptype](r, flags, self.protocol_level)
        self._pos = end
        return packet


def _short(what: str) -> MalformedPacket:
    return MalformedPacket(f"packet ends inside {what}", rule=RULE_LENGTH)


def encode(packet: Packet, protocol_level: int) -> bytes:
    """Encode ``packet`` for ``protocol_level`` (3, 4 or 5); ``ValueError`` if it cannot be encoded."""
    if protocol_level not in (3, 4, 5):
        raise ValueError(f"protocol_level must be 3, 4 or 5, got {protocol_level!r}")
    encoder = ENCODERS.get(getattr(packet, "type", -1))
    if encoder is None:
        raise ValueError(f"not an MQTT packet: {packet!r}")
    if isinstance(packet, Connect) and packet.protocol_level not in (3, 4, 5):
        raise ValueError(f"Connect.protocol_level must be 3, 4 or 5, got {packet.protocol_level!r}")
    first, chunks = encoder(packet, protocol_level)
    size = sum(map(len, chunks))
    if size > 268_435_455:
        raise ValueError(f"packet body of {size} bytes exceeds the MQTT maximum of 268435455")
    return b"".join((bytes((first,)), encode_varint(size), *chunks))


_BYTE = [bytes((i,)) for i in range(256)]
_U16 = struct.Struct("!H")
_BUFFERS = (bytes, bytearray, memoryview)
_TOPICS: dict[str, bytes] = {}  # topic -> its encoded (length-prefixed) form, for the send paths
_TOPICS_MAX = 4096  # bounded: cleared when full (a cache of recent topics, not of every topic seen)


def _topic(topic: str) -> bytes:
    data = _TOPICS.get(topic)
    if data is None:
        data = encode_utf8(topic)  # the checks of encode_utf8 run once per cached topic
        if len(_TOPICS) >= _TOPICS_MAX:
            _TOPICS.clear()
        _TOPICS[topic] = data
    return data


def encode_publish(topic: str, payload: bytes, qos: int, retain: bool, dup: bool, packet_id: int | None,
                   properties: dict[str, Any] | None, protocol_level: int) -> bytes:
    """``encode(Publish(topic, payload, qos, retain, dup, packet_id, properties), protocol_level)`` without
    building the packet: the same bytes and the same ``ValueError``s (the outbound hot path)."""
    if type(payload) is not bytes and not isinstance(payload, _BUFFERS):
        raise ValueError(f"payload must be bytes, not {type(payload).__name__}")
    t = _TOPICS.get(topic)
    if t is None:
        t = _topic(topic)
    if qos == 0:
        if dup:
            raise ValueError("DUP must be 0 for QoS 0 [MQTT-3.3.1-2]")
        first = _BYTE[0x31 if retain else 0x30]
        pid = b""
    elif qos == 1 or qos == 2:
        first = _BYTE[0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)]
        if packet_id is None or not 1 <= packet_id <= 0xFFFF:
            raise ValueError(f"packet identifier must be 1..65535, got {packet_id!r}")
        pid = _U16.pack(packet_id)
    else:
        raise ValueError(f"QoS must be 0, 1 or 2, got {qos!r}")
    if protocol_level == 4 or protocol_level == 3:
        size = len(t) + len(pid) + len(payload)
        if size < 0x80:
            return b"".join((first, _BYTE[size], t, pid, payload))
        props = b""
    elif protocol_level == 5:
        props = encode_properties(properties, PacketType.PUBLISH)
        size = len(t) + len(pid) + len(props) + len(payload)
    else:
        raise ValueError(f"protocol_level must be 3, 4 or 5, got {protocol_level!r}")
    if size > 268_435_455:
        raise ValueError(f"packet body of {size} bytes exceeds the MQTT maximum of 268435455")
    return b"".join((first, encode_varint(size), t, pid, props, payload))


def encode_ack(first: int, packet_id: int, reason_code: int, protocol_level: int) -> bytes:
    """A PUBACK (0x40) / PUBREC (0x50) / PUBREL (0x62) / PUBCOMP (0x70) without properties: the bytes
    ``encode`` gives for the packet (MQTT 5 short form when the reason is 0; MQTT 3 carries no reason)."""
    if not 1 <= packet_id <= 0xFFFF:
        raise ValueError(f"packet identifier must be 1..65535, got {packet_id!r}")
    if protocol_level == 5 and reason_code:
        if not 0 <= reason_code <= 0xFF:
            raise ValueError(f"byte out of range: {reason_code}")
        return _BYTE[first] + b"\x03" + _U16.pack(packet_id) + _BYTE[reason_code]
    return _BYTE[first] + b"\x02" + _U16.pack(packet_id)


def packet_size(packet: Packet, protocol_level: int) -> int:
    """Total encoded size of ``packet`` in bytes, fixed header included."""
    return len(encode(packet, protocol_level))
