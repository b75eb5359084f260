"""Graceful drain and rolling restarts of workers (issue 6).

Two workers share one real Redis. SIGTERM to the worker holding persistent
clients: MQTT 5 clients are told why (0x8B, or 0x9C with the configured
server reference), no will is fired (NoLWTWhenServerShuttingDown; a tenant that sets it false gets
its wills), the lease
is released; the clients reconnect to the other worker and every QoS 1
message published meanwhile arrives, in order, with nothing lost.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from tests.fixtures.brokers import Broker, broker_kinds
from tests.interop.clients import Paho, sentinel_barrier, uid
from tidemq.store import keys

pytestmark = [
    pytest.mark.tidemq_only,
    pytest.mark.redis,
    pytest.mark.timeout(120),
    pytest.mark.skipif("worker" not in broker_kinds(), reason="worker broker kind not selected"),
]


def receive_through(client: Paho, last: bytes) -> list[bytes]:
    """Payloads until ``last`` arrives. A message the client had received but whose PUBACK the
    stopping worker never read may come again first: QoS 1 is at least once, and such a
    redelivery must carry DUP; everything else must arrive exactly once and in order."""
    out: list[bytes] = []
    while True:
        m = client.get()
        if out == [] and m.dup and m.payload != last:
            continue  # a redelivery of an already-received message (checked by the caller's range)
        out.append(m.payload)
        if m.payload == last:
            return out


class Clients:
    def __init__(self) -> None:
        self.all: list[Paho] = []

    def __call__(self, broker: Broker, *args: object, **kwargs: object) -> Paho:
        c = Paho(broker, *args, **kwargs)  # type: ignore[arg-type]
        self.all.append(c)
        return c

    def close(self) -> None:
        for c in self.all:
            c.close()


@pytest.fixture
def clients() -> Clients:
    c = Clients()
    yield c
    c.close()


def test_sigterm_drains_without_wills_and_loses_nothing(worker_factory: Callable[..., Broker],
                                                         clients: Clients) -> None:
    a = worker_factory()
    b = worker_factory()
    topic, will_topic = f"drain/{uid()}", f"drain-will/{uid()}"
    sub_id = f"ds{uid()}"
    watcher = clients(b, protocol="v5")
    watcher.connect()
    watcher.subscribe(will_topic, 1)
    sub = clients(a, sub_id, protocol="v5", clean=False, session_expiry=600,
                  will=(will_topic, b"died", 1, False))
    sub.connect()
    assert sub.subscribe(topic, 1) == [1]
    v3 = clients(a, f"d3{uid()}", protocol="v311", clean=False)
    v3.connect()
    assert v3.subscribe(topic, 1) == [1]
    pub = clients(b, protocol="v311", max_inflight=100)
    pub.connect()
    for i in range(50):
        pub.publish(topic, b"%d" % i, qos=1)
    first = [m.payload for m in sub.get_many(50)]
    assert first == [b"%d" % i for i in range(50)]
    v3.get_many(50)

    assert a.process is not None
    assert a.process.stop() == 0  # SIGTERM: a clean exit within the grace period
    assert sub.wait_disconnected() == 0x8B  # server shutting down
    v3.wait_disconnected()
    for i in range(50, 150):  # published while the clients are away
        pub.publish(topic, b"%d" % i, qos=1)

    back = clients(b, sub_id, protocol="v5", clean=False, session_expiry=600)
    assert back.connect().session_present is True
    assert receive_through(back, b"149") == [b"%d" % i for i in range(50, 150)]
    back3 = clients(b, v3.client_id, protocol="v311", clean=False)
    assert back3.connect().session_present is True
    assert receive_through(back3, b"149") == [b"%d" % i for i in range(50, 150)]
    # no will for a server-side shutdown; the sentinel proves nothing else is pending
    assert sentinel_barrier(pub, watcher, will_topic) == []
    r = redis.Redis.from_url(b.redis_url)
    try:
        alive = {w.decode() for w in r.zrange("tidemq:workers", 0, -1)}
        assert len(alive) == 1, f"the stopped worker released its lease: {alive}"
    finally:
        r.close()


def test_server_reference_at_drain(worker_factory: Callable[..., Broker], clients: Clients) -> None:
    a = worker_factory(env={"TIDEMQ_SERVER_REFERENCE": "mqtt-b.example:1883"})
    c = clients(a, protocol="v5")
    c.connect()
    assert a.process is not None
    a.process.stop()
    assert c.wait_disconnected() == 0x9C  # use another server


def test_rolling_restart_loses_no_persistent_message(worker_factory: Callable[..., Broker],
                                                       clients: Clients) -> None:
    """Restart every worker in turn while a publisher keeps going; the subscriber follows."""
    workers = [worker_factory(), worker_factory()]
    topic, cid = f"roll/{uid()}", f"rr{uid()}"
    sent = 0
    got: list[bytes] = []
    for round_ in range(2):
        live, other = workers[round_ % 2], workers[(round_ + 1) % 2]
        sub = clients(live, cid, protocol="v5", clean=False, session_expiry=600)
        sub.connect()
        if round_ == 0:
            assert sub.subscribe(topic, 1) == [1]
        pub = clients(other, protocol="v311", max_inflight=100)
        pub.connect()
        for _ in range(100):
            pub.publish(topic, b"%d" % sent, qos=1)
            sent += 1
        got += receive_through(sub, b"%d" % (sent - 1)) if round_ == 0 else _after(sub, got, sent)
        assert live.process is not None
        live.process.stop()
        sub.wait_disconnected()
        for _ in range(100):  # while the subscriber's worker is down
            pub.publish(topic, b"%d" % sent, qos=1)
            sent += 1
        live.process.start()
        live.process.wait_ready()
    last = clients(workers[0], cid, protocol="v5", clean=False, session_expiry=600)
    assert last.connect().session_present is True
    got += _after(last, got, sent)
    assert got == [b"%d" % i for i in range(sent)]


def _after(client: Paho, got: list[bytes], sent: int) -> list[bytes]:
    """Everything after what ``got`` already holds, through message ``sent - 1`` (redeliveries of
    what was received before the restart are skipped: they must carry DUP)."""
    seen = set(got)
    out: list[bytes] = []
    while not out or out[-1] != b"%d" % (sent - 1):
        m = client.get()
        if m.payload in seen:
            assert m.dup, f"{m.payload!r} delivered twice without DUP"
            continue
        out.append(m.payload)
    return out


def test_wills_fire_at_drain_when_the_tenant_allows_it(worker_factory: Callable[..., Broker],
                                                       clients: Clients) -> None:
    """NoLWTWhenServerShuttingDown=false for one tenant: a draining worker publishes the wills of that tenant's
    sessions it closes; another tenant on the same worker (default true) still gets none."""
    a = worker_factory()
    b = worker_factory()
    loud, quiet = f"lwt{uid()}", f"nolwt{uid()}"
    r = redis.Redis.from_url(b.redis_url)
    try:
        r.hset(keys.tenant_settings(loud), "NoLWTWhenServerShuttingDown", "false")
    finally:
        r.close()
    will_topic = f"drain-will/{uid()}"
    watchers = {}
    for t in (loud, quiet):
        w = watchers[t] = clients(b, protocol="v5", username=f"{t}/watcher")
        w.connect()
        w.subscribe(will_topic, 1)
        clients(a, protocol="v5", username=f"{t}/dev", will=(will_topic, b"bye " + t.encode(), 1, False)).connect()
    assert a.process is not None
    assert a.process.stop() == 0
    assert watchers[loud].get().payload == b"bye " + loud.encode()
    pub = clients(b, protocol="v5", username=f"{quiet}/pub")
    pub.connect()
    assert sentinel_barrier(pub, watchers[quiet], will_topic) == []
