"""Subscription identifiers (MQTT 5 3.8.2.1.2, 3.3.4): delivered with the ids of the matching subscriptions.

A client with overlapping subscriptions gets one message carrying every
matching id [MQTT-3.3.4-3..5]; a message matching only one subscription carries
only its id; a subscription without an id adds none. Checked for clean
sessions (direct delivery) and persistent sessions (through the inbox, both
online and after an offline period).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conformance import wire
from tests.mqtt5.conftest import Paho5
from tests.mqtt5.v5wire import SESSION_EXPIRY, SUB_ID, sub_options

SESSIONS = pytest.mark.parametrize("persistent", [False, True], ids=["clean", "persistent"])


def _cprops(persistent: bool) -> bytes:
    return wire.props((SESSION_EXPIRY, 300)) if persistent else b"\x00"


@SESSIONS
async def test_overlapping_subscriptions_one_message_all_ids(raw5: Any, uid: str, persistent: bool) -> None:
    base = f"si/{uid}"
    sub = await raw5(f"s{uid}", props=_cprops(persistent))
    assert await sub.subscribe((f"{base}/+", sub_options(1)), sub_id=7) == [1]
    assert await sub.subscribe((f"{base}/a", sub_options(1)), sub_id=9) == [1]
    assert await sub.subscribe((f"{base}/#", sub_options(0))) == [0]  # no id
    pub = await raw5(f"p{uid}")
    await pub.publish(f"{base}/a", b"both", qos=1)
    await pub.publish(f"{base}/b", b"plus-only", qos=1)
    await pub.publish(f"{base}/b/c", b"hash-only", qos=1)
    both = await sub.get()
    assert both.payload == b"both" and both.qos == 1  # one copy, max QoS of the matches [MQTT-3.3.4-2]
    assert sorted(both.props.get(SUB_ID, [])) == [7, 9]  # [MQTT-3.3.4-3..5]
    plus = await sub.get()
    assert plus.payload == b"plus-only" and plus.props.get(SUB_ID) == [7]
    hash_only = await sub.get()
    assert hash_only.payload == b"hash-only" and SUB_ID not in hash_only.props
    extra = await sub.until_sentinel(pub, f"{base}/z/z")  # no duplicate of "both"
    assert extra == []


@SESSIONS
async def test_resubscribe_changes_the_id(raw5: Any, uid: str, persistent: bool) -> None:
    topic = f"si/{uid}"
    sub = await raw5(f"s{uid}", props=_cprops(persistent))
    await sub.subscribe((topic, sub_options(1)), sub_id=3)
    await sub.subscribe((topic, sub_options(1)), sub_id=268435455)  # replaces: largest id allowed
    pub = await raw5(f"p{uid}")
    await pub.publish(topic, b"x", qos=1)
    assert (await sub.get()).props.get(SUB_ID) == [268435455]
    await sub.subscribe((topic, sub_options(1)))  # replaced again, without an id
    await pub.publish(topic, b"y", qos=1)
    m = await sub.get()
    assert m.payload == b"y" and SUB_ID not in m.props


async def test_ids_survive_offline_inbox(raw5: Any, uid: str) -> None:
    base = f"si/{uid}"
    cid = f"s{uid}"
    sub = await raw5(cid, props=_cprops(True))
    await sub.subscribe((f"{base}/+", sub_options(1)), sub_id=11)
    await sub.subscribe((f"{base}/x", sub_options(1)), sub_id=12)
    await sub.bye()
    pub = await raw5(f"p{uid}")
    await pub.publish(f"{base}/x", b"queued", qos=1)
    back = await raw5(cid, props=_cprops(True), clean=False)
    assert back.connack.session_present
    m = await back.get()
    assert m.payload == b"queued" and sorted(m.props.get(SUB_ID, [])) == [11, 12]


def test_paho_sees_subscription_identifiers(paho5: Callable[..., Paho5], uid: str) -> None:
    base = f"si/{uid}"
    sub = paho5()
    sub.connect()
    assert sub.sub(f"{base}/+", 1, sub_id=5) == [1]
    assert sub.sub(f"{base}/#", 1, sub_id=6) == [1]
    pub = paho5()
    pub.connect()
    pub.pub(f"{base}/t", b"m", qos=1)
    m = sub.get()
    assert m.payload == b"m" and sorted(m.properties.SubscriptionIdentifier) == [5, 6]


@SESSIONS
async def test_retained_replay_carries_the_id(raw5: Any, uid: str, persistent: bool) -> None:
    topic = f"si/{uid}"
    pub = await raw5(f"p{uid}")
    await pub.publish(topic, b"ret", qos=1, retain=True)
    try:
        sub = await raw5(f"s{uid}", props=_cprops(persistent))
        await sub.subscribe((topic, sub_options(1)), sub_id=42)
        m = await sub.get()
        assert (m.payload, m.retain, m.props.get(SUB_ID)) == (b"ret", True, [42])
    finally:
        await pub.publish(topic, b"", qos=1, retain=True)
