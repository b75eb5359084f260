"""A worker process dies (SIGKILL) under load; the others carry on as one broker.

Each test owns its workers (``spawn``), so killing one leaves the module
deployments alone. A persistent subscriber (clean session 0) whose worker is
killed while a publisher on another worker keeps publishing a numbered
sequence reconnects to a surviving worker and sees every number: at least
once at QoS 1, exactly once at QoS 2 (the same paho client object reconnects,
so its half-finished QoS 2 flows are kept as MQTT requires). The wills of the
dead worker's clients are fired by a surviving worker once the dead worker's
lease ran out (``LEASE_TTL_MS``), exactly once, and its sessions are ended.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from tidemq.worker.broker import LEASE_RENEW_S, LEASE_TTL_MS

from tests.e2e.conftest import reconnect
from tests.fixtures.brokers import Broker
from tests.interop.clients import Paho, sentinel_barrier, uid
from tidemq.auth.base import DEFAULT_USER
from tidemq.store import keys
from tidemq.store.keys import session_name

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

BEFORE_KILL = 300  # numbers the subscriber must have seen before its worker is killed
AFTER_RESUME = 300  # numbers published after the subscriber is back
BATCH = 20
DRAIN = 30.0
# a surviving worker reaps after the lease expired and the heartbeat is LEASE_TTL old, at its next renewal
# the inbox bound (drop-oldest) must not be what a slow resume on this 2-core machine runs into
BIG_INBOX = {"TIDEMQ_INBOX_SIZE": "100000"}
WILL_BOUND = 2 * LEASE_TTL_MS / 1000 + 2 * LEASE_RENEW_S


class Sequencer(threading.Thread):
    """Publishes 0, 1, 2, ... on ``topic`` in acknowledged batches until stopped; ``acked`` counts them."""

    def __init__(self, pub: Paho, topic: str, qos: int) -> None:
        super().__init__(daemon=True, name="sequencer")
        self.pub, self.topic, self.qos = pub, topic, qos
        self.acked = 0
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        import paho.mqtt.client as mqtt

        try:
            while not self.halt.is_set():
                infos = [self.pub.client.publish(self.topic, b"%d" % (self.acked + k), qos=self.qos)
                         for k in range(BATCH)]
                for info in infos:
                    # NO_CONN: our worker died; paho keeps the message and sends it after the reconnect
                    assert info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN), info.rc
                    with info._condition:  # wait_for_publish() refuses NO_CONN messages: wait on its event
                        if not info._condition.wait_for(lambda i=info: i._published, 15):
                            raise AssertionError(f"publish {self.acked} not acknowledged in 15 s")
                self.acked += BATCH
        except BaseException as exc:  # reported by the test
            self.error = exc

    def finish(self) -> int:
        self.halt.set()
        self.join(20)
        assert not self.is_alive(), "publisher did not stop"
        if self.error is not None:
            raise AssertionError(f"publisher failed: {self.error!r}")
        return self.acked


class Seen:
    """Every number the subscriber received, with how often."""

    def __init__(self, sub: Paho) -> None:
        self.sub = sub
        self.counts: Counter[int] = Counter()
        self.log: list[tuple[float, int]] = []

    def until(self, pred: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; seen {len(self.counts)} distinct numbers")
            try:
                m = self.sub.messages.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            self.counts[int(m.payload)] += 1
            self.log.append((time.monotonic(), int(m.payload)))

    def top(self) -> int:
        return max(self.counts, default=-1)


@pytest.mark.parametrize(
    ("kind", "qos"),
    [("redis", 1), ("redis", 2), ("cluster", 1)],
)
def test_subscriber_worker_killed_mid_stream(
    spawn: Callable[..., list[Broker]], clients: Callable[..., Paho], kind: str, qos: int
) -> None:
    w = spawn(kind, 3, env=BIG_INBOX)
    cid, topic = f"crash{uid()}", f"crash/{uid()}"
    sub = clients(w[1], cid, protocol="v311", clean=False)
    sub.connect()
    assert sub.subscribe(topic, qos) == [qos]
    pub = clients(w[0], protocol="v311", max_inflight=BATCH)
    pub.connect()
    seen = Seen(sub)
    seq = Sequencer(pub, topic, qos)
    seq.start()
    try:
        seen.until(lambda: seen.top() >= BEFORE_KILL, 20, f"{BEFORE_KILL} numbers before the kill")
        assert w[1].process is not None
        w[1].process.kill()  # SIGKILL: no DISCONNECTs, no flush of batched acks
        sub.wait_disconnected()
        assert seq.is_alive(), f"publisher stopped early: {seq.error!r}"
        reconnect(sub, w[2])
        assert sub.connack is not None and sub.connack.session_present is True
        mark = seq.acked
        seen.until(lambda: seen.top() >= mark + AFTER_RESUME, 20, "live numbers after the resume")
    finally:
        total = seq.finish()
    try:
        seen.until(lambda: len(seen.counts) >= total, DRAIN, f"all {total} numbers")
    except AssertionError as exc:
        gaps = sorted(((b[0] - a[0], a[1], b[1]) for a, b in itertools.pairwise(seen.log)), reverse=True)[:3]
        raise AssertionError(f"{exc}\nlongest silences (s, after, before): {gaps}\n"
                             f"{_diagnose(w[2], cid, set(range(total)) - set(seen.counts))}") from None
    missing = sorted(set(range(total)) - set(seen.counts))
    assert not missing, f"{len(missing)} numbers never arrived, first {missing[:10]}"
    assert min(seen.counts) == 0 and seen.top() < total + BATCH
    if qos == 2:
        dups = {n: c for n, c in seen.counts.items() if c > 1}
        assert not dups, f"QoS 2 delivered {len(dups)} numbers more than once, e.g. {sorted(dups.items())[:10]}"
    # nothing still on its way
    assert all(n < total for n in sentinel_barrier_numbers(pub, sub, topic, qos))


def test_publisher_worker_killed_mid_stream_qos2(
    spawn: Callable[..., list[Broker]], clients: Callable[..., Paho]
) -> None:
    """A persistent QoS 2 publisher's worker dies; it resumes elsewhere: every number arrives.

    Persistent subscribers get every message exactly once (the packet id is recorded with the inbox
    appends). This subscriber is a clean session: a message whose copy reached it but whose ``d<pid>``
    mark was not written before the crash is sent to it again when the client resends — the test kills
    the worker right after a delivery, so it can hit that window; it xfails then. Nothing may be missing.
    """
    w = spawn("redis", 3, env=BIG_INBOX)
    topic = f"crashpub/{uid()}"
    sub = clients(w[0], protocol="v311")
    sub.connect()
    sub.subscribe(topic, 2)
    pub = clients(w[1], f"cp{uid()}", protocol="v311", clean=False, max_inflight=BATCH)
    pub.connect()
    seen = Seen(sub)
    seq = Sequencer(pub, topic, 2)
    seq.start()
    try:
        seen.until(lambda: seen.top() >= BEFORE_KILL, 20, f"{BEFORE_KILL} numbers before the kill")
        assert w[1].process is not None
        w[1].process.kill()
        pub.wait_disconnected()
        reconnect(pub, w[2])  # the same client object: paho resends its unfinished QoS 2 flows
        assert pub.connack is not None and pub.connack.session_present is True
        mark = seq.acked
        seen.until(lambda: seen.top() >= mark + AFTER_RESUME, 20, "live numbers after the resume")
    finally:
        total = seq.finish()
    seen.until(lambda: len(seen.counts) >= total, DRAIN, f"all {total} numbers")
    missing = sorted(set(range(total)) - set(seen.counts))
    assert not missing, f"{len(missing)} numbers never arrived, first {missing[:10]}"
    dups = {n: c for n, c in seen.counts.items() if c > 1}
    assert len(dups) <= BATCH, f"more duplicates than messages in flight: {sorted(dups.items())[:10]}"
    if dups:
        pytest.xfail(f"inbound QoS 2 across a crash: {len(dups)} sent to the clean subscriber twice (d<pid> window)")


def _ranges(nums: set[int]) -> str:
    out: list[str] = []
    for n in sorted(nums):
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out[:20])


def _diagnose(broker: Broker, cid: str, missing: set[int]) -> str:
    """What Redis holds for the session (for the failure message)."""
    import redis

    r = (redis.RedisCluster.from_url(str(broker.redis_url).replace("redis+cluster", "redis"))
         if str(broker.redis_url).startswith("redis+cluster") else redis.Redis.from_url(str(broker.redis_url)))
    try:
        name = session_name(DEFAULT_USER, cid)
        entries = r.xrange(keys.inbox("DevOnly", name), count=50)
        return (f"missing: {_ranges(missing)}\nsession: {r.hgetall(keys.sess('DevOnly', name))}\n"
                f"inbox len {r.xlen(keys.inbox('DevOnly', name))}, first ids {[e[0] for e in entries[:20]]}\n"
                f"rel: {sorted(r.smembers(keys.rel('DevOnly', name)))[:40]}")
    finally:
        r.close()


def sentinel_barrier_numbers(pub: Paho, sub: Paho, topic: str, qos: int) -> list[int]:
    return [int(m.payload) for m in sentinel_barrier(pub, sub, topic, qos=qos)]


def test_wills_of_a_killed_worker_fire_on_a_survivor(
    spawn: Callable[..., list[Broker]], clients: Callable[..., Paho]
) -> None:
    w = spawn("redis", 3)
    topic = f"will/{uid()}"
    watcher = clients(w[0], protocol="v5")
    watcher.connect()
    watcher.subscribe(f"{topic}/+", 1)
    transient = clients(w[1], f"wt{uid()}", protocol="v311", will=(f"{topic}/t", b"t-gone", 1, False))
    persistent = clients(w[1], f"wp{uid()}", protocol="v5", clean=False, session_expiry=600,
                         will=(f"{topic}/p", b"p-gone", 1, False))
    quiet = clients(w[1], f"wq{uid()}", protocol="v311")  # no will: nothing must be published for it
    for c in (transient, persistent, quiet):
        c.connect()
    assert w[1].process is not None
    t0 = time.monotonic()
    w[1].process.kill()
    got = sorted((m.topic, m.payload) for m in watcher.get_many(2, timeout=WILL_BOUND))
    elapsed = time.monotonic() - t0
    assert got == [(f"{topic}/p", b"p-gone"), (f"{topic}/t", b"t-gone")]
    assert elapsed < WILL_BOUND, f"wills took {elapsed:.1f}s"
    # fired once, by one reaper, though two workers survive
    pub = clients(w[2], protocol="v311")
    pub.connect()
    assert sentinel_barrier(pub, watcher, f"{topic}/t") == []

    # the dead worker's sessions were ended: transient removed, persistent kept offline and resumable
    r = __import__("redis").Redis.from_url(w[0].redis_url)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the reaper ends sessions right after submitting the wills
            if not r.exists(keys.sess("DevOnly", session_name(DEFAULT_USER, transient.client_id))) and \
                    r.hget(keys.sess("DevOnly", session_name(DEFAULT_USER, persistent.client_id)), "worker") == b"":
                break
            time.sleep(0.05)  # polling Redis: no event tells us the reaper finished
        assert not r.exists(keys.sess("DevOnly", session_name(DEFAULT_USER, transient.client_id)))
        assert r.hget(keys.sess("DevOnly", session_name(DEFAULT_USER, persistent.client_id)), "worker") == b""
        assert not r.exists(keys.sess("DevOnly", session_name(DEFAULT_USER, quiet.client_id)))
    finally:
        r.close()
    back = clients(w[2], persistent.client_id, protocol="v5", clean=False, session_expiry=600)
    assert back.connect().session_present is True


def _with_delayed_will(client: Paho, topic: str, delay: int) -> Paho:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.WILLMESSAGE)
    props.WillDelayInterval = delay
    client.client.will_set(topic, b"late-gone", 1, False, properties=props)
    return client


def _wait_for_stored_will(r: object, client_id: str, present: bool = True) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # polling Redis: the disconnect script leaves no event to await
        # the record holds a delayed will (the tenant's wills zset is only a hint, dropped by a later sweep)
        stored = r.hget(keys.sess("DevOnly", session_name(DEFAULT_USER, client_id)), "will_at")  # type: ignore[attr-defined]
        if (stored is not None) == present:
            return
        time.sleep(0.05)
    raise AssertionError(f"delayed will of {client_id} {'not stored' if present else 'still stored'}")


def test_delayed_will_outlives_the_worker_that_stored_it(
    spawn: Callable[..., list[Broker]], clients: Callable[..., Paho]
) -> None:
    """The will delay is running when the worker that saw the connection end dies: a survivor
    fires the will once, when due (it waits in the session record, not in a timer)."""
    w = spawn("redis", 2, env={"TIDEMQ_SWEEP_INTERVAL": "0.5"})
    topic = f"dwill/{uid()}"
    watcher = clients(w[0], protocol="v5")
    watcher.connect()
    watcher.subscribe(topic, 1)
    dying = _with_delayed_will(clients(w[1], f"dw{uid()}", protocol="v5", clean=False, session_expiry=600),
                               topic, delay=2)
    dying.connect()
    r = __import__("redis").Redis.from_url(w[0].redis_url)
    try:
        dying.drop()  # no DISCONNECT: the will is due in 2 s
        _wait_for_stored_will(r, dying.client_id)
        assert w[1].process is not None
        w[1].process.kill()
        m = watcher.get(timeout=15)
        assert (m.topic, m.payload) == (topic, b"late-gone")
        pub = clients(w[0], protocol="v311")
        pub.connect()
        assert sentinel_barrier(pub, watcher, topic) == []  # fired exactly once
        _wait_for_stored_will(r, dying.client_id, present=False)
    finally:
        r.close()


def test_delayed_will_cancelled_by_a_reconnect_to_another_worker(
    spawn: Callable[..., list[Broker]], clients: Callable[..., Paho]
) -> None:
    w = spawn("redis", 2, env={"TIDEMQ_SWEEP_INTERVAL": "0.5"})
    topic = f"cwill/{uid()}"
    watcher = clients(w[0], protocol="v5")
    watcher.connect()
    watcher.subscribe(topic, 1)
    cid = f"cw{uid()}"
    dying = _with_delayed_will(clients(w[1], cid, protocol="v5", clean=False, session_expiry=600), topic, delay=2)
    dying.connect()
    r = __import__("redis").Redis.from_url(w[0].redis_url)
    try:
        dying.drop()
        _wait_for_stored_will(r, cid)
        back = clients(w[0], cid, protocol="v5", clean=False, session_expiry=600)
        assert back.connect().session_present is True
        _wait_for_stored_will(r, cid, present=False)  # the reconnect removed it
        time.sleep(3)  # past the will delay and several sweeps: absence over time is what is tested
        pub = clients(w[0], protocol="v311")
        pub.connect()
        assert sentinel_barrier(pub, watcher, topic) == []
    finally:
        r.close()
