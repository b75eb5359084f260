"""Durability across a worker crash (TideMQ worker on Redis only).

A persistent QoS 1 subscriber is offline while 10,000 messages are published
(pipelined, every one PUBACKed); the worker process is then killed with
SIGKILL and started again on the same Redis. On reconnect the subscriber finds
its session and receives all 10,000, exactly once and in order.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.fixtures.brokers import Broker, broker_kinds
from tests.interop.clients import Paho, sentinel_barrier, uid

N = 10_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.tidemq_only,
    pytest.mark.redis,
    pytest.mark.timeout(120),
    pytest.mark.skipif("worker" not in broker_kinds(), reason="worker broker kind not selected"),
]


def test_offline_messages_survive_worker_restart(worker_factory: Callable[..., Broker]) -> None:
    broker = worker_factory(env={"TIDEMQ_INBOX_SIZE": str(2 * N)})
    assert broker.process is not None
    cid, topic = f"rs{uid()}", f"restart/{uid()}"
    clients: list[Paho] = []

    def client(*args: object, **kwargs: object) -> Paho:
        c = Paho(broker, *args, **kwargs)  # type: ignore[arg-type]
        clients.append(c)
        return c

    try:
        sub = client(cid, protocol="v5", clean=False, session_expiry=3600)
        sub.connect()
        assert sub.subscribe(topic, 1) == [1]
        sub.disconnect()

        pub = client(protocol="v311", max_inflight=1000)
        pub.connect()
        infos = [pub.publish(topic, b"%d" % i, qos=1, wait=False) for i in range(N)]
        for info in infos:
            info.wait_for_publish(30)
        assert all(info.is_published() for info in infos), "not every publish was acknowledged"
        pub.close()

        old_pid = broker.process.pid
        broker.process.restart(hard=True)  # SIGKILL: nothing may depend on a graceful shutdown
        assert broker.process.pid != old_pid and broker.process.alive

        back = client(cid, protocol="v5", clean=False, session_expiry=3600)
        assert back.connect().session_present is True
        got = [m.payload for m in back.get_many(N, timeout=30)]
        assert len(got) == N
        first_bad = next((i for i, p in enumerate(got) if p != b"%d" % i), None)
        assert first_bad is None, f"out of order or duplicated at {first_bad}: {got[first_bad - 2:first_bad + 3]}"

        closer = client(protocol="v311")
        closer.connect()
        assert sentinel_barrier(closer, back, topic) == []  # no duplicates after the 10,000
        back.disconnect()
    finally:
        for c in clients:
            c.close()
