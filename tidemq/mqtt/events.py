"""The events of the MQTT state machine (``tidemq.mqtt.session``): what it hands the worker to decide.

Each is a plain slotted record of what the client sent (and, for a few, what the machine already
knows about it); the worker maps each type to its handler (``workers/connection.py`` ``HANDLERS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import MQTTError
from .packets import Auth, Connect, Publish, Subscribe, Unsubscribe


@dataclass(slots=True)
class ConnectReceived:
    packet: Connect


@dataclass(slots=True)
class PublishReceived:
    """An inbound application message; for QoS 1/2 the worker must call ``ack_publish``."""

    packet: Publish  # topic already resolved from a topic alias


@dataclass(slots=True)
class PubackReceived:
    packet_id: int
    tag: Any  # what the worker attached at send time


@dataclass(slots=True)
class PubrecReceived:
    packet_id: int
    tag: Any
    reason_code: int = 0


@dataclass(slots=True)
class PubcompReceived:
    packet_id: int
    tag: Any


@dataclass(slots=True)
class PubrelReceived:
    """Inbound QoS 2 released: the packet id is free again (PUBCOMP already queued)."""

    packet_id: int


@dataclass(slots=True)
class PubrelUnknown:
    """PUBREL for a packet id this connection does not hold: PUBCOMP (v5: 0x92) is already queued; the
    worker may drop a stored record of the id."""

    packet_id: int


@dataclass(slots=True)
class SubscribeReceived:
    packet: Subscribe


@dataclass(slots=True)
class UnsubscribeReceived:
    packet: Unsubscribe


@dataclass(slots=True)
class AuthReceived:
    packet: Auth


@dataclass(slots=True)
class DisconnectReceived:
    reason_code: int
    session_expiry: int | None  # v5 may change it at DISCONNECT
    publish_will: bool  # v5 reason 0x04


@dataclass(slots=True)
class ConnectionFailed:
    """A protocol error: DISCONNECT (v5, when allowed) is queued; the worker closes the transport."""

    error: MQTTError


Event = (
    ConnectReceived | PublishReceived | PubackReceived | PubrecReceived | PubcompReceived
    | PubrelReceived | PubrelUnknown | SubscribeReceived | UnsubscribeReceived | AuthReceived
    | DisconnectReceived | ConnectionFailed
)

