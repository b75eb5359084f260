"""``POST /pub`` over HTTP against a worker process on real Redis: what the subscribers receive."""

from __future__ import annotations

import os

import pytest

from tests.api.conftest import pub_headers
from tests.interop.clients import uid

pytestmark = pytest.mark.redis


def test_pub_reaches_online_subscriber_byte_exact(api, mqtt, tenant):
    sub = mqtt(tenant)
    topic = f"a/{uid()}"
    sub.subscribe(topic, qos=1)
    payload = os.urandom(2048) + b"\x00\xff"
    r = api.request("POST", "/pub", pub_headers(tenant, topic, qos=1), payload)
    assert r.status_code == 200, r.text
    assert r.text == "OK"
    msg = sub.get()
    assert msg.topic == topic
    assert msg.payload == payload
    assert msg.qos == 1
    assert not msg.retain


def test_pub_qos_is_min_of_pub_and_sub(api, mqtt, tenant):
    sub = mqtt(tenant, protocol="v311")
    topic = f"q/{uid()}"
    sub.subscribe(topic, qos=0)
    assert api.request("POST", "/pub", pub_headers(tenant, topic, qos=2), b"x").text == "OK"
    assert sub.get().qos == 0


def test_pub_no_match(api, tenant):
    r = api.request("POST", "/pub", pub_headers(tenant, "nobody/listens"), b"x")
    assert r.status_code == 200
    assert r.text == "NO_MATCH"


def test_pub_empty_payload(api, mqtt, tenant):
    sub = mqtt(tenant)
    topic = f"e/{uid()}"
    sub.subscribe(topic, qos=1)
    assert api.request("POST", "/pub", pub_headers(tenant, topic), b"").text == "OK"
    assert sub.get().payload == b""


def test_pub_wildcard_subscriber_and_expiry_property(api, mqtt, tenant):
    sub = mqtt(tenant)
    base = uid()
    sub.subscribe(f"{base}/#", qos=1)
    r = api.request("POST", "/pub", pub_headers(tenant, f"{base}/x/y", expiry_seconds="120"), b"exp")
    assert r.text == "OK"
    msg = sub.get()
    assert msg.payload == b"exp"
    expiry = getattr(msg.properties, "MessageExpiryInterval", None)
    assert expiry is not None and 0 < expiry <= 120


def test_pub_tenant_isolation(api, mqtt, tenant):
    other = f"{tenant}x"
    topic = f"iso/{uid()}"
    mine = mqtt(tenant)
    theirs = mqtt(other)
    mine.subscribe(topic, qos=1)
    theirs.subscribe(topic, qos=1)
    assert api.request("POST", "/pub", pub_headers(tenant, topic), b"for-me").text == "OK"
    assert mine.get().payload == b"for-me"
    # a barrier on the other tenant: anything of ours would have arrived before it
    assert api.request("POST", "/pub", pub_headers(other, topic), b"barrier").text == "OK"
    assert theirs.get().payload == b"barrier"
    assert theirs.drain() == []


def test_pub_to_offline_persistent_session_inbox(api, mqtt, tenant):
    cid = f"p{uid()}"
    topic = f"inbox/{uid()}"
    first = mqtt(tenant, client_id=cid, clean=False, session_expiry=300)
    first.subscribe(topic, qos=1)
    first.disconnect()
    assert api.request("POST", "/pub", pub_headers(tenant, topic, qos=1), b"queued").text == "OK"
    again = mqtt(tenant, client_id=cid, clean=False, session_expiry=300)
    assert again.connack is not None and again.connack.session_present
    msg = again.get()
    assert msg.payload == b"queued"
    assert msg.qos == 1


def test_pub_client_meta_and_dash_headers(api, mqtt, tenant):
    sub = mqtt(tenant)
    topic = f"m/{uid()}"
    sub.subscribe(topic, qos=1)
    headers = {"Tenant-Id": tenant, "TOPIC": topic, "QoS": "1", "Client-Type": "svc", "client_meta_region": "eu",
               "Client-Meta-Zone": "a"}
    assert api.request("POST", "/pub", headers, b"dash").text == "OK"
    assert sub.get().payload == b"dash"


@pytest.mark.parametrize(("headers", "needle"), [
    ({"topic": "a"}, "missing header: tenant_id"),
    ({"tenant_id": "t"}, "missing header: topic"),
    ({"tenant_id": "t", "topic": "a"}, "missing header: qos"),
    ({"tenant_id": "t", "topic": "a", "qos": "1"}, "missing header: client_type"),
    ({"tenant_id": "", "topic": "a", "qos": "1", "client_type": "x"}, "missing header: tenant_id"),
    ({"tenant_id": "t", "topic": "a", "qos": "3", "client_type": "x"}, "qos must be 0, 1 or 2"),
    ({"tenant_id": "t", "topic": "a", "qos": "one", "client_type": "x"}, "qos must be 0, 1 or 2"),
    ({"tenant_id": "t", "topic": "a/+", "qos": "1", "client_type": "x"}, "topic must not contain wildcards"),
    ({"tenant_id": "t", "topic": "a/#", "qos": "1", "client_type": "x"}, "topic must not contain wildcards"),
    ({"tenant_id": "t", "topic": "$share/g/a", "qos": "1", "client_type": "x"}, "$share/"),
    ({"tenant_id": "t", "topic": "/".join("x" * 17), "qos": "1", "client_type": "x"}, "levels"),
    ({"tenant_id": "t", "topic": "a", "qos": "1", "client_type": "x", "expiry_seconds": "0"}, "expiry_seconds"),
    ({"tenant_id": "t", "topic": "a", "qos": "1", "client_type": "x", "expiry_seconds": "-5"}, "expiry_seconds"),
    ({"tenant_id": "t", "topic": "a", "qos": "1", "client_type": "x", "expiry_seconds": "1.5"}, "expiry_seconds"),
])
def test_pub_400(api, headers, needle):
    r = api.request("POST", "/pub", headers, b"x")
    assert r.status_code == 400
    assert needle in r.text
    assert "\n" not in r.text.strip()
    assert r.headers["content-type"].startswith("text/plain")


def test_pub_413_over_max_payload(api_factory, tenant):
    api = api_factory(max_payload=1024)
    assert api.request("POST", "/pub", pub_headers(tenant, "big"), b"x" * 1024).status_code == 200
    r = api.request("POST", "/pub", pub_headers(tenant, "big"), b"x" * 1025)
    assert r.status_code == 413
    r = api.request("POST", "/pub", pub_headers(tenant, "big"), b"x" * (1024 + 200 * 1024))
    assert r.status_code == 413
    r = api.request("POST", "/pub", pub_headers(tenant, "big"), b"x" * (5 * 1024 * 1024))  # Sanic's own cap
    assert r.status_code == 413
    assert r.text.startswith("body larger")
    int(r.headers["req_id"])


def test_pub_413_tenant_setting(api, tenant, redis_server):
    import redis as redis_sync

    from tidemq.store import keys

    client = redis_sync.Redis.from_url(redis_server.url)
    try:
        client.hset(keys.tenant_settings(tenant), "MaxUserPayloadBytes", "10")
    finally:
        client.close()
    assert api.request("POST", "/pub", pub_headers(tenant, "small"), b"x" * 10).status_code == 200
    assert api.request("POST", "/pub", pub_headers(tenant, "small"), b"x" * 11).status_code == 413


def test_pub_caller_identity_is_logged_without_payload(api, tenant, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="tidemq.api"):
        r = api.request("POST", "/pub", {"tenant_id": tenant, "topic": "audit/t", "qos": "0",
                                          "client_type": "billing", "client_meta_region": "eu"},
                        b"very-secret-payload")
    assert r.status_code == 200
    recs = [rec for rec in caplog.records if getattr(rec, "event", None) == "api_pub"]
    assert recs, "the in-process API logs one audit line per /pub"
    rec = recs[-1]
    assert (rec.tenant, rec.client_type, rec.client_meta) == (tenant, "billing", {"region": "eu"})
    assert "very-secret-payload" not in rec.getMessage()
