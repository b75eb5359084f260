"""``PUT /sub`` on an online session behaves like a SUBSCRIBE: matching retained messages are delivered.

Real worker process, real HTTP, real Redis. Retained messages come through the
owning worker (a ``Subscribed`` signal): directly for a clean session, through the
inbox for a persistent one; Retain Handling 2 of an existing subscription and
shared filters replay nothing; an offline persistent session gets nothing queued
(BifroMQ's ``PUT /sub`` reaches online sessions only).
"""

from __future__ import annotations

import pytest
from paho.mqtt.subscribeoptions import SubscribeOptions

from tests.api.conftest import pub_headers, session_headers
from tests.interop.clients import uid

pytestmark = pytest.mark.redis


def put_sub(api, tenant, user, client, topic_filter, qos=1):
    r = api.request("PUT", "/sub", session_headers(tenant, user, client, topic_filter=topic_filter,
                                                    sub_qos=str(qos)))
    assert r.status_code == 200, r.text
    return r.text


def retain(api, tenant, topic, body, qos=1):
    assert api.request("POST", "/retain", pub_headers(tenant, topic, qos=qos), body).text == "RETAINED"


@pytest.mark.parametrize("persistent", [False, True], ids=["clean", "persistent"])
def test_put_sub_online_delivers_matching_retained(api, mqtt, tenant, persistent):
    base = uid()
    retain(api, tenant, f"{base}/a", b"ra", qos=1)
    retain(api, tenant, f"{base}/b", b"rb", qos=0)
    retain(api, tenant, f"other{base}/c", b"no")
    kw = {"clean": False, "session_expiry": 300} if persistent else {}
    c = mqtt(tenant, "ana", **kw)
    assert put_sub(api, tenant, "ana", c.client_id, f"{base}/+", qos=1) == "OK"
    got = sorted((m.topic, m.payload, m.qos, m.retain) for m in c.get_many(2))
    assert got == [(f"{base}/a", b"ra", 1, True), (f"{base}/b", b"rb", 0, True)]
    # and the subscription is live for later publishes too
    assert api.request("POST", "/pub", pub_headers(tenant, f"{base}/a"), b"live").text == "OK"
    m = c.get()
    assert (m.payload, m.retain) == (b"live", False)
    assert c.drain() == []


def test_put_sub_again_keeps_retain_handling_of_the_subscription(api, mqtt, tenant):
    base = uid()
    retain(api, tenant, f"{base}/never", b"old")
    retain(api, tenant, f"{base}2/fresh", b"fresh")
    c = mqtt(tenant, "bo")
    _rc, mid = c.client.subscribe([(f"{base}/+", SubscribeOptions(qos=1, retainHandling=2))])
    with c._suback_event:
        assert c._suback_event.wait_for(lambda: mid in c._subacks, 10)
    assert put_sub(api, tenant, "bo", c.client_id, f"{base}/+", qos=1) == "EXISTS"  # Retain Handling 2 kept
    assert put_sub(api, tenant, "bo", c.client_id, f"{base}2/+", qos=1) == "OK"  # a new one: replayed
    m = c.get()
    assert (m.topic, m.payload, m.retain) == (f"{base}2/fresh", b"fresh", True)
    assert api.request("POST", "/pub", pub_headers(tenant, f"{base}/never"), b"live").text == "OK"
    assert c.get().payload == b"live"  # not b"old"
    body = api.request("GET", "/session", session_headers(tenant, "bo", c.client_id)).json()
    assert {s["topicFilter"]: s["retainHandling"] for s in body["subscriptions"]} == {f"{base}/+": 2, f"{base}2/+": 0}


def test_put_sub_shared_filter_replays_nothing(api, mqtt, tenant):
    base = uid()
    retain(api, tenant, f"{base}/x", b"old")
    c = mqtt(tenant, "cy")
    assert put_sub(api, tenant, "cy", c.client_id, f"$share/g/{base}/+") == "OK"
    assert api.request("POST", "/pub", pub_headers(tenant, f"{base}/x"), b"live").text == "OK"
    assert c.get().payload == b"live"
    assert put_sub(api, tenant, "cy", c.client_id, f"{base}/x") == "OK"  # barrier: this one replays
    m = c.get()
    assert (m.payload, m.retain) == (b"old", True)
    assert c.drain() == []


def test_put_sub_offline_persistent_queues_no_retained(api, mqtt, tenant):
    base = uid()
    cid = f"p{uid()}"
    retain(api, tenant, f"{base}/x", b"old")
    mqtt(tenant, "di", client_id=cid, clean=False, session_expiry=600).disconnect()
    assert put_sub(api, tenant, "di", cid, f"{base}/+") == "OK"
    again = mqtt(tenant, "di", client_id=cid, clean=False, session_expiry=600)
    assert api.request("POST", "/pub", pub_headers(tenant, f"{base}/x"), b"live").text == "OK"
    m = again.get()
    assert (m.payload, m.retain) == (b"live", False)  # the first thing it gets is the live message
