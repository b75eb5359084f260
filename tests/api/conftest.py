"""Admin API fixtures: the API served over real HTTP on a free port, on the real ``redis_server``.

``api`` runs ``start_api`` in-process on its own event loop in a background
thread, so tests are plain synchronous code (httpx + paho with bounded
waits) and the API keeps serving while a test blocks on an MQTT client.
``api_factory(**settings, auth=..., retained_topic_limit=...)`` starts more,
differently configured ones; ``api_process`` runs ``tidemq api`` as a child
process. Every test uses its own tenant (``tenant`` fixture), so nothing is
flushed between tests; every server started here is stopped by its fixture.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.brokers import Broker, BrokerProcess, free_port
from tests.interop.clients import Paho
from tidemq.config import Settings

WAIT = 10.0


class ApiServer:
    """One in-process API on a background event loop; ``http`` is an httpx client bound to it."""

    def __init__(self, redis_url: str, options: dict[str, Any], **settings: Any) -> None:
        self.redis_url = redis_url
        self.settings = Settings(host="127.0.0.1", api_port=0, redis_url=redis_url, **settings)
        self.options = options
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="api-loop", daemon=True)
        self.handle: Any = None
        self.redis: Any = None
        self.port = 0
        self.http: httpx.Client | None = None

    def _run(self, coro: Any, timeout: float = 30.0) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def start(self) -> ApiServer:
        from tidemq.api.server import start_api

        from tidemq.store.connection import open_redis

        self.thread.start()

        async def up() -> None:
            self.redis = await open_redis(self.redis_url)
            self.handle = await start_api(self.settings, self.redis, **self.options)

        self._run(up())
        self.port = self.handle.port
        self.http = httpx.Client(base_url=self.url, timeout=WAIT)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        from tidemq.store.connection import close_redis

        if self.http is not None:
            self.http.close()

        async def down() -> None:
            if self.handle is not None:
                await self.handle.stop()
            if self.redis is not None:
                await close_redis(self.redis)

        try:
            self._run(down())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(WAIT)
            self.loop.close()

    # -- shortcuts ----------------------------------------------------------------------------
    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes = b"") -> httpx.Response:
        assert self.http is not None
        return self.http.request(method, path, headers=headers or {}, content=body)


@pytest.fixture
def api_factory(redis_server: Any) -> Iterator[Callable[..., ApiServer]]:
    """``api_factory(redis_url=None, auth=None, ..., **settings)`` -> a started ``ApiServer``."""
    started: list[ApiServer] = []
    option_names = ("auth", "store_timeout", "retained_topic_limit")

    def make(redis_url: str | None = None, **kwargs: Any) -> ApiServer:
        options = {k: kwargs.pop(k) for k in option_names if k in kwargs}
        server = ApiServer(redis_url or redis_server.url, options, **kwargs)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def api(api_factory: Callable[..., ApiServer]) -> ApiServer:
    """The admin API with default settings on the real Redis."""
    return api_factory()


@pytest.fixture
def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def mqtt(worker_broker: Broker) -> Iterator[Callable[..., Paho]]:
    """``mqtt(tenant, user, client_id=None, protocol="v5", ...)`` -> a CONNECTED paho client on the worker."""
    made: list[Paho] = []

    def make(tenant: str, user: str = "u1", client_id: str | None = None, **kwargs: Any) -> Paho:
        kwargs.setdefault("protocol", "v5")
        client = Paho(worker_broker, client_id, username=f"{tenant}/{user}", **kwargs)
        made.append(client)
        client.connect()
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def api_process(tmp_path: Path, redis_server: Any) -> Iterator[Callable[..., BrokerProcess]]:
    """``api_process(env=None)`` -> ``tidemq api`` running as a separate process (ready = port open)."""
    started: list[BrokerProcess] = []

    def make(env: dict[str, str] | None = None) -> BrokerProcess:
        port = free_port()
        argv = [sys.executable, "-m", "tidemq.cli", "api", "--host", "127.0.0.1", "--api-port", str(port),
                "--redis-url", redis_server.url]
        proc = BrokerProcess("api", argv, port=port, api_port=port, log_path=tmp_path / f"api-{port}.log",
                             env=env)
        started.append(proc)
        return proc.start()

    yield make
    for proc in started:
        proc.stop()


def pub_headers(tenant: str, topic: str, qos: int = 1, **extra: str) -> dict[str, str]:
    return {"tenant_id": tenant, "topic": topic, "qos": str(qos), "client_type": "test", **extra}


def session_headers(tenant: str, user: str, client: str, **extra: str) -> dict[str, str]:
    return {"tenant_id": tenant, "user_id": user, "client_id": client, **extra}
