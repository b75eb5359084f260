"""``POST/GET/DELETE /retain``: what new subscribers receive, the tenant limit, and clean-ups."""

from __future__ import annotations

import os

import pytest
import redis as redis_sync

from tests.api.conftest import pub_headers
from tests.interop.clients import uid
from tidemq.store import keys

pytestmark = pytest.mark.redis


def retain(api, tenant, topic, body, **extra):
    return api.request("POST", "/retain", pub_headers(tenant, topic, **extra), body)


def test_retain_then_new_subscriber_receives_it(api, mqtt, tenant):
    topic = f"r/{uid()}"
    current = mqtt(tenant, "ro")
    current.subscribe(topic, qos=1)
    payload = os.urandom(300)
    r = retain(api, tenant, topic, payload, qos=1)
    assert r.status_code == 200
    assert r.text == "RETAINED"
    late = mqtt(tenant, "ro")
    late.subscribe(topic, qos=1)
    msg = late.get()
    assert (msg.payload, msg.retain, msg.qos) == (payload, True, 1)
    # /retain does not deliver to current subscribers: a /pub barrier comes first
    assert api.request("POST", "/pub", pub_headers(tenant, topic), b"barrier").text == "OK"
    assert current.get().payload == b"barrier"


def test_retain_empty_body_clears(api, mqtt, tenant):
    topic = f"r/{uid()}"
    assert retain(api, tenant, topic, b"v1").text == "RETAINED"
    assert retain(api, tenant, topic, b"").text == "CLEARED"
    sub = mqtt(tenant, "ro")
    sub.subscribe(topic, qos=1)
    assert api.request("POST", "/pub", pub_headers(tenant, topic), b"barrier").text == "OK"
    assert sub.get().payload == b"barrier"


def test_retain_disabled_401(api_factory, tenant):
    api = api_factory(retain_enabled=False)
    r = retain(api, tenant, "r/x", b"v")
    assert r.status_code == 401


def set_tenant(redis_url, tenant, **values):
    """Write tenant setting overrides (BifroMQ names) into the tenant's settings hash."""
    client = redis_sync.Redis.from_url(redis_url)
    try:
        client.hset(keys.tenant_settings(tenant), mapping={k: str(v) for k, v in values.items()})
    finally:
        client.close()


def test_retain_disabled_by_tenant_setting_401(api, tenant, redis_server):
    set_tenant(redis_server.url, tenant, RetainEnabled="false")
    assert retain(api, tenant, "r/x", b"v").status_code == 401


def test_retain_exceed_limit_400(api, tenant, redis_server):
    set_tenant(redis_server.url, tenant, RetainedTopicLimit=2)
    assert retain(api, tenant, "l/1", b"a").text == "RETAINED"
    assert retain(api, tenant, "l/2", b"b").text == "RETAINED"
    r = retain(api, tenant, "l/3", b"c")
    assert r.status_code == 400
    assert r.text == "EXCEED_LIMIT"
    assert retain(api, tenant, "l/1", b"replace").text == "RETAINED"  # a replace is always allowed
    assert retain(api, tenant, "l/2", b"").text == "CLEARED"
    assert retain(api, tenant, "l/3", b"c").text == "RETAINED"


@pytest.mark.parametrize(("extra", "needle"), [
    ({"topic": "r/+"}, "topic must not contain wildcards"),
    ({"qos": "5"}, "qos must be 0, 1 or 2"),
    ({"expiry_seconds": "0"}, "expiry_seconds"),
    ({"client_type": ""}, "missing header: client_type"),
])
def test_retain_400(api, tenant, extra, needle):
    h = {**pub_headers(tenant, "r/ok"), **extra}
    r = api.request("POST", "/retain", h, b"v")
    assert r.status_code == 400
    assert needle in r.text


def test_retain_list_paged(api, tenant):
    topics = {f"list/{i}" for i in range(7)}
    for t in topics:
        assert retain(api, tenant, t, b"v" * 5, qos=2, expiry_seconds="60").text == "RETAINED"
    seen: set[str] = set()
    cursor = None
    for _ in range(50):
        h = {"tenant_id": tenant, "limit": "3"}
        if cursor:
            h["cursor"] = cursor
        page = api.request("GET", "/retain", h).json()
        for item in page["retained"]:
            assert item["qos"] == 2 and item["payloadBytes"] == 5 and item["expiresAt"] > item["createdAt"]
            seen.add(item["topic"])
        cursor = page["cursor"]
        if cursor is None:
            break
    assert seen == topics
    assert api.request("GET", "/retain", {"tenant_id": tenant, "cursor": "x"}).status_code == 400


def test_retain_clean_up(api, tenant, redis_server):
    for i in range(3):
        assert retain(api, tenant, f"c/{i}", b"v").text == "RETAINED"
    assert retain(api, tenant, "c/expiring", b"v", expiry_seconds="1").text == "RETAINED"
    # age the "expiring" one without sleeping: rewrite its blob's expiry into the past
    from tidemq.message import pack, unpack

    client = redis_sync.Redis.from_url(redis_server.url)
    try:
        key = keys.retain(tenant)
        msg = unpack(client.hget(key, "c/expiring"))
        msg.expire_at_ms = 1
        client.hset(key, "c/expiring", pack(msg))
    finally:
        client.close()
    assert api.request("DELETE", "/retain", {"tenant_id": tenant}).json() == {"cleared": 1}
    assert api.request("DELETE", "/retain", {"tenant_id": tenant, "expiry_seconds": "3600"}).json() == {"cleared": 0}
    assert api.request("DELETE", "/retain", {"tenant_id": tenant, "expiry_seconds": "0"}).json() == {"cleared": 3}
    assert api.request("GET", "/retain", {"tenant_id": tenant}).json() == {"retained": [], "cursor": None}
    assert api.request("DELETE", "/retain", {"tenant_id": tenant, "expiry_seconds": "-1"}).status_code == 400
