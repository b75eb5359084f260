"""Server-initiated DISCONNECT reason codes (MQTT 5 3.14.2.1), on raw bytes.

0x8E when another connection takes the session over [MQTT-3.1.4-3], 0x8D
when the client stays silent for 1.5 x its keep alive [MQTT-3.1.2-22], 0x81
for a packet that does not parse and 0x82 for one that breaks a protocol
rule; in every case the connection is closed right after the DISCONNECT and
other connections are unaffected.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conformance import wire
from tests.mqtt5.v5wire import sub_options

MALFORMED, PROTOCOL_ERROR, KEEP_ALIVE_TIMEOUT, TAKEN_OVER = 0x81, 0x82, 0x8D, 0x8E


async def test_session_taken_over(raw5: Any, uid: str) -> None:
    cid = f"t{uid}"
    first = await raw5(cid)
    second = await raw5(cid)
    assert await first.disconnect_reason() == TAKEN_OVER
    await second.send(wire.pingreq())
    assert (await second.read()).type == wire.PINGRESP


async def test_keep_alive_timeout(raw5: Any, uid: str) -> None:
    c = await raw5(f"k{uid}", keepalive=1)
    start = time.monotonic()
    assert await c.disconnect_reason(within=5.0) == KEEP_ALIVE_TIMEOUT  # silence from here on
    assert time.monotonic() - start >= 1.4  # not before 1.5 x keep alive (timer granularity aside)


async def test_keep_alive_kept_by_pings(raw5: Any, uid: str) -> None:
    c = await raw5(f"k{uid}", keepalive=1)
    for _ in range(3):  # 2.1 s of pings every 0.7 s: longer than 1.5 x keep alive overall
        await c.send(wire.pingreq())
        assert (await c.read()).type == wire.PINGRESP
        with pytest.raises(TimeoutError):
            await c.read(0.7)  # nothing but our PINGRESPs: no DISCONNECT


BAD_PACKETS = {
    # QoS 3 is malformed [MQTT-3.3.1-4]
    "publish_qos3": (wire.packet(wire.PUBLISH, 0x06, wire.s("a/b") + wire.u16(1) + b"\x00x"), MALFORMED),
    # SUBSCRIBE fixed-header flags must be 0010 [MQTT-3.8.1-1]
    "subscribe_flags": (wire.subscribe(1, ("a/b", 0), version=5, flags=0x00), MALFORMED),
    # an unknown property id
    "unknown_property": (wire.packet(wire.PUBLISH, 0, wire.s("a/b") + b"\x02\x7f\x00x"), MALFORMED),
    # a second CONNECT [MQTT-3.1.0-2]
    "second_connect": (wire.connect("again", version=5), PROTOCOL_ERROR),
    # a PUBLISH with empty topic and no alias [MQTT-3.3.2-1]
    "empty_topic": (wire.publish("", b"x", version=5), PROTOCOL_ERROR),
    # a subscription identifier of 0 [MQTT-3.8.2.1.2]
    "sub_id_zero": (wire.subscribe(1, ("a/b", 0), version=5, properties=b"\x02\x0b\x00"), PROTOCOL_ERROR),
}


@pytest.mark.parametrize("name", list(BAD_PACKETS))
async def test_bad_packet_reason(raw5: Any, uid: str, name: str) -> None:
    data, expected = BAD_PACKETS[name]
    by = await raw5(f"b{uid}")
    await by.subscribe((f"bp/{uid}", sub_options(1)))
    c = await raw5(f"c{uid}")
    await c.send(data)
    reason = await c.disconnect_reason()
    if expected == MALFORMED:
        assert reason in (MALFORMED, PROTOCOL_ERROR)  # the spec lets a server say either for some
    else:
        assert reason == expected
    other = await raw5(f"o{uid}")  # only the offender was closed
    await other.publish(f"bp/{uid}", b"alive", qos=1)
    assert (await by.get()).payload == b"alive"
