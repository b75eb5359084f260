"""Session expiry fires on time, not at the next sweep: with the sweep slowed to once a minute, a session
that went offline with Session Expiry 1 s is gone from Redis within about a second of its deadline (the
worker that saw it end keeps a timer); a reconnect before the deadline keeps it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.fixtures.brokers import Broker, BrokerProcess
from tests.limits.helpers import open5, redis_url, set_tenant, uid, until, worker_with_env
from tidemq.store import keys
from tidemq.store.keys import session_name

pytestmark = pytest.mark.redis

EXPIRY_1 = b"\x05\x11\x00\x00\x00\x01"  # properties: Session Expiry Interval 1 s


@pytest.fixture
def slow_sweep(tmp_path: Path, redis_server: Any) -> Iterator[tuple[BrokerProcess, Broker]]:
    with worker_with_env(tmp_path, redis_url(redis_server), {"TIDEMQ_SWEEP_INTERVAL": "60"}) as w:
        yield w


async def test_offline_session_expires_within_a_second_of_its_deadline(
        slow_sweep: tuple[BrokerProcess, Broker], redis_server: Any) -> None:
    _, broker = slow_sweep
    r = redis.Redis(port=redis_server.port)
    tenant, cid = f"t{uid()}", f"exp{uid()}"
    set_tenant(r, tenant, MinSessionExpirySeconds=1)  # BifroMQ's default minimum is 60 s
    c = await open5(broker, cid, username=f"{tenant}/u", clean=False, props=EXPIRY_1)
    assert await c.subscribe((f"exp/{cid}", 1)) == [1]
    await c.bye()
    ended = time.monotonic()
    assert r.exists(keys.sess(tenant, session_name("u", cid)))
    until(lambda: r.exists(keys.sess(tenant, session_name("u", cid))) == 0, timeout=10.0, what="session expired")
    assert time.monotonic() - ended < 1.0 + 1.5  # deadline 1 s, then at most about a second late
    r.close()


async def test_reconnect_before_the_deadline_keeps_the_session(slow_sweep: tuple[BrokerProcess, Broker]) -> None:
    _, broker = slow_sweep
    cid = f"keep{uid()}"
    c = await open5(broker, cid, clean=False, props=b"\x05\x11\x00\x00\x00\x02")
    assert await c.subscribe((f"keep/{cid}", 1)) == [1]
    await c.bye()
    c = await open5(broker, cid, clean=False, props=b"\x05\x11\x00\x00\x00\x02")
    assert c.connack.session_present
    await c.close()
