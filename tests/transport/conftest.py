"""Transport fixtures: a test PKI, brokers with TCP + TLS + WS + WSS listeners, and per-transport paho clients.

``endpoints`` is a module-scoped TideMQ process (standalone on the embedded
store, and a worker on the real ``redis_server``) started with
``TIDEMQ_TLS_PORT``/``TIDEMQ_WS_PORT``/``TIDEMQ_WSS_PORT`` on free ports and
the test CA as ``TIDEMQ_TLS_CA`` (client certificates optional);
``mtls_endpoints`` is a standalone that requires a client certificate.
``client(endpoints, transport, cert=...)`` makes an unconnected ``Paho`` for
``tcp``, ``tls``, ``ws`` or ``wss``; every client is closed when the test ends.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.brokers import Broker, BrokerProcess, _attach, _redis_db_url, flush_redis, free_port
from tests.interop.clients import Paho
from tests.transport.pki import PKI, make_pki

TRANSPORTS = ("tcp", "tls", "ws", "wss")


@dataclass
class Endpoints:
    kind: str
    host: str
    ports: dict[str, int]
    process: BrokerProcess
    pki: PKI

    def broker(self, transport: str) -> Broker:
        return Broker(host=self.host, port=self.ports[transport], kind=self.kind, process=self.process)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _start(kind: str, log_dir: Path, pki: PKI, *, redis_url: str = "", require_cert: bool = False) -> Endpoints:
    host = "127.0.0.1"
    ports = {t: free_port() for t in TRANSPORTS}
    env = {
        "TIDEMQ_TLS_PORT": str(ports["tls"]), "TIDEMQ_WS_PORT": str(ports["ws"]),
        "TIDEMQ_WSS_PORT": str(ports["wss"]), "TIDEMQ_WS_PATH": "/mqtt",
        "TIDEMQ_TLS_CERT": str(pki.server_cert), "TIDEMQ_TLS_KEY": str(pki.server_key),
        "TIDEMQ_TLS_CA": str(pki.ca), "TIDEMQ_TLS_REQUIRE_CLIENT_CERT": "true" if require_cert else "false",
    }
    argv = [sys.executable, "-m", "tidemq.cli", kind, "--host", host, "--mqtt-port", str(ports["tcp"])]
    if kind == "standalone":
        argv += ["--api-port", str(free_port())]
    else:
        argv += ["--redis-url", redis_url]
    proc = BrokerProcess(kind, argv, port=ports["tcp"], host=host, env=env,
                         log_path=log_dir / f"{kind}-{ports['tcp']}.log")
    proc.start()  # ready once TCP accepts; the extra listeners are started before the TCP one
    return Endpoints(kind, host, ports, proc, pki)


@pytest.fixture(scope="module", params=["standalone", "worker"])
def _endpoints(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               pki: PKI) -> Iterator[Endpoints]:
    kind: str = request.param
    url = ""
    if kind == "worker":
        url = _redis_db_url(request.getfixturevalue("redis_server"))
        flush_redis(url)
    ep = _start(kind, tmp_path_factory.mktemp(kind), pki, redis_url=url)
    try:
        yield ep
    finally:
        ep.process.stop()


@pytest.fixture
def endpoints(request: pytest.FixtureRequest, _endpoints: Endpoints) -> Iterator[Endpoints]:
    """TCP + TLS + WS + WSS on one broker (client certificates optional); the log is attached on failure."""
    yield from _watch(request, _endpoints)


@pytest.fixture(scope="module")
def _mtls_endpoints(tmp_path_factory: pytest.TempPathFactory, pki: PKI) -> Iterator[Endpoints]:
    ep = _start("standalone", tmp_path_factory.mktemp("mtls"), pki, require_cert=True)
    try:
        yield ep
    finally:
        ep.process.stop()


@pytest.fixture
def mtls_endpoints(request: pytest.FixtureRequest, _mtls_endpoints: Endpoints) -> Iterator[Endpoints]:
    """A standalone whose TLS and WSS listeners require a client certificate signed by the test CA."""
    yield from _watch(request, _mtls_endpoints)


def _watch(request: pytest.FixtureRequest, ep: Endpoints) -> Iterator[Endpoints]:
    gen = _attach(request, ep.process)
    next(gen)
    yield ep
    next(gen, None)


@pytest.fixture
def client() -> Iterator[Callable[..., Paho]]:
    """``client(endpoints, transport, cert="client" | "rogue" | None, **Paho kwargs)`` -> unconnected ``Paho``."""
    made: list[Paho] = []

    def make(ep: Endpoints, transport: str, *, cert: str | None = None, **kwargs: object) -> Paho:
        p = Paho(ep.broker(transport), **kwargs)  # type: ignore[arg-type]
        if transport in ("ws", "wss"):
            p.client.transport = "websockets"
            p.client.ws_set_options(path="/mqtt")
        if transport in ("tls", "wss"):
            files = {"client": (ep.pki.client_cert, ep.pki.client_key),
                     "rogue": (ep.pki.rogue_cert, ep.pki.rogue_key)}.get(cert or "", (None, None))
            p.client.tls_set(ca_certs=str(ep.pki.ca), certfile=files[0] and str(files[0]),
                             keyfile=files[1] and str(files[1]))
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()
