"""MQTT 5 feature-test fixtures: unique names, paho-mqtt v5 clients and raw v5 connections, all closed at the end.

Tests run on the parametrized ``broker`` fixture (standalone and worker on
real Redis). ``paho5`` makes paho-mqtt 2.x clients speaking MQTT 5 with the
helpers of ``tests/interop/clients.Paho`` plus properties and subscribe
options; ``raw5`` opens ``V5`` byte-level connections (``tests/mqtt5/v5wire``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from tests.fixtures.brokers import Broker, standalone_process
from tests.interop.clients import WAIT, Paho
from tests.mqtt5.v5wire import V5


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:12]


def props(kind: int = PacketTypes.PUBLISH, **values: Any) -> Properties:
    """``props(ResponseTopic="a", UserProperty=[("k", "v")])`` -> paho ``Properties``."""
    p = Properties(kind)
    for name, value in values.items():
        setattr(p, name, value)
    return p


class Paho5(Paho):
    """A paho MQTT 5 client with properties on publish and full subscribe options."""

    def __init__(self, broker: Broker, client_id: str | None = None, **kw: Any) -> None:
        will_props = kw.pop("will_props", None)
        super().__init__(broker, client_id, protocol="v5", **kw)
        if will_props is not None and kw.get("will") is not None:
            topic, payload, qos, retain = kw["will"]
            self.client.will_set(topic, payload, qos, retain, properties=will_props)

    def sub(self, topic: str, qos: int = 0, *, no_local: bool = False, rap: bool = False, rh: int = 0,
            sub_id: int | None = None, timeout: float = WAIT) -> list[int]:
        opts = SubscribeOptions(qos=qos, noLocal=no_local, retainAsPublished=rap, retainHandling=rh)
        p = props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=sub_id) if sub_id is not None else None
        result, mid = self.client.subscribe([(topic, opts)], properties=p)
        assert result == mqtt.MQTT_ERR_SUCCESS, result
        with self._suback_event:
            if not self._suback_event.wait_for(lambda: mid in self._subacks, timeout):
                raise AssertionError(f"{self.client_id}: no SUBACK for {topic!r}")
            return self._subacks.pop(mid)

    def pub(self, topic: str, payload: bytes = b"", qos: int = 0, retain: bool = False,
            properties: Properties | None = None, timeout: float = WAIT) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, info.rc
        info.wait_for_publish(timeout)
        assert info.is_published(), f"{self.client_id}: publish to {topic!r} not acknowledged"


@pytest.fixture
def paho5(broker: Broker) -> Iterator[Callable[..., Paho5]]:
    """``paho5(client_id=None, clean=True, session_expiry=None, will=None, will_props=None)``."""
    made: list[Paho5] = []

    def make(*args: Any, on: Broker | None = None, **kw: Any) -> Paho5:
        c = Paho5(on or broker, *args, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
async def raw5(broker: Broker) -> AsyncIterator[Callable[..., Any]]:
    """``await raw5(client_id, on=None, expect=0, clean=True, keepalive=60, props=..., will=..., will_props=...)``."""
    made: list[V5] = []

    async def make(client_id: str, *, on: Broker | None = None, **kw: Any) -> V5:
        c = await V5.open5(on or broker, client_id, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        await c.close()


@pytest.fixture
def tuned(request: pytest.FixtureRequest, broker: Broker,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[dict[str, str]], Broker]]:
    """``tuned({"TIDEMQ_MAX_PACKET_SIZE": "1024"})`` -> a broker of the same kind as ``broker``
    started with that environment, stopped when the test ends."""
    started: list[Any] = []

    def make(env: dict[str, str]) -> Broker:
        if broker.kind == "worker":
            return request.getfixturevalue("worker_factory")(env=env)  # type: ignore[no-any-return]
        assert broker.kind == "standalone", broker.kind
        proc = standalone_process(tmp_path_factory.mktemp("tuned"), env=env)
        started.append(proc)
        proc.start()
        request.node._tidemq_brokers = [*getattr(request.node, "_tidemq_brokers", []), (proc, 0)]
        return Broker(host=proc.host, port=proc.port, kind=proc.kind, process=proc, api_port=proc.api_port)

    yield make
    for proc in started:
        proc.stop()
