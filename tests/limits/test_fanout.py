"""Fan-out limits over real sockets on a real Redis: ``MaxGroupFanout``, ``MaxPersistentFanout`` and
``MaxPersistentFanoutBytes`` (BifroMQ's meaning: targets beyond the limit are dropped, the publish still
succeeds). Each subscriber also subscribes to a topic of its own; a sentinel published there after the
message tells, without waiting on a timeout, whether the message reached it. The cut targets are counted in
the worker's published counters (``dropped_group_fanout``, ``dropped_persistent_fanout[_bytes]``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from redis import Redis

from tests.conformance import wire
from tests.fixtures.brokers import Broker
from tests.limits.helpers import SESSION_EXPIRY, uid, until, worker_stats

pytestmark = pytest.mark.redis

EXPIRY = wire.props((SESSION_EXPIRY, 600))
Settings = Callable[..., None]


async def _reached(c5: Any, filters: list[str], *, persistent: bool, payload: bytes, topic: str) -> int:
    """Subscribers (one per filter) and how many got ``payload`` published once on ``topic``."""
    subs = []
    for flt in filters:
        sub = await c5(clean=not persistent, props=EXPIRY if persistent else b"\x00")
        own = f"own/{uid()}"
        assert await sub.subscribe((flt, 1), (own, 1)) == [1, 1]
        subs.append((sub, own))
    pub = await c5()
    assert await pub.publish(topic, payload, qos=1) == 0  # the publish succeeds, whatever was cut
    got = 0
    for sub, own in subs:
        before = await sub.until_sentinel(pub, own)
        got += sum(1 for m in before if m.payload == payload)
    return got


def _counter(r: Redis, worker_id: str, name: str, at_least: int) -> None:
    until(lambda: worker_stats(r, worker_id).get(name, 0) >= at_least, 10.0, f"{name} >= {at_least}")


async def test_max_persistent_fanout_drops_the_extra_sessions(worker: Broker, settings: Settings, c5: Any,
                                                              r: Redis, worker_id: str) -> None:
    before = worker_stats(r, worker_id).get("dropped_persistent_fanout", 0)
    settings(MaxPersistentFanout=2)
    topic = f"f/{uid()}"
    assert await _reached(c5, [topic] * 3, persistent=True, payload=b"m", topic=topic) == 2
    _counter(r, worker_id, "dropped_persistent_fanout", before + 1)


async def test_max_persistent_fanout_bytes_keeps_the_first_copy_only(worker: Broker, settings: Settings,
                                                                     c5: Any, r: Redis, worker_id: str) -> None:
    before = worker_stats(r, worker_id).get("dropped_persistent_fanout_bytes", 0)
    settings(MaxPersistentFanoutBytes=10)
    topic = f"f/{uid()}"  # one copy is more than 10 bytes: the first is kept (nothing spent yet), no other
    assert await _reached(c5, [topic] * 3, persistent=True, payload=b"0123456789", topic=topic) == 1
    _counter(r, worker_id, "dropped_persistent_fanout_bytes", before + 2)


async def test_max_group_fanout_reaches_that_many_shared_groups(worker: Broker, settings: Settings, c5: Any,
                                                                r: Redis, worker_id: str) -> None:
    before = worker_stats(r, worker_id).get("dropped_group_fanout", 0)
    settings(MaxGroupFanout=1)
    topic = f"f/{uid()}"
    groups = [f"$share/g{i}/{topic}" for i in range(3)]
    assert await _reached(c5, groups, persistent=False, payload=b"m", topic=topic) == 1
    _counter(r, worker_id, "dropped_group_fanout", before + 2)


async def test_plain_subscribers_are_not_group_fanout(worker: Broker, settings: Settings, c5: Any) -> None:
    """Non-shared transient subscribers count against no fan-out limit."""
    settings(MaxGroupFanout=1, MaxPersistentFanout=1)
    topic = f"f/{uid()}"
    assert await _reached(c5, [topic] * 3, persistent=False, payload=b"m", topic=topic) == 3
