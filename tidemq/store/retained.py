"""Retained messages: one blob per topic per tenant in the hash ``retain(t)``.

Setting goes through one script that enforces the tenant's topic limit (a
replace is always allowed; an empty blob clears). Matching a filter without
wildcards is one HGET; with wildcards the hash is scanned in chunks and
matched with ``topic_matches`` (so ``$`` topics never match a first-level
wildcard [MQTT-4.7.2-1]).
"""

from __future__ import annotations

from typing import Any, Literal, cast

from tidemq.mqtt.topics import topic_matches
from tidemq.store import keys
from tidemq.store.scripts import get

_SET = get("retain_set")

SCAN_COUNT = 500


RetainResult = Literal["RETAINED", "CLEARED", "EXCEED_LIMIT"]


async def retain_set(r: Any, t: str, topic: str, blob: bytes, *, limit: int) -> RetainResult:
    """Store (or with an empty ``blob`` clear) the retained message of ``topic``."""
    res = await _SET(r, [keys.retain(t)], [topic, blob, limit])
    # retain_set.lua returns exactly one of the three status words
    return cast(RetainResult, res.decode() if isinstance(res, bytes) else res)


def _has_wildcard(topic_filter: str) -> bool:
    return "+" in topic_filter or "#" in topic_filter


async def retain_match(r: Any, t: str, topic_filter: str) -> list[bytes]:
    """Blobs of every retained topic matched by the (non-shared) ``topic_filter``."""
    key = keys.retain(t)
    if not _has_wildcard(topic_filter):
        blob = await r.hget(key, topic_filter)
        return [blob] if blob else []
    out: list[bytes] = []
    async for topic, blob in r.hscan_iter(key, count=SCAN_COUNT):
        if topic_matches(topic_filter, topic.decode()):
            out.append(blob)
    return out


async def retain_get(r: Any, t: str, topic: str) -> bytes | None:
    blob: bytes | None = await r.hget(keys.retain(t), topic)
    return blob


async def retain_count(r: Any, t: str) -> int:
    return int(await r.hlen(keys.retain(t)))


async def retain_list(r: Any, t: str, cursor: int = 0, limit: int = 100) -> tuple[int, list[tuple[str, bytes]]]:
    """One HSCAN page: ``(next cursor (0 when done), [(topic, blob), ...])``; ``limit`` is a hint."""
    next_cursor, items = await r.hscan(keys.retain(t), cursor, count=limit)
    return int(next_cursor), [(k.decode(), v) for k, v in items.items()]


async def retain_clear(r: Any, t: str) -> int:
    """Delete every retained message of the tenant; returns how many there were."""
    pipe = r.pipeline(transaction=False)
    pipe.hlen(keys.retain(t))
    pipe.delete(keys.retain(t))
    count, _ = await pipe.execute()
    return int(count)
