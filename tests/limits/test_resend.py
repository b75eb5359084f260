"""``ResendTimeoutSeconds`` / ``MaxResendTimes`` (in-session resend) and ``MinSendPerSec`` over real sockets.

Raw MQTT 3.1.1 subscribers withhold their PUBACK/PUBREC; the worker (one per module, on the session's real
Redis) must send the PUBLISH again with DUP=1 and the same packet id one ResendTimeoutSeconds later, at most
MaxResendTimes times, then give the delivery up (counter ``dropped_max_resend``); a persistent session's
message is never lost: its inbox entry stays and comes again with the resume (BifroMQ would drop it).
MQTT 5 subscribers are never resent to within a session [MQTT-4.4.0-1].
A subscriber that acknowledges fewer than MinSendPerSec messages per second while it holds QoS 1/2 messages
is a slow consumer (counter ``slow_consumers``, one log line per connection) and its QoS 0 messages are
dropped until it catches up. Counters are read from what the worker publishes with its lease (polled: no
event to await); every read of the wire is bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from redis import Redis

from tests.conformance import wire
from tests.fixtures.brokers import Broker
from tests.limits.helpers import connect311, subscribe311, uid, until_async, worker_stats

pytestmark = pytest.mark.redis

DUP = 0x08
WITHIN = 15.0  # generous bound for one resend timeout (1 s) plus the timer tick and a loaded machine


async def _sub311(worker: Broker, tenant: str, topic: str, qos: int, *, clean: bool = True,
                  client_id: str | None = None) -> tuple[wire.RawClient, str]:
    cid = client_id or f"s{uid()}"
    c, code = await connect311(worker, cid, username=f"{tenant}/u", clean=clean)
    assert code == 0
    assert await subscribe311(c, 1, (topic, qos)) == [qos]
    return c, cid


async def _pub311(worker: Broker, tenant: str) -> wire.RawClient:
    c, code = await connect311(worker, f"p{uid()}", username=f"{tenant}/p")
    assert code == 0
    return c


async def _publish(pub: wire.RawClient, topic: str, payload: bytes, qos: int, pid: int) -> None:
    await pub.send(wire.publish(topic, payload, qos=qos, pid=pid if qos else None))
    if qos == 1:
        assert (await pub.read_type(wire.PUBACK)).pid == pid
    elif qos == 2:
        assert (await pub.read_type(wire.PUBREC)).pid == pid
        await pub.send(wire.pubrel(pid))
        assert (await pub.read_type(wire.PUBCOMP)).pid == pid


async def _next_publish(c: wire.RawClient, within: float = WITHIN) -> tuple[str, bytes, int, int | None, bool]:
    p = await c.read_type(wire.PUBLISH, within)
    topic, payload, qos, pid, _ = wire.parse_publish(p)
    return topic, payload, qos, pid, bool(p.flags & DUP)


async def _counter_above(r: Redis, worker_id: str, name: str, base: int, what: str) -> int:
    return int(await until_async(lambda: worker_stats(r, worker_id).get(name, 0) > base and
                                 worker_stats(r, worker_id)[name], 20.0, what))


async def test_unacknowledged_qos1_is_resent_with_dup_then_given_up(
        worker: Broker, tenant: str, settings: Callable[..., None], r: Redis, worker_id: str) -> None:
    settings(ResendTimeoutSeconds=1, MaxResendTimes=2)
    base = worker_stats(r, worker_id)
    sub, _ = await _sub311(worker, tenant, "rs/a", 1)
    pub = await _pub311(worker, tenant)
    await _publish(pub, "rs/a", b"one", 1, 1)
    await _publish(pub, "rs/a", b"two", 1, 2)
    first = await _next_publish(sub)
    second = await _next_publish(sub)
    assert first[:2] == ("rs/a", b"one") and not first[4]
    assert second[:2] == ("rs/a", b"two") and not second[4]
    await sub.send(wire.puback(second[3] or 0))  # only "two" is acknowledged: only "one" comes again
    for _ in range(2):  # MaxResendTimes resends, same packet id, DUP set
        again = await _next_publish(sub)
        assert again == ("rs/a", b"one", 1, first[3], True)
    await _counter_above(r, worker_id, "dropped_max_resend", base.get("dropped_max_resend", 0),
                         "the delivery given up after MaxResendTimes")
    assert worker_stats(r, worker_id).get("messages_resent", 0) - base.get("messages_resent", 0) >= 2
    await sub.send(wire.puback(first[3] or 0))  # a late ack of a given-up delivery is ignored
    await _publish(pub, "rs/a", b"three", 1, 3)
    nxt = await _next_publish(sub)  # no fourth copy of "one" before it
    assert nxt[:2] == ("rs/a", b"three") and not nxt[4]
    await sub.send(wire.puback(nxt[3] or 0))
    await sub.send(wire.pingreq())
    assert (await sub.read_type(wire.PINGRESP)).type == wire.PINGRESP
    await sub.close()
    await pub.close()


async def test_qos2_is_resent_until_pubrec_then_completes(
        worker: Broker, tenant: str, settings: Callable[..., None]) -> None:
    settings(ResendTimeoutSeconds=1, MaxResendTimes=5)
    sub, _ = await _sub311(worker, tenant, "rs/q2", 2)
    pub = await _pub311(worker, tenant)
    await _publish(pub, "rs/q2", b"x", 2, 7)
    first = await _next_publish(sub)
    assert first[2] == 2 and not first[4]
    again = await _next_publish(sub)
    assert again == ("rs/q2", b"x", 2, first[3], True)
    await sub.send(wire.pubrec(first[3] or 0))
    rel = await sub.read(WITHIN)
    while rel.type == wire.PUBLISH:  # a resend that crossed our PUBREC on the wire
        rel = await sub.read(WITHIN)
    assert rel.type == wire.PUBREL and rel.pid == first[3]
    await sub.send(wire.pubcomp(first[3] or 0))
    await _publish(pub, "rs/q2", b"y", 2, 8)
    nxt = await _next_publish(sub)  # past PUBREC the PUBLISH is never resent: the next one is new
    assert nxt[:2] == ("rs/q2", b"y") and not nxt[4]
    await sub.close()
    await pub.close()


async def test_persistent_session_keeps_the_inbox_entry_after_the_last_try(
        worker: Broker, tenant: str, settings: Callable[..., None], r: Redis, worker_id: str) -> None:
    settings(ResendTimeoutSeconds=1, MaxResendTimes=1)
    base = worker_stats(r, worker_id).get("resends_given_up", 0)
    sub, cid = await _sub311(worker, tenant, "rs/p", 1, clean=False)
    pub = await _pub311(worker, tenant)
    await _publish(pub, "rs/p", b"kept", 1, 1)
    first = await _next_publish(sub)
    again = await _next_publish(sub)
    assert first[:2] == ("rs/p", b"kept") and not first[4]
    assert again == ("rs/p", b"kept", 1, first[3], True)  # the inbox flow keeps its packet id
    await _counter_above(r, worker_id, "resends_given_up", base, "the in-session resends given up")
    await sub.close()
    await _publish(pub, "rs/p", b"after", 1, 2)
    back, code = await connect311(worker, cid, username=f"{tenant}/u", clean=False)
    assert code == 0
    nxt = await _next_publish(back)  # never acknowledged, so never lost: it comes again first, with DUP
    assert nxt[:2] == ("rs/p", b"kept") and nxt[4]
    await back.send(wire.puback(nxt[3] or 0))
    nxt = await _next_publish(back)
    assert nxt[:2] == ("rs/p", b"after")
    await back.send(wire.puback(nxt[3] or 0))
    await back.close()
    await pub.close()


async def test_mqtt5_is_not_resent_within_the_session(
        worker: Broker, tenant: str, settings: Callable[..., None], c5: Callable[..., Any], r: Redis,
        worker_id: str) -> None:
    settings(ResendTimeoutSeconds=1, MaxResendTimes=1)
    base = worker_stats(r, worker_id).get("dropped_max_resend", 0)
    v5 = await c5()
    assert await v5.subscribe(("rs/5", 1)) == [1]
    v3, _ = await _sub311(worker, tenant, "rs/5", 1)
    pub = await _pub311(worker, tenant)
    await _publish(pub, "rs/5", b"m", 1, 1)
    got = await v5.get(ack=False)
    assert got.topic == "rs/5" and not got.dup
    first = await _next_publish(v3)
    assert (await _next_publish(v3))[4]  # the MQTT 3.1.1 subscriber got its resend ...
    await _counter_above(r, worker_id, "dropped_max_resend", base, "the 3.1.1 delivery given up")
    await v5.send(wire.pingreq())  # ... two timeouts have passed; the MQTT 5 one got nothing since
    p = await v5.read(WITHIN)
    assert p.type == wire.PINGRESP, p
    await v5.send(wire.puback(got.pid, version=5))
    assert first[3]
    await v3.close()
    await pub.close()


def _log_lines(worker: Broker, start: int, *needles: str) -> list[bytes]:
    """The worker's log lines written since ``start`` that contain every one of ``needles``."""
    assert worker.process is not None
    with open(worker.process.log_path, "rb") as f:
        f.seek(start)
        lines = f.read().splitlines()
    return [line for line in lines if all(n.encode() in line for n in needles)]


async def test_min_send_per_sec_marks_a_slow_consumer_and_drops_its_qos0(
        worker: Broker, tenant: str, settings: Callable[..., None], r: Redis, worker_id: str) -> None:
    settings(MinSendPerSec=1, ResendTimeoutSeconds=3600)  # no resend within the test
    assert worker.process is not None
    start = worker.process.log_size()
    base = worker_stats(r, worker_id)
    sub, cid = await _sub311(worker, tenant, "ms/+", 1)
    pub = await _pub311(worker, tenant)
    await _publish(pub, "ms/q1", b"held", 1, 1)
    held = await _next_publish(sub)  # never acknowledged: 0 acks in the period, 1 owed
    await _counter_above(r, worker_id, "slow_consumers", base.get("slow_consumers", 0), "slow consumer marked")

    async def dropped() -> bool:
        await _publish(pub, "ms/q0", b"lost", 0, 0)
        return worker_stats(r, worker_id).get("dropped_slow_consumer", 0) > base.get("dropped_slow_consumer", 0)

    await until_async(dropped, 20.0, "QoS 0 to the slow consumer dropped")
    await sub.send(wire.pingreq())  # none of the dropped QoS 0 messages reached it
    p = await sub.read(WITHIN)
    assert p.type == wire.PINGRESP, p
    assert len(_log_lines(worker, start, "slow consumer", cid)) == 1  # once per connection

    await sub.send(wire.puback(held[3] or 0))  # it catches up: the next period ends the mark

    async def flowing() -> bool:
        await _publish(pub, "ms/q0", b"back", 0, 0)
        try:
            got = await _next_publish(sub, 0.3)
        except TimeoutError:
            return False
        return got[:2] == ("ms/q0", b"back")

    await until_async(flowing, 30.0, "QoS 0 flows again once it acknowledged")
    await sub.close()
    await pub.close()


async def test_a_prompt_consumer_is_never_marked_slow(
        worker: Broker, tenant: str, settings: Callable[..., None], r: Redis, worker_id: str) -> None:
    settings(MinSendPerSec=1000)  # far above what it is offered: owed = what was outstanding, all acked
    stats = worker_stats(r, worker_id)
    base, out_base = stats.get("slow_consumers", 0), stats.get("messages_out_qos1", 0)
    sub, _ = await _sub311(worker, tenant, "ok/t", 1)
    pub = await _pub311(worker, tenant)
    loop = asyncio.get_running_loop()
    end = loop.time() + 7.0  # longer than one MinSendPerSec period (5 s)
    n = 0
    while loop.time() < end:
        n += 1
        await _publish(pub, "ok/t", b"%d" % n, 1, n)
        got = await _next_publish(sub)
        await sub.send(wire.puback(got[3] or 0))
    # the worker has published its counters since the last delivery (which came after the period ended)
    await until_async(lambda: worker_stats(r, worker_id).get("messages_out_qos1", 0) >= out_base + n, 20.0,
                      "the counters published after the last delivery")
    assert worker_stats(r, worker_id).get("slow_consumers", 0) == base
    await sub.close()
    await pub.close()
