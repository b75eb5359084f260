"""The one error tree of the sans-IO protocol layer.

Every problem the codec or the session state machine finds is an
``MQTTError`` carrying the MQTT reason code to answer with and the spec
statement it enforces. The worker turns these into CONNACK/DISCONNECT in
exactly one place; nothing else escapes the codec.
"""

from __future__ import annotations

from .reason_codes import RC


class MQTTError(Exception):
    """Base of all protocol errors: ``reason_code`` and ``rule`` (a spec id)."""

    default_code: int = RC.UNSPECIFIED_ERROR

    def __init__(self, message: str, *, rule: str = "", reason_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.rule = rule
        self.reason_code = self.default_code if reason_code is None else reason_code

    def __str__(self) -> str:
        return f"{self.message} [{self.rule}]" if self.rule else self.message


class MalformedPacket(MQTTError):
    """The bytes do not parse as the packet they claim to be (0x81)."""

    default_code = RC.MALFORMED_PACKET


class ProtocolViolation(MQTTError):
    """The packet parses but breaks a protocol rule (0x82 unless told)."""

    default_code = RC.PROTOCOL_ERROR


class PacketTooLarge(MQTTError):
    """The packet exceeds the negotiated maximum packet size (0x95)."""

    default_code = RC.PACKET_TOO_LARGE


class UnsupportedProtocolVersion(MQTTError):
    """CONNECT names a protocol name/level we do not speak (0x84 / v3 0x01)."""

    default_code = RC.UNSUPPORTED_PROTOCOL_VERSION
    protocol_level: int | None = None  # the level the CONNECT asked for, set by the decoder
