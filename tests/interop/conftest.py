"""Interop fixtures: a factory of paho clients that are all closed when the test ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.fixtures.brokers import Broker
from tests.interop.clients import Paho

pytestmark = pytest.mark.interop


@pytest.fixture
def paho(broker: Broker) -> Iterator[Callable[..., Paho]]:
    """``paho(client_id=None, protocol="v311", clean=True, ...)`` -> an unconnected ``Paho`` on ``broker``."""
    made: list[Paho] = []

    def make(*args: object, **kwargs: object) -> Paho:
        client = Paho(broker, *args, **kwargs)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
