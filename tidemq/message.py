"""The application message as it travels between processes and sits in Redis.

A message is encoded once per publish (``pack``) and the same bytes go to
every inbox, retained slot and worker channel: the payload stays binary
(never JSON), metadata is one small orjson header in front of it.

Layout: ``b"M1"`` | u32 big-endian header length | orjson header | payload.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import orjson

MAGIC = b"M1"
_HDR = struct.Struct(">I")

# Publish properties that travel with the message (topic alias and
# subscription identifiers are per-hop / per-subscriber and never stored).
FORWARDED_PROPERTIES = (
    "payload_format_indicator",
    "content_type",
    "response_topic",
    "correlation_data",
    "user_property",
)


@dataclass(slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: dict[str, Any] = field(default_factory=dict)
    expire_at_ms: int = 0  # 0: never expires; else wall clock ms when it does
    sender: str = ""  # client id of the publisher in its tenant ("" for the API), for no-local
    created_ms: int = 0
    origin: dict[str, Any] = field(default_factory=dict)  # client_type / client_meta_* for API publishes
    # an inbound QoS 2 message's token (``q2_begin``): the same for a resend routed again, so an inbox or a
    # connection that got the message already does not get it twice ("" for any other message)
    token: str = ""

    def expired(self, now_ms: int) -> bool:
        return bool(self.expire_at_ms) and self.expire_at_ms <= now_ms

    def remaining_expiry(self, now_ms: int) -> int | None:
        """Seconds left (rounded up, >= 1) or None when it never expires; 0 when expired."""
        if not self.expire_at_ms:
            return None
        left = self.expire_at_ms - now_ms
        if left <= 0:
            return 0
        return max(1, (left + 999) // 1000)


def expiry_deadline(now_ms: int, interval_s: int | None) -> int:
    """The one place Message Expiry Interval arithmetic lives: wall-clock ms when a message
    published at ``now_ms`` with ``interval_s`` seconds expires (0: never)."""
    return now_ms + interval_s * 1000 if interval_s else 0


def pack(msg: Message) -> bytes:
    header: dict[str, Any] = {"t": msg.topic, "q": msg.qos}
    if msg.retain:
        header["r"] = 1
    if msg.properties:
        props = {k: v for k, v in msg.properties.items() if k in FORWARDED_PROPERTIES}
        if "correlation_data" in props:
            props["correlation_data"] = props["correlation_data"].hex()
        if props:
            header["p"] = props
    if msg.expire_at_ms:
        header["e"] = msg.expire_at_ms
    if msg.sender:
        header["s"] = msg.sender
    if msg.created_ms:
        header["c"] = msg.created_ms
    if msg.origin:
        header["o"] = msg.origin
    if msg.token:
        header["k"] = msg.token
    raw = orjson.dumps(header)
    return b"".join((MAGIC, _HDR.pack(len(raw)), raw, msg.payload))


def unpack(blob: bytes) -> Message:
    """The message of a blob (once per delivery of a queued message: kept to one header parse and one
    positional construction)."""
    if blob[:2] != MAGIC:
        raise ValueError("not a TideMQ message blob")
    end = 6 + _HDR.unpack_from(blob, 2)[0]
    header = orjson.loads(blob[6:end])
    get = header.get
    props = get("p")
    if props:
        if "correlation_data" in props:
            props["correlation_data"] = bytes.fromhex(props["correlation_data"])
        if "user_property" in props:
            props["user_property"] = [tuple(kv) for kv in props["user_property"]]
    else:
        props = {}
    # positional, in field order: topic, payload, qos, retain, properties, expire_at_ms, sender, created_ms,
    # origin, token
    return Message(header["t"], blob[end:], header["q"], bool(get("r")), props, get("e", 0), get("s", ""),
                   get("c", 0), get("o") or {}, get("k", ""))
