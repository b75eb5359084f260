"""``ByPassPermCheckError`` over real sockets on a real Redis: a worker whose auth provider raises for topics
under ``err/`` (``tests/tenants/erring_provider.py``). By default (TideMQ: false) the check is a denial —
SUBACK 0x87, PUBACK 0x87, a will refused at CONNECT with 0x87; a tenant that sets it true gets the
check granted. Other topics are unaffected either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.conformance import wire
from tests.fixtures.brokers import Broker
from tests.limits.helpers import open5, redis_url, set_tenant, uid, worker_with_env
from tests.mqtt5.v5wire import V5

pytestmark = pytest.mark.redis

NOT_AUTHORIZED, NO_MATCH = 0x87, 0x10


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, redis_server: Any) -> Iterator[Broker]:
    env = {"TIDEMQ_AUTH_PROVIDER": "tests.tenants.erring_provider:ErringProvider",
           "TIDEMQ_TENANT_SETTINGS_TTL": "0.2"}
    with worker_with_env(tmp_path_factory.mktemp("erring"), redis_url(redis_server), env) as (_proc, broker):
        yield broker


@pytest.fixture
def tenants(redis_server: Any) -> dict[bool, str]:
    """{bypass: tenant}: a tenant with ByPassPermCheckError=true and one left at the default."""
    out = {False: f"deny{uid()}", True: f"allow{uid()}"}
    r = redis.Redis.from_url(redis_url(redis_server))
    try:
        set_tenant(r, out[True], ByPassPermCheckError=True)
    finally:
        r.close()
    return out


@pytest.mark.parametrize("bypass", [False, True])
async def test_subscribe_and_publish_when_the_provider_errors(worker: Broker, tenants: dict[bool, str],
                                                              bypass: bool) -> None:
    c: V5 = await open5(worker, f"c{uid()}", username=f"{tenants[bypass]}/u")
    try:
        assert await c.subscribe(("err/x", 1), ("ok/x", 1)) == ([1, 1] if bypass else [NOT_AUTHORIZED, 1])
        assert await c.publish("err/x", b"m", qos=1) == (0 if bypass else NOT_AUTHORIZED)
        assert await c.publish("ok/y", b"m", qos=1) == NO_MATCH
        if bypass:
            assert (await c.get()).payload == b"m"
    finally:
        await c.close()


@pytest.mark.parametrize("bypass", [False, True])
async def test_will_at_connect_when_the_provider_errors(worker: Broker, tenants: dict[bool, str],
                                                        bypass: bool) -> None:
    expect = 0 if bypass else NOT_AUTHORIZED
    c = await open5(worker, f"w{uid()}", username=f"{tenants[bypass]}/u", will=("err/will", b"bye", 1, False),
                    expect=expect)
    if not expect:
        await c.send(wire.packet(wire.DISCONNECT, 0, b"\x00"))
        await c.close()
