"""Message expiry (MQTT 5 3.3.2.3.3): expired messages are not delivered, live ones carry the remaining interval.

A message that expires while queued in a persistent session's inbox is never
delivered [MQTT-3.3.2-5]; one that has not expired arrives with the interval
left, which is less than what was published [MQTT-3.3.2-6]. Retained messages
expire the same way. These tests wait for real time to pass (the expiry is
what is being tested), about 1.3 s each.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conformance import wire
from tests.mqtt5.v5wire import MSG_EXPIRY, SESSION_EXPIRY, sub_options

PASS_TIME = 1.3  # > 1 s: a 1 s expiry is over, a 100 s one has at most 99 s left


async def test_expired_in_inbox_not_delivered_live_one_with_remaining(raw5: Any, uid: str) -> None:
    topic, cid = f"ex/{uid}", f"s{uid}"
    sub = await raw5(cid, props=wire.props((SESSION_EXPIRY, 300)))
    await sub.subscribe((topic, sub_options(1)))
    await sub.bye()
    pub = await raw5(f"p{uid}")
    await pub.publish(topic, b"short", qos=1, props=wire.props((MSG_EXPIRY, 1)))
    await pub.publish(topic, b"long", qos=1, props=wire.props((MSG_EXPIRY, 100)))
    await pub.publish(topic, b"forever", qos=1)
    await asyncio.sleep(PASS_TIME)  # let the 1 s expiry run out (time itself is under test)
    back = await raw5(cid, props=wire.props((SESSION_EXPIRY, 300)), clean=False)
    assert back.connack.session_present
    first = await back.get()
    assert first.payload == b"long"  # "short" expired in the inbox
    left = first.prop(MSG_EXPIRY)
    assert left is not None and 1 <= int(left) < 100  # the remaining interval
    second = await back.get()
    assert second.payload == b"forever" and MSG_EXPIRY not in second.props
    assert await back.until_sentinel(pub, topic) == []


async def test_expiry_forwarded_to_online_subscriber(raw5: Any, uid: str) -> None:
    topic = f"ex/{uid}"
    sub = await raw5(f"s{uid}")
    await sub.subscribe((topic, sub_options(1)))
    pub = await raw5(f"p{uid}")
    await pub.publish(topic, b"x", qos=1, props=wire.props((MSG_EXPIRY, 60)))
    m = await sub.get()
    assert m.payload == b"x" and 1 <= int(m.prop(MSG_EXPIRY)) <= 60  # type: ignore[arg-type]


async def test_retained_message_expiry(raw5: Any, uid: str) -> None:
    base = f"exr/{uid}"
    pub = await raw5(f"p{uid}")
    await pub.publish(f"{base}/short", b"gone", qos=1, retain=True, props=wire.props((MSG_EXPIRY, 1)))
    await pub.publish(f"{base}/long", b"kept", qos=1, retain=True, props=wire.props((MSG_EXPIRY, 100)))
    await asyncio.sleep(PASS_TIME)  # the short one's expiry runs out while retained
    sub = await raw5(f"s{uid}")
    await sub.subscribe((f"{base}/+", sub_options(1)))
    m = await sub.get()
    assert (m.topic, m.payload, m.retain) == (f"{base}/long", b"kept", True)
    assert 1 <= int(m.prop(MSG_EXPIRY)) < 100  # type: ignore[arg-type]
    # the replay of one SUBSCRIBE is sent in one go: anything else it held arrived before the sentinel
    assert await sub.until_sentinel(pub, f"{base}/sentinel") == []
    await pub.publish(f"{base}/long", b"", qos=1, retain=True)  # clean up
