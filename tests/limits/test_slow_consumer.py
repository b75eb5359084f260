"""Slow consumers: subscribers that stop reading must not grow the worker's memory or stall other clients.

The flood test publishes >= 200 MB of 64 KiB QoS 0 and QoS 1 messages to subscribers whose sockets are never
read after SUBACK (one subscribed at QoS 0, one at QoS 1 with MQTT 3.1.1's unbounded in-flight window), while
the worker's resident memory is sampled from ``/proc/<pid>/status`` and a healthy subscriber on another topic
must keep getting its messages. The backlog test checks MQTTConnection.deliver's policy: a transient QoS 1
subscriber whose undelivered backlog outgrows the tenant's ``SessionInboxSize`` is disconnected with 0x97.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.conformance import wire
from tests.limits.helpers import RECEIVE_MAXIMUM, connect311, open5, rss_kb, subscribe311, uid

pytestmark = pytest.mark.redis

PAYLOAD = 64 * 1024
TOTAL = 200 * 1024 * 1024
MAX_GROWTH_KB = 150 * 1024


def _shrink_receive_buffer(client: wire.RawClient) -> None:
    sock = client.writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)


async def _drain_acks(client: wire.RawClient, last: int, done: asyncio.Event) -> None:
    """Read the publisher's PUBACKs (so its socket never backs up) until the one for packet id ``last``."""
    while True:
        p = await client.read(30.0)
        if p.type == wire.PUBACK and p.pid == last:
            done.set()
            return


async def _flood(worker, user: str) -> int:
    """Publish TOTAL bytes of 64 KiB messages (QoS 0 and 1 alternating) on ``flood/t`` while a healthy
    subscriber on another topic must keep getting probes; returns the worker's peak RSS growth in KiB."""
    healthy = await open5(worker, f"h{uid()}", username=user)
    assert await healthy.subscribe(("probe/t", 1)) == [1]
    prober = await open5(worker, f"pr{uid()}", username=user)
    pub, code = await connect311(worker, f"p{uid()}", username=user)
    assert code == 0
    last_pid = 65535  # never used by the flood below: its PUBACK means everything before it was routed
    all_routed = asyncio.Event()
    acks = asyncio.get_running_loop().create_task(_drain_acks(pub, last_pid, all_routed))
    pid = worker.process.pid
    base = rss_kb(pid)
    peak = base
    body = b"z" * PAYLOAD
    qos0 = wire.publish("flood/t", body)
    sent, n, probes = 0, 0, 0
    try:
        while sent < TOTAL:
            for _ in range(16):
                n += 1
                if n % 2:
                    pub.writer.write(qos0)
                else:
                    pub.writer.write(wire.publish("flood/t", body, qos=1, pid=n % 60000 + 1))
                sent += PAYLOAD
            await asyncio.wait_for(pub.writer.drain(), 30)
            peak = max(peak, rss_kb(pid))
            if sent >= (probes + 1) * TOTAL // 4:  # the worker keeps serving others during the flood
                probes += 1
                token = f"probe-{probes}".encode()
                assert await prober.publish("probe/t", token, qos=1) == 0
                assert (await healthy.get(10.0)).payload == token
        await pub.send(wire.publish("flood/t", b"last", qos=1, pid=last_pid))
        await asyncio.wait_for(all_routed.wait(), 30)
    finally:
        acks.cancel()
        for c in (pub, healthy, prober):
            await c.close()
    peak = max(peak, rss_kb(pid))
    assert sent >= TOTAL
    return peak - base


async def test_flood_to_non_reading_transient_subscribers_keeps_memory_bounded(worker, tenant, settings) -> None:
    settings(SessionInboxSize=200)  # the QoS 1 backlog allowed per transient session
    user = f"{tenant}/u"
    slow0, code = await connect311(worker, f"s0{uid()}", username=user)
    assert code == 0
    slow1, code = await connect311(worker, f"s1{uid()}", username=user)
    assert code == 0
    assert await subscribe311(slow0, 1, ("flood/#", 0)) == [0]
    assert await subscribe311(slow1, 1, ("flood/#", 1)) == [1]
    for c in (slow0, slow1):
        _shrink_receive_buffer(c)  # from here on these two sockets are not read
    growth = await _flood(worker, user)
    assert growth < MAX_GROWTH_KB, f"worker RSS grew {growth // 1024} MiB"
    # the QoS 1 subscriber outgrew its backlog and was cut off: reading it now ends in EOF
    await slow1.expect_close(20.0)
    await slow0.close()


async def test_non_reading_persistent_subscriber_keeps_memory_bounded_then_resumes(worker, tenant, settings) -> None:
    settings(SessionInboxSize=200, QoS0DropOldest=True)
    user = f"{tenant}/u"
    slow, code = await connect311(worker, f"ps{uid()}", username=user, clean=False)
    assert code == 0
    assert await subscribe311(slow, 1, ("flood/#", 1)) == [1]
    _shrink_receive_buffer(slow)
    growth = await _flood(worker, user)
    assert growth < MAX_GROWTH_KB, f"worker RSS grew {growth // 1024} MiB"
    # a full inbox keeps its queued QoS 1 entries (newer QoS 1 messages are refused) and, with drop-oldest,
    # makes room for a new QoS 0 message by dropping its oldest QoS 0 entry: a QoS 0 "last" is queued at the
    # end, and once the client reads (and acks) again, delivery resumes up to it
    closer = await open5(worker, f"l{uid()}", username=user)
    await closer.publish("flood/t", b"last", qos=0)
    await closer.close()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    received = 0
    while True:
        p = await slow.read(max(0.01, deadline - loop.time()))
        if p.type != wire.PUBLISH:
            continue
        _topic, payload, qos, pid, _ = wire.parse_publish(p)
        received += 1
        if qos == 1:
            await slow.send(wire.puback(pid or 0))
        if payload == b"last":
            break
    # what sat in the socket buffers (a few MiB) plus at most one inbox's worth, not the whole flood
    assert received < TOTAL // PAYLOAD // 3, received
    await slow.close()


async def test_transient_qos1_backlog_over_inbox_size_is_disconnected(worker, tenant, settings, c5) -> None:
    settings(SessionInboxSize=20)
    slow = await c5(props=wire.props((RECEIVE_MAXIMUM, 5)))
    assert await slow.subscribe(("b/t", 1)) == [1]
    pub = await c5()
    for i in range(40):  # 5 in flight + 20 queued, then one too many
        assert await pub.publish("b/t", b"%d" % i, qos=1) in (0, 0x10)  # 0x10 once it is gone
    assert await slow.disconnect_reason(10.0) == 0x97  # Quota Exceeded
    other = await c5()  # the worker is fine
    assert await other.subscribe(("b/t", 1)) == [1]
