"""Delayed wills that outlive the worker that saw the connection end.

When a persistent session's connection ends abnormally with an MQTT 5 will
delay, its will stays in the offline session record with a fire-at time and
an entry in the tenant's ``wills`` zset (``session_disconnect``). Whichever
worker asks first when it is due — the one that set a timer, or any worker's
periodic sweep — takes it with ``will_take`` (one atomic step: exactly one
caller gets the blob). A reconnect before then removes the entry
(``session_connect``): the will is cancelled [MQTT-3.1.3-9].
"""

from __future__ import annotations

from typing import Any

from . import keys
from .scripts import get

_TAKE = get("will_take")


async def will_take(r: Any, t: str, c: str, *, now_ms: int) -> bytes | None:
    """The will blob of ``(t, c)`` if it is due and nobody took it yet; None otherwise."""
    res = await _TAKE(r, [keys.sess(t, c), keys.wills(t)], [c, now_ms])
    return bytes(res) if res else None


async def wills_due(r: Any, t: str, *, now_ms: int, limit: int = 500) -> list[str]:
    """Client ids of ``t`` whose delayed will is due (take each with ``will_take``)."""
    ids = await r.zrangebyscore(keys.wills(t), "-inf", now_ms, start=0, num=limit)
    return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]
