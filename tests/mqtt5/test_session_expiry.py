"""Session expiry (MQTT 5 3.1.2.11.2, 3.14.2.2.2) and MQTT 3.1.1 persistent sessions, on raw bytes.

- A session is kept for its Session Expiry Interval after the connection
  closes (CONNACK session present 1, queued messages delivered) and gone
  after it (session present 0, no subscriptions) [MQTT-3.1.2-23];
- DISCONNECT may change the interval, except from 0 to non-zero, which is a
  protocol error [MQTT-3.14.2-2];
- MQTT 3.1.1 clean session 0 keeps the session, clean session 1 discards it.
The expiry tests wait for the interval (1 s) to pass, on a broker started with
``TIDEMQ_MIN_SESSION_EXPIRY=1`` (by default shorter intervals are raised to 60 s).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tests.conformance import wire
from tests.fixtures.brokers import Broker
from tests.mqtt5.v5wire import SESSION_EXPIRY, sub_options

EXPIRY_PASSES = 1.6  # > a 1 s expiry, measured from the DISCONNECT
SHORT_SESSIONS = {"TIDEMQ_MIN_SESSION_EXPIRY": "1"}  # the default minimum (60 s) would raise 1 s


def _exp(seconds: int) -> bytes:
    return wire.props((SESSION_EXPIRY, seconds))


async def test_session_kept_before_expiry(raw5: Any, uid: str) -> None:
    topic, cid = f"se/{uid}", f"s{uid}"
    sub = await raw5(cid, props=_exp(60))
    assert not sub.connack.session_present
    await sub.subscribe((topic, sub_options(1)))
    await sub.bye()
    pub = await raw5(f"p{uid}")
    await pub.publish(topic, b"while-away", qos=1)
    back = await raw5(cid, props=_exp(60), clean=False)
    assert back.connack.session_present
    assert (await back.get()).payload == b"while-away"


async def test_session_gone_after_expiry(raw5: Any, uid: str, tuned: Callable[..., Broker]) -> None:
    topic, cid = f"se/{uid}", f"s{uid}"
    b = tuned(SHORT_SESSIONS)
    sub = await raw5(cid, props=_exp(1), on=b)
    assert sub.connack.prop(SESSION_EXPIRY) is None  # granted as asked
    await sub.subscribe((topic, sub_options(1)))
    await sub.bye()
    await asyncio.sleep(EXPIRY_PASSES)  # the expiry itself is under test
    back = await raw5(cid, props=_exp(60), clean=False, on=b)
    assert not back.connack.session_present  # [MQTT-3.1.2-23]
    pub = await raw5(f"p{uid}", on=b)
    assert await pub.publish(topic, b"nobody", qos=1) == 0x10  # the subscription went with it


async def test_disconnect_shortens_expiry_to_zero(raw5: Any, uid: str) -> None:
    cid = f"s{uid}"
    sub = await raw5(cid, props=_exp(300))
    await sub.subscribe((f"se/{uid}", sub_options(1)))
    await sub.bye(0, _exp(0))  # the session ends with this connection
    back = await raw5(cid, props=_exp(60), clean=False)
    assert not back.connack.session_present


async def test_disconnect_extends_expiry(raw5: Any, uid: str, tuned: Callable[..., Broker]) -> None:
    cid = f"s{uid}"
    b = tuned(SHORT_SESSIONS)
    sub = await raw5(cid, props=_exp(1), on=b)
    await sub.subscribe((f"se/{uid}", sub_options(1)))
    await sub.bye(0, _exp(300))
    await asyncio.sleep(EXPIRY_PASSES)  # past the CONNECT's 1 s: only the new interval keeps it
    back = await raw5(cid, props=_exp(60), clean=False, on=b)
    assert back.connack.session_present


async def test_disconnect_expiry_from_zero_is_protocol_error(raw5: Any, uid: str) -> None:
    sub = await raw5(f"s{uid}")  # session expiry 0
    await sub.send(wire.packet(wire.DISCONNECT, 0, b"\x00" + _exp(60)))
    got = await sub.expect_close()
    discs = [p for p in got if p.type == wire.DISCONNECT]
    assert discs and discs[0].body[0] == 0x82  # [MQTT-3.14.2-2]


async def test_mqtt311_persistent_session(broker: Any, uid: str) -> None:
    topic, cid = f"se/{uid}", f"s{uid}"
    c = await wire.RawClient.connected(broker.host, broker.port, cid, clean=False)
    await c.send(wire.subscribe(1, (topic, 1)))
    assert (await c.read()).type == wire.SUBACK
    await c.send(wire.disconnect())
    await c.close()
    async with await wire.RawClient.connected(broker.host, broker.port, f"p{uid}") as pub:
        await pub.send(wire.publish(topic, b"kept", qos=1, pid=1))
        assert (await pub.read()).type == wire.PUBACK
    back = await wire.RawClient.open(broker.host, broker.port)
    async with back:
        await back.send(wire.connect(cid, clean=False))
        ack = await back.read()
        assert ack.type == wire.CONNACK and ack.body == b"\x01\x00"  # session present
        p = await back.read_type(wire.PUBLISH)
        assert wire.parse_publish(p)[1] == b"kept"
        await back.send(wire.puback(wire.parse_publish(p)[3] or 0))
    fresh = await wire.RawClient.open(broker.host, broker.port)
    async with fresh:
        await fresh.send(wire.connect(cid, clean=True))  # clean session 1 discards the session
        assert (await fresh.read()).body == b"\x00\x00"
        pub = await wire.RawClient.connected(broker.host, broker.port, f"q{uid}", version=5)
        async with pub:  # its subscription went with it (before the CONNACK)
            await pub.send(wire.publish(topic, b"x", qos=1, pid=1, version=5))
            ack = await pub.read()
            assert ack.type == wire.PUBACK and ack.body[2:3] == b"\x10"  # no matching subscribers
