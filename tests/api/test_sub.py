"""``PUT /sub`` and ``DELETE /unsub`` on online and offline sessions, with the auth provider's say."""

from __future__ import annotations

import pytest

from tests.api.conftest import pub_headers, session_headers
from tests.interop.clients import uid
from tidemq.auth import DevOnlyProvider, Identity

pytestmark = pytest.mark.redis


def sub(api, tenant, user, client, topic_filter, qos=1):
    return api.request("PUT", "/sub", session_headers(tenant, user, client, topic_filter=topic_filter,
                                                       sub_qos=str(qos)))


def unsub(api, tenant, user, client, topic_filter):
    return api.request("DELETE", "/unsub", session_headers(tenant, user, client, topic_filter=topic_filter))


def test_sub_online_receives_next_pub(api, mqtt, tenant):
    c = mqtt(tenant, "ana")
    topic = f"live/{uid()}"
    r = sub(api, tenant, "ana", c.client_id, "live/+", qos=1)
    assert r.status_code == 200, r.text
    assert r.text == "OK"
    assert api.request("POST", "/pub", pub_headers(tenant, topic, qos=1), b"hello").text == "OK"
    msg = c.get()
    assert (msg.topic, msg.payload, msg.qos) == (topic, b"hello", 1)
    assert sub(api, tenant, "ana", c.client_id, "live/+", qos=0).text == "EXISTS"
    body = api.request("GET", "/session", session_headers(tenant, "ana", c.client_id)).json()
    assert [(s["topicFilter"], s["qos"]) for s in body["subscriptions"]] == [("live/+", 0)]


def test_sub_from_another_api_node_is_live_for_a_client_publish(api_factory, mqtt, tenant):
    a, b = api_factory(), api_factory()
    c = mqtt(tenant, "bo")
    pub = mqtt(tenant, "bo")
    assert sub(a, tenant, "bo", c.client_id, "x/y").text == "OK"
    pub.publish("x/y", b"from-mqtt", qos=1)
    assert c.get().payload == b"from-mqtt"
    assert b.request("POST", "/pub", pub_headers(tenant, "x/y"), b"from-b").text == "OK"
    assert c.get().payload == b"from-b"


def test_sub_offline_persistent_inbox_receives(api, mqtt, tenant):
    cid = f"p{uid()}"
    mqtt(tenant, "cy", client_id=cid, clean=False, session_expiry=600).disconnect()
    assert sub(api, tenant, "cy", cid, "off/#", qos=2).text == "OK"
    assert api.request("POST", "/pub", pub_headers(tenant, "off/1", qos=2), b"waiting").text == "OK"
    again = mqtt(tenant, "cy", client_id=cid, clean=False, session_expiry=600)
    msg = again.get()
    assert (msg.payload, msg.qos) == (b"waiting", 2)


def test_sub_shared_filters_accepted(api, mqtt, tenant):
    c = mqtt(tenant, "di")
    assert sub(api, tenant, "di", c.client_id, "$share/g1/sh/t").text == "OK"
    assert sub(api, tenant, "di", c.client_id, "$oshare/g2/sh/t").text == "OK"
    assert api.request("POST", "/pub", pub_headers(tenant, "sh/t"), b"shared").text == "OK"
    assert c.get().payload == b"shared"


def test_sub_no_session_404(api, mqtt, tenant):
    assert sub(api, tenant, "ed", "nobody", "a/b").status_code == 404
    c = mqtt(tenant, "ed")
    assert sub(api, tenant, "not-ed", c.client_id, "a/b").status_code == 404
    assert unsub(api, tenant, "ed", "nobody", "a/b").status_code == 404


@pytest.mark.parametrize(("topic_filter", "qos", "needle"), [
    ("a/#/b", "1", "topic_filter"),
    ("a+/b", "1", "topic_filter"),
    ("$share/g", "1", "topic_filter"),
    ("$share//a", "1", "topic_filter"),
    ("a/b", "3", "sub_qos must be 0, 1 or 2"),
    ("a/b", "", "missing header: sub_qos"),
])
def test_sub_400(api, tenant, topic_filter, qos, needle):
    r = api.request("PUT", "/sub", session_headers(tenant, "u", "c", topic_filter=topic_filter, sub_qos=qos))
    assert r.status_code == 400
    assert needle in r.text


class DenyTopic(DevOnlyProvider):
    async def check_subscribe(self, who: Identity, topic_filter: str, qos: int) -> bool:
        assert who.user_id and who.client_id and who.tenant_id
        return not topic_filter.startswith("secret/")

    async def check_unsubscribe(self, who: Identity, topic_filter: str) -> bool:
        return not topic_filter.startswith("secret/")


def test_sub_denied_by_auth_provider_401(api_factory, mqtt, tenant):
    api = api_factory(auth=DenyTopic())
    c = mqtt(tenant, "fi")
    r = sub(api, tenant, "fi", c.client_id, "secret/x")
    assert r.status_code == 401
    assert sub(api, tenant, "fi", c.client_id, "public/x").text == "OK"
    assert unsub(api, tenant, "fi", c.client_id, "secret/x").status_code == 401
    body = api.request("GET", "/session", session_headers(tenant, "fi", c.client_id)).json()
    assert [s["topicFilter"] for s in body["subscriptions"]] == ["public/x"]


def test_unsub_ok_then_no_sub(api, mqtt, tenant):
    c = mqtt(tenant, "gu")
    c.subscribe("un/t", qos=1)
    r = unsub(api, tenant, "gu", c.client_id, "un/t")
    assert r.status_code == 200
    assert r.text == "OK"
    assert unsub(api, tenant, "gu", c.client_id, "un/t").text == "NO_SUB"
    assert api.request("POST", "/pub", pub_headers(tenant, "un/t"), b"x").text == "NO_MATCH"


def test_unsub_400(api, tenant):
    r = unsub(api, tenant, "u", "c", "a/#/b")
    assert r.status_code == 400
    assert "topic_filter" in r.text
    r = api.request("DELETE", "/unsub", session_headers(tenant, "u", "c"))
    assert r.text == "missing header: topic_filter"


def test_sub_exceed_limit_per_session_400(api, mqtt, tenant, redis_server):
    import redis as redis_sync

    from tidemq.store import keys

    client = redis_sync.Redis.from_url(redis_server.url)
    try:
        client.hset(keys.tenant_settings(tenant), "MaxTopicFiltersPerInbox", "2")
    finally:
        client.close()
    c = mqtt(tenant, "hu")
    assert sub(api, tenant, "hu", c.client_id, "l/1").text == "OK"
    assert sub(api, tenant, "hu", c.client_id, "l/2").text == "OK"
    r = sub(api, tenant, "hu", c.client_id, "l/3")
    assert (r.status_code, r.text) == (400, "EXCEED_LIMIT")
    assert sub(api, tenant, "hu", c.client_id, "l/2", qos=0).text == "EXISTS"


def test_sub_shared_group_full_400(api, mqtt, tenant, redis_server):
    """MaxSharedGroupMembers is counted in Redis with the route's write: a client's SUBSCRIBE and PUT /sub
    share the places; a refused PUT leaves no subscription behind; a member may PUT again."""
    import redis as redis_sync

    from tidemq.store import keys

    client = redis_sync.Redis.from_url(redis_server.url)
    try:
        client.hset(keys.tenant_settings(tenant), "MaxSharedGroupMembers", "2")
    finally:
        client.close()
    a, b, c = mqtt(tenant, "sa"), mqtt(tenant, "sb"), mqtt(tenant, "sc")
    assert a.subscribe([("$share/g/sh/t", 1)]) == [1]  # a member through SUBSCRIBE
    assert sub(api, tenant, "sb", b.client_id, "$share/g/sh/t").text == "OK"
    r = sub(api, tenant, "sc", c.client_id, "$share/g/sh/t")
    assert (r.status_code, r.text) == (400, "EXCEED_LIMIT")
    body = api.request("GET", "/session", session_headers(tenant, "sc", c.client_id)).json()
    assert body["subscriptions"] == []
    assert c.subscribe([("$share/g/sh/t", 1)]) == [0x97]  # and over MQTT too
    assert sub(api, tenant, "sb", b.client_id, "$share/g/sh/t", qos=0).text == "EXISTS"
    assert sub(api, tenant, "sc", c.client_id, "$share/other/sh/t").text == "OK"
    assert unsub(api, tenant, "sb", b.client_id, "$share/g/sh/t").text == "OK"  # a place is free again
    assert sub(api, tenant, "sc", c.client_id, "$share/g/sh/t").text == "OK"


def test_sub_qos_capped_by_maximum_qos(api, mqtt, tenant):
    """As a SUBACK would grant it: sub_qos 2 on a tenant with MaximumQoS 1 stores QoS 1."""
    import asyncio

    from tidemq.store import keys

    asyncio.run_coroutine_threadsafe(api.redis.hset(keys.tenant_settings(tenant), "MaximumQoS", "1"),
                                     api.loop).result(5)
    c = mqtt(tenant, "max")
    assert sub(api, tenant, "max", c.client_id, "cap/t", qos=2).text == "OK"
    body = api.request("GET", "/session", session_headers(tenant, "max", c.client_id)).json()
    assert [(s["topicFilter"], s["qos"]) for s in body["subscriptions"]] == [("cap/t", 1)]
