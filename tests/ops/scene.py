"""The operator scene of docs/redis-keys.md, built on a private Redis by a real worker, for the inspection tests.

Tenant ``acme`` (DevOnly usernames ``acme/ops``), worker ``w-1``:

- ``sensor-1``: online, persistent (session expiry 3600 s), subscribed to ``plant/+/temp`` at QoS 1 with
  subscription id 7;
- ``dash``: online, transient, subscribed to ``plant/#`` at QoS 0, and to ``$share/ops/alerts/#``;
- ``logger``: offline persistent (expiry 3600 s), subscribed to ``plant/1/temp`` at QoS 1, with two messages
  queued: ``21.5`` (message expiry 3600 s) and ``21.7``;
- retained: ``plant/1/status`` = ``online`` (QoS 1), ``plant/2/status`` = ``offline`` (QoS 0).

The two online clients stay connected on a loop in a background thread until the scene ends. Everything is
awaited (PUBACK, SUBACK) or polled with a bound (state another process writes), never slept on.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis

from tests.conformance import wire
from tests.fixtures.brokers import Broker
from tests.fixtures.redis_servers import _start_node, _stop
from tests.limits.helpers import open5, until, worker_with_env
from tests.mqtt5.v5wire import V5, sub_options
from tidemq.store import keys
from tidemq.store.keys import session_name

REPO = Path(__file__).resolve().parents[2]
TENANT, USER, WORKER = "acme", "acme/ops", "w-1"
SESSION_EXPIRY, MESSAGE_EXPIRY = 0x11, 0x02

T = TypeVar("T")


class LoopThread:
    """An event loop in a daemon thread: connections opened on it outlive each call."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@dataclass
class Scene:
    port: int  # the private Redis
    broker: Broker
    r: redis.Redis
    clients: list[V5] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def inspect(self, *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
        return inspect(url or self.url, *args)


def inspect(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m tidemq.cli inspect --redis-url <url> ARGS`` (this checkout's code)."""
    argv = [sys.executable, "-m", "tidemq.cli", "inspect", "--redis-url", url, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO, check=False)


async def _build(broker: Broker, r: redis.Redis) -> list[V5]:
    persistent = wire.props((SESSION_EXPIRY, 3600))
    sensor = await open5(broker, "sensor-1", username=USER, clean=False, props=persistent)
    assert await sensor.subscribe(("plant/+/temp", sub_options(1)), sub_id=7) == [1]
    dash = await open5(broker, "dash", username=USER)
    assert await dash.subscribe(("plant/#", sub_options(0)), ("$share/ops/alerts/#", sub_options(0))) == [0, 0]
    logger = await open5(broker, "logger", username=USER, clean=False, props=persistent)
    assert await logger.subscribe(("plant/1/temp", sub_options(1))) == [1]
    await logger.bye()
    until(lambda: r.hget(keys.sess(TENANT, session_name("ops", "logger")), "worker") == b"", what="logger offline")
    pub = await open5(broker, "pub-1", username=USER)
    assert await pub.publish("plant/1/temp", b"21.5", qos=1, props=wire.props((MESSAGE_EXPIRY, 3600))) == 0
    assert await pub.publish("plant/1/temp", b"21.7", qos=1) == 0
    assert await pub.publish("plant/1/status", b"online", qos=1, retain=True) == 0
    assert await pub.publish("plant/2/status", b"offline", qos=0, retain=True) == 0
    await pub.bye()
    for _ in range(2):  # sensor-1 reads and acknowledges its two
        await sensor.get()
    return [sensor, dash]


def scene(tmp: Path) -> Iterator[Scene]:
    """Build the scene (generator for a module-scoped fixture); stops everything it started."""
    port, proc = _start_node("redis-server", tmp / "redis")
    loop = LoopThread()
    r = redis.Redis(port=port)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        with worker_with_env(tmp, url, {"TIDEMQ_WORKER_ID": WORKER}) as (_proc, broker):
            s = Scene(port, broker, r)
            s.clients = loop.run(_build(broker, r))
            until(lambda: r.xlen(keys.inbox(TENANT, session_name("ops", "logger"))) == 2,
                  what="logger's two queued messages")
            until(lambda: r.xlen(keys.inbox(TENANT, session_name("ops", "sensor-1"))) == 0, what="sensor-1's acks")
            until(lambda: not r.exists(keys.sess(TENANT, session_name("ops", "pub-1"))), what="pub-1's session removed")
            until(lambda: r.hget(keys.worker_stats(WORKER), "sessions_online") == b"2", what="w-1's stats")
            try:
                yield s
            finally:
                for c in s.clients:
                    loop.run(c.close())
    finally:
        loop.close()
        r.close()
        _stop(proc)
