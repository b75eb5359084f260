"""Interop with the mosquitto command-line clients (mosquitto_pub / mosquitto_sub), MQTT 3.1.1 and 5.0."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.fixtures.brokers import Broker
from tests.interop.clients import MosquittoSub, Paho, mosquitto_pub, uid

VERSIONS = pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])


@VERSIONS
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_pub_to_sub(broker: Broker, version: str, qos: int) -> None:
    topic = f"cli/{uid()}"
    payloads: list[bytes | None] = [b"text", bytes(range(256)), None]
    sub = MosquittoSub(broker, [topic], version=version, qos=qos, count=len(payloads))
    try:
        sub.wait_subscribed()
        for p in payloads:
            mosquitto_pub(broker, topic, p, version=version, qos=qos)
        got = sub.messages()
    finally:
        sub.close()
    assert [m.payload for m in got] == [p or b"" for p in payloads]
    assert {(m.topic, m.qos, m.retain) for m in got} == {(topic, qos, False)}


@VERSIONS
def test_cli_retained(broker: Broker, version: str) -> None:
    topic = f"cli-ret/{uid()}"
    mosquitto_pub(broker, topic, b"kept", version=version, qos=1, retain=True)
    sub = MosquittoSub(broker, [topic], version=version, qos=1, count=1)
    try:
        got = sub.messages()
    finally:
        sub.close()
    assert [(m.payload, m.retain) for m in got] == [(b"kept", True)]
    mosquitto_pub(broker, topic, None, version=version, qos=1, retain=True)  # clear


def test_paho_to_mosquitto_sub_wildcard(broker: Broker, paho: Callable[..., Paho]) -> None:
    base = f"cliw/{uid()}"
    sub = MosquittoSub(broker, [f"{base}/+/temp"], version="mqttv5", qos=1, count=2)
    try:
        sub.wait_subscribed()
        pub = paho(protocol="v5")
        pub.connect()
        pub.publish(f"{base}/a/temp", b"21.5", qos=1)
        pub.publish(f"{base}/a/humidity", b"40", qos=1)
        pub.publish(f"{base}/b/temp", b"\x00\x01", qos=1)
        got = sub.messages()
    finally:
        sub.close()
    assert [(m.topic, m.payload) for m in got] == [(f"{base}/a/temp", b"21.5"), (f"{base}/b/temp", b"\x00\x01")]


def test_mosquitto_pub_to_paho(paho: Callable[..., Paho], broker: Broker) -> None:
    topic = f"clip/{uid()}"
    sub = paho(protocol="v311")
    sub.connect()
    sub.subscribe(topic, 2)
    mosquitto_pub(broker, topic, b"\xff\x00binary", version="mqttv311", qos=2)
    m = sub.get()
    assert (m.topic, m.payload, m.qos) == (topic, b"\xff\x00binary", 2)


def test_cli_persistent_session(broker: Broker) -> None:
    cid, topic = f"clis{uid()}", f"clis/{uid()}"
    first = MosquittoSub(broker, [topic], qos=1, count=1, extra=["-i", cid, "-c", "-E"])  # subscribe, then exit
    try:
        first.messages()
    finally:
        first.close()
    for i in range(3):
        mosquitto_pub(broker, topic, f"queued-{i}".encode(), qos=1)
    again = MosquittoSub(broker, [topic], qos=1, count=3, extra=["-i", cid, "-c"])
    try:
        got = again.messages()
    finally:
        again.close()
    assert [m.payload for m in got] == [b"queued-0", b"queued-1", b"queued-2"]
