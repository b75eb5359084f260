"""Retained messages: one blob per topic per tenant in the hash ``retain(t)``, and an index of their names.

Setting goes through one script that enforces the tenant's topic limit (a
replace is always allowed; an empty blob clears). The scripts that write the
hash (``retain_set``, ``admin_retain_delete``) keep ``retain_index(t)`` in
step: a sorted set, all scores 0, one member ``topic \\0 expire-at ms`` per
retained topic (lua/include/retain_index.lua). ``retain_clear`` deletes both.

Matching (``retain_match``) never reads a payload it does not return:

- a filter without wildcards is one HGET of that topic;
- a wildcard filter reads topic *names* from the index, only in the lex range
  of the filter's literal prefix (the levels before the first wildcard:
  ``a/b/+`` reads names starting ``a/b/``, ``a/#`` names starting ``a``,
  ``#`` and ``+/x`` every name), in pages of ``SCAN_COUNT``; it skips names
  whose expire-at has passed, matches the rest with ``topic_matches`` (so
  ``$`` topics never match a first-level wildcard [MQTT-4.7.2-1]), stops at
  the ``limit``-th match, and HMGETs only those topics' payloads.

Work per match is therefore at most ``min(limit, MATCH_HARD_CAP)`` payloads
and at most every retained topic name under the literal prefix (bounded by
the tenant's ``RetainedTopicLimit``), names only. Expired messages do not
count against the limit (as in BifroMQ, which skips them while matching), and
the sweeper drops them (``retain_expire_step``: a page of the index per tenant
per sweep), so they neither stay in Redis nor hold a place of the tenant's
``RetainedTopicLimit`` until someone overwrites them.

Upgrade: data written before the index existed has a hash and no index. The
first script run or match that finds the hash without its index rebuilds the
index in that one script run (HSCAN in chunks of 500, reading each blob's
header inside Redis); nothing needs to be done by hand.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from tidemq.mqtt.topics import topic_matches
from tidemq.store import keys
from tidemq.store.scripts import get

_SET = get("retain_set")
_INDEX = get("retain_reindex")
_EXPIRE = get("retain_expire")

SCAN_COUNT = 500  # index names read per page
HMGET_CHUNK = 100  # payloads read per HMGET
# the most retained messages one match returns, whatever the limit: what "unlimited"
# (RetainMessageMatchLimit left unset with TIDEMQ_RETAIN_MATCH_LIMIT=0) amounts to
MATCH_HARD_CAP = 1000


RetainResult = Literal["RETAINED", "CLEARED", "EXCEED_LIMIT"]


async def retain_set(r: Any, t: str, topic: str, blob: bytes, *, limit: int) -> RetainResult:
    """Store (or with an empty ``blob`` clear) the retained message of ``topic``."""
    res = await _SET(r, [keys.retain(t), keys.retain_index(t)], [topic, blob, limit])
    # retain_set.lua returns exactly one of the three status words
    return cast(RetainResult, res.decode() if isinstance(res, bytes) else res)


def lex_range(topic_filter: str) -> tuple[bytes, bytes] | None:
    """The index lex range ``(min, max)`` holding every name ``topic_filter`` can match;
    None when the filter has no wildcard level (it names one topic)."""
    literal: list[str] = []
    for level in topic_filter.split("/"):
        if level == "+":
            prefix = "/".join([*literal, ""])  # `a/+` matches names starting `a/` only
            break
        if level == "#":
            prefix = "/".join(literal)  # `a/#` matches `a` itself too
            break
        literal.append(level)
    else:
        return None
    if not prefix:
        return b"-", b"+"
    raw = prefix.encode()
    return b"[" + raw, b"[" + raw + b"\xff"  # no UTF-8 name holds the byte 0xff


def match_cap(limit: int) -> int:
    """How many messages a match with ``limit`` returns at most (0 and below: none)."""
    return max(0, min(limit, MATCH_HARD_CAP))


async def retain_match(r: Any, t: str, topic_filter: str, limit: int, *, now_ms: int = 0) -> list[bytes]:
    """Blobs of at most ``match_cap(limit)`` retained topics matched by the (non-shared) ``topic_filter``.

    Index names whose expire-at is at or before ``now_ms`` are skipped and do not count (``now_ms=0``:
    none skipped). A topic cleared between the index read and the HMGET is left out, so a match may
    return fewer than the cap while more topics match. The caller still checks expiry on what it gets.
    """
    cap = match_cap(limit)
    if cap == 0:
        return []
    hkey = keys.retain(t)
    span = lex_range(topic_filter)
    if span is None:
        blob = await r.hget(hkey, topic_filter)
        return [blob] if blob else []
    topics = await _match_names(r, t, topic_filter, span, cap, now_ms)
    out: list[bytes] = []
    for i in range(0, len(topics), HMGET_CHUNK):
        out.extend(b for b in await r.hmget(hkey, topics[i : i + HMGET_CHUNK]) if b)
    return out


async def _match_names(r: Any, t: str, topic_filter: str, span: tuple[bytes, bytes], cap: int,
                       now_ms: int) -> list[bytes]:
    """Up to ``cap`` topic names from the index matched by ``topic_filter`` (building the index first
    when the tenant's retained messages predate it)."""
    idx = keys.retain_index(t)
    lo, hi = span
    pipe = r.pipeline(transaction=False)
    pipe.exists(idx)
    pipe.exists(keys.retain(t))
    pipe.zrangebylex(idx, lo, hi, start=0, num=SCAN_COUNT)
    has_index, has_hash, page = await pipe.execute()
    if not has_index:
        if not has_hash or not await _INDEX(r, [keys.retain(t), idx]):
            return []
        page = await r.zrangebylex(idx, lo, hi, start=0, num=SCAN_COUNT)
    found: list[bytes] = []
    while True:
        for member in page:
            name, _, exp = bytes(member).partition(b"\0")
            if now_ms and exp not in (b"", b"0") and int(exp) <= now_ms:
                continue
            if topic_matches(topic_filter, name.decode()):
                found.append(name)
                if len(found) >= cap:
                    return found
        if len(page) < SCAN_COUNT:
            return found
        page = await r.zrangebylex(idx, b"(" + bytes(page[-1]), hi, start=0, num=SCAN_COUNT)


async def retain_expire_step(r: Any, t: str, cursor: bytes, now_ms: int, count: int = SCAN_COUNT
                             ) -> tuple[bytes, int]:
    """Drop the expired retained messages among the next ``count`` names of ``t``'s index after ``cursor``
    (b"" = from the start); returns the cursor to go on from (b"" = the end was reached) and how many
    messages were dropped. One call is one bounded script run: the sweeper calls it once per tenant per
    sweep, so a tenant's whole index is gone through every (topics / count) sweeps."""
    nxt, dropped = await _EXPIRE(r, [keys.retain(t), keys.retain_index(t)], [now_ms, cursor, count])
    return bytes(nxt), int(dropped)


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
    """Delete every retained message of the tenant and the index; returns how many there were.

    The hash goes first: a ``retain_set`` landing between the two deletes leaves a hash without an
    index, which the next script run or match rebuilds (never an index naming topics that are gone).
    """
    pipe = r.pipeline(transaction=False)
    pipe.hlen(keys.retain(t))
    pipe.delete(keys.retain(t))
    pipe.delete(keys.retain_index(t))
    count, _, _ = await pipe.execute()
    return int(count)
