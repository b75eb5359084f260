"""QoS 2 exactly once when the publisher's worker dies between routing a message and its PUBREC.

The publisher's session records the packet id and a token before the message is routed (``q2_begin``);
the ``d<pid>`` mark that says "every delivery went out" is written just before the PUBREC. A worker that
dies in between leaves the id without its mark, so the client's resend is routed again: every inbox and
every live connection that got the message must recognise its token and not get it twice. The crash is
reproduced exactly by deleting the mark, on two real workers of one Redis (single node and cluster).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from tests.conformance import wire
from tests.e2e.conftest import Deployment
from tidemq.auth.base import DEFAULT_USER
from tidemq.store import keys
from tidemq.store.keys import session_name

pytestmark = [
    pytest.mark.parametrize("_deployment", ["redis", "cluster"], indirect=True, scope="module"),
    pytest.mark.timeout(60),
]

V5 = 5
EXPIRY = wire.props((0x11, 600))  # Session Expiry Interval: a persistent session


def _client(deployment: Deployment) -> Any:
    url = str(deployment.workers[0].redis_url)
    if url.startswith("redis+cluster"):
        return redis.RedisCluster.from_url(url.replace("redis+cluster", "redis"))
    return redis.Redis.from_url(url)


async def _subscriber(host: str, port: int, cid: str, topic: str, *, persistent: bool) -> wire.RawClient:
    c = await wire.RawClient.connected(host, port, cid, version=V5, clean=not persistent,
                                       properties=EXPIRY if persistent else b"\x00")
    await c.send(wire.subscribe(1, (topic, 2), version=V5))
    await c.read_type(wire.SUBACK)
    return c


async def _received(c: wire.RawClient, within: float) -> list[bytes]:
    """Payloads of the PUBLISHes that arrive within ``within`` s (each completed: PUBREC, PUBREL, PUBCOMP)."""
    got: list[bytes] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (left := deadline - loop.time()) > 0:
        try:
            p = await c.read(within=left)
        except TimeoutError:
            break
        if p.type == wire.PUBLISH:
            _topic, payload, _qos, pid, _dup = wire.parse_publish(p, V5)
            got.append(payload)
            await c.send(wire.pubrec(pid or 0, V5))
        elif p.type == wire.PUBREL:
            await c.send(wire.pubcomp(p.pid, V5))
    return got


async def test_resend_after_a_lost_confirmation_reaches_everyone_once(deployment: Deployment) -> None:
    w = deployment.workers
    topic = f"q2/{wire.TIMEOUT:.0f}/{id(deployment)}/{asyncio.get_running_loop().time():.6f}"
    clean = await _subscriber(w[1].host, w[1].port, "q2-clean", topic, persistent=False)
    durable = await _subscriber(w[2].host, w[2].port, "q2-durable", topic, persistent=True)
    pub = await wire.RawClient.connected(w[0].host, w[0].port, "q2-pub", version=V5, clean=False,
                                         properties=EXPIRY)
    await pub.send(wire.publish(topic, b"once", qos=2, pid=7, version=V5))
    assert (await pub.read_type(wire.PUBREC)).pid == 7
    first = await asyncio.gather(_received(clean, 3), _received(durable, 3))
    assert first == [[b"once"], [b"once"]]
    # the worker "died" after routing but before its confirmation: the mark is gone, the id is still there
    r = _client(deployment)
    try:
        q2in = keys.q2in("DevOnly", session_name(DEFAULT_USER, "q2-pub"))
        assert r.srem(q2in, "d7") == 1 and r.sismember(q2in, "7")
    finally:
        r.close()
    # ... and the publisher reconnects to another worker, resumes its session and resends (no PUBREL yet)
    await pub.close()
    pub = await wire.RawClient.connected(w[1].host, w[1].port, "q2-pub", version=V5, clean=False,
                                         properties=EXPIRY)
    await pub.send(wire.publish(topic, b"once", qos=2, pid=7, dup=True, version=V5))
    assert (await pub.read_type(wire.PUBREC)).pid == 7
    again = await asyncio.gather(_received(clean, 3), _received(durable, 3))
    assert again == [[], []]  # routed again, delivered to nobody twice
    await pub.send(wire.pubrel(7, V5))
    assert (await pub.read_type(wire.PUBCOMP)).pid == 7
    for c in (clean, durable, pub):
        await c.close()
