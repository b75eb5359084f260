"""Benchmark scenarios run against one broker address with the raw client in ``mqttload``.

Each scenario is one coroutine ``(host, port, scale, version, run_id) -> ScenarioResult``. Every one is bounded
twice: by a message/connection count from the :class:`Scale`, and by time (publishing stops at
``scale.pub_time`` seconds; waiting for deliveries stops after ``scale.idle`` seconds without progress,
``scale.grace`` seconds after publishing ended if nothing arrived yet, or 12 x ``grace`` while they keep
arriving). Topics and client ids carry ``run_id`` so runs never collide.
Invariants: ``lost`` counts messages the broker acknowledged or accepted from us (sent) that never reached a
subscriber in time; it never counts messages we did not manage to send within the time bound; duplicates are
counted separately and never hide a loss.
"""

from __future__ import annotations

import asyncio
import resource
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

from mqttload import MqttConn, MqttError, connect, publish_qos0, publish_qos1

SEQ_TS = struct.Struct("!IQ")  # sequence number, perf_counter_ns at build time
FD_HEADROOM = 200  # file descriptors the load generator keeps for itself besides its connections


class BrokerProbe(Protocol):
    def rss_bytes(self) -> int: ...


# the broker under test, when the runner can measure it (bench/run.py sets it around each scenario): the
# connect storms report its resident memory per connection; without it that metric is left out
BROKER_PROBE: ContextVar[BrokerProbe | None] = ContextVar("BROKER_PROBE", default=None)


@dataclass(frozen=True)
class Scale:
    """Sizes and time bounds of one run; see ``SCALES``."""

    fanin_publishers: int
    fanin_messages: int
    fanout_subscribers: int
    fanout_messages: int
    p2p_pairs: int
    p2p_messages: int  # per pair
    window: int
    storm_clients: int
    storm_concurrency: int
    offline_messages: int
    latency_messages: int
    persistent_pairs: int = 2  # p2p-persistent-qos1/2: pairs of persistent sessions
    persistent_messages: int = 100  # ... messages per pair
    storm_clients_large: int = 100  # connect-storm-persistent-large
    payload_size: int = 32
    pub_time: float = 10.0
    grace: float = 10.0
    idle: float = 3.0


SCALES: dict[str, Scale] = {
    "smoke": Scale(  # a few seconds: checks the harness and both brokers end to end, measures nothing
        fanin_publishers=4,
        fanin_messages=2_000,
        fanout_subscribers=5,
        fanout_messages=200,
        p2p_pairs=2,
        p2p_messages=200,
        window=20,
        storm_clients=50,
        storm_concurrency=20,
        offline_messages=200,
        latency_messages=50,
        persistent_pairs=2,
        persistent_messages=100,
        storm_clients_large=100,
        pub_time=3.0,
        grace=3.0,
        idle=1.5,
    ),
    "small": Scale(
        fanin_publishers=20,
        fanin_messages=100_000,
        fanout_subscribers=20,
        fanout_messages=5_000,
        p2p_pairs=10,
        p2p_messages=5_000,
        window=100,
        storm_clients=2_000,
        storm_concurrency=100,
        offline_messages=10_000,
        latency_messages=2_000,
        persistent_pairs=20,
        persistent_messages=1_000,
        storm_clients_large=5_000,
        pub_time=5.0,
        grace=5.0,
        idle=2.0,
    ),
    "full": Scale(
        fanin_publishers=20,
        fanin_messages=500_000,
        fanout_subscribers=50,
        fanout_messages=10_000,
        p2p_pairs=20,
        p2p_messages=20_000,
        window=100,
        storm_clients=5_000,
        storm_concurrency=100,
        offline_messages=20_000,
        latency_messages=10_000,
        persistent_pairs=100,
        persistent_messages=2_000,
        storm_clients_large=20_000,
        pub_time=20.0,
        grace=10.0,
        idle=3.0,
    ),
}


@dataclass
class Metric:
    name: str
    value: float
    unit: str
    higher_is_better: bool = True


@dataclass
class ScenarioResult:
    scenario: str
    metrics: list[Metric] = field(default_factory=list)
    sent: int = 0
    expected: int = 0
    received: int = 0
    lost: int = 0
    duplicated: int = 0
    elapsed: float = 0.0
    notes: list[str] = field(default_factory=list)
    error: str | None = None


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else 0.0


def _pct(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, max(0, round(q * (len(sorted_vals) - 1))))
    return sorted_vals[i]


RECEIVE_CAP = 12  # x grace: the longest wait for deliveries that keep arriving


async def _wait_count(get: Callable[[], int], target: int, pub_end: float, scale: Scale) -> None:
    """Wait until ``get() >= target``, ``scale.idle`` s without progress, or the time bounds.

    Before the first message only ``scale.grace`` (after pub_end) applies: a broker still working through a
    backlog of pipelined input before its first delivery (seen: > 2 s for 100,000 QoS 0 messages on a loaded
    host) is not reported as having lost everything. Once messages arrive, waiting goes on while they keep
    arriving (a slow broker is measured by its rate, not reported as lossy because a fixed bound cut it off),
    up to ``RECEIVE_CAP`` x ``grace`` after pub_end; only ``idle`` seconds without progress end it early."""
    first = pub_end + scale.grace
    cap = pub_end + RECEIVE_CAP * scale.grace
    last = get()
    last_change = time.perf_counter()
    while last < target:
        await asyncio.sleep(0.02)
        now = time.perf_counter()
        cur = get()
        if cur != last:
            last, last_change = cur, now
        elif (cur and now - last_change > scale.idle) or (not cur and now > first) or now > cap:
            return


async def _close_all(conns: list[MqttConn]) -> None:
    await asyncio.gather(*(c.disconnect() for c in conns), return_exceptions=True)


def _port(port: int | Sequence[int], i: int) -> int:
    """One port, or clients spread round-robin over several (one per worker process: bench/multiworker.py)."""
    return port if isinstance(port, int) else port[i % len(port)]


def _payload(size: int) -> bytes:
    return (b"tidemq-bench-" * (size // 13 + 1))[:size]


async def fan_in(host: str, port: int, s: Scale, version: int, run_id: str) -> ScenarioResult:
    return await _fan_in(host, port, s, version, run_id, 0)


async def fan_in_qos1(host: str, port: int, s: Scale, version: int, run_id: str) -> ScenarioResult:
    """As ``fan-in`` at QoS 1 both ways: each publisher keeps ``window`` PUBLISHes awaiting PUBACK (a fifth of
    the QoS 0 message count: every message is acknowledged twice)."""
    return await _fan_in(host, port, s, version, run_id, 1)


async def _fan_in(host: str, port: int, s: Scale, version: int, run_id: str, qos: int) -> ScenarioResult:
    name = "fan-in" if qos == 0 else f"fan-in-qos{qos}"
    res = ScenarioResult(name)
    base = f"bench/{run_id}/{name}"
    total = s.fanin_messages if qos == 0 else s.fanin_messages // 5
    sub = await connect(host, _port(port, 0), f"{run_id}-{name}-sub", version=version)
    pubs = await asyncio.gather(
        *(connect(host, _port(port, i), f"{run_id}-{name}-pub{i}", version=version)
          for i in range(s.fanin_publishers))
    )
    try:
        await sub.subscribe([f"{base}/+"], qos)
        payload = _payload(s.payload_size)
        n = s.fanin_publishers
        counts = [total // n + (1 if i < total % n else 0) for i in range(n)]
        t0 = time.perf_counter()
        if qos == 0:
            sent = await asyncio.gather(
                *(publish_qos0(p, f"{base}/{i}", payload, counts[i], t0 + s.pub_time) for i, p in enumerate(pubs))
            )
        else:
            sent = await asyncio.gather(
                *(publish_qos1(p, f"{base}/{i}", lambda _i: payload, counts[i], s.window, t0 + s.pub_time,
                               ack_grace=s.grace) for i, p in enumerate(pubs))
            )
        pub_end = time.perf_counter()
        res.sent = res.expected = sum(sent)
        await _wait_count(lambda: sub.received, res.expected, pub_end, s)
        res.received = sub.received
        res.elapsed = (sub.last_rx or pub_end) - t0
        res.lost = max(0, res.expected - res.received)
        res.duplicated = max(0, res.received - res.expected)
        res.metrics = [Metric("msgs/s received", _rate(res.received, res.elapsed), "msg/s")]
        if res.sent < total:
            res.notes.append(f"publish time bound hit: sent {res.sent}/{total}")
    finally:
        await _close_all([sub, *pubs])
    return res


async def _fan_out(host: str, port: int, s: Scale, version: int, run_id: str, qos: int) -> ScenarioResult:
    res = ScenarioResult(f"fan-out-qos{qos}")
    topic = f"bench/{run_id}/fanout{qos}"
    subs = await asyncio.gather(
        *(connect(host, _port(port, i), f"{run_id}-fo{qos}-sub{i}", version=version)
          for i in range(s.fanout_subscribers))
    )
    pub = await connect(host, _port(port, 0), f"{run_id}-fo{qos}-pub", version=version)
    try:
        await asyncio.gather(*(c.subscribe([topic], qos) for c in subs))
        payload = _payload(s.payload_size)
        t0 = time.perf_counter()
        if qos == 0:
            sent = await publish_qos0(pub, topic, payload, s.fanout_messages, t0 + s.pub_time)
        else:
            sent = await publish_qos1(
                pub, topic, lambda _i: payload, s.fanout_messages, s.window, t0 + s.pub_time, ack_grace=s.grace
            )
        pub_end = time.perf_counter()
        res.sent = sent
        res.expected = sent * len(subs)
        await _wait_count(lambda: sum(c.received for c in subs), res.expected, pub_end, s)
        res.received = sum(c.received for c in subs)
        res.elapsed = max((c.last_rx for c in subs), default=pub_end) - t0
        res.lost = sum(max(0, sent - c.received) for c in subs)
        res.duplicated = sum(max(0, c.received - sent) for c in subs)
        res.metrics = [Metric("deliveries/s", _rate(res.received, res.elapsed), "msg/s")]
        if qos:
            res.metrics.append(Metric("publishes/s acked", _rate(res.sent, pub_end - t0), "msg/s"))
        if qos and pub.inflight > 0:
            res.notes.append(f"{pub.inflight} PUBACKs never arrived")
        if res.sent < s.fanout_messages:
            res.notes.append(f"publish time bound hit: sent {res.sent}/{s.fanout_messages}")
    finally:
        await _close_all([pub, *subs])
    return res


async def fan_out_qos0(host: str, port: int, s: Scale, version: int, run_id: str) -> ScenarioResult:
    return await _fan_out(host, port, s, version, run_id, 0)


async def fan_out_qos1(host: str, port: int, s: Scale, version: int, run_id: str) -> ScenarioResult:
    return await _fan_out(host, port, s, version, run_id, 1)


class _SeqSink:
    """Subscriber-side record of sequence numbers (loss/duplicates) and latencies for one topic."""

    def __init__(self, size: int, latencies: list[float] | None) -> None:
        self.seen = bytearray(size)
        self.unique = 0
        self.dups = 0
        self.out_of_range = 0
        self.latencies = latencies

    def __call__(self, payload: bytes | None, qos: int) -> None:
        assert payload is not None
        seq, ts = SEQ_TS.unpack_from(payload)
        if self.latencies is not None:
            self.latencies.append((time.perf_counter_ns() - ts) / 1e6)
        if seq >= len(self.seen):
            self.out_of_range += 1
        elif self.seen[seq]:
            self.dups += 1
        else:
            self.seen[seq] = 1
            self.unique += 1


def _seq_payload(size: int) -> Callable[[int], bytes]:
    pad = _payload(max(0, size - SEQ_TS.size))

    def make(seq: int) -> bytes:
        return SEQ_TS.pack(seq, time.perf_counter_ns()) + pad

    return make


async def point_to_point(host: str, port: int, s: Scale, version: int, run_id: str) -> ScenarioResult:
    return await _p2p(host, port, s, version, run_id, "p2p", s.p2p_pairs, s.p2p_messages, s.window)


async def p2p_persistent_qos1(host: str, port: int, s: Scale, version: int, run_id: str) -> ScenarioResult:
    """Pairs of persistent sessions (clean session 0; MQTT 5: session expiry 3600 s), both online, QoS 1."""
    return await _p2p(host, port, s, version, run_id, "p2p-persistent-qos1", s.persistent_pairs,
                      s.persistent_messages, s.window, qos=1, persistent=True)


async def p2p_persistent_qos2(host: str, port: int, s: Scale, version: int, run_id: str) -> ScenarioResult:
    """As ``p2p_persistent_qos1`` at QoS 2 both ways (the window counts flows until PUBCOMP)."""
    return await _p2p(host, port, s, version, run_id, "p2p-persistent-qos2", s.persistent_pairs,
                      s.persistent_messages, s.window, qos=2, persistent=True)


async def latency(host: str, port: int, s: Scale, version: int, run_id: str) -> ScenarioResult:
    """One pair, one message in flight: the unloaded round trip publisher -> broker -> subscriber."""
    return await _p2p(host, port, s, version, run_id, "latency", 1, s.latency_messages, 1)


async def _p2p(
    host: str, port: int, s: Scale, version: int, run_id: str, name: str, n: int, per_pair: int, window: int,
    *, qos: int = 1, persistent: bool = False,
) -> ScenarioResult:
    res = ScenarioResult(name)
    base = f"bench/{run_id}/{name}"
    session = {"clean": not persistent, "session_expiry": 3600 if persistent and version == 5 else 0}
    # with several ports, publisher i and subscriber i sit on different workers: every message crosses
    subs = await asyncio.gather(
        *(connect(host, _port(port, i + 1), f"{run_id}-{name}-sub{i}", version=version, **session)
          for i in range(n)))
    pubs = await asyncio.gather(
        *(connect(host, _port(port, i), f"{run_id}-{name}-pub{i}", version=version, **session) for i in range(n)))
    latencies: list[float] = []
    sinks = [_SeqSink(per_pair, latencies) for _ in range(n)]
    try:
        for sub, sink in zip(subs, sinks, strict=True):
            sub.want_payload = True
            sub.on_publish = sink
        await asyncio.gather(*(c.subscribe([f"{base}/{i}"], qos) for i, c in enumerate(subs)))
        make = _seq_payload(s.payload_size)
        t0 = time.perf_counter()
        sent = await asyncio.gather(
            *(
                publish_qos1(p, f"{base}/{i}", make, per_pair, window, t0 + s.pub_time, ack_grace=s.grace, qos=qos)
                for i, p in enumerate(pubs)
            )
        )
        pub_end = time.perf_counter()
        res.sent = res.expected = sum(sent)
        await _wait_count(lambda: sum(k.unique for k in sinks), res.expected, pub_end, s)
        res.received = sum(c.received for c in subs)
        res.elapsed = max((c.last_rx for c in subs), default=pub_end) - t0
        res.lost = sum(max(0, sent[i] - sinks[i].unique) for i in range(n))
        res.duplicated = sum(k.dups for k in sinks)
        lat = sorted(latencies)
        res.metrics = [
            Metric("msgs/s received", _rate(sum(k.unique for k in sinks), res.elapsed), "msg/s"),
            Metric("latency p50", _pct(lat, 0.50), "ms", higher_is_better=False),
            Metric("latency p95", _pct(lat, 0.95), "ms", higher_is_better=False),
            Metric("latency p99", _pct(lat, 0.99), "ms", higher_is_better=False),
        ]
        if res.sent < n * per_pair:
            res.notes.append(f"publish time bound hit: sent {res.sent}/{n * per_pair}")
    finally:
        await _close_all([*pubs, *subs])
    return res


async def connect_storm(host: str, port: int, s: Scale, version: int, run_id: str) -> ScenarioResult:
    return await _storm(host, port, s, version, run_id, "connect-storm", s.storm_clients, persistent=False)


async def connect_storm_persistent(host: str, port: int, s: Scale, version: int, run_id: str) -> ScenarioResult:
    """As ``connect-storm`` with persistent sessions (clean session 0; MQTT 5: session expiry 3600 s)."""
    return await _storm(host, port, s, version, run_id, "connect-storm-persistent", s.storm_clients,
                        persistent=True)


async def connect_storm_persistent_large(host: str, port: int, s: Scale, version: int,
                                         run_id: str) -> ScenarioResult:
    return await _storm(host, port, s, version, run_id, "connect-storm-persistent-large", s.storm_clients_large,
                        persistent=True)


async def _storm(host: str, port: int, s: Scale, version: int, run_id: str, name: str, n: int, *,
                 persistent: bool) -> ScenarioResult:
    """``n`` clients CONNECT, ``storm_concurrency`` handshakes at a time, and all stay connected (idle) until
    the end. Capped by this process's open-file limit (one descriptor per client): the cap is noted."""
    res = ScenarioResult(name)
    fd_cap = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - FD_HEADROOM
    if n > fd_cap:
        res.notes.append(f"{n} clients capped at {fd_cap} by RLIMIT_NOFILE")
        n = fd_cap
    session = {"clean": not persistent, "session_expiry": 3600 if persistent and version == 5 else 0}
    sem = asyncio.Semaphore(s.storm_concurrency)
    conns: list[MqttConn] = []
    lat: list[float] = []
    failures: list[str] = []
    last_ok = 0.0
    deadline = time.perf_counter() + s.pub_time + s.grace
    probe = BROKER_PROBE.get()
    rss0 = probe.rss_bytes() if probe is not None else 0

    async def one(i: int) -> None:
        nonlocal last_ok
        async with sem:
            if time.perf_counter() > deadline:
                failures.append("time bound")
                return
            t = time.perf_counter()
            try:
                c = await connect(host, port, f"{run_id}-{name}{i}", version=version, within=s.grace, **session)
            except (OSError, MqttError, TimeoutError) as exc:
                failures.append(f"{type(exc).__name__}: {exc}"[:90])
                return
            last_ok = time.perf_counter()
            lat.append((last_ok - t) * 1000)
            conns.append(c)

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(one(i) for i in range(n)))
        res.sent = res.expected = n
        res.received = len(conns)
        res.elapsed = (last_ok or time.perf_counter()) - t0
        res.lost = len(failures)
        lat.sort()
        res.metrics = [
            Metric("connects/s", _rate(len(conns), res.elapsed), "conn/s"),
            Metric("connect p99", _pct(lat, 0.99), "ms", higher_is_better=False),
        ]
        if probe is not None and conns:
            await asyncio.sleep(0.5)  # let the broker finish what the last CONNACKs started
            per_conn = (probe.rss_bytes() - rss0) / len(conns)
            res.metrics.append(Metric("resident per idle connection", per_conn / 1024, "KiB",
                                      higher_is_better=False))
        if failures:
            kinds = sorted(set(failures))
            more = f" (+{len(kinds) - 3} other reasons)" if len(kinds) > 3 else ""
            res.notes.append(f"{len(failures)} connects failed: {'; '.join(kinds[:3])}{more}")
    finally:
        await _close_all(conns)
    return res


async def offline_queue(host: str, port: int, s: Scale, version: int, run_id: str) -> ScenarioResult:
    res = ScenarioResult("offline-queue")
    topic = f"bench/{run_id}/offline"
    cid = f"{run_id}-offline-sub"
    expiry = 3600 if version == 5 else 0
    sub = await connect(host, port, cid, version=version, clean=False, session_expiry=expiry)
    await sub.subscribe([topic], 1)
    await sub.disconnect()
    pub = await connect(host, port, f"{run_id}-offline-pub", version=version)
    sink = _SeqSink(s.offline_messages, None)
    sub2: MqttConn | None = None
    try:
        t0 = time.perf_counter()
        res.sent = res.expected = await publish_qos1(
            pub,
            topic,
            _seq_payload(s.payload_size),
            s.offline_messages,
            s.window,
            t0 + s.pub_time,
            ack_grace=s.grace,
        )
        pub_end = time.perf_counter()
        if pub.inflight:
            res.notes.append(f"{pub.inflight} PUBACKs never arrived")
        # Reconnect and drain; the sink is attached before CONNECT (the queue may follow CONNACK in one read).
        t1 = time.perf_counter()
        sub2 = await connect(
            host, port, cid, version=version, clean=False, session_expiry=expiry, on_publish=sink, want_payload=True
        )
        await _wait_count(lambda: sink.unique, res.expected, time.perf_counter(), s)
        res.received = sub2.received
        res.elapsed = (sub2.last_rx or time.perf_counter()) - t1
        res.lost = max(0, res.sent - sink.unique)
        res.duplicated = sink.dups
        res.metrics = [
            Metric("drain msgs/s", _rate(sink.unique, res.elapsed), "msg/s"),
            Metric("enqueue msgs/s", _rate(res.sent, pub_end - t0), "msg/s"),
        ]
        if res.sent < s.offline_messages:
            res.notes.append(f"publish time bound hit: sent {res.sent}/{s.offline_messages}")
    finally:
        await _close_all([pub] + ([sub2] if sub2 else []))
    return res


async def offline_overflow(host: str, port: int, s: Scale, version: int, run_id: str) -> ScenarioResult:
    """An offline persistent subscriber and 4x more QoS 1 messages than its queue (``QUEUE_LIMITS``), from an
    MQTT 5 publisher: what the broker acknowledged with success must be exactly what the subscriber gets
    on reconnect. ``lost`` = acknowledged-with-success not delivered; ``duplicated`` = delivered twice or
    never acknowledged with success. The MQTT 5 publisher is used whatever ``version`` says: MQTT 3.1.1
    has no failure PUBACK, so a 3.1.1 publisher cannot be told (TideMQ acknowledges, counts and logs)."""
    res = ScenarioResult("offline-overflow")
    n = s.offline_messages
    topic = f"bench/{run_id}/overflow"
    cid = f"{run_id}-overflow-sub"
    sub = await connect(host, port, cid, version=5, clean=False, session_expiry=3600)
    await sub.subscribe([topic], 1)
    await sub.disconnect()
    pub = await connect(host, port, f"{run_id}-overflow-pub", version=5)
    sink = _SeqSink(n, None)
    sub2: MqttConn | None = None
    try:
        t0 = time.perf_counter()
        first_pid = pub.next_pid
        res.sent = await publish_qos1(pub, topic, _seq_payload(s.payload_size), min(n, 65535), s.window,
                                      t0 + s.pub_time, ack_grace=s.grace)
        if pub.inflight:
            res.notes.append(f"{pub.inflight} PUBACKs never arrived: not counted as acknowledged")
        refused = {(pid - first_pid) % 65535 for pid in pub.refused_pids}
        ok = [seq for seq in range(res.sent) if seq not in refused][: max(0, pub.acked - len(refused))]
        res.expected = len(ok)
        sub2 = await connect(host, port, cid, version=5, clean=False, session_expiry=3600, on_publish=sink,
                             want_payload=True)
        t1 = time.perf_counter()
        await _wait_count(lambda: sink.unique, res.expected, t1, s)
        if res.expected == sink.unique:  # one idle period more: anything extra would be a loss in reverse
            await asyncio.sleep(min(s.idle, 1.0))
        res.received = sub2.received
        res.elapsed = (sub2.last_rx or time.perf_counter()) - t1
        ok_set = set(ok)
        res.lost = sum(1 for seq in ok if not sink.seen[seq])
        extra = sum(1 for seq in range(n) if sink.seen[seq] and seq not in ok_set)
        res.duplicated = sink.dups + sink.out_of_range + extra
        res.metrics = [Metric("refused (0x97)", float(len(refused)), "msg"),
                       Metric("drain msgs/s", _rate(sink.unique, res.elapsed), "msg/s")]
        res.notes.append(f"tally: published {res.sent}, acknowledged-ok {len(ok)}, refused {len(refused)}, "
                         f"delivered {sink.unique}, lost {res.lost}, unexpected {extra}, duplicates {sink.dups}")
    finally:
        await _close_all([pub] + ([sub2] if sub2 else []))
    return res


ScenarioFn = Callable[[str, int, Scale, int, str], Awaitable[ScenarioResult]]

# the broker's per-session offline queue for scenarios that must overflow it (others get a roomy one)
QUEUE_LIMITS: dict[str, Callable[[Scale], int]] = {
    "offline-overflow": lambda s: max(10, s.offline_messages // 4),
}

SCENARIOS: dict[str, ScenarioFn] = {
    "fan-in": fan_in,
    "fan-in-qos1": fan_in_qos1,
    "fan-out-qos0": fan_out_qos0,
    "fan-out-qos1": fan_out_qos1,
    "p2p": point_to_point,
    "p2p-persistent-qos1": p2p_persistent_qos1,
    "p2p-persistent-qos2": p2p_persistent_qos2,
    "latency": latency,
    "connect-storm": connect_storm,
    "connect-storm-persistent": connect_storm_persistent,
    "connect-storm-persistent-large": connect_storm_persistent_large,
    "offline-queue": offline_queue,
    "offline-overflow": offline_overflow,
}

ALIASES: dict[str, list[str]] = {
    "all": list(SCENARIOS),
    "fan-out": ["fan-out-qos0", "fan-out-qos1"],
    "point-to-point": ["p2p"],
    "persistent": ["p2p-persistent-qos1", "p2p-persistent-qos2", "connect-storm-persistent",
                   "connect-storm-persistent-large", "offline-queue"],
    "storms": ["connect-storm", "connect-storm-persistent", "connect-storm-persistent-large"],
}
