"""Protocol paths that used to lose or misdeliver (issue 11), over real sockets:

- a client resuming its session (clean start 0) with Session Expiry 0 gets what was queued for it on
  that connection [MQTT-3.1.2-4, -5], and the session ends when that connection does;
- packets sent right behind CONNECT, in the same segment, are processed once the CONNECT succeeds
  [MQTT-3.1.4-5 allows a client not to wait for CONNACK] (MQTT 5 and 3.1.1);
- a will whose Will Delay outlasts the Session Expiry is published when the session ends
  [MQTT-3.1.3-9], on time (the sweep is slowed to once a minute to prove the timer).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conformance import wire
from tests.fixtures.brokers import Broker
from tests.mqtt5.v5wire import V5, connect5

EXPIRY_300 = b"\x05\x11\x00\x00\x01\x2c"  # properties: Session Expiry Interval 300 s
EXPIRY_0 = b"\x05\x11\x00\x00\x00\x00"


async def test_resume_with_session_expiry_0_gets_the_queue(broker: Broker, raw5: Callable[..., Any],
                                                           uid: str) -> None:
    cid = f"r0-{uid}"
    sub = await raw5(cid, clean=True, props=EXPIRY_300)
    assert await sub.subscribe((f"q/{uid}", 1)) == [1]
    await sub.bye()
    pub = await raw5(f"p-{uid}")
    for n in range(3):
        assert await pub.publish(f"q/{uid}", b"m%d" % n, qos=1) in (0, 0x10)
    again = await raw5(cid, clean=False, props=EXPIRY_0)
    assert again.connack.session_present
    got = [await again.get() for _ in range(3)]
    assert [m.payload for m in got] == [b"m0", b"m1", b"m2"]
    await again.bye()
    # expiry 0: the session ended with that connection
    last = await raw5(cid, clean=False, props=EXPIRY_300)
    assert not last.connack.session_present


@pytest.mark.parametrize("version", [4, 5])
async def test_publish_in_the_connect_segment_is_processed(broker: Broker, raw5: Callable[..., Any], uid: str,
                                                           version: int) -> None:
    watcher = await raw5(f"w-{uid}")
    assert await watcher.subscribe((f"seg/{uid}", 1)) == [1]
    reader, writer = await asyncio.open_connection(broker.host, broker.port)
    first = (connect5(f"c-{uid}") if version == 5 else wire.connect(f"c-{uid}", version=4))
    writer.write(first + wire.publish(f"seg/{uid}", b"behind connect", qos=1, pid=7, version=version)
                 + wire.subscribe(8, (f"back/{uid}", 0), version=version))
    await writer.drain()
    c = V5(reader, writer)
    ack = await c.read()
    assert ack.type == wire.CONNACK and ack.body[1] == 0
    # PUBACK (after the store took the message) and SUBACK may come in either order
    acks = {p.type: p.pid for p in [await c.read(), await c.read()]}
    assert acks == {wire.PUBACK: 7, wire.SUBACK: 8}
    got = await watcher.get()
    assert (got.topic, got.payload) == (f"seg/{uid}", b"behind connect")
    await c.close()


@pytest.mark.tidemq_only
async def test_will_delay_is_capped_by_session_expiry(broker: Broker, tuned: Callable[[dict[str, str]], Broker],
                                                      raw5: Callable[..., Any], uid: str) -> None:
    slow = tuned({"TIDEMQ_SWEEP_INTERVAL": "60", "TIDEMQ_MIN_SESSION_EXPIRY": "1"})
    watcher = await raw5(f"w-{uid}", on=slow)
    assert await watcher.subscribe((f"will/{uid}", 1)) == [1]
    will_props = b"\x05\x18\x00\x00\x00\x3c"  # Will Delay Interval 60 s
    dying = await raw5(f"d-{uid}", on=slow, props=b"\x05\x11\x00\x00\x00\x01",  # Session Expiry 1 s
                       will=(f"will/{uid}", b"bye", 1, False), will_props=will_props)
    dying.writer.transport.abort()  # no DISCONNECT: the will is due when the delay or the session ends
    ended = time.monotonic()
    got = await watcher.get(within=10)
    assert (got.topic, got.payload) == (f"will/{uid}", b"bye")
    assert time.monotonic() - ended < 1.0 + 1.5  # the session's end (1 s), not the will delay (60 s)
