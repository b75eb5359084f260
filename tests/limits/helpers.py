"""Shared helpers of the limits and authz suites: worker processes with an environment, raw MQTT 5 / 3.1.1
connections that carry a username, tenant-settings writes and bounded polls of external state.

Raw connections reuse the independent packet builder of ``tests/conformance/wire`` and the ``V5`` client of
``tests/mqtt5/v5wire`` (it never acks on its own and shows every reason code); ``open5`` adds what ``V5.open5``
lacks (username, password, CONNECT properties, a will). ``worker_with_env`` starts a ``tidemq worker`` on the
session's real Redis with extra environment and always stops it. Every wait is bounded; ``until`` polls state
that has no event to wait on (a TTL cache, a counter another process publishes every two seconds).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conformance import wire
from tests.fixtures.brokers import Broker, BrokerProcess, worker_process
from tests.mqtt5.v5wire import V5, Connack
from tidemq.store import keys

REPO = Path(__file__).resolve().parents[2]

# MQTT 5 property ids used here (table 2-4)
SESSION_EXPIRY, RECEIVE_MAXIMUM, MAX_QOS, RETAIN_AVAILABLE = 0x11, 0x21, 0x24, 0x25
AUTH_METHOD, AUTH_DATA = 0x15, 0x16
WILDCARD_AVAILABLE, SHARED_AVAILABLE = 0x28, 0x2A


def uid() -> str:
    return uuid.uuid4().hex[:10]


def redis_url(server: Any) -> str:
    return f"redis://127.0.0.1:{server.port}/0"


@contextmanager
def worker_with_env(log_dir: Path, url: str, env: Mapping[str, str]) -> Iterator[tuple[BrokerProcess, Broker]]:
    """A ``tidemq worker`` on ``url`` with ``env`` (tests/ importable from the child), stopped on exit."""
    full = {"PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
            **env}
    proc = worker_process(log_dir, url, env=full)
    proc.start()
    try:
        yield proc, Broker(host=proc.host, port=proc.port, kind="worker", process=proc, redis_url=url)
    finally:
        proc.stop()


def attach_log(request: pytest.FixtureRequest, proc: BrokerProcess) -> None:
    """Attach the part of ``proc``'s log written from now on to the report of a failing test."""
    request.node._tidemq_brokers = [*getattr(request.node, "_tidemq_brokers", []), (proc, proc.log_size())]


def set_tenant(r: redis.Redis, tenant: str, **values: object) -> None:
    """HSET the tenant's settings hash (BifroMQ names), as an operator would with redis-cli."""
    mapping = {k: (("true" if v else "false") if isinstance(v, bool) else str(v)) for k, v in values.items()}
    r.hset(keys.tenant_settings(tenant), mapping=mapping)


def until(pred: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``pred`` (state owned by another process) until truthy; bounded, fails with ``what``."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout}s (last {value!r})")
        time.sleep(delay)  # polling another process's state: no event to wait on
        delay = min(delay * 2, 0.2)


async def until_async(pred: Callable[[], Any], within: float = 10.0, what: str = "condition") -> Any:
    """``until`` for async tests (``pred`` may be a coroutine function)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    delay = 0.01
    while True:
        value = pred()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not reached within {within}s (last {value!r})")
        await asyncio.sleep(delay)  # polling another process's state: no event to wait on
        delay = min(delay * 2, 0.2)


async def open5(broker: Broker, client_id: str, *, username: str | None = None, password: bytes | None = None,
                clean: bool = True, props: bytes = b"\x00", will: tuple[str, bytes, int, bool] | None = None,
                expect: int = 0) -> V5:
    """A raw MQTT 5 connection; asserts the CONNACK reason is ``expect`` (refused: the socket is closing)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(broker.host, broker.port), wire.TIMEOUT)
    c = V5(reader, writer)
    await c.send(wire.connect(client_id, version=5, clean=clean, username=username, password=password,
                              will=will, properties=props))
    ack = await c.read()
    assert ack.type == wire.CONNACK, ack
    parsed, _ = wire.parse_props(ack.body, 2)
    c.connack = Connack(bool(ack.body[0] & 1), ack.body[1], parsed)
    if ack.body[1] != expect:
        await c.close()
        raise AssertionError(f"CONNACK reason {ack.body[1]:#x}, expected {expect:#x} ({parsed})")
    if expect:
        await c.close()
    return c


async def connect311(broker: Broker, client_id: str, *, username: str | None = None,
                     password: bytes | None = None, clean: bool = True) -> tuple[wire.RawClient, int]:
    """A raw MQTT 3.1.1 connection and its CONNACK return code (the client is closed when refused)."""
    c = await wire.RawClient.open(broker.host, broker.port, 4)
    await c.send(wire.connect(client_id, version=4, clean=clean, username=username, password=password))
    ack = await c.read()
    assert ack.type == wire.CONNACK, ack
    if ack.body[1]:
        await c.close()
    return c, ack.body[1]


async def subscribe311(c: wire.RawClient, pid: int, *filters: tuple[str, int]) -> list[int]:
    """SUBSCRIBE on a raw 3.1.1 client and the SUBACK return codes."""
    await c.send(wire.subscribe(pid, *filters, version=4))
    ack = await c.read_type(wire.SUBACK)
    assert ack.pid == pid
    return list(ack.body[2:])


def rss_kb(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB (VmRSS from /proc/<pid>/status)."""
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"^VmRSS:\s+(\d+)\s+kB", text, re.M)
    assert m, text
    return int(m.group(1))


def worker_stats(r: redis.Redis, worker_id: str) -> dict[str, int]:
    """The counters a worker last published with its lease (``tidemq:wstats:<worker id>``)."""
    return {k.decode(): int(v) for k, v in r.hgetall(keys.worker_stats(worker_id)).items()}
