"""Flow control (MQTT 5 4.9) and maximum packet size (3.1.2.11.4, 3.2.2.3.6), in both directions, on raw bytes.

- The server never has more unacknowledged QoS 1 PUBLISHes outstanding to a
  client than that client's Receive Maximum [MQTT-3.3.4-9]; each PUBACK lets
  exactly one more through.
- A client exceeding the server's Receive Maximum (QoS 2 publishes not yet
  completed count too) gets DISCONNECT 0x93 [MQTT-3.3.4-7, -8].
- A packet above the server's announced Maximum Packet Size (fixed header
  included) gets DISCONNECT 0x95; one of exactly that size is fine.
- A message too large for one subscriber's Maximum Packet Size is dropped
  for that subscriber only [MQTT-3.1.2-25]; others still receive it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conformance import wire
from tests.fixtures.brokers import Broker
from tests.mqtt5.v5wire import MAX_PACKET, RECEIVE_MAX, SESSION_EXPIRY, V5, Pub, sub_options

RECEIVE_MAXIMUM_EXCEEDED, PACKET_TOO_LARGE = 0x93, 0x95


async def _read_until(sub: V5, token: bytes) -> list[Pub]:
    """PUBLISHes (not acked) up to and excluding the QoS 0 ``token``."""
    out = []
    while True:
        m = await sub.get(ack=False)
        if m.payload == token:
            return out
        out.append(m)


async def test_receive_maximum_towards_client_transient(raw5: Any, uid: str) -> None:
    topic = f"rm/{uid}"
    sub = await raw5(f"s{uid}", props=wire.props((RECEIVE_MAX, 3)))
    await sub.subscribe((topic, sub_options(1)))
    pub = await raw5(f"p{uid}")
    for i in range(8):
        await pub.publish(topic, f"m{i}".encode(), qos=1)
    # QoS 0 is not limited by receive maximum and overtakes the held-back QoS 1 messages
    await pub.publish(topic, b"mark1", qos=0)
    first = await _read_until(sub, b"mark1")
    assert [m.payload for m in first] == [b"m0", b"m1", b"m2"]  # exactly the client's receive maximum
    await sub.send(wire.puback(first[0].pid or 0))
    await pub.publish(topic, b"mark2", qos=0)
    # mark2 may overtake the one freed slot's message or not, but never more than one more arrives
    more = await _read_until(sub, b"mark2")
    if not more:
        more = [await sub.get(ack=False)]
    assert [m.payload for m in more] == [b"m3"]
    for m in first[1:] + more:
        await sub.send(wire.puback(m.pid or 0))
    rest = [await sub.get() for _ in range(4)]
    assert [m.payload for m in rest] == [b"m4", b"m5", b"m6", b"m7"]


async def test_receive_maximum_towards_client_persistent(raw5: Any, uid: str) -> None:
    topic = f"rm/{uid}"
    sub = await raw5(f"s{uid}", props=wire.props((RECEIVE_MAX, 2), (SESSION_EXPIRY, 60)))
    await sub.subscribe((topic, sub_options(1)))
    pub = await raw5(f"p{uid}")
    for i in range(5):
        await pub.publish(topic, f"m{i}".encode(), qos=1)
    got = [await sub.get(ack=False) for _ in range(2)]
    assert [m.payload for m in got] == [b"m0", b"m1"]
    # everything of a persistent session goes through its inbox in order, so no sentinel can
    # overtake; a short bounded wait stands in for "nothing more arrives" here
    with pytest.raises(TimeoutError):
        await sub.read(0.5)
    await sub.send(wire.puback(got[0].pid or 0))
    third = await sub.get(ack=False)
    assert third.payload == b"m2"
    with pytest.raises(TimeoutError):
        await sub.read(0.3)
    for m in (got[1], third):
        await sub.send(wire.puback(m.pid or 0))
    assert [(await sub.get()).payload for _ in range(2)] == [b"m3", b"m4"]


async def _fill_qos2(c: V5, topic: str, n: int) -> None:
    """``n`` QoS 2 publishes left at PUBREC (never released)."""
    for pid in range(1, n + 1):
        await c.send(wire.publish(topic, b"q2", qos=2, pid=pid, version=5))
    for _ in range(n):
        rec = await c.read()
        assert rec.type == wire.PUBREC, rec


async def test_client_exceeding_server_receive_maximum(raw5: Any, uid: str) -> None:
    c = await raw5(f"p{uid}")
    rm = int(c.connack.prop(RECEIVE_MAX, 65535))
    assert rm < 1000, "the server announces a usable Receive Maximum"
    await _fill_qos2(c, f"rm/{uid}", rm)  # incomplete until PUBCOMP: they fill the quota
    await c.send(wire.publish(f"rm/{uid}", b"one-too-many", qos=2, pid=rm + 1, version=5))
    assert await c.disconnect_reason() == RECEIVE_MAXIMUM_EXCEEDED


async def test_completed_flows_free_the_server_quota(raw5: Any, uid: str) -> None:
    c = await raw5(f"p{uid}")
    rm = int(c.connack.prop(RECEIVE_MAX, 65535))
    await _fill_qos2(c, f"rm/{uid}", rm)
    await c.send(wire.pubrel(1, version=5))
    assert (await c.read()).type == wire.PUBCOMP
    await c.send(wire.publish(f"rm/{uid}", b"fits", qos=2, pid=rm + 1, version=5))
    rec = await c.read()
    assert rec.type == wire.PUBREC and rec.pid == rm + 1


def _publish_of_size(topic: str, total: int) -> tuple[bytes, bytes]:
    """A QoS 0 v5 PUBLISH of exactly ``total`` bytes, fixed header included, and its payload."""
    overhead = len(wire.publish(topic, b"", version=5))
    for payload_len in range(total - overhead, total - overhead - 4, -1):
        pkt = wire.publish(topic, b"x" * payload_len, version=5)
        if len(pkt) == total:
            return pkt, b"x" * payload_len
    raise AssertionError("no payload length gives that size")


@pytest.fixture
def small_packets(tuned: Callable[[dict[str, str]], Broker]) -> Broker:
    return tuned({"TIDEMQ_MAX_PACKET_SIZE": "512"})


async def test_server_maximum_packet_size(raw5: Any, uid: str, small_packets: Broker) -> None:
    topic = f"mp/{uid}"
    sub = await raw5(f"s{uid}", on=small_packets)
    assert sub.connack.prop(MAX_PACKET) == 512  # announced in CONNACK
    await sub.subscribe((topic, sub_options(0)))
    pub = await raw5(f"p{uid}", on=small_packets)
    exact, body = _publish_of_size(topic, 512)
    await pub.send(exact)  # exactly the maximum (fixed header included): accepted
    assert (await sub.get()).payload == body
    await pub.send(_publish_of_size(topic, 513)[0])
    assert await pub.disconnect_reason() == PACKET_TOO_LARGE
    other = await raw5(f"o{uid}", on=small_packets)  # only the offender was closed
    await other.publish(topic, b"still", qos=1)
    assert (await sub.get()).payload == b"still"


@pytest.mark.parametrize("persistent", [False, True], ids=["transient", "persistent"])
async def test_message_too_large_for_one_subscriber(raw5: Any, uid: str, persistent: bool) -> None:
    topic = f"mp/{uid}"
    sp = [(SESSION_EXPIRY, 60)] if persistent else []
    small = await raw5(f"a{uid}", props=wire.props((MAX_PACKET, 128), *sp))
    big = await raw5(f"b{uid}", props=wire.props(*sp))
    for c in (small, big):
        await c.subscribe((topic, sub_options(1)))
    pub = await raw5(f"p{uid}")
    await pub.publish(topic, b"L" * 300, qos=1)
    await pub.publish(topic, b"small", qos=1)
    assert [(await big.get()).payload for _ in range(2)] == [b"L" * 300, b"small"]
    m = await small.get()
    assert m.payload == b"small"  # the large one was dropped for this subscriber only
    assert await small.until_sentinel(pub, topic) == []
