"""When Redis goes away, a worker never acknowledges what it could not store.

MQTT 5 publishers get PUBACK 0x80 (unspecified error); MQTT 3.1.1 has no failure PUBACK, so the
connection is closed without one and the client resends after reconnecting. The worker process
itself keeps running, and serves again once Redis is back.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conformance import wire
from tests.fixtures.brokers import BrokerProcess, worker_process
from tests.fixtures.redis_servers import _stop

pytestmark = [pytest.mark.tidemq_only, pytest.mark.redis]


def _redis_again(port: int, workdir: Path) -> subprocess.Popen:
    """A fresh redis-server on the port the first one had."""
    return subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def worker(tmp_path: Path, own_redis: tuple[int, subprocess.Popen]) -> Iterator[BrokerProcess]:
    proc = worker_process(tmp_path, f"redis://127.0.0.1:{own_redis[0]}/0")
    proc.start()
    proc.wait_ready()
    yield proc
    proc.stop()


async def test_publishes_are_never_acknowledged_without_the_store(worker, own_redis, tmp_path) -> None:
    host, port = "127.0.0.1", worker.port
    v3 = await wire.RawClient.connected(host, port, "outage-v3", version=4)
    v5 = await wire.RawClient.connected(host, port, "outage-v5", version=5)
    await v3.send(wire.publish("o/t", b"before", qos=1, pid=1))
    assert (await v3.read_type(4)).pid == 1  # PUBACK while Redis is up
    _stop(own_redis[1])  # Redis goes away
    await v5.send(wire.publish("o/t", b"lost?", qos=1, pid=2, version=5))
    ack = await v5.read_type(4, within=15)
    assert ack.pid == 2 and ack.body[2] == 0x80  # PUBACK with "unspecified error"
    await v3.send(wire.publish("o/t", b"lost?", qos=1, pid=3))
    packets = await v3.expect_close(within=15)
    assert not any(p.type == 4 for p in packets), "an MQTT 3 PUBACK for a message the store never took"
    assert worker.alive  # the worker survives the outage
    await asyncio.gather(v3.close(), v5.close())

    # Redis comes back (empty: scripts reload on NOSCRIPT); the same worker serves again
    back = _redis_again(own_redis[0], tmp_path)
    try:
        for _ in range(100):  # bounded: until a CONNECT is accepted again (no event to await)
            try:
                c = await wire.RawClient.connected(host, port, "after-outage", version=4)
                break
            except Exception:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the worker did not serve again after Redis came back")
        await c.send(wire.publish("o/t", b"after", qos=1, pid=4))
        assert (await c.read_type(4, within=15)).pid == 4
        await c.close()
    finally:
        _stop(back)
