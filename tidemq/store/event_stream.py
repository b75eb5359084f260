"""The capped per-tenant event stream (``tidemq:events:{<tenant>}``) written by the Redis event sink.

One ``XADD ... MAXLEN ~ <cap>`` per event, all events of a batch in one pipelined round trip; the
stream is trimmed approximately (Redis's cheap trim), so it holds at least ``cap`` entries once full
and never grows without bound. Entry fields are flat strings (``kind``, ``tenant``, ``client``,
``at``, ``data`` = the event as JSON). Readers use ``XRANGE``/``XREAD`` like any stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import keys


def events_key(tenant: str) -> str:
    """Stream: the tenant's events, newest last (tagged by tenant like every tenant key)."""
    return f"{keys.PREFIX}events:{keys.tag(tenant)}"


async def append_events(r: Any, entries: Sequence[tuple[str, dict[str, str]]], *, cap: int) -> None:
    """XADD every ``(tenant, fields)`` to its tenant's stream, capped at about ``cap`` entries."""
    pipe = r.pipeline(transaction=False)
    for tenant, fields in entries:
        pipe.xadd(events_key(tenant), fields, maxlen=cap, approximate=True)
    await pipe.execute()
