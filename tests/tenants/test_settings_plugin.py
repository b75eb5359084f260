"""``TIDEMQ_SETTINGS_PROVIDER``: a custom settings provider class, loaded by a real worker process, decides.

The worker runs ``tests.tenants.file_settings_provider:FileSettings`` (tenant values from a JSON file the
test edits) on a real Redis: a value it provides changes what a CONNECT gets, a change is seen after the
cache TTL, and the tenant's Redis hash is not consulted (the plugin replaces the built-in source). Also
unit-level: values of any type are validated like the hash's, a bad class name is a one-line ValueError.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.fixtures.brokers import Broker
from tests.limits.helpers import open5, redis_url, set_tenant, uid, until_async, worker_with_env
from tidemq.config import Settings
from tidemq.tenants import RedisHashSettings, SettingsProvider, make_settings_source

pytestmark = pytest.mark.redis

UNSUPPORTED_PROTOCOL_VERSION = 0x84
PLUGIN = "tests.tenants.file_settings_provider:FileSettings"


@pytest.fixture(scope="module")
def settings_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plugin") / "tenants.json"


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, redis_server: Any, settings_file: Path) -> Iterator[Broker]:
    env = {"TIDEMQ_SETTINGS_PROVIDER": PLUGIN, "TIDEMQ_TEST_SETTINGS_FILE": str(settings_file),
           "TIDEMQ_TENANT_SETTINGS_TTL": "0.1"}
    with worker_with_env(tmp_path_factory.mktemp("settings-plugin"), redis_url(redis_server), env) as (_p, broker):
        yield broker


def _write(path: Path, data: dict[str, dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)  # atomic: the worker never reads half a file


async def _connack(worker: Broker, tenant: str) -> int:
    try:
        c = await open5(worker, f"c{uid()}", username=f"{tenant}/u")
    except AssertionError as exc:
        text = str(exc)
        return int(text.split("CONNACK reason ")[1].split(",")[0], 16)
    await c.close()
    return 0


async def test_plugin_values_decide_and_changes_are_seen(worker: Broker, settings_file: Path) -> None:
    off, on = f"off{uid()}", f"on{uid()}"
    _write(settings_file, {off: {"MQTT5Enabled": False}})
    assert await _connack(worker, off) == UNSUPPORTED_PROTOCOL_VERSION
    assert await _connack(worker, on) == 0
    _write(settings_file, {off: {"MQTT5Enabled": "true"}, on: {"MQTT5Enabled": "maybe"}})  # bad value: ignored

    async def off_accepted() -> bool:
        return await _connack(worker, off) == 0

    await until_async(off_accepted, what="the plugin's new value")
    assert await _connack(worker, on) == 0


async def test_the_redis_hash_is_not_consulted(worker: Broker, redis_server: Any, settings_file: Path) -> None:
    t = f"hash{uid()}"
    r = redis.Redis.from_url(redis_url(redis_server))
    try:
        set_tenant(r, t, MQTT5Enabled=False)  # what the built-in provider would read
    finally:
        r.close()
    assert await _connack(worker, t) == 0


async def test_a_failing_plugin_gives_the_defaults(worker: Broker) -> None:
    assert await _connack(worker, f"broken{uid()}") == 0


def test_source_selection_and_bad_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(make_settings_source(object(), Settings()), RedisHashSettings)
    assert make_settings_source(None, Settings()) is None
    monkeypatch.setenv("TIDEMQ_TEST_SETTINGS_FILE", str(tmp_path / "none.json"))
    assert type(make_settings_source(None, Settings(settings_provider=PLUGIN))).__name__ == "FileSettings"
    for bad in ("nodots", "no.such.module:X", "tests.tenants.file_settings_provider:Nope"):
        with pytest.raises(ValueError, match="TIDEMQ_SETTINGS_PROVIDER"):
            make_settings_source(None, Settings(settings_provider=bad))


async def test_typed_values_are_validated_like_the_hash(tmp_path: Path) -> None:
    class Source:
        async def read(self, tenant: str) -> dict[str, Any]:
            return {"MaxTopicLevels": 3, "RetainEnabled": False, "ReceivingMaximum": -5, "Bogus": 1}

    p = SettingsProvider(None, source=Source())
    ts = await p.get("t")
    assert (ts.max_topic_levels, ts.retain_enabled) == (3, False)
    assert ts.receiving_maximum == p.defaults.receiving_maximum  # out of range: ignored
