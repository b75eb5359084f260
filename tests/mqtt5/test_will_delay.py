"""Will delay interval and DISCONNECT 0x04 (MQTT 5 3.1.3.2.2, 3.14.2.1), with paho-mqtt v5 clients.

The will is published once the Will Delay Interval has passed or the session
ends, whichever comes first [MQTT-3.1.3-9]; it is cancelled when the client
reconnects to the session within the delay; DISCONNECT with reason 0x04 fires
it, a normal DISCONNECT (0x00) discards it [MQTT-3.1.2-10]. These tests wait
for real time to pass (the delay is what is under test), about 1-2.5 s each.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from paho.mqtt.packettypes import PacketTypes

from tests.conformance import wire
from tests.fixtures.brokers import Broker
from tests.interop.clients import sentinel_barrier
from tests.mqtt5.conftest import Paho5, props
from tests.mqtt5.v5wire import SESSION_EXPIRY, WILL_DELAY


def _dying(paho5: Callable[..., Paho5], topic: str, *, delay: int, expiry: int, cid: str | None = None,
           on: Broker | None = None) -> Paho5:
    c = paho5(cid, on=on, clean=False, session_expiry=expiry, will=(topic, b"gone", 1, False),
              will_props=props(PacketTypes.WILLMESSAGE, WillDelayInterval=delay))
    c.connect()
    return c


def test_will_fired_after_delay(paho5: Callable[..., Paho5], uid: str) -> None:
    topic = f"wd/{uid}"
    watcher = paho5()
    watcher.connect()
    watcher.sub(topic, 1)
    dying = _dying(paho5, topic, delay=1, expiry=60)
    start = time.monotonic()
    dying.drop()
    m = watcher.get()
    assert (m.topic, m.payload) == (topic, b"gone")
    assert time.monotonic() - start >= 0.9  # not before the delay


def test_will_cancelled_by_reconnect_within_delay(paho5: Callable[..., Paho5], uid: str) -> None:
    topic, cid = f"wd/{uid}", f"d{uid}"
    watcher = paho5()
    watcher.connect()
    watcher.sub(topic, 1)
    dying = _dying(paho5, topic, delay=2, expiry=60, cid=cid)
    dying.drop()
    back = paho5(cid, clean=False, session_expiry=60)
    assert back.connect().session_present
    time.sleep(2.5)  # let the 2 s will delay run out: the will must not appear (time is under test)
    other = paho5()
    other.connect()
    assert sentinel_barrier(other, watcher, topic) == []
    back.disconnect()


def test_will_fires_at_session_end_before_delay(paho5: Callable[..., Paho5], uid: str,
                                                tuned: Callable[..., Broker]) -> None:
    topic = f"wd/{uid}"
    b = tuned({"TIDEMQ_MIN_SESSION_EXPIRY": "1"})  # else a 1 s session expiry is raised to 60 s
    watcher = paho5(on=b)
    watcher.connect()
    watcher.sub(topic, 1)
    dying = _dying(paho5, topic, delay=30, expiry=1, on=b)  # the session ends long before the delay
    start = time.monotonic()
    dying.drop()
    m = watcher.get()
    assert m.payload == b"gone" and time.monotonic() - start < 10


def test_will_without_session_expiry_fires_at_once(paho5: Callable[..., Paho5], uid: str) -> None:
    topic = f"wd/{uid}"
    watcher = paho5()
    watcher.connect()
    watcher.sub(topic, 1)
    dying = paho5(will=(topic, b"gone", 1, False), will_props=props(PacketTypes.WILLMESSAGE, WillDelayInterval=30))
    dying.connect()  # session expiry 0: the session ends with the connection
    dying.drop()
    assert watcher.get().payload == b"gone"


async def test_disconnect_with_will_message(raw5: Any, uid: str) -> None:
    topic = f"wd/{uid}"
    watcher = await raw5(f"w{uid}")
    await watcher.subscribe((topic, 1))
    dying = await raw5(f"d{uid}", will=(topic, b"by-choice", 1, False))
    await dying.bye(0x04)  # Disconnect with Will Message
    m = await watcher.get()
    assert (m.topic, m.payload) == (topic, b"by-choice")


async def test_disconnect_with_will_honours_delay_then_fires(raw5: Any, uid: str) -> None:
    topic = f"wd/{uid}"
    watcher = await raw5(f"w{uid}")
    await watcher.subscribe((topic, 1))
    dying = await raw5(f"d{uid}", props=wire.props((SESSION_EXPIRY, 60)), will=(topic, b"later", 1, False),
                       will_props=wire.props((WILL_DELAY, 1)))
    start = time.monotonic()
    await dying.bye(0x04)
    m = await watcher.get()
    assert m.payload == b"later" and time.monotonic() - start >= 0.9


async def test_normal_disconnect_discards_will(raw5: Any, uid: str) -> None:
    topic = f"wd/{uid}"
    watcher = await raw5(f"w{uid}")
    await watcher.subscribe((topic, 1))
    leaving = await raw5(f"d{uid}", will=(topic, b"must-not", 1, False))
    await leaving.bye(0x00)
    other = await raw5(f"o{uid}")
    assert await watcher.until_sentinel(other, topic) == []
