"""Conformance fixtures: unique names per test and a well-behaved bystander connection.

The bystander connects before the test does anything and must still work after
it: a broken packet may close only the connection that sent it. ``check()``
round-trips a QoS 1 message through the bystander's own subscription and also
opens a brand-new connection, so a broker that died or wedged fails loudly.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tests.conformance import wire
from tests.fixtures.brokers import Broker

pytestmark = pytest.mark.conformance


@pytest.fixture
def uid() -> str:
    """A short unique token for client ids and topics (fits MQTT 3.1's 23-byte client ids)."""
    return uuid.uuid4().hex[:12]


class Bystander:
    def __init__(self, broker: Broker, client: wire.RawClient, topic: str) -> None:
        self.broker = broker
        self.client = client
        self.topic = topic
        self.pid = 100

    async def check(self) -> None:
        """The bystander still exchanges messages, and a new client can connect."""
        self.pid += 1
        payload = f"still-alive-{self.pid}".encode()
        await self.client.send(wire.publish(self.topic, payload, qos=1, pid=self.pid))
        seen_ack = seen_msg = False
        while not (seen_ack and seen_msg):
            p = await self.client.read()
            if p.type == wire.PUBACK:
                assert p.pid == self.pid
                seen_ack = True
            elif p.type == wire.PUBLISH:
                topic, body, qos, pid, _ = wire.parse_publish(p)
                assert (topic, body) == (self.topic, payload)
                if qos:
                    assert pid is not None
                    await self.client.send(wire.puback(pid))
                seen_msg = True
        fresh = await wire.RawClient.connected(self.broker.host, self.broker.port, f"fresh-{uuid.uuid4().hex[:8]}")
        await fresh.send(wire.pingreq())
        assert (await fresh.read()).raw == b"\xd0\x00"
        await fresh.send(wire.disconnect())
        await fresh.close()


@pytest.fixture
async def bystander(broker: Broker, uid: str) -> AsyncIterator[Bystander]:
    client = await wire.RawClient.connected(broker.host, broker.port, f"by-{uid}")
    topic = f"bystander/{uid}"
    await client.send(wire.subscribe(1, (topic, 1)))
    ack = await client.read()
    assert ack.raw == b"\x90\x03\x00\x01\x01", ack
    try:
        yield Bystander(broker, client, topic)
    finally:
        await client.close()
