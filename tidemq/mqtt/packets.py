"""Packet objects: one dataclass per MQTT control packet type.

These are the values the codec produces and consumes. They hold decoded,
validated fields; wire details (remaining length, flags) live in the codec.
MQTT 5 properties are a ``dict`` keyed by the snake_case property name from
``properties.PROPERTIES`` (e.g. ``"session_expiry_interval"``); the repeatable
ones (``user_property`` as a list of ``(key, value)`` pairs in wire order,
``subscription_identifier`` as a list of ints) are always lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

Properties = dict[str, Any]


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


@dataclass(slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Connect:
    client_id: str
    protocol_level: int = 4  # 3 = MQTT 3.1 ("MQIsdp"), 4 = 3.1.1, 5 = 5.0
    clean_start: bool = True
    keep_alive: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties = field(default_factory=dict)
    protocol_name: str = ""  # filled by the decoder; "" = derive from level when encoding
    type = PacketType.CONNECT


@dataclass(slots=True)
class Connack:
    session_present: bool = False
    reason_code: int = 0  # MQTT 5 reason code, or the v3 return code when encoding for v3
    properties: Properties = field(default_factory=dict)
    type = PacketType.CONNACK


@dataclass(slots=True)
class Publish:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: Properties = field(default_factory=dict)
    type = PacketType.PUBLISH


@dataclass(slots=True)
class _PubResponse:
    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Puback(_PubResponse):
    type = PacketType.PUBACK


@dataclass(slots=True)
class Pubrec(_PubResponse):
    type = PacketType.PUBREC


@dataclass(slots=True)
class Pubrel(_PubResponse):
    type = PacketType.PUBREL


@dataclass(slots=True)
class Pubcomp(_PubResponse):
    type = PacketType.PUBCOMP


@dataclass(slots=True)
class Subscription:
    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(slots=True)
class Subscribe:
    packet_id: int
    subscriptions: list[Subscription]
    properties: Properties = field(default_factory=dict)
    type = PacketType.SUBSCRIBE


@dataclass(slots=True)
class Suback:
    packet_id: int
    reason_codes: list[int]
    properties: Properties = field(default_factory=dict)
    type = PacketType.SUBACK


@dataclass(slots=True)
class Unsubscribe:
    packet_id: int
    topic_filters: list[str]
    properties: Properties = field(default_factory=dict)
    type = PacketType.UNSUBSCRIBE


@dataclass(slots=True)
class Unsuback:
    packet_id: int
    reason_codes: list[int] = field(default_factory=list)  # empty for v3
    properties: Properties = field(default_factory=dict)
    type = PacketType.UNSUBACK


@dataclass(slots=True)
class Pingreq:
    type = PacketType.PINGREQ


@dataclass(slots=True)
class Pingresp:
    type = PacketType.PINGRESP


@dataclass(slots=True)
class Disconnect:
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)
    type = PacketType.DISCONNECT


@dataclass(slots=True)
class Auth:
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)
    type = PacketType.AUTH


Packet = (
    Connect | Connack | Publish | Puback | Pubrec | Pubrel | Pubcomp | Subscribe | Suback
    | Unsubscribe | Unsuback | Pingreq | Pingresp | Disconnect | Auth
)
