"""``DebugModeEnabled`` over real sockets: a tenant that switches it on gets INFO ``debug_*`` lines (logger
``tidemq.debug``) for its connects, subscribes, publishes and unsubscribes, without payloads; a tenant that
does not gets none. Read from the worker's own log (JSON lines), from the offset where the test began.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tests.conformance import wire
from tests.fixtures.brokers import BrokerProcess
from tests.limits.helpers import uid, until

pytestmark = pytest.mark.redis


def _debug_events(proc: BrokerProcess, start: int) -> list[dict[str, Any]]:
    with open(proc.log_path, "rb") as f:
        f.seek(start)
        lines = f.read().splitlines()
    out = []
    for line in lines:
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(rec, dict) and str(rec.get("event", "")).startswith("debug_"):
            out.append(rec)
    return out


async def test_debug_mode_logs_one_tenants_events_without_payloads(
        limits_worker_proc: tuple[BrokerProcess, Any, str], worker: Any, tenant: str,
        settings: Callable[..., None], c5: Any) -> None:
    proc = limits_worker_proc[0]
    start = proc.log_size()
    settings(DebugModeEnabled=True)
    secret = f"secret-{uid()}".encode()
    c = await c5("dbg")
    assert await c.subscribe(("d/#", 1)) == [1]
    assert await c.publish("d/x", secret, qos=1) == 0
    assert (await c.get()).payload == secret
    quiet = await c5("quiet", who=f"other{uid()}/u")  # another tenant, debug mode off
    assert await quiet.subscribe(("d/#", 1)) == [1]
    await quiet.publish("d/x", secret, qos=1)
    await c.send(wire.unsubscribe(9, "d/#", version=5))
    events = until(lambda: (ev := _debug_events(proc, start)) and any(
        e["event"] == "debug_unsubscribe" for e in ev) and ev, 10.0, "debug_unsubscribe logged")
    assert {e["tenant"] for e in events} == {tenant}
    kinds = [e["event"] for e in events]
    assert kinds == ["debug_connect", "debug_subscribe", "debug_publish", "debug_unsubscribe"]
    assert all(e["level"] == "info" and e["logger"] == "tidemq.debug" for e in events), events
    publish = events[2]
    assert "d/x" in publish["msg"] and f"bytes={len(secret)}" in publish["msg"]
    assert secret not in proc.log_path.read_bytes()[start:]
