"""Small builders shared by the store tests."""

from __future__ import annotations

from typing import Any

from tidemq.store import ConnectResult, session_connect

NOW = 1_700_000_000_000


async def connect(r: Any, t: str, c: str, **kw: Any) -> ConnectResult:
    args: dict[str, Any] = {
        "user": "u1", "ver": 5, "clean_start": False, "persistent": True, "expiry": 60,
        "worker": "w1", "address": "127.0.0.1:5000", "client_type": "mqtt", "now_ms": NOW,
    }
    args.update(kw)
    return await session_connect(r, t, c, **args)
