"""One worker per module with its health port (``/metrics``), tenant labels, a short ``$SYS`` interval and
the log + Redis event sinks, on the session's real Redis; an API process on the same Redis for the cluster view.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.fixtures.brokers import Broker, BrokerProcess, free_port
from tests.limits.helpers import redis_url, uid, worker_with_env

pytestmark = pytest.mark.redis


@dataclass
class Obs:
    broker: Broker
    worker_id: str
    health: str  # base URL of the worker's health port
    proc: BrokerProcess


@pytest.fixture(scope="module")
def obs(tmp_path_factory: pytest.TempPathFactory, redis_server: Any) -> Iterator[Obs]:
    worker_id, health = f"obs-{uid()}", free_port()
    env = {"TIDEMQ_WORKER_ID": worker_id, "TIDEMQ_HEALTH_PORT": str(health), "TIDEMQ_TENANT_SETTINGS_TTL": "0.2",
           "TIDEMQ_METRICS_TENANT_TOP": "5", "TIDEMQ_SYS_INTERVAL": "0.5", "TIDEMQ_EVENT_SINKS": "log,redis"}
    with worker_with_env(tmp_path_factory.mktemp("obs"), redis_url(redis_server), env) as (proc, broker):
        yield Obs(broker, worker_id, f"http://127.0.0.1:{health}", proc)


@pytest.fixture(scope="module")
def api_base(tmp_path_factory: pytest.TempPathFactory, redis_server: Any) -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, "-m", "tidemq.cli", "api", "--host", "127.0.0.1", "--api-port", str(port),
            "--redis-url", redis_url(redis_server)]
    api = BrokerProcess("api", argv, port=port, api_port=port,
                        log_path=Path(tmp_path_factory.mktemp("api")) / "api.log")
    api.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        api.stop()


@pytest.fixture
def r(redis_server: Any) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url(redis_server))
    yield client
    client.close()
