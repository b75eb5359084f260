"""Test-suite root: registers the shared fixture plugins and tags end-to-end tests by broker kind.

Fixtures live in ``tests/fixtures/`` (``redis_servers``: real Redis single node and cluster;
``brokers``: TideMQ standalone/worker and reference mosquitto processes). Tests that run on a
TideMQ worker get the ``redis`` marker, tests on mosquitto the ``mosquitto`` marker, so
``-m "not redis"`` and friends select what a machine can run.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.fixtures.redis_servers", "tests.fixtures.brokers"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        kind = callspec.params.get("broker") if callspec is not None else None
        if kind == "worker" or "worker_broker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.redis)
        if kind == "mosquitto" or "mosquitto_broker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.mosquitto)
