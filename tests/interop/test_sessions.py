"""Persistent sessions and client-id takeover with paho-mqtt (MQTT 3.1.1 and 5.0)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.interop.clients import Paho, sentinel_barrier, uid

SESSION_TAKEN_OVER = 0x8E


def _persistent(paho: Callable[..., Paho], cid: str, protocol: str) -> Paho:
    if protocol == "v5":
        return paho(cid, protocol="v5", clean=False, session_expiry=300)
    return paho(cid, protocol=protocol, clean=False)


@pytest.mark.parametrize("protocol", ["v311", "v5"])
def test_offline_qos1_messages_delivered_on_reconnect_in_order(paho: Callable[..., Paho], protocol: str) -> None:
    cid, topic = f"ps{uid()}", f"ps/{uid()}"
    sub = _persistent(paho, cid, protocol)
    assert sub.connect().session_present is False
    assert sub.subscribe(topic, 1) == [1]
    sub.disconnect()

    pub = paho(protocol="v311")
    pub.connect()
    for i in range(50):
        pub.publish(topic, f"m{i}".encode(), qos=1)
    pub.publish(topic, b"q0-may-be-dropped", qos=0)

    back = _persistent(paho, cid, protocol)
    assert back.connect().session_present is True  # [MQTT-3.2.2-2]
    got = [m.payload for m in back.get_many(50)]
    assert got == [f"m{i}".encode() for i in range(50)]
    rest = sentinel_barrier(pub, back, topic)  # the subscription survived too
    assert [m.payload for m in rest] in ([], [b"q0-may-be-dropped"])
    back.disconnect()

    clean = paho(cid, protocol=protocol, clean=True) if protocol != "v5" else paho(cid, protocol="v5")
    assert clean.connect().session_present is False  # clean start discards the session
    clean.disconnect()


def test_v5_session_expiry_zero_is_not_persistent(paho: Callable[..., Paho]) -> None:
    cid, topic = f"se{uid()}", f"se/{uid()}"
    sub = paho(cid, protocol="v5", clean=False, session_expiry=0)
    sub.connect()
    sub.subscribe(topic, 1)
    sub.disconnect()
    again = paho(cid, protocol="v5", clean=False, session_expiry=0)
    assert again.connect().session_present is False  # [MQTT-3.1.2-23] expired at disconnect


@pytest.mark.parametrize("protocol", [
    "v311", pytest.param("v5", marks=pytest.mark.mosquitto_deviates("2.0.11 closes without DISCONNECT 0x8E"))])
def test_takeover_disconnects_first_and_second_continues(paho: Callable[..., Paho], protocol: str) -> None:
    cid, topic = f"to{uid()}", f"to/{uid()}"
    first = _persistent(paho, cid, protocol)
    first.connect()
    first.subscribe(topic, 1)

    second = _persistent(paho, cid, protocol)
    assert second.connect().session_present is True  # continues the first one's session
    reason = first.wait_disconnected()  # [MQTT-3.1.4-3] the existing connection is closed
    if protocol == "v5":
        assert reason == SESSION_TAKEN_OVER
    else:
        assert reason != 0

    pub = paho(protocol="v311")
    pub.connect()
    pub.publish(topic, b"after-takeover", qos=1)
    m = second.get()
    assert (m.topic, m.payload) == (topic, b"after-takeover")
    assert first.drain() == []
    second.disconnect()


@pytest.mark.mosquitto_deviates("2.0.11 closes without DISCONNECT 0x8E")
def test_takeover_v5_clean_start_discards_session(paho: Callable[..., Paho]) -> None:
    cid = f"tc{uid()}"
    first = _persistent(paho, cid, "v5")
    first.connect()
    second = paho(cid, protocol="v5", clean=True)
    assert second.connect().session_present is False
    assert first.wait_disconnected() == SESSION_TAKEN_OVER
