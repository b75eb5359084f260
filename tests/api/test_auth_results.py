"""Auth provider results Granted / Denied / Error, and the provider's CONNECT attributes in ``GET /session``.

A real worker process runs ``tests/api/result_provider.py`` on a real Redis; the admin API is served over
real HTTP on the same Redis. ``Error`` is decided by the tenant's ``ByPassPermCheckError`` (deny by
default, grant when true), exactly as a provider that raises; ``Granted`` / ``Denied`` are plain answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.api.conftest import session_headers
from tests.fixtures.brokers import Broker
from tests.limits.helpers import open5, redis_url, set_tenant, uid, worker_with_env
from tests.mqtt5.v5wire import V5
from tidemq.auth import Denied, Error, Granted
from tidemq.auth.base import ProviderError, check_verdict

pytestmark = pytest.mark.redis

NOT_AUTHORIZED, NO_MATCH = 0x87, 0x10


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, redis_server: Any) -> Iterator[Broker]:
    env = {"TIDEMQ_AUTH_PROVIDER": "tests.api.result_provider:ResultProvider", "TIDEMQ_TENANT_SETTINGS_TTL": "0.2"}
    with worker_with_env(tmp_path_factory.mktemp("results"), redis_url(redis_server), env) as (_proc, broker):
        yield broker


def _tenant(redis_server: Any, bypass: bool) -> str:
    t = f"res{uid()}"
    if bypass:
        r = redis.Redis.from_url(redis_url(redis_server))
        try:
            set_tenant(r, t, ByPassPermCheckError=True)
        finally:
            r.close()
    return t


@pytest.mark.parametrize("bypass", [False, True])
async def test_granted_denied_error_over_mqtt(worker: Broker, redis_server: Any, bypass: bool) -> None:
    c: V5 = await open5(worker, f"c{uid()}", username=f"{_tenant(redis_server, bypass)}/u")
    try:
        codes = await c.subscribe(("granted/x", 1), ("denied/x", 1), ("error/x", 1), ("plain/x", 1))
        assert codes == [1, NOT_AUTHORIZED, 1 if bypass else NOT_AUTHORIZED, 1]
        assert await c.publish("granted/y", b"m", qos=1) == NO_MATCH
        assert await c.publish("denied/y", b"m", qos=1) == NOT_AUTHORIZED
        assert await c.publish("error/y", b"m", qos=1) == (NO_MATCH if bypass else NOT_AUTHORIZED)
        assert await c.publish("granted/x", b"g", qos=1) == 0
        assert (await c.get()).payload == b"g"
    finally:
        await c.close()


async def test_connect_attributes_reach_get_session(worker: Broker, redis_server: Any, api_factory: Any) -> None:
    api = api_factory(redis_url=redis_url(redis_server))
    t, cid = _tenant(redis_server, False), f"c{uid()}"
    c: V5 = await open5(worker, cid, username=f"{t}/ana")
    try:
        r = api.request("GET", "/session", session_headers(t, "ana", cid))
        assert r.status_code == 200, r.text
        meta = r.json()["metadata"]
        assert (meta["plan"], meta["login"]) == ("gold", "ana")
        assert meta["ver"] == "5" and meta["clientId"] == cid  # built-in keys win
    finally:
        await c.close()


def test_check_verdict() -> None:
    assert check_verdict(Granted()) is True and check_verdict(Denied("x")) is False
    assert check_verdict(True) is True and check_verdict(False) is False
    with pytest.raises(ProviderError, match="down"):
        check_verdict(Error("down"))
