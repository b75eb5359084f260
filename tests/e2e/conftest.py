"""End-to-end fixtures: several real worker processes (and an API node) on one real Redis.

``deployment`` is module-scoped: three ``tidemq worker`` processes, each on its
own free port, and one ``tidemq api`` process, all on the session's single
Redis node or 3-master Redis Cluster (the module picks with
``pytest.mark.parametrize("deployment", ["redis", "cluster"], indirect=True,
scope="module")``; unparametrized means ``redis``). The store is flushed when
a deployment starts; tests use unique client ids and topics. A process that
died during a test fails that test and is restarted for the next one; every
process is stopped by the fixture that started it. ``spawn`` starts
test-owned processes (for tests that kill workers), ``clients`` makes paho
clients that are all closed when the test ends.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.fixtures.brokers import Broker, BrokerProcess, free_port, worker_process
from tests.fixtures.redis_servers import flush_port
from tests.interop.clients import Paho

WAIT = 10.0
N_WORKERS = 3


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: multi-process end-to-end tests (several workers on one Redis)")


def _redis_url(request: pytest.FixtureRequest, kind: str) -> str:
    """Flush and return the URL of the session's Redis of ``kind`` ("redis" or "cluster")."""
    if kind == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        for port in cluster.ports:
            flush_port(port)
        return str(cluster.url)
    if kind != "redis":
        raise ValueError(f"unknown Redis kind {kind!r}")
    server = request.getfixturevalue("redis_server")
    flush_port(server.port)
    return f"redis://127.0.0.1:{server.port}/0"


def api_process(log_dir: Path, redis_url: str) -> BrokerProcess:
    port = free_port()
    argv = [sys.executable, "-m", "tidemq.cli", "api", "--host", "127.0.0.1", "--api-port", str(port),
            "--redis-url", redis_url]
    return BrokerProcess("api", argv, port=port, api_port=port, log_path=log_dir / f"api-{port}.log")


def as_broker(proc: BrokerProcess, redis_url: str) -> Broker:
    return Broker(host=proc.host, port=proc.port, kind="worker", process=proc, redis_url=redis_url)


@dataclass
class Deployment:
    """What a test sees: the workers (connect a ``Paho`` to ``workers[i]``), the API and the store."""

    kind: str
    redis_url: str
    workers: list[Broker]
    api: BrokerProcess | None = None
    api_error: str = ""
    procs: list[BrokerProcess] = field(default_factory=list)

    def http(self) -> httpx.Client:
        """An HTTP client bound to the API node (skips the test when the API could not start)."""
        if self.api is None:
            pytest.skip(f"admin API unavailable: {self.api_error}")
        return httpx.Client(base_url=f"http://127.0.0.1:{self.api.port}", timeout=WAIT)

    def redis(self):  # type: ignore[no-untyped-def]
        """A synchronous redis-py client (cluster-aware) on the deployment's store."""
        import redis

        if self.redis_url.startswith("redis+cluster://"):
            return redis.RedisCluster.from_url(self.redis_url.replace("redis+cluster://", "redis://"))
        return redis.Redis.from_url(self.redis_url)


def start_all(procs: Sequence[BrokerProcess]) -> None:
    """Start several processes, then wait for each (they boot in parallel)."""
    import subprocess

    for p in procs:
        if p.alive:
            continue
        with open(p.log_path, "ab") as log:
            log.write(f"\n=== start {p.kind}: {' '.join(p.argv)}\n".encode())
            log.flush()
            p.proc = subprocess.Popen(p.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                      env=p.env, start_new_session=True)
        from tests.fixtures import brokers as _b

        _b._LIVE.add(p)
    for p in procs:
        p.wait_ready()


@pytest.fixture(scope="module")
def _deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    kind = getattr(request, "param", "redis")
    url = _redis_url(request, kind)
    log_dir = tmp_path_factory.mktemp(f"e2e-{kind}")
    workers = [worker_process(log_dir, url) for _ in range(N_WORKERS)]
    api = api_process(log_dir, url)
    procs = [*workers, api]
    try:
        start_all(workers)
        dep = Deployment(kind, url, [as_broker(w, url) for w in workers], procs=list(workers))
        try:
            api.start()
            with httpx.Client(timeout=WAIT) as h:
                r = h.get(f"http://127.0.0.1:{api.port}/readyz")
            if r.status_code != 200:
                raise RuntimeError(f"/readyz answered {r.status_code}: {r.text}")
            dep.api = api
            dep.procs.append(api)
        except Exception as exc:  # the API is optional for the MQTT-only tests
            dep.api_error = f"{type(exc).__name__}: {exc}"[:500]
        yield dep
    finally:
        for p in procs:
            p.stop()


@pytest.fixture
def deployment(request: pytest.FixtureRequest, _deployment: Deployment) -> Iterator[Deployment]:
    """The module's deployment; a process that died in the test fails it and is restarted."""
    dead = [p for p in _deployment.procs if not p.alive]
    if dead:
        start_all(dead)
    marks = [(p, p.log_size()) for p in _deployment.procs]
    request.node._tidemq_brokers = [*getattr(request.node, "_tidemq_brokers", []), *marks]
    yield _deployment
    died = [(p, off) for p, off in marks if not p.alive]
    if died:
        tails = "\n".join(f"--- {p!r}:\n{p.log_tail(since=off)}" for p, off in died)
        start_all([p for p, _ in died])
        pytest.fail(f"{len(died)} process(es) died during the test:\n{tails}", pytrace=False)


@pytest.fixture
def clients() -> Iterator[Callable[..., Paho]]:
    """``clients(broker, client_id=None, protocol="v311", ...)`` -> an unconnected ``Paho``; closed at the end."""
    made: list[Paho] = []

    def make(broker: Broker, *args: object, **kwargs: object) -> Paho:
        c = Paho(broker, *args, **kwargs)  # type: ignore[arg-type]
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def spawn(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., list]]:
    """``spawn(kind, n)`` -> n fresh workers on the flushed Redis of ``kind``; all stopped after the test.

    For tests that SIGKILL a worker: the module deployment stays untouched.
    """
    started: list[BrokerProcess] = []

    def make(kind: str, n: int, *, env: dict[str, str] | None = None) -> list[Broker]:
        url = _redis_url(request, kind)
        log_dir = tmp_path_factory.mktemp(f"e2e-own-{kind}")
        procs = [worker_process(log_dir, url, env=env) for _ in range(n)]
        started.extend(procs)
        start_all(procs)
        request.node._tidemq_brokers = [*getattr(request.node, "_tidemq_brokers", []), *((p, 0) for p in procs)]
        return [as_broker(p, url) for p in procs]

    yield make
    for p in started:
        p.stop()


def reconnect(client: Paho, broker: Broker, timeout: float = WAIT) -> None:
    """Connect the same paho client object (its in-flight QoS 2 state kept) to another worker."""
    client.client.loop_stop()
    client.broker = broker
    client.connect(timeout)
