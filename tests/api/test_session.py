"""``GET /session``, ``DELETE /session`` and ``GET /sessions`` against a worker process on real Redis."""

from __future__ import annotations

import pytest

from tests.api.conftest import pub_headers, session_headers
from tests.interop.clients import uid

pytestmark = pytest.mark.redis


def test_get_online_transient_session(api, mqtt, tenant):
    c = mqtt(tenant, "alice", protocol="v311")
    c.subscribe([("s/a", 1), ("s/b/#", 0)])
    r = api.request("GET", "/session", session_headers(tenant, "alice", c.client_id))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tenantId"] == tenant
    assert body["type"] == "MQTT"
    meta = body["metadata"]
    assert meta["ver"] == "4"
    assert meta["userId"] == "alice"
    assert meta["clientId"] == c.client_id
    assert meta["sessionType"] == "t"
    assert meta["broker"] and meta["channelId"] and meta["address"]
    assert body["online"] is True
    assert body["connectedAt"] > 0
    subs = {s["topicFilter"]: s for s in body["subscriptions"]}
    assert subs["s/a"]["qos"] == 1 and subs["s/b/#"]["qos"] == 0
    assert set(subs["s/a"]) == {"topicFilter", "qos", "noLocal", "retainAsPublished", "retainHandling"}
    assert body["inbox"] == {"queued": 0, "inflight": 0}


def test_get_offline_persistent_session_with_inbox(api, mqtt, tenant):
    cid = f"p{uid()}"
    c = mqtt(tenant, "bob", client_id=cid, clean=False, session_expiry=600)
    c.subscribe("inbox/t", qos=1)
    c.disconnect()
    for i in range(3):
        assert api.request("POST", "/pub", pub_headers(tenant, "inbox/t"), b"%d" % i).text == "OK"
    r = api.request("GET", "/session", session_headers(tenant, "bob", cid))
    assert r.status_code == 200
    body = r.json()
    assert body["online"] is False
    assert body["metadata"]["sessionType"] == "p"
    assert body["metadata"]["ver"] == "5"
    assert body["expirySeconds"] == 600
    assert body["inbox"] == {"queued": 3, "inflight": 0}


def test_get_session_404(api, mqtt, tenant):
    c = mqtt(tenant, "carol")
    assert api.request("GET", "/session", session_headers(tenant, "carol", "nope")).status_code == 404
    # wrong user, wrong tenant: not that session
    assert api.request("GET", "/session", session_headers(tenant, "mallory", c.client_id)).status_code == 404
    assert api.request("GET", "/session", session_headers(tenant + "x", "carol", c.client_id)).status_code == 404


@pytest.mark.parametrize("missing", ["user_id", "client_id"])
def test_get_session_400(api, tenant, missing):
    h = session_headers(tenant, "u", "c")
    del h[missing]
    r = api.request("GET", "/session", h)
    assert r.status_code == 400
    assert r.text == f"missing header: {missing}"


def test_delete_session_all_disconnects_online(api, mqtt, tenant):
    online = mqtt(tenant, "dave")
    cid = f"p{uid()}"
    offline = mqtt(tenant, "dave", client_id=cid, clean=False, session_expiry=600)
    offline.disconnect()
    bystander = mqtt(tenant + "z", "dave")
    r = api.request("DELETE", "/session", {"tenant_id": tenant, "expiry_seconds": "0"})
    assert r.status_code == 200
    assert r.json() == {"expired": 2}
    assert online.wait_disconnected() == 0x98
    assert api.request("GET", "/session", session_headers(tenant, "dave", cid)).status_code == 404
    assert api.request("GET", "/session", session_headers(tenant, "dave", online.client_id)).status_code == 404
    assert not bystander.disconnected.is_set()
    assert api.request("GET", "/session", session_headers(tenant + "z", "dave", bystander.client_id)).json()["online"]


def test_delete_session_idle_and_expired(api, mqtt, tenant):
    cid = f"p{uid()}"
    c = mqtt(tenant, "erin", client_id=cid, clean=False, session_expiry=600)
    c.subscribe("idle/t", qos=1)
    c.disconnect()
    # not past its own 600 s expiry, nor offline for an hour
    assert api.request("DELETE", "/session", {"tenant_id": tenant}).json() == {"expired": 0}
    assert api.request("DELETE", "/session", {"tenant_id": tenant, "expiry_seconds": "3600"}).json() == {"expired": 0}
    assert api.request("GET", "/session", session_headers(tenant, "erin", cid)).status_code == 200
    # still there, route included
    assert api.request("POST", "/pub", pub_headers(tenant, "idle/t"), b"x").text == "OK"


@pytest.mark.parametrize("bad", ["-1", "x", "1.5", "4294967296"])
def test_delete_session_bad_expiry_400(api, tenant, bad):
    r = api.request("DELETE", "/session", {"tenant_id": tenant, "expiry_seconds": bad})
    assert r.status_code == 400
    assert "expiry_seconds" in r.text


def test_delete_session_removes_routes(api, mqtt, tenant):
    cid = f"p{uid()}"
    c = mqtt(tenant, "fay", client_id=cid, clean=False, session_expiry=600)
    c.subscribe("gone/t", qos=1)
    c.disconnect()
    assert api.request("POST", "/pub", pub_headers(tenant, "gone/t"), b"x").text == "OK"
    assert api.request("DELETE", "/session", {"tenant_id": tenant, "expiry_seconds": "0"}).json() == {"expired": 1}
    assert api.request("POST", "/pub", pub_headers(tenant, "gone/t"), b"x").text == "NO_MATCH"


def test_sessions_paged(api, mqtt, tenant):
    clients = sorted(mqtt(tenant, "gus", client_id=f"c{i:02d}{uid()}").client_id for i in range(5))
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        h = {"tenant_id": tenant, "limit": "2"}
        if cursor:
            h["cursor"] = cursor
        r = api.request("GET", "/sessions", h)
        assert r.status_code == 200
        page = r.json()
        assert len(page["sessions"]) <= 2
        seen += [s["clientId"] for s in page["sessions"]]
        assert all(s["online"] and s["userId"] == "gus" for s in page["sessions"])
        cursor = page["cursor"]
        if cursor is None:
            break
    assert seen == clients
    r = api.request("GET", "/sessions", {"tenant_id": tenant, "limit": "0"})
    assert r.status_code == 400 and "limit" in r.text
