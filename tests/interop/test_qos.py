"""QoS 0/1/2 publish/subscribe round trips with paho-mqtt and gmqtt; payloads must be byte-exact."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import gmqtt
import pytest

from tests.fixtures.brokers import Broker
from tests.interop.clients import WAIT, Paho, uid

PAYLOADS = {
    "text": "grüße, MQTT".encode(),
    "binary": bytes(range(256)) * 4,
    "empty": b"",
    "large": bytes((i * 7) % 251 for i in range(100_000)),
}


@pytest.mark.parametrize("protocol", ["v311", "v5"])
@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("payload", list(PAYLOADS), ids=list(PAYLOADS))
def test_paho_round_trip(paho: Callable[..., Paho], protocol: str, qos: int, payload: str) -> None:
    topic = f"rt/{uid()}/{qos}"
    sub = paho(protocol=protocol)
    sub.connect()
    assert sub.subscribe(topic, qos) == [qos]
    pub = paho(protocol=protocol)
    pub.connect()
    pub.publish(topic, PAYLOADS[payload], qos=qos)
    msg = sub.get()
    assert msg.topic == topic
    assert msg.payload == PAYLOADS[payload]
    assert msg.qos == qos
    assert not msg.retain


@pytest.mark.parametrize("sub_qos,pub_qos", [(0, 2), (1, 2), (2, 1), (1, 0)])
def test_delivered_at_minimum_qos(paho: Callable[..., Paho], sub_qos: int, pub_qos: int) -> None:
    topic = f"min/{uid()}"
    sub = paho(protocol="v5")
    sub.connect()
    sub.subscribe(topic, sub_qos)
    pub = paho(protocol="v311")
    pub.connect()
    pub.publish(topic, b"m", qos=pub_qos)
    assert sub.get().qos == min(sub_qos, pub_qos)


@pytest.mark.parametrize("qos", [1, 2])
def test_paho_ordered_burst(paho: Callable[..., Paho], qos: int) -> None:
    topic = f"burst/{uid()}"
    sub = paho(protocol="v5")
    sub.connect()
    sub.subscribe(topic, qos)
    pub = paho(protocol="v311", max_inflight=100)
    pub.connect()
    infos = [pub.publish(topic, str(i).encode(), qos=qos, wait=False) for i in range(500)]
    for info in infos:
        info.wait_for_publish(WAIT)
    got = [int(m.payload) for m in sub.get_many(500)]
    assert got == list(range(500))


@pytest.mark.parametrize("version", [gmqtt.constants.MQTTv311, gmqtt.constants.MQTTv50], ids=["v311", "v5"])
@pytest.mark.parametrize("qos", [0, 1, 2])
async def test_gmqtt_round_trip(broker: Broker, version: int, qos: int) -> None:
    topic = f"gm/{uid()}/{qos}"
    received: asyncio.Queue[tuple[str, bytes, int, dict]] = asyncio.Queue()
    subscribed = asyncio.Event()

    def on_message(client, t, payload, q, properties):  # type: ignore[no-untyped-def]
        received.put_nowait((t, payload, q, properties))
        return 0

    def on_subscribe(client, mid, granted, properties):  # type: ignore[no-untyped-def]
        subscribed.set()

    sub = gmqtt.Client(f"gs{uid()}")
    sub.on_message = on_message
    sub.on_subscribe = on_subscribe
    pub = gmqtt.Client(f"gp{uid()}")
    await asyncio.wait_for(sub.connect(broker.host, broker.port, version=version), WAIT)
    await asyncio.wait_for(pub.connect(broker.host, broker.port, version=version), WAIT)
    try:
        sub.subscribe(topic, qos=qos)
        await asyncio.wait_for(subscribed.wait(), WAIT)
        payloads = [b"", bytes(range(256)), b"\x00" * 1000, "ünïcode".encode()]
        for p in payloads:
            pub.publish(topic, p, qos=qos)
        got = [await asyncio.wait_for(received.get(), WAIT) for _ in payloads]
        assert [g[1] for g in got] == payloads
        assert {g[0] for g in got} == {topic}
        assert {g[2] for g in got} == {qos}
    finally:
        await asyncio.wait_for(sub.disconnect(), WAIT)
        await asyncio.wait_for(pub.disconnect(), WAIT)


async def test_gmqtt_v5_user_properties(broker: Broker) -> None:
    topic = f"gmp/{uid()}"
    received: asyncio.Queue[dict] = asyncio.Queue()
    subscribed = asyncio.Event()
    sub = gmqtt.Client(f"gs{uid()}")
    sub.on_message = lambda c, t, p, q, props: received.put_nowait(props) or 0
    sub.on_subscribe = lambda c, mid, granted, props: subscribed.set()
    pub = gmqtt.Client(f"gp{uid()}")
    await asyncio.wait_for(sub.connect(broker.host, broker.port), WAIT)
    await asyncio.wait_for(pub.connect(broker.host, broker.port), WAIT)
    try:
        sub.subscribe(topic, qos=1)
        await asyncio.wait_for(subscribed.wait(), WAIT)
        pub.publish(topic, b"p", qos=1, user_property=[("a", "1"), ("a", "2"), ("b", "3")],
                    content_type="text/plain")
        props = await asyncio.wait_for(received.get(), WAIT)
        assert props.get("user_property") == [("a", "1"), ("a", "2"), ("b", "3")]
        assert props.get("content_type") == ["text/plain"]
    finally:
        await asyncio.wait_for(sub.disconnect(), WAIT)
        await asyncio.wait_for(pub.disconnect(), WAIT)
