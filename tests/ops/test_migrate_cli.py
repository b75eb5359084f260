"""Upgrading a store written by the previous key layout, as an operator does it (docs/deploy.md, Upgrading):
a worker of this version refuses the old store with one line, ``tidemq migrate`` moves it, and a real MQTT
client then resumes its session and gets the messages queued before the upgrade."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.fixtures.brokers import free_port, worker_process
from tests.store.test_migrate import T, _write_layout_1
from tidemq.store import close_redis, open_redis


def tidemq(*args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TIDEMQ_")}
    return subprocess.run([sys.executable, "-m", "tidemq.cli", *args], env=clean, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


@pytest.fixture
def redis_url(redis_server: Any) -> str:
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    redis.Redis.from_url(url).flushall()
    return url


def _layout_1(url: str) -> None:
    async def write() -> None:
        r = await open_redis(url)
        try:
            await _write_layout_1(r, now=int(time.time() * 1000))
        finally:
            await close_redis(r)

    asyncio.run(write())


def test_old_store_refused_then_migrated_and_resumed(redis_url: str, tmp_path: Path) -> None:
    _layout_1(redis_url)
    port = free_port()
    refused = tidemq("worker", "--redis-url", redis_url, "--mqtt-port", str(port))
    assert refused.returncode == 2, refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("tidemq: ") and "tidemq migrate" in last and "Traceback" not in refused.stderr

    done = tidemq("migrate", "--redis-url", redis_url)
    assert done.returncode == 0, done.stderr
    assert "1 tenants, 2 sessions, 6 keys moved" in done.stdout
    again = tidemq("migrate", "--redis-url", redis_url)
    assert again.returncode == 0 and "nothing to do" in again.stdout

    # the migrated offline session "p" of tenant "legacy" (user u1) resumes with its two queued messages
    import paho.mqtt.client as mqtt

    worker = worker_process(tmp_path, redis_url).start()
    try:
        got: list[bytes] = []
        both = threading.Event()

        def on_message(_c: Any, _u: Any, m: Any) -> None:
            got.append(m.payload)
            if len(got) >= 2:
                both.set()

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="p", protocol=mqtt.MQTTv5)
        client.on_message = on_message
        client.username_pw_set(f"{T}/u1")  # DevOnly: tenant/user
        client.connect("127.0.0.1", worker.port, clean_start=False)
        client.loop_start()
        try:
            assert both.wait(10), got
        finally:
            client.loop_stop()
            client.disconnect()
        assert got == [b"m1", b"m2"]
    finally:
        worker.stop()
