"""The client balancer hook (``TIDEMQ_CLIENT_BALANCER``) over real sockets, on a real worker and Redis.

MQTT 5 clients the balancer sends away get CONNACK 0x9D Server moved / 0x9C Use another server, with the
Server Reference when the balancer names one; MQTT 3.1.1 clients get return code 3 (Server unavailable),
as BifroMQ answers them; nothing is claimed in Redis for a redirected client. A balancer that raises
keeps the client.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.fixtures.brokers import Broker
from tests.limits.helpers import connect311, open5, redis_url, uid, worker_with_env
from tests.mqtt5.balancer_plugin import REFERENCE
from tidemq.store import keys
from tidemq.store.keys import session_name

pytestmark = pytest.mark.redis

SERVER_MOVED, USE_ANOTHER_SERVER, SERVER_REFERENCE = 0x9D, 0x9C, 0x1C


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, redis_server: Any) -> Iterator[Broker]:
    env = {"TIDEMQ_CLIENT_BALANCER": "tests.mqtt5.balancer_plugin:TenantBalancer"}
    with worker_with_env(tmp_path_factory.mktemp("balancer"), redis_url(redis_server), env) as (_proc, broker):
        yield broker


async def test_v5_moved_with_reference_and_nothing_claimed(worker: Broker, redis_server: Any) -> None:
    t, cid = f"moved{uid()}", f"c{uid()}"
    c = await open5(worker, cid, username=f"{t}/u", expect=SERVER_MOVED)
    assert c.connack.props[SERVER_REFERENCE] == [REFERENCE]
    r = redis.Redis.from_url(redis_url(redis_server))
    try:
        assert not r.exists(keys.sess(t, session_name("u", cid)))
    finally:
        r.close()


async def test_v5_use_another_server_without_reference(worker: Broker) -> None:
    c = await open5(worker, f"c{uid()}", username=f"busy{uid()}/u", expect=USE_ANOTHER_SERVER)
    assert SERVER_REFERENCE not in c.connack.props


async def test_v3_is_refused_server_unavailable(worker: Broker) -> None:
    _c, rc = await connect311(worker, f"c{uid()}", username=f"moved{uid()}/u")
    assert rc == 3


@pytest.mark.parametrize("username", ["stay{}/u", "boom{}/u", "moved{}/vip"])
async def test_clients_the_balancer_keeps(worker: Broker, username: str) -> None:
    c = await open5(worker, f"c{uid()}", username=username.format(uid()))
    await c.close()
