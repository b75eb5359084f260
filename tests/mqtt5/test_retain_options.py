"""Subscription options (MQTT 5 3.8.3.1): no-local, retain-as-published and retain handling.

- No Local: a client's own messages are not sent back on that subscription
  [MQTT-3.8.3-3]; other publishers' messages are.
- Retain As Published: the RETAIN flag of live deliveries is kept when set,
  cleared otherwise [MQTT-3.3.1-12, -13]; retained replays always carry it.
- Retain Handling: 0 sends retained messages on every SUBSCRIBE, 1 only when
  the subscription is new, 2 never [MQTT-3.3.1-9..11].
Clean and persistent sessions (the inbox path) are both exercised.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conformance import wire
from tests.mqtt5.v5wire import SESSION_EXPIRY, sub_options

SESSIONS = pytest.mark.parametrize("persistent", [False, True], ids=["clean", "persistent"])


def _cprops(persistent: bool) -> bytes:
    return wire.props((SESSION_EXPIRY, 300)) if persistent else b"\x00"


@SESSIONS
async def test_no_local(raw5: Any, uid: str, persistent: bool) -> None:
    topic = f"nl/{uid}"
    me = await raw5(f"m{uid}", props=_cprops(persistent))
    await me.subscribe((topic, sub_options(1, no_local=True)))
    other = await raw5(f"o{uid}")
    await other.subscribe((topic, sub_options(1)))
    await me.publish(topic, b"mine", qos=1)
    await me.publish(topic, b"mine0", qos=0)
    assert [(await other.get()).payload for _ in range(2)] == [b"mine", b"mine0"]
    assert await me.until_sentinel(other, topic) == []  # the sentinel comes from someone else


async def test_no_local_is_per_subscription(raw5: Any, uid: str) -> None:
    base = f"nl/{uid}"
    me = await raw5(f"m{uid}")
    await me.subscribe((f"{base}/x", sub_options(1, no_local=True)))
    await me.subscribe((f"{base}/+", sub_options(1)))  # overlapping, without no-local
    await me.publish(f"{base}/x", b"own", qos=1)
    m = await me.get()
    assert m.payload == b"own"  # delivered once, through the other subscription


@SESSIONS
async def test_retain_as_published(raw5: Any, uid: str, persistent: bool) -> None:
    topic = f"rap/{uid}"
    keep = await raw5(f"k{uid}", props=_cprops(persistent))
    await keep.subscribe((topic, sub_options(1, rap=True)))
    clear = await raw5(f"c{uid}", props=_cprops(persistent))
    await clear.subscribe((topic, sub_options(1, rap=False)))
    pub = await raw5(f"p{uid}")
    await pub.publish(topic, b"r", qos=1, retain=True)
    await pub.publish(topic, b"n", qos=1, retain=False)
    a, b = await keep.get(), await keep.get()
    assert [(a.payload, a.retain), (b.payload, b.retain)] == [(b"r", True), (b"n", False)]
    c, d = await clear.get(), await clear.get()
    assert [(c.payload, c.retain), (d.payload, d.retain)] == [(b"r", False), (b"n", False)]
    late = await raw5(f"l{uid}", props=_cprops(persistent))  # a replay keeps RETAIN either way
    await late.subscribe((topic, sub_options(1, rap=False)))
    m = await late.get()
    assert (m.payload, m.retain) == (b"r", True)
    await pub.publish(topic, b"", qos=1, retain=True)


async def _retained_after_subscribe(c: Any, pub: Any, topic: str, options: int) -> list[bytes]:
    await c.subscribe((topic, options))
    return [m.payload for m in await c.until_sentinel(pub, topic)]


@SESSIONS
async def test_retain_handling(raw5: Any, uid: str, persistent: bool) -> None:
    topic = f"rh/{uid}"
    pub = await raw5(f"p{uid}")
    await pub.publish(topic, b"kept", qos=1, retain=True)
    try:
        rh0 = await raw5(f"a{uid}", props=_cprops(persistent))
        assert await _retained_after_subscribe(rh0, pub, topic, sub_options(1, rh=0)) == [b"kept"]
        assert await _retained_after_subscribe(rh0, pub, topic, sub_options(1, rh=0)) == [b"kept"]  # again
        rh1 = await raw5(f"b{uid}", props=_cprops(persistent))
        assert await _retained_after_subscribe(rh1, pub, topic, sub_options(1, rh=1)) == [b"kept"]  # new
        assert await _retained_after_subscribe(rh1, pub, topic, sub_options(1, rh=1)) == []  # existed
        rh2 = await raw5(f"c{uid}", props=_cprops(persistent))
        assert await _retained_after_subscribe(rh2, pub, topic, sub_options(1, rh=2)) == []
    finally:
        await pub.publish(topic, b"", qos=1, retain=True)


async def test_retain_handling_1_after_resumed_session(raw5: Any, uid: str) -> None:
    topic, cid = f"rh/{uid}", f"s{uid}"
    pub = await raw5(f"p{uid}")
    await pub.publish(topic, b"kept", qos=1, retain=True)
    sub = await raw5(cid, props=_cprops(True))
    assert await _retained_after_subscribe(sub, pub, topic, sub_options(1, rh=1)) == [b"kept"]
    await sub.bye()
    back = await raw5(cid, props=_cprops(True), clean=False)
    assert back.connack.session_present
    # the subscription survived in the session: it is not new
    assert await _retained_after_subscribe(back, pub, topic, sub_options(1, rh=1)) == []
    await pub.publish(topic, b"", qos=1, retain=True)
