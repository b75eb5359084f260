"""Connect and disconnect with paho-mqtt over MQTT 3.1, 3.1.1 and 5.0."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.interop.clients import Paho, uid


@pytest.mark.parametrize("protocol", ["v31", "v311", "v5"])
def test_connect_disconnect(paho: Callable[..., Paho], protocol: str) -> None:
    c = paho(f"c{uid()}", protocol=protocol)  # <= 23 bytes for MQTT 3.1
    ack = c.connect()
    assert ack == type(ack)(session_present=False, reason=0)
    c.disconnect()
    assert c.disconnect_reason == 0


@pytest.mark.parametrize("protocol", ["v31", "v311", "v5"])
def test_connect_and_exchange_a_message(paho: Callable[..., Paho], protocol: str) -> None:
    c = paho(f"x{uid()}", protocol=protocol)
    c.connect()
    topic = f"hello/{uid()}"
    assert c.subscribe(topic, 1) == [1]
    c.publish(topic, b"hi", qos=1)
    msg = c.get()
    assert (msg.topic, msg.payload, msg.qos) == (topic, b"hi", 1)
    c.disconnect()


def test_many_clients_connect_concurrently(paho: Callable[..., Paho]) -> None:
    clients = [paho(protocol="v5" if i % 2 else "v311") for i in range(20)]
    for c in clients:
        c.connect()
    for c in clients:
        c.disconnect()
