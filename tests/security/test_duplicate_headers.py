"""Identity headers given twice: 400 with a one-line reason, never "first wins".

Attack: a request carries ``tenant_id`` twice, or as ``tenant_id`` and ``Tenant-Id`` (likewise user_id,
client_id, client_type, client_meta_*, the token), hoping a proxy checks one copy and the API acts on the
other. The API must refuse it before touching the store: a subscriber in either tenant receives nothing,
and a well-formed request right after is served.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.fixtures.brokers import Broker, BrokerProcess
from tests.interop.clients import Paho, uid
from tests.security.conftest import redis_url_of

pytestmark = pytest.mark.redis


@pytest.fixture
def api(launch: Callable[..., BrokerProcess], redis_server: Any) -> httpx.Client:
    proc = launch("api", "--redis-url", redis_url_of(redis_server))
    return httpx.Client(base_url=f"http://127.0.0.1:{proc.port}", timeout=10)


def pub(tenant: str, topic: str) -> list[tuple[str, str]]:
    return [("tenant_id", tenant), ("topic", topic), ("qos", "1"), ("client_type", "test")]


@pytest.mark.parametrize("dup", [
    [("Tenant-Id", "{victim}")],
    [("tenant_id", "{victim}")],
    [("TENANT_ID", "{victim}")],
    [("Topic", "other/topic")],
    [("client-type", "admin")],
    [("client_meta_role", "a"), ("Client-Meta-Role", "b")],
    [("Authorization", "Bearer a"), ("authorization", "Bearer b")],
])
def test_duplicate_header_is_400_and_nothing_is_published(api: httpx.Client, worker_broker: Broker,
                                                          dup: list[tuple[str, str]]) -> None:
    attacker, victim = f"a{uid()}", f"v{uid()}"
    topic = f"dup/{uid()}"
    subs = []
    try:
        for tenant in (attacker, victim):
            sub = Paho(worker_broker, protocol="v5", username=f"{tenant}/u")
            subs.append(sub)
            sub.connect()
            sub.subscribe(topic, 1)
        headers = pub(attacker, topic) + [(k, v.format(victim=victim)) for k, v in dup]
        with api:
            r = api.post("/pub", headers=headers, content=b"forged")
            assert r.status_code == 400, r.text
            assert "given more than once" in r.text and "\n" not in r.text.strip()
            # still serving: the well-formed request goes through, and is the only thing delivered
            for sub, tenant in zip(subs, (attacker, victim), strict=True):
                assert api.post("/pub", headers=pub(tenant, topic), content=b"real").text == "OK"
                msg = sub.get()
                assert msg.payload == b"real"
    finally:
        for sub in subs:
            sub.close()


@pytest.mark.parametrize(("path", "method", "base"), [
    ("/session", "GET", [("tenant_id", "t"), ("user_id", "u"), ("client_id", "c")]),
    ("/sessions", "GET", [("tenant_id", "t")]),
    ("/kill", "DELETE", [("tenant_id", "t"), ("client_type", "x"), ("user_id", "u")]),
    ("/sub", "PUT", [("tenant_id", "t"), ("user_id", "u"), ("client_id", "c"), ("topic_filter", "a"),
                     ("sub_qos", "0")]),
])
def test_every_identity_header_is_checked(api: httpx.Client, path: str, method: str,
                                          base: list[tuple[str, str]]) -> None:
    with api:
        for name, _value in base:
            spelled = name.replace("_", "-").title()
            r = api.request(method, path, headers=[*base, (spelled, "other")])
            assert r.status_code == 400, (path, name, r.text)
            assert r.text == f"header {name} given more than once"
        assert api.request(method, path, headers=base).status_code in (200, 404)
