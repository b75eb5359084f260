"""The static-file provider end to end: a worker with ``TIDEMQ_AUTH_PROVIDER=file`` and a JSON users/ACL file
(passwords hashed with ``tidemq.auth.passwd``), MQTT 5 and 3.1.1 clients on real sockets, and an API process
with the same provider settings deciding ``PUT /sub``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from tests.fixtures.brokers import BrokerProcess, free_port
from tests.interop.clients import Paho, sentinel_barrier
from tests.limits.helpers import connect311, open5, redis_url, subscribe311, uid

pytestmark = pytest.mark.redis

PW = b"alice-pw"


async def test_passwords(file_worker) -> None:
    await open5(file_worker, f"c{uid()}", username="alice", password=b"wrong", expect=0x86)
    await open5(file_worker, f"c{uid()}", username="alice", expect=0x86)  # no password
    await open5(file_worker, f"c{uid()}", username="nobody", password=PW, expect=0x86)
    await open5(file_worker, f"c{uid()}", username="other/alice", password=PW, expect=0x86)  # no such tenant
    _, code = await connect311(file_worker, f"c{uid()}", username="alice", password=b"wrong")
    assert code == 0x04  # bad user name or password
    ok = await open5(file_worker, f"c{uid()}", username="alice", password=PW)
    await ok.close()
    ok2 = await open5(file_worker, f"c{uid()}", username="acme/alice", password=PW)  # tenant/user form
    await ok2.close()
    c, code = await connect311(file_worker, f"c{uid()}", username="alice", password=PW)
    assert code == 0
    await c.close()


async def test_subscribe_acl_v5_and_v311(file_worker) -> None:
    c = await open5(file_worker, f"c{uid()}", username="alice", password=PW)
    codes = await c.subscribe(("users/alice/#", 1), ("users/bob/#", 1), ("devices/+/status", 1),
                              ("internal/x", 0), ("shared/a", 1), ("devices/#", 0), ("$share/g/users/alice/x", 0))
    assert codes == [1, 0x87, 1, 0x87, 1, 0x87, 0]  # Not Authorized where no rule allows
    raw, code = await connect311(file_worker, f"c{uid()}", username="alice", password=PW)
    assert code == 0
    assert await subscribe311(raw, 1, ("users/bob/#", 1), ("users/alice/x", 1)) == [0x80, 1]
    await raw.close()
    await c.close()


async def test_publish_acl_v5_puback_0x87_and_client_id_pattern(file_worker) -> None:
    watcher = await open5(file_worker, f"w{uid()}", username="alice", password=PW)
    assert await watcher.subscribe(("devices/+/status", 1)) == [1]
    dev = f"d{uid()}"
    sensor = await open5(file_worker, dev, username="sensor", password=b"sensor-pw")
    assert await sensor.publish(f"devices/{dev}/status", b"mine", qos=1) == 0
    assert await sensor.publish("devices/other/status", b"not mine", qos=1) == 0x87
    await sensor.publish("devices/other/status", b"not mine q0")  # QoS 0: dropped, no answer
    got = await watcher.until_sentinel(sensor, f"devices/{dev}/status")
    assert [(m.topic, m.payload) for m in got] == [(f"devices/{dev}/status", b"mine")]
    # %c in a subscribe rule: the sensor may read its own commands only
    assert await sensor.subscribe((f"devices/{dev}/cmd", 1), ("devices/other/cmd", 1)) == [1, 0x87]
    for c in (watcher, sensor):
        await c.close()


def test_publish_denied_is_silently_dropped_for_v311(file_worker) -> None:
    dev = f"d{uid()}"
    watcher = Paho(file_worker, username="root", password="root-pw", protocol="v311")
    sensor = Paho(file_worker, dev, username="sensor", password="sensor-pw", protocol="v311")
    try:
        watcher.connect()
        sensor.connect()
        assert watcher.subscribe("devices/#", 1) == [1]  # a superuser may subscribe anywhere
        sensor.publish("devices/other/status", b"denied", qos=1)  # acknowledged, never routed
        sensor.publish(f"devices/{dev}/status", b"allowed", qos=1)
        before = sentinel_barrier(sensor, watcher, f"devices/{dev}/status")
        assert [m.payload for m in before] == [b"allowed"]
    finally:
        watcher.close()
        sensor.close()


async def test_api_put_sub_uses_the_same_provider(file_worker, file_env, redis_server, tmp_path: Path) -> None:
    cid = f"a{uid()}"
    c = await open5(file_worker, cid, username="alice", password=PW)
    port = free_port()
    argv = [sys.executable, "-m", "tidemq.cli", "api", "--host", "127.0.0.1", "--api-port", str(port),
            "--redis-url", redis_url(redis_server)]
    api = BrokerProcess("api", argv, port=port, api_port=port, log_path=tmp_path / "api.log", env=file_env)
    api.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as http:
            def put(flt: str) -> httpx.Response:
                return http.put("/sub", headers={"tenant_id": "acme", "user_id": "alice", "client_id": cid,
                                                 "topic_filter": flt, "sub_qos": "1"})

            denied = put("users/bob/#")
            assert denied.status_code == 401, denied.text
            assert put("internal/#").status_code == 401
            allowed = put("users/alice/inbox")
            assert allowed.status_code == 200, allowed.text
            assert allowed.text == "OK"
    finally:
        api.stop()
    pub = await open5(file_worker, f"r{uid()}", username="root", password=b"root-pw")
    got = await c.until_sentinel(pub, "users/alice/inbox")  # the API's subscription is live
    assert got == []
    await pub.close()
    await c.close()
