"""Chaos fixtures: a Redis with ``appendonly yes``, three real workers behind the test's own proxies.

``chaos`` (one per test, it is killed and restarted at will) starts:

- a ``redis-server`` on a free port with AOF on (``appendfsync everysec``, no RDB snapshots), in the
  test's temporary directory, restartable in place (``restart_redis``: SIGTERM, which fsyncs the AOF,
  then the same command line, which replays it);
- ``redis_proxy``: every worker reaches Redis through it (``--redis-url`` names the proxy), so a
  test can stall or cut the workers' Redis connections (``netproxy.Proxy``);
- three ``tidemq worker`` processes (the tree under test: they run from the repository root);
- ``lb``: the clients' single address, a proxy that sends each new connection to a random live
  worker, so a client whose worker was killed reconnects elsewhere.

Workers are started and restarted in a thread (their readiness poll blocks), so the proxies on
this loop keep serving them meanwhile. Everything is stopped by the fixture.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.chaos.netproxy import Proxy
from tests.fixtures.brokers import BrokerProcess, free_port, worker_process

N_WORKERS = 3
WORKER_ENV = {"TIDEMQ_INBOX_SIZE": "100000", "TIDEMQ_LOG_LEVEL": "INFO"}


@dataclass
class RedisAof:
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def argv(self) -> list[str]:
        return ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--appendonly", "yes",
                "--appendfsync", "everysec", "--save", "", "--dir", str(self.workdir)]

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def start(self) -> None:
        with open(self.workdir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        c = self.client()
        for _ in range(200):  # readiness has no event: PING until the AOF is loaded (bounded)
            try:
                if c.ping():
                    return
            except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.workdir / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError("redis-server not ready in 10 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(15)


@dataclass
class Chaos:
    redis: RedisAof
    redis_proxy: Proxy
    lb: Proxy
    workers: list[BrokerProcess] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def live(self) -> list[BrokerProcess]:
        return [w for w in self.workers if w.alive]

    def pick_worker(self) -> tuple[str, int] | None:
        live = self.live()
        return ("127.0.0.1", random.choice(live).port) if live else None

    async def kill_worker(self) -> BrokerProcess:
        w = random.choice(self.live())
        w.kill()
        self.log.append(f"kill -9 worker :{w.port}")
        return w

    async def start_worker(self, w: BrokerProcess) -> None:
        await asyncio.to_thread(w.start)

    async def restart_redis(self) -> None:
        await asyncio.to_thread(self.redis.stop)
        await asyncio.to_thread(self.redis.start)
        self.redis.restarts += 1
        self.log.append("redis restarted (SIGTERM, AOF replay)")

    async def client_kill(self) -> int:
        def kill() -> int:
            c = self.redis.client()
            try:
                n = 0
                for kind in ("normal", "pubsub"):
                    n += int(c.execute_command("CLIENT", "KILL", "TYPE", kind))  # type: ignore[no-untyped-call]
                return n
            finally:
                c.close()
        n = await asyncio.to_thread(kill)
        self.log.append(f"CLIENT KILL: {n} connections")
        return n


@pytest.fixture
async def chaos(tmp_path: Path) -> AsyncIterator[Chaos]:
    rd = RedisAof(free_port(), tmp_path)
    await asyncio.to_thread(rd.start)
    rproxy = Proxy(lambda: ("127.0.0.1", rd.port), "redis-proxy")
    rport = await rproxy.start()
    dep = Chaos(rd, rproxy, Proxy(lambda: None, "lb"))
    dep.lb = Proxy(dep.pick_worker, "lb")
    await dep.lb.start()
    try:
        for _ in range(N_WORKERS):
            w = worker_process(tmp_path, f"redis://127.0.0.1:{rport}/0", env=WORKER_ENV)
            dep.workers.append(w)
            await dep.start_worker(w)
        yield dep
    finally:
        for w in dep.workers:
            await asyncio.to_thread(w.stop)
        await dep.lb.close()
        await rproxy.close()
        await asyncio.to_thread(rd.stop)
