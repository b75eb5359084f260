"""Delayed wills that outlive the worker that saw the connection end.

When a persistent session's connection ends abnormally with an MQTT 5 will
delay, its will stays in the offline session record with a fire-at time and
a hint in the tenant's ``wills`` zset (written after the record: the
session's slot first, the tenant's second). Whichever worker asks first when
it is due — the one that set a timer, or any worker's periodic sweep — takes
it from the record with ``will_take`` (one atomic step: exactly one caller
gets the blob). A reconnect before then removes it from the record
(``session_connect``): the will is cancelled [MQTT-3.1.3-9], and the sweep
drops the hint that no longer leads anywhere.
"""

from __future__ import annotations

from typing import Any

from . import keys
from .indexes import TenantOps
from .scripts import get

_TAKE = get("will_take")


async def will_take(r: Any, t: str, c: str, *, now_ms: int, hint_at: int | None = None) -> bytes | None:
    """The will blob of ``(t, c)`` if it is due and nobody took it yet; None otherwise.

    ``hint_at``: the score of the tenant's will hint that led here (the sweep); the hint is removed when
    the record holds no pending will any more. A taken will's hint is removed in any case.
    """
    blob, will_at = await _TAKE(r, [keys.sess(t, c)], [now_ms])
    ops = TenantOps(t)
    if blob:
        ops.will_unhint(c, int(will_at))
    elif hint_at is not None and int(will_at) != hint_at:
        ops.will_unhint(c, hint_at)  # the record holds no will, or another one with its own hint
    await ops.apply(r)
    return bytes(blob) if blob else None


async def wills_due(r: Any, t: str, *, now_ms: int, limit: int = 500) -> list[tuple[str, int]]:
    """``(client id, hint score)`` of ``t``'s delayed wills that are due (take each with ``will_take``)."""
    due = await r.zrangebyscore(keys.wills(t), "-inf", now_ms, start=0, num=limit, withscores=True)
    return [(c.decode() if isinstance(c, bytes) else str(c), int(at)) for c, at in due]
