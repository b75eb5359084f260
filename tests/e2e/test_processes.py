"""``tidemq worker --processes 2``: two worker processes share one port (SO_REUSEPORT) and act as one broker.

The kernel spreads connections over the two processes; which one a client
landed on is read from its session record (``worker`` field, ids
``<worker-id>-0`` / ``-1``). Clients on different processes exchange
messages at QoS 0, 1 and 2, transient and persistent.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.conftest import Deployment
from tests.fixtures.brokers import Broker, BrokerProcess, free_port
from tests.interop.clients import Paho, uid
from tidemq.auth.base import DEFAULT_USER
from tidemq.store import keys
from tidemq.store.keys import session_name

pytestmark = [pytest.mark.timeout(60)]

MAX_CLIENTS = 40  # connections tried before giving up on landing on both processes (2^-39 to miss)


@pytest.fixture(scope="module")
def reuse_port_worker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Broker, str]]:
    from tests.e2e.conftest import _redis_url

    url = _redis_url(request, "redis")
    port, wid = free_port(), f"rp{uid()}"
    argv = [sys.executable, "-m", "tidemq.cli", "worker", "--processes", "2", "--worker-id", wid,
            "--host", "127.0.0.1", "--mqtt-port", str(port), "--redis-url", url]
    proc = BrokerProcess("worker", argv, port=port, log_path=tmp_path_factory.mktemp("procs") / "worker.log")
    proc.start()
    try:
        dep = Deployment("redis", url, [])
        r = dep.redis()
        try:  # both children registered their lease: both listen (they subscribe, then listen, then renew)
            deadline = time.monotonic() + 15
            want = {f"{wid}-0".encode(), f"{wid}-1".encode()}
            while not want <= set(r.zrange(keys.workers(), 0, -1)):
                assert time.monotonic() < deadline, "the two worker processes did not both start"
                time.sleep(0.05)  # polling Redis: the children signal nothing else
        finally:
            r.close()
        yield Broker(host=proc.host, port=port, kind="worker", process=proc, redis_url=url), wid
    finally:
        proc.stop()


def _owner(r, client_id: str) -> str:  # type: ignore[no-untyped-def]
    return (r.hget(keys.sess("DevOnly", session_name(DEFAULT_USER, client_id)), "worker") or b"").decode()


def test_two_processes_on_one_port_exchange_messages(
    request: pytest.FixtureRequest, reuse_port_worker: tuple[Broker, str], clients: Callable[..., Paho]
) -> None:
    broker, wid = reuse_port_worker
    assert broker.process is not None
    request.node._tidemq_brokers = [(broker.process, broker.process.log_size())]
    import redis

    r = redis.Redis.from_url(str(broker.redis_url))
    by_proc: dict[str, list[Paho]] = {f"{wid}-0": [], f"{wid}-1": []}
    try:
        for i in range(MAX_CLIENTS):
            c = clients(broker, f"rp{i}-{uid()}", protocol="v5" if i % 2 else "v311", clean=i % 3 != 0)
            c.connect()
            by_proc[_owner(r, c.client_id)].append(c)
            if all(len(v) >= 2 for v in by_proc.values()):
                break
    finally:
        r.close()
    assert all(by_proc.values()), f"all connections landed on one process: { {k: len(v) for k, v in by_proc.items()} }"
    a, b = by_proc[f"{wid}-0"], by_proc[f"{wid}-1"]
    for pub, subs in ((a[0], b), (b[0], a)):  # both directions
        topic = f"rp/{uid()}"
        for s in subs:
            s.subscribe(topic, 2)
        for qos in (0, 1, 2):
            pub.publish(topic, b"q%d" % qos, qos=qos)
        token = f"sentinel-{uid()}".encode()
        pub.publish(topic, token, qos=1)
        for s in subs:  # everything, once (paho hands a QoS 2 message over at PUBREL: order across QoS varies)
            got = sorted((m.payload, m.qos) for m in s.get_many(4))
            assert got == sorted([(b"q0", 0), (b"q1", 1), (b"q2", 2), (token, 1)]), s.client_id
