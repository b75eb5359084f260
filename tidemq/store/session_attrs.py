"""The auth provider's attributes of a connection, kept in its session record (field ``attrs``).

BifroMQ puts the attributes an auth provider returns at CONNECT into the client's
metadata, which ``GET /session`` shows. TideMQ writes them into the session record hash
as one field, ``attrs`` = JSON ``{"e": epoch, "a": {name: text}}``, with one small
script guarded by the connection's epoch (``lua/session_attrs.lua``): a session taken
over or removed meanwhile is never touched or re-created. The field goes away with the
record; a later connection without attributes leaves an older value in place, which
``attributes_of`` ignores because its epoch is not the record's. Nothing is written
for a connection without attributes (no extra round trip on the common CONNECT).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from tidemq.store import keys
from tidemq.store.scripts import get

__all__ = ["FIELD", "MAX_ATTRIBUTES_BYTES", "attributes_of", "write_attributes"]

FIELD = "attrs"
MAX_ATTRIBUTES_BYTES = 16384  # a provider returning more is cut at the last attribute that fits (logged by caller)

_WRITE = get("session_attrs")


def encode_attributes(epoch: int, attributes: Mapping[str, Any]) -> bytes:
    """The field's value: every name and value as text, in name order, at most ``MAX_ATTRIBUTES_BYTES``."""
    kept: dict[str, str] = {}
    size = 0
    for name in sorted(attributes, key=str):
        k, v = str(name), str(attributes[name])
        size += len(k.encode()) + len(v.encode()) + 6
        if size > MAX_ATTRIBUTES_BYTES:
            break
        kept[k] = v
    return orjson.dumps({"e": epoch, "a": kept})


async def write_attributes(r: Any, t: str, c: str, epoch: int, attributes: Mapping[str, Any]) -> bool:
    """Record ``attributes`` for the connection ``epoch`` of session ``(t, c)``; False if it no longer holds it."""
    return bool(await _WRITE(r, [keys.sess(t, c)], [epoch, encode_attributes(epoch, attributes)]))


def attributes_of(record: Mapping[str, Any]) -> dict[str, str]:
    """The attributes of the connection a decoded session record names (``{}``: none, or an older one's)."""
    raw = record.get(FIELD)
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
        if int(value["e"]) != int(record.get("epoch", -1)):
            return {}
        return {str(k): str(v) for k, v in dict(value["a"]).items()}
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return {}
