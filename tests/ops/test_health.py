"""The worker's /healthz and /readyz (TIDEMQ_HEALTH_PORT): what orchestrators probe."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.brokers import BrokerProcess, free_port, worker_process
from tests.fixtures.redis_servers import _stop

pytestmark = [pytest.mark.tidemq_only, pytest.mark.redis]


@pytest.fixture
def worker(tmp_path: Path, own_redis: tuple[int, subprocess.Popen]) -> Iterator[tuple[BrokerProcess, str]]:
    health = free_port()
    proc = worker_process(tmp_path, f"redis://127.0.0.1:{own_redis[0]}/0", env={"TIDEMQ_HEALTH_PORT": str(health)})
    proc.start()
    proc.wait_ready()  # the MQTT port accepts: the health endpoint was started before it
    yield proc, f"http://127.0.0.1:{health}"
    proc.stop()


def test_health_and_readiness(worker, own_redis) -> None:
    _proc, base = worker
    with httpx.Client(base_url=base, timeout=5) as http:
        assert (http.get("/healthz").status_code, http.get("/healthz").text) == (200, "ok\n")
        assert http.get("/readyz").status_code == 200
        assert http.get("/nope").status_code == 404
        assert http.post("/readyz").status_code == 405
        _stop(own_redis[1])  # Redis gone: alive, but not ready for new clients
        r = http.get("/readyz")
        assert r.status_code == 503 and "Redis unavailable" in r.text
        assert http.get("/healthz").status_code == 200


def test_garbage_request_gets_400(worker) -> None:
    proc, base = worker
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"NONSENSE\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    assert proc.alive



class _Redis:
    def __init__(self, ok: bool = True) -> None:
        self.ok = ok

    async def ping(self) -> bool:
        if not self.ok:
            raise ConnectionError("down")
        return True


class _Broker:
    def __init__(self, *, stopping: bool = False, lease_age: float = 0.0, redis_ok: bool = True) -> None:
        import time

        self.stopping = stopping
        self.lease_renewed_at = time.monotonic() - lease_age
        self.redis = _Redis(redis_ok)


@pytest.mark.parametrize(("make", "status", "text"), [
    (lambda: _Broker(), 200, "ready"),
    (lambda: _Broker(stopping=True), 503, "not ready: draining"),  # probes see the drain before clients go
    (lambda: _Broker(lease_age=60), 503, "not ready: lease not renewed"),
    (lambda: _Broker(redis_ok=False), 503, "not ready: Redis unavailable (ConnectionError)"),
], ids=["ready", "draining", "stale-lease", "redis-down"])
async def test_readiness_rules(make, status, text) -> None:
    from tidemq.worker.health import _answer

    broker = make()  # built now: the lease age is measured from the test's own clock
    assert await _answer(broker, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n") == (status, text)
    assert await _answer(broker, b"GET /healthz HTTP/1.1\r\n\r\n") == (200, "ok")
