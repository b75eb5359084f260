"""The webhook provider end to end: a worker with ``TIDEMQ_AUTH_PROVIDER=webhook`` asking a local HTTP service
(``conftest.decide``) about every connect, publish and subscribe; denials and a failing service (HTTP 500) refuse.
"""

from __future__ import annotations

import pytest

from tests.interop.clients import Paho, sentinel_barrier
from tests.limits.helpers import connect311, open5, uid

pytestmark = pytest.mark.redis


async def test_connect_decisions(webhook_worker, webhook) -> None:
    await open5(webhook_worker, f"c{uid()}", username="good", password=b"nope", expect=0x86)
    await open5(webhook_worker, f"c{uid()}", username="boom", password=b"pw", expect=0x87)  # HTTP 500: fail closed
    _, code = await connect311(webhook_worker, f"c{uid()}", username="good", password=b"nope")
    assert code == 0x04
    cid = f"c{uid()}"
    ok = await open5(webhook_worker, cid, username="good", password=b"pw")
    await ok.close()
    asked = [q for q in webhook.asked("connect") if q["client_id"] == cid]
    assert asked and asked[0]["username"] == "good" and asked[0]["password"] == "pw"
    assert asked[0]["protocol_level"] == 5


async def test_publish_and_subscribe_decisions(webhook_worker, webhook) -> None:
    dev = f"d{uid()}"
    c = await open5(webhook_worker, dev, username="good", password=b"pw")
    assert await c.subscribe((f"devices/{dev}/#", 1), ("devices/other/#", 1), ("open/x", 0)) == [1, 0x87, 0]
    assert await c.publish("devices/other/cmd", b"denied", qos=1) == 0x87
    assert await c.publish(f"devices/{dev}/cmd", b"allowed", qos=1) == 0
    got = await c.until_sentinel(c, f"devices/{dev}/cmd")
    assert [m.payload for m in got] == [b"allowed"]
    subs = [q for q in webhook.asked("subscribe") if q["client_id"] == dev]
    assert {q["topic_filter"] for q in subs} >= {f"devices/{dev}/#", "devices/other/#"}
    assert all(q["tenant_id"] == "hook" and q["user_id"] == "good" for q in subs)
    await c.close()


def test_v311_denied_publish_dropped(webhook_worker) -> None:
    scid = f"s{uid()}"
    sub = Paho(webhook_worker, scid, username="dev", password="pw", protocol="v311")
    pub = Paho(webhook_worker, f"p{uid()}", username="dev", password="pw", protocol="v311")
    try:
        sub.connect()
        pub.connect()
        assert sub.subscribe(f"devices/{scid}/#", 1) == [1]
        assert sub.subscribe("open/#", 1) == [1]
        assert sub.subscribe("devices/#", 1) == [0x80]
        pub.publish(f"devices/{scid}/x", b"denied", qos=1)  # not the publisher's device: acked, never routed
        pub.publish("open/x", b"fine", qos=1)
        before = sentinel_barrier(pub, sub, "open/sentinel")
        assert [m.payload for m in before] == [b"fine"]
    finally:
        sub.close()
        pub.close()
