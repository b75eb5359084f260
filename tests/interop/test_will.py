"""Will messages: published when a connection ends abnormally, never after a normal DISCONNECT."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.interop.clients import Paho, sentinel_barrier, uid


@pytest.mark.parametrize("protocol", ["v31", "v311", "v5"])
def test_will_on_abnormal_close(paho: Callable[..., Paho], protocol: str) -> None:
    topic = f"will/{uid()}"
    watcher = paho(protocol="v5")
    watcher.connect()
    watcher.subscribe(topic, 1)
    dying = paho(f"d{uid()}", protocol=protocol, will=(topic, b"\x00gone\xff", 1, False))
    dying.connect()
    dying.drop()  # TCP closed without DISCONNECT [MQTT-3.1.2-8]
    m = watcher.get()
    assert (m.topic, m.payload, m.qos) == (topic, b"\x00gone\xff", 1)


@pytest.mark.parametrize("protocol", ["v311", "v5"])
def test_no_will_on_normal_disconnect(paho: Callable[..., Paho], protocol: str) -> None:
    topic = f"will/{uid()}"
    watcher = paho(protocol="v5")
    watcher.connect()
    watcher.subscribe(topic, 1)
    leaving = paho(protocol=protocol, will=(topic, b"should-not-appear", 1, False))
    leaving.connect()
    leaving.disconnect()  # [MQTT-3.1.2-10] the will is discarded
    other = paho(protocol="v311")
    other.connect()
    assert sentinel_barrier(other, watcher, topic) == []


def test_retained_will(paho: Callable[..., Paho]) -> None:
    topic = f"will/{uid()}"
    dying = paho(protocol="v311", will=(topic, b"offline", 1, True))
    dying.connect()
    dying.drop()
    watcher = paho(protocol="v311")
    watcher.connect()
    watcher.subscribe(topic, 1)
    m = watcher.get()  # either retained already, or arriving live once the broker notices the close
    assert m.payload == b"offline"
    cleaner = paho(protocol="v311")
    cleaner.connect()
    cleaner.publish(topic, b"", qos=1, retain=True)
