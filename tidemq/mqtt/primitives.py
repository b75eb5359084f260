"""MQTT data representation (spec section 1.5): integers, strings, binary data.

``Reader`` decodes one packet body in place: it walks a buffer between two
offsets and never copies more than the field it returns, so a decoder can
read straight out of its receive buffer. Every short read or ill-formed
value raises ``MalformedPacket`` naming the rule it broke; nothing else
escapes. The ``encode_*`` helpers are the inverse and raise ``ValueError``
for values that cannot be put on the wire (a programming error, not a
protocol one). Invariants: variable byte integers are at most four bytes and
minimally encoded; strings are well-formed UTF-8 without U+0000 and their
lengths are UTF-8 byte lengths.
"""

from __future__ import annotations

import struct

from .errors import MalformedPacket

VARINT_MAX = 268_435_455  # largest value a four-byte variable byte integer holds

RULE_VARINT = "MQTT-1.5.5-1"
RULE_UTF8 = "MQTT-1.5.4-1"  # well-formed UTF-8, no surrogates
RULE_UTF8_NULL = "MQTT-1.5.4-2"  # no U+0000
RULE_LENGTH = "MQTT-2.1.4"  # the Remaining Length is exactly the bytes of the packet

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")

Buffer = bytes | bytearray | memoryview


def _copy(buf: Buffer, start: int, end: int) -> bytes:
    """``bytes(buf[start:end])`` with one copy for large fields.

    The memoryview is a temporary of this one expression, so it never outlives
    the call and a ``bytearray`` buffer stays resizable.
    """
    if end - start < 4096:
        return bytes(buf[start:end])
    return bytes(memoryview(buf)[start:end])


def _short(what: str) -> MalformedPacket:
    return MalformedPacket(f"packet ends inside {what}", rule=RULE_LENGTH)


class Reader:
    """Sequential reader over ``buf[pos:end]``; raises ``MalformedPacket`` only."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: Buffer, pos: int = 0, end: int | None = None) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else end

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def u8(self, what: str = "a byte") -> int:
        pos = self.pos
        if pos >= self.end:
            raise _short(what)
        self.pos = pos + 1
        return self.buf[pos]

    def u16(self, what: str = "a two byte integer") -> int:
        pos = self.pos
        if pos + 2 > self.end:
            raise _short(what)
        self.pos = pos + 2
        value: int = _U16.unpack_from(self.buf, pos)[0]
        return value

    def u32(self, what: str = "a four byte integer") -> int:
        pos = self.pos
        if pos + 4 > self.end:
            raise _short(what)
        self.pos = pos + 4
        value: int = _U32.unpack_from(self.buf, pos)[0]
        return value

    def varint(self, what: str = "a variable byte integer") -> int:
        value, self.pos = read_varint(self.buf, self.pos, self.end, what)
        return value

    def raw(self, n: int, what: str) -> bytes:
        pos = self.pos
        if pos + n > self.end:
            raise _short(what)
        self.pos = pos + n
        return _copy(self.buf, pos, pos + n)

    def binary(self, what: str = "binary data") -> bytes:
        return self.raw(self.u16(what), what)

    def utf8(self, what: str = "a UTF-8 string") -> str:
        n = self.u16(what)
        pos = self.pos
        if pos + n > self.end:
            raise _short(what)
        self.pos = pos + n
        return decode_utf8(self.buf[pos : pos + n], what)

    def rest(self) -> bytes:
        pos, self.pos = self.pos, self.end
        return _copy(self.buf, pos, self.end)

    def expect_end(self, what: str) -> None:
        if self.pos != self.end:
            raise MalformedPacket(
                f"{self.end - self.pos} unexpected byte(s) at the end of {what}", rule=RULE_LENGTH
            )


def read_varint(buf: Buffer, pos: int, end: int, what: str = "a variable byte integer") -> tuple[int, int]:
    """Decode a complete variable byte integer at ``pos``; return ``(value, next_pos)``."""
    value = 0
    shift = 0
    start = pos
    while True:
        if pos >= end:
            raise _short(what)
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if pos - start == 4:
            raise MalformedPacket(f"{what} is longer than four bytes", rule=RULE_VARINT)
    if pos - start > 1 and b == 0:
        raise MalformedPacket(f"{what} is not minimally encoded", rule=RULE_VARINT)
    return value, pos


def decode_utf8(data: Buffer, what: str = "a UTF-8 string") -> str:
    """Strictly decode UTF-8 (Python's codec rejects surrogates and overlongs)."""
    try:
        s = str(data, "utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPacket(f"{what} is not well-formed UTF-8: {exc.reason}", rule=RULE_UTF8) from None
    if "\x00" in s:
        raise MalformedPacket(f"{what} contains U+0000", rule=RULE_UTF8_NULL)
    return s


# --------------------------------------------------------------------------- encoding


def encode_varint(value: int) -> bytes:
    if value < 0 or value > VARINT_MAX:
        raise ValueError(f"variable byte integer out of range: {value}")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_u8(value: int) -> bytes:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"byte out of range: {value}")
    return bytes((value,))


def encode_u16(value: int) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"two byte integer out of range: {value}")
    return _U16.pack(value)


def encode_u32(value: int) -> bytes:
    if not 0 <= value <= 0xFFFF_FFFF:
        raise ValueError(f"four byte integer out of range: {value}")
    return _U32.pack(value)


def encode_binary(data: bytes | bytearray) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"binary data must be bytes, not {type(data).__name__}")
    if len(data) > 0xFFFF:
        raise ValueError(f"binary data longer than 65535 bytes ({len(data)})")
    return _U16.pack(len(data)) + bytes(data)


def encode_utf8(s: str) -> bytes:
    if not isinstance(s, str):
        raise ValueError(f"UTF-8 string field must be str, not {type(s).__name__}")
    if "\x00" in s:
        raise ValueError("UTF-8 string contains U+0000")
    data = s.encode("utf-8")  # UnicodeEncodeError (a ValueError) on lone surrogates
    if len(data) > 0xFFFF:
        raise ValueError(f"UTF-8 string longer than 65535 bytes ({len(data)})")
    return _U16.pack(len(data)) + data
