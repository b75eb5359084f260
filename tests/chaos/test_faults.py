"""The fault-injection suite: three workers, one Redis with AOF, numbered traffic, faults, full accounting.

Each test runs the same traffic (``checker``): four publishers (MQTT 5 and 3.1.1, QoS 1 and 2) and
four subscribers (persistent and clean, MQTT 5 and 3.1.1) spread over the workers by the test's
load balancer, injects one kind of fault while the publishers run, lets everything drain, then
prints the tally and asserts the promise:

- every acknowledged message is delivered to every persistent session at least once (QoS 1) and
  QoS 2 exactly once; per-publisher order holds per subscriber; nothing is delivered that was never
  published; no persistent session is lost;
- clean sessions are owed only what was published while they were connected (``checker.owed``).

Every violation fails the test, but for ``REDIS_CUT_KNOWN`` under the three Redis-connection faults: a
rare QoS 2 duplicate (with the reordering it causes) and a rare gap at a clean subscriber (with delayed
persistent deliveries), each seen once in about nine runs and not explained yet; such a run xfails (not
strict) with the counts and the cause. Losing an acknowledged message to a persistent session, a phantom
or a lost session always fails.

Faults: (a) ``kill -9`` of a random worker, three times, each restarted after its clients moved;
(b) a Redis restart (SIGTERM: AOF fsynced, then replayed); (c) ``CLIENT KILL`` of every worker
connection (normal and pub/sub), three times; (d) the Redis proxy stalls and cuts connections.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest

from tests.chaos.checker import Publisher, Subscriber, Tally, Wakeup, account, missing
from tests.chaos.conftest import Chaos

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(110)]

RATE = 25.0  # messages/s per publisher
WARMUP = 2.0  # s of traffic before the fault
AFTER = 2.0  # s of traffic after the fault
DRAIN = 15.0  # s the persistent subscribers get to catch up once publishing stopped

Fault = Callable[[Chaos], Awaitable[None]]


async def _pause(s: float) -> None:
    await asyncio.sleep(s)  # the fault schedule itself: time is what is being injected into


async def kill9(dep: Chaos) -> None:
    for _ in range(3):
        w = await dep.kill_worker()
        await _pause(1.5)
        await dep.start_worker(w)
        await _pause(1.5)


async def redis_restart(dep: Chaos) -> None:
    await dep.restart_redis()
    await _pause(3.0)


async def client_kill(dep: Chaos) -> None:
    for _ in range(3):
        await dep.client_kill()
        await _pause(2.0)


async def proxy_faults(dep: Chaos) -> None:
    p = dep.redis_proxy
    p.stall()
    await _pause(2.0)
    p.resume()
    await _pause(1.5)
    p.cut()
    await _pause(2.0)
    p.stall()
    await _pause(1.5)
    p.cut()
    p.resume()
    await _pause(2.0)


async def run(dep: Chaos, name: str, fault: Fault) -> Tally:
    wake = Wakeup()
    run_id = uuid.uuid4().hex[:8]
    base = f"chaos/{run_id}"
    pubs = [Publisher(f"{run_id}-p{i}-{proto}-q{qos}", proto, qos, f"{base}/p{i}", wake)
            for i, (proto, qos) in enumerate([("v5", 1), ("v311", 1), ("v5", 2), ("v311", 2)])]
    subs = [Subscriber(f"{run_id}-s{i}-{proto}-{'persistent' if pers else 'clean'}", proto, pers, f"{base}/#", wake)
            for i, (proto, pers) in enumerate([("v5", True), ("v311", True), ("v5", False), ("v311", False)])]
    port = dep.lb.port
    stuck = 0
    try:
        for s in subs:
            s.start(port)
        assert await wake.until(lambda: all(s.subscribed.is_set() for s in subs), 15.0), "subscribers not ready"
        for p in pubs:
            p.start(port)
        assert await wake.until(lambda: all(p.connects for p in pubs), 15.0), "publishers not connected"
        stop = asyncio.Event()
        tasks = [asyncio.create_task(p.run(stop, RATE)) for p in pubs]
        await _pause(WARMUP)
        await fault(dep)
        await _pause(AFTER)
        stop.set()
        await asyncio.gather(*tasks)
        # what is still in flight gets its ack (paho resends after reconnects), then the inboxes drain
        await wake.until(lambda: all(p.unacked == 0 for p in pubs), DRAIN)
        await wake.until(lambda: missing(subs, pubs) == 0, DRAIN)
        stuck = missing(subs, pubs)
        if stuck:  # owed but not delivered on the live connection: does a session resume deliver it?
            dep.lb.cut()
            dep.log.append(f"{stuck} owed deliveries stuck; every client connection cut to resume sessions")
            await wake.until(lambda: missing(subs, pubs) == 0, DRAIN)
    finally:
        clients: list[Publisher | Subscriber] = [*pubs, *subs]
        for c in clients:
            if hasattr(c, "client"):  # started
                await asyncio.to_thread(c.stop)
    tally = account(name, pubs, subs)
    tally.stuck = stuck - tally.lost
    print("\n" + tally.line())
    for line in [*dep.log, *tally.details[:20]]:
        print(f"[chaos]   {line}")
    return tally


VIOLATIONS = {
    "stuck": "acknowledged messages delivered to a persistent session only after it reconnected",
    "lost": "acknowledged messages never delivered to a persistent session, even after a reconnect",
    "lost_transient": "acknowledged messages never delivered to a clean session connected throughout",
    "qos2_duplicates": "QoS 2 messages delivered more than once",
    "out_of_order": "acknowledged messages first delivered after a later one of the same publisher",
    "phantom": "deliveries of messages never published",
    "sessions_lost": "persistent sessions found missing on reconnect",
}

# Rare violations under Redis-connection faults, each seen once in about nine runs of the whole suite and not
# explained yet (docs/reliability.md, "What it does not survive (yet)"): they xfail with the counts. Losing
# an acknowledged message to a persistent session, a phantom, or a lost session always fails.
QOS2_RESEND = ("rare: an MQTT 3.1.1 QoS 2 message routed twice after a Redis connection cut (the packet-id record "
               "of its first routing was not seen by the resend; under investigation)")
CLEAN_GAP = ("rare: a clean subscriber missed a contiguous ~2 s of messages around a proxy stall and cut, and "
             "persistent deliveries waited for the resume (under investigation)")
REDIS_CUT_KNOWN = {"qos2_duplicates": QOS2_RESEND, "out_of_order": QOS2_RESEND, "lost_transient": CLEAN_GAP,
                   "stuck": CLEAN_GAP}


def verdict(t: Tally, known: dict[str, str] | None = None) -> None:
    """Fail on any violation not in ``known``; xfail (not strict) naming the known ones that happened.
    Losing an acknowledged message is never in ``known``."""
    assert t.acknowledged > 0, "nothing was acknowledged: the fault stopped the broker for good"
    known = known or {}
    seen = {k: getattr(t, k) for k in VIOLATIONS if getattr(t, k)}
    unknown = {k: n for k, n in seen.items() if k not in known}
    assert not unknown, "; ".join(f"{n} {VIOLATIONS[k]}" for k, n in unknown.items()) + f": {t.details}"
    if seen:
        pytest.xfail("; ".join(f"{n} {VIOLATIONS[k]} [{known[k]}]" for k, n in seen.items()))


async def test_kill9_workers(chaos: Chaos) -> None:
    verdict(await run(chaos, "kill-9", kill9))


async def test_redis_restart(chaos: Chaos) -> None:
    verdict(await run(chaos, "redis-restart", redis_restart), REDIS_CUT_KNOWN)


async def test_client_kill(chaos: Chaos) -> None:
    verdict(await run(chaos, "client-kill", client_kill), REDIS_CUT_KNOWN)


async def test_proxy_stall_and_cut(chaos: Chaos) -> None:
    verdict(await run(chaos, "proxy", proxy_faults), REDIS_CUT_KNOWN)
