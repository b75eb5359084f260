"""Limits fixtures: one worker per module on the real Redis with a 0.2 s tenant-settings cache, a fresh tenant
per test (DevOnly usernames ``<tenant>/<user>`` pick it), a redis-py client, and a tracker of raw connections.

Tests write the tenant's settings hash before they connect (``settings(**values)``); nothing is flushed between
tests because every test has its own tenant. The worker has a fixed id, so its published counters
(``tidemq:wstats:<id>``) can be read back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis

from tests.fixtures.brokers import Broker, BrokerProcess
from tests.limits.helpers import attach_log, open5, redis_url, set_tenant, uid, worker_with_env
from tests.mqtt5.v5wire import V5

pytestmark = pytest.mark.redis

SETTINGS_TTL = "0.2"


@pytest.fixture(scope="module")
def limits_worker_proc(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                       redis_server: Any) -> Iterator[tuple[BrokerProcess, Broker, str]]:
    worker_id = f"limits-{uid()}"
    env = {"TIDEMQ_TENANT_SETTINGS_TTL": SETTINGS_TTL, "TIDEMQ_WORKER_ID": worker_id}
    with worker_with_env(tmp_path_factory.mktemp("limits"), redis_url(redis_server), env) as (proc, b):
        yield proc, b, worker_id


@pytest.fixture
def worker(request: pytest.FixtureRequest, limits_worker_proc: tuple[BrokerProcess, Broker, str]) -> Broker:
    proc, broker, _ = limits_worker_proc
    if not proc.alive:
        proc.start()
    attach_log(request, proc)
    return broker


@pytest.fixture
def r(redis_server: Any) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url(redis_server))
    yield client
    client.close()


@pytest.fixture
def tenant() -> str:
    return f"lim{uid()}"


@pytest.fixture
def settings(r: redis.Redis, tenant: str) -> Callable[..., None]:
    """``settings(MaxTopicLevels=3, RetainEnabled=False)`` writes this test's tenant hash."""
    return lambda **values: set_tenant(r, tenant, **values)


@pytest.fixture
async def c5(worker: Broker, tenant: str) -> AsyncIterator[Callable[..., Any]]:
    """``await c5(client_id=None, user="u", expect=0, **open5 options)`` -> a raw v5 client of this tenant."""
    made: list[V5] = []

    async def make(client_id: str | None = None, *, user: str = "u", on: Broker | None = None,
                   who: str | None = None, **kw: Any) -> V5:
        c = await open5(on or worker, client_id or f"c{uid()}", username=who or f"{tenant}/{user}", **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        await c.close()


@pytest.fixture
def worker_id(limits_worker_proc: tuple[BrokerProcess, Broker, str]) -> str:
    """The module worker's id (its counters are the hash ``tidemq:wstats:<id>``)."""
    return limits_worker_proc[2]
