"""Tenant settings against a real redis-server: what an operator writes with redis-cli is what a worker sees."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.fixtures.redis_servers import RedisServer, flush_port
from tidemq.config import Settings
from tidemq.store import keys
from tidemq.store.connection import close_redis, open_redis
from tidemq.tenants import SettingsProvider, clear_overrides, write_overrides

pytestmark = pytest.mark.redis


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def r(redis_server: RedisServer) -> AsyncIterator[Any]:
    flush_port(redis_server.port)
    client = await open_redis(redis_server.url)
    try:
        yield client
    finally:
        await close_redis(client)
        await client.connection_pool.disconnect()  # close_redis leaves a caller-made pool open


def redis_cli(server: RedisServer, *args: str) -> str:
    cli = shutil.which("redis-cli")
    assert cli is not None
    out = subprocess.run([cli, "-p", str(server.port), *args], capture_output=True, text=True, check=True,
                         timeout=10)
    return out.stdout.strip()


async def test_redis_cli_override_is_seen_after_the_ttl(r: Any, redis_server: RedisServer) -> None:
    clock = FakeClock()
    p = SettingsProvider(r, Settings(tenant_settings_ttl=5.0, inbox_size=500), clock=clock)
    assert (await p.get("acme")).session_inbox_size == 500  # process default
    redis_cli(redis_server, "HSET", keys.tenant_settings("acme"), "SessionInboxSize", "20",
              "MQTT3Enabled", "false", "MaxTopicLevels", "not-a-number")
    assert (await p.get("acme")).session_inbox_size == 500  # still cached
    clock.now += 5.1
    got = await p.get("acme")
    assert got.session_inbox_size == 20
    assert got.mqtt3_enabled is False
    assert got.max_topic_levels == 16  # the bad value is ignored
    assert (await p.get("other")).session_inbox_size == 500  # tenants never share overrides


async def test_write_and_clear_overrides(r: Any, redis_server: RedisServer) -> None:
    clock = FakeClock()
    p = SettingsProvider(r, clock=clock)
    await write_overrides(r, "t{1}", {"MaxTopicLevels": 3, "retainenabled": False})
    assert redis_cli(redis_server, "HGET", keys.tenant_settings("t{1}"), "RetainEnabled") == "false"
    got = await p.get("t{1}")
    assert (got.max_topic_levels, got.retain_enabled) == (3, False)
    await clear_overrides(r, "t{1}", ["maxtopiclevels"])
    p.invalidate("t{1}")
    got = await p.get("t{1}")
    assert (got.max_topic_levels, got.retain_enabled) == (16, False)
    await clear_overrides(r, "t{1}")
    p.invalidate()
    assert await p.get("t{1}") == p.defaults
