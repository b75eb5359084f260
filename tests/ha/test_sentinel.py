"""Sentinel failover under load: real workers and an API node on a ``redis+sentinel://`` URL, real MQTT clients.

A primary, its replicas and three Sentinels (``conftest.sentinel_deployment``); two ``tidemq worker``
processes and one ``tidemq api`` node, all on the Sentinel URL, the workers with
``TIDEMQ_REDIS_WAIT_REPLICAS=1`` (a persistent delivery is acknowledged only once a replica has it).
Publishers (MQTT 5 and 3.1.1, QoS 1, persistent sessions) are on one worker and subscribers (two
persistent, one clean) on the other, so every delivery crosses workers through Redis (inboxes and
the signal streams). With the traffic flowing the primary is failed over:

- ``sentinel-failover``: ``SENTINEL FAILOVER`` with one replica: the replica is promoted and the old
  primary, still running, is made its replica about ten seconds later; until then the new primary has no
  replica, so ``WAIT 1`` fails and persistent publishes are refused (not acknowledged), as they must be;
- ``kill-primary``: ``kill -9`` of the primary with two replicas: the Sentinels agree it is down,
  promote one replica and point the other at it.

Checked (``tests/chaos/checker`` accounting): every message a publisher got a PUBACK for reaches both
persistent subscribers (nothing acknowledged is lost), nothing is delivered that was never published,
no persistent session is lost; after the failover the publishers are acknowledged again, the clean
subscriber receives again (the signal readers moved to the new primary), and the API node reads a
session and publishes through the new primary. Time is only waited on where it is the thing under test
(traffic before and after the fault); everything else is awaited or polled with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.chaos.checker import Publisher, Subscriber, Wakeup, account, missing
from tests.fixtures.brokers import BrokerProcess, free_port, worker_process
from tests.ha.conftest import SentinelDeployment

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(180)]

WORKER_ENV = {"TIDEMQ_REDIS_WAIT_REPLICAS": "1", "TIDEMQ_REDIS_WAIT_TIMEOUT_MS": "1000",
              "TIDEMQ_INBOX_SIZE": "100000", "TIDEMQ_LOG_LEVEL": "INFO"}
RATE = 20.0  # messages/s per publisher
WARMUP = 2.0  # s of traffic before the fault
AFTER = 2.0  # s of traffic once the publishers are acknowledged again
RECOVER = 40.0  # s the clients get to be acknowledged / served again after the failover
DRAIN = 30.0  # s for in-flight acks and the persistent inboxes once publishing stopped
ACKED_AFTER = 10  # acknowledgements of messages sent after the failover each publisher must get
TENANT, USER = "DevOnly", "DevUser"  # what the DevOnly provider gives a client without a username


def _api_process(log_dir: Path, url: str) -> BrokerProcess:
    port = free_port()
    argv = [sys.executable, "-m", "tidemq.cli", "api", "--host", "127.0.0.1", "--api-port", str(port),
            "--redis-url", url]
    return BrokerProcess("api", argv, port=port, api_port=port, log_path=log_dir / f"api-{port}.log",
                         env={"TIDEMQ_LOG_LEVEL": "INFO"})


def _http(port: int, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body or None, method=method,
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def _session_online(api: BrokerProcess, client_id: str, within: float) -> dict[str, object]:
    """GET /session until it answers 200 with the session online (the store may be switching)."""
    headers = {"tenant_id": TENANT, "user_id": USER, "client_id": client_id}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last: tuple[int, bytes] = (0, b"")
    while loop.time() < deadline:
        last = await asyncio.to_thread(_http, api.port, "GET", "/session", headers)
        if last[0] == 200:
            doc = json.loads(last[1])
            if doc.get("online"):
                return dict(doc)
        await asyncio.sleep(0.2)  # polling an HTTP endpoint: there is no event to await
    raise AssertionError(f"GET /session {client_id}: {last[0]} {last[1][:200]!r}")


async def _fault(dep: SentinelDeployment, fault: str) -> int:
    """Fail the primary over; returns the new primary's port once it has a replica online again."""
    old = dep.primary.port
    if fault == "sentinel-failover":
        await asyncio.to_thread(dep.failover)
    else:
        await asyncio.to_thread(dep.primary.kill)
    return await asyncio.to_thread(dep.failed_over, old, replicas=1)


@pytest.mark.parametrize(("fault", "replicas"), [("sentinel-failover", 1), ("kill-primary", 2)])
async def test_failover_under_persistent_qos1_load(
    sentinel_deployment: Callable[..., SentinelDeployment], tmp_path: Path, request: pytest.FixtureRequest,
    fault: str, replicas: int,
) -> None:
    dep = sentinel_deployment(replicas=replicas)
    pub_worker = worker_process(tmp_path, dep.url, env=WORKER_ENV)
    sub_worker = worker_process(tmp_path, dep.url, env=WORKER_ENV)
    api = _api_process(tmp_path, dep.url)
    procs = [pub_worker, sub_worker, api]
    request.node._tidemq_brokers = [(p, 0) for p in procs]  # their logs go into a failure report
    wake = Wakeup()
    run_id = uuid.uuid4().hex[:8]
    base = f"ha/{run_id}"
    pubs = [Publisher(f"{run_id}-p{i}-{proto}", proto, 1, f"{base}/p{i}", wake)
            for i, proto in enumerate(["v5", "v311"])]
    subs = [Subscriber(f"{run_id}-s{i}-{proto}-{'persistent' if pers else 'clean'}", proto, pers, f"{base}/#", wake)
            for i, (proto, pers) in enumerate([("v5", True), ("v311", True), ("v5", False)])]
    clean = subs[2]
    try:
        for proc in procs:
            await asyncio.to_thread(proc.start)
        for s in subs:
            s.start(sub_worker.port)
        assert await wake.until(lambda: all(s.subscribed.is_set() for s in subs), 15.0), "subscribers not ready"
        for p in pubs:
            p.start(pub_worker.port)
        assert await wake.until(lambda: all(p.connects for p in pubs), 15.0), "publishers not connected"
        await _session_online(api, subs[0].name, 10.0)

        stop = asyncio.Event()
        tasks = [asyncio.create_task(p.run(stop, RATE)) for p in pubs]
        await asyncio.sleep(WARMUP)  # traffic before the fault: time is what is being injected into
        await _fault(dep, fault)
        loop = asyncio.get_running_loop()
        recovered = loop.time()
        marks = {p.name: len(p.sent_at) for p in pubs}

        def acked_after(p: Publisher) -> int:
            ok, _refused = p.outcome()
            return sum(1 for seq in ok if seq >= marks[p.name])

        assert await wake.until(lambda: all(acked_after(p) >= ACKED_AFTER for p in pubs), RECOVER), (
            f"publishers not acknowledged after the failover: {[acked_after(p) for p in pubs]} of "
            f"{ACKED_AFTER} each; {[p.unacked for p in pubs]} unacknowledged")
        after_pubs = {p.name: p for p in pubs}

        def clean_served() -> bool:  # a delivery of a message sent after the failover completed
            return any(after_pubs[name].sent_at[seq] > recovered for name, seq, _q in list(clean.got)
                       if name in after_pubs and seq < len(after_pubs[name].sent_at))

        assert await wake.until(clean_served, RECOVER), "the clean subscriber got nothing after the failover"
        await asyncio.sleep(AFTER)  # traffic after the recovery
        stop.set()
        await asyncio.gather(*tasks)

        # the API node on the new primary: reads a session, publishes to the persistent subscribers
        await _session_online(api, subs[0].name, RECOVER)
        status, body = await asyncio.to_thread(
            _http, api.port, "POST", "/pub",
            {"tenant_id": TENANT, "topic": f"{base}/api", "qos": "1", "client_type": "test"}, b"api:0")
        assert (status, body) == (200, b"OK"), (status, body)

        await wake.until(lambda: all(p.unacked == 0 for p in pubs), DRAIN)
        persistent = [s for s in subs if s.persistent]
        await wake.until(lambda: missing(persistent, pubs) == 0
                         and all(any(n == "api" for n, _s, _q in list(s.got)) for s in persistent), DRAIN)
    finally:
        clients: list[Publisher | Subscriber] = [*pubs, *subs]
        for c in clients:
            if hasattr(c, "client"):  # started
                await asyncio.to_thread(c.stop)
        for proc in procs:
            await asyncio.to_thread(proc.stop)

    tally = account(fault, pubs, subs)
    api_deliveries = sum(1 for s in subs for n, _s, _q in s.got if n == "api")
    print("\n" + tally.line())
    for line in tally.details[:20]:
        print(f"[chaos]   {line}")
    assert tally.acknowledged > 0
    assert tally.lost == 0, f"{tally.lost} acknowledged messages never reached a persistent subscriber: {tally.details}"
    assert tally.phantom == api_deliveries, tally.details
    assert tally.sessions_lost == 0
    assert all(any(n == "api" for n, _s, _q in s.got) for s in subs if s.persistent), "API /pub not delivered"
    for proc in procs:
        code = proc.proc.returncode if proc.proc is not None else None
        assert code in (0, -15), f"{proc.kind} exited {code}"
