"""Broker events in the tenant's capped Redis stream (the ``redis`` sink), and ``$SYS`` topics per tenant:
a real client subscribed to ``$SYS/#`` in tenant A sees A's numbers and nothing of tenant B.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
import redis

from tests.conformance import wire
from tests.limits.helpers import SESSION_EXPIRY, open5, set_tenant, uid, until, until_async
from tests.observability.conftest import Obs
from tidemq.store.event_stream import events_key

pytestmark = pytest.mark.redis


def _events(r: redis.Redis, tenant: str) -> list[dict[str, Any]]:
    return [orjson.loads(fields[b"data"]) for _id, fields in r.xrange(events_key(tenant))]


async def test_connect_refusal_takeover_kick_disconnect_events_reach_the_stream(
        obs: Obs, r: redis.Redis, api_base: str) -> None:
    tenant = f"ev{uid()}"
    set_tenant(r, tenant, MaxTopicFiltersPerSub=1)
    c = await open5(obs.broker, "c1", username=f"{tenant}/u")
    assert await c.subscribe(("a", 0), ("b", 0)) == [0, 0x97]  # a refusal (subscription quota)
    again = await open5(obs.broker, "c1", username=f"{tenant}/u")  # takes the session over
    async with httpx.AsyncClient(base_url=api_base, timeout=5) as http:
        killed = await http.delete("/kill", headers={"tenant_id": tenant, "client_type": "test"})
    assert killed.status_code == 200, killed.text
    assert await again.disconnect_reason() == 0x98

    def kinds() -> list[str] | None:
        got = [e["kind"] for e in _events(r, tenant)]
        return got if {"connect", "refusal", "takeover", "kick", "disconnect"} <= set(got) else None

    got = until(kinds, 10.0, "events in the tenant's stream")
    assert got[0] == "connect"
    evs = _events(r, tenant)
    assert next(e for e in evs if e["kind"] == "kick")["reason"] == "killed by admin"
    refusal = next(e for e in evs if e["kind"] == "refusal")
    assert refusal["reason"] == "subscription_quota" and refusal["tenant"] == tenant
    assert all(e["tenant"] == tenant for e in evs)
    assert r.xlen(events_key(f"ev{uid()}")) == 0  # other tenants' streams are untouched


async def test_sys_topics_stay_in_their_tenant(obs: Obs, r: redis.Redis) -> None:
    a, b, off = f"sa{uid()}", f"sb{uid()}", f"so{uid()}"
    set_tenant(r, a, SysTopicsEnabled=True)
    set_tenant(r, b, SysTopicsEnabled=True)
    others = [await open5(obs.broker, f"b{i}", username=f"{b}/u") for i in range(3)]  # B: 3 clients
    quiet = await open5(obs.broker, "q", username=f"{off}/u")  # SysTopicsEnabled off
    assert await quiet.subscribe(("$SYS/#", 0)) == [0]
    sub = await open5(obs.broker, "a-sub", username=f"{a}/u")
    assert await sub.subscribe(("$SYS/#", 0)) == [0]
    seen: dict[str, bytes] = {}

    async def collect() -> bool:
        with_timeout = await asyncio.wait_for(sub.get(), 5.0)
        seen[with_timeout.topic] = with_timeout.payload
        return {"$SYS/broker/clients/connected", "$SYS/broker/version", "$SYS/broker/uptime",
                "$SYS/broker/messages/received", f"$SYS/broker/workers/{obs.worker_id}/clients/connected"} <= set(seen)

    await until_async(collect, 15.0, "$SYS topics in tenant A")
    assert all(t.startswith("$SYS/broker/") for t in seen)
    assert seen["$SYS/broker/clients/connected"] == b"1"  # A's one client, not B's three
    assert seen["$SYS/broker/version"].startswith(b"TideMQ")
    assert seen["$SYS/broker/uptime"].endswith(b" seconds")
    # tenant B's tree holds B's numbers (read from its retained store: nothing crossed over)
    late = await open5(obs.broker, "b-late", username=f"{b}/u")
    assert await late.subscribe(("$SYS/broker/clients/connected", 0)) == [0]
    assert int((await late.get()).payload) >= 3
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(quiet.get(), 1.5)  # a tenant that did not opt in gets nothing
    for c in (*others, quiet, sub, late):
        await c.close()


async def test_drop_and_will_events(obs: Obs, r: redis.Redis) -> None:
    tenant = f"ev{uid()}"
    set_tenant(r, tenant, SessionInboxSize=1)
    expiry = wire.props((SESSION_EXPIRY, 600))
    sub = await open5(obs.broker, "offline", username=f"{tenant}/u", clean=False, props=expiry)
    assert await sub.subscribe(("q/t", 1)) == [1]
    await sub.bye()
    until(lambda: "disconnect" in [e["kind"] for e in _events(r, tenant)], 10.0, "subscriber offline")
    pub = await open5(obs.broker, "pub", username=f"{tenant}/u", will=("w/gone", b"bye", 0, False))
    codes = [await pub.publish("q/t", b"%d" % i, qos=1) for i in range(3)]
    assert codes == [0, 0x97, 0x97]  # the inbox holds one: two dropped
    await pub.close()  # no DISCONNECT: the will fires

    def found() -> list[dict[str, Any]] | None:
        evs = _events(r, tenant)
        kinds = {e["kind"] for e in evs}
        return evs if {"drop", "will"} <= kinds else None

    evs = until(found, 10.0, "drop and will events")
    drops = [e for e in evs if e["kind"] == "drop"]
    assert {e["reason"] for e in drops} == {"inbox_full"} and sum(e["count"] for e in drops) == 2
    assert next(e for e in evs if e["kind"] == "will")["topic"] == "w/gone"
    assert all(b"bye" not in f[b"data"] for _id, f in r.xrange(events_key(tenant)))  # never a payload
