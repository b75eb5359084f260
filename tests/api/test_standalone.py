"""The API inside ``tidemq standalone`` (same process as the worker, embedded store)."""

from __future__ import annotations

import httpx

from tests.api.conftest import pub_headers
from tests.interop.clients import Paho, uid


def test_standalone_pub_sub_kill(standalone_broker):
    tenant = f"t{uid()}"
    client = Paho(standalone_broker, protocol="v5", username=f"{tenant}/sa")
    try:
        client.connect()
        with httpx.Client(base_url=f"http://127.0.0.1:{standalone_broker.api_port}", timeout=10) as http:
            r = http.put("/sub", headers={"tenant_id": tenant, "user_id": "sa", "client_id": client.client_id,
                                          "topic_filter": "sa/#", "sub_qos": "1"})
            assert r.text == "OK"
            assert http.post("/pub", headers=pub_headers(tenant, "sa/1"), content=b"\x01\x02").text == "OK"
            assert client.get().payload == b"\x01\x02"
            r = http.request("DELETE", "/kill", headers={"tenant_id": tenant, "client_type": "t", "user_id": "sa"})
            assert r.json() == {"killed": 1}
            assert client.wait_disconnected() == 0x98
    finally:
        client.close()
