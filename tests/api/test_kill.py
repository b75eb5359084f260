"""``DELETE /kill``: scopes (tenant, user, one client), MQTT 5 reason 0x98, and the failure rows."""

from __future__ import annotations

import pytest

from tests.api.conftest import pub_headers, session_headers
from tests.interop.clients import uid

pytestmark = pytest.mark.redis


def kill(api, tenant, **extra):
    return api.request("DELETE", "/kill", {"tenant_id": tenant, "client_type": "ops", **extra})


def test_kill_one_client(api, mqtt, tenant):
    target = mqtt(tenant, "u1")
    same_user = mqtt(tenant, "u1")
    r = kill(api, tenant, user_id="u1", client_id=target.client_id)
    assert r.status_code == 200, r.text
    assert r.json() == {"killed": 1}
    assert target.wait_disconnected() == 0x98
    assert not same_user.disconnected.is_set()


def test_kill_user(api, mqtt, tenant):
    a1, a2 = mqtt(tenant, "ann"), mqtt(tenant, "ann", protocol="v311")
    other = mqtt(tenant, "ben")
    r = kill(api, tenant, user_id="ann")
    assert r.json() == {"killed": 2}
    assert a1.wait_disconnected() == 0x98
    a2.wait_disconnected()
    assert not other.disconnected.is_set()


def test_kill_tenant(api, mqtt, tenant):
    clients = [mqtt(tenant, f"u{i}") for i in range(3)]
    elsewhere = mqtt(tenant + "o", "u0")
    r = kill(api, tenant, client_meta_reason="maintenance")
    assert r.json() == {"killed": 3}
    for c in clients:
        assert c.wait_disconnected() == 0x98
    assert not elsewhere.disconnected.is_set()


def test_kill_persistent_keeps_inbox(api, mqtt, tenant):
    cid = f"p{uid()}"
    c = mqtt(tenant, "kim", client_id=cid, clean=False, session_expiry=600)
    c.subscribe("keep/t", qos=1)
    assert kill(api, tenant, user_id="kim", client_id=cid).json() == {"killed": 1}
    assert c.wait_disconnected() == 0x98
    assert api.request("POST", "/pub", pub_headers(tenant, "keep/t"), b"kept").text == "OK"
    again = mqtt(tenant, "kim", client_id=cid, clean=False, session_expiry=600)
    assert again.connack.session_present
    assert again.get().payload == b"kept"


def test_kill_nothing_matched_404(api, mqtt, tenant):
    assert kill(api, tenant).status_code == 404
    c = mqtt(tenant, "lee")
    assert kill(api, tenant, user_id="nobody").status_code == 404
    assert kill(api, tenant, user_id="lee", client_id="nope").status_code == 404
    assert kill(api, tenant, user_id="other", client_id=c.client_id).status_code == 404
    assert not c.disconnected.is_set()


def test_kill_offline_session_is_not_a_kill(api, mqtt, tenant):
    cid = f"p{uid()}"
    mqtt(tenant, "max", client_id=cid, clean=False, session_expiry=600).disconnect()
    assert api.request("GET", "/session", session_headers(tenant, "max", cid)).status_code == 200
    assert kill(api, tenant, user_id="max", client_id=cid).status_code == 404


def test_kill_client_without_user_400(api, tenant):
    r = kill(api, tenant, client_id="c1")
    assert r.status_code == 400
    assert r.text == "client_id requires user_id"


def test_kill_client_type_required(api, tenant):
    r = api.request("DELETE", "/kill", {"tenant_id": tenant})
    assert r.status_code == 400
    assert r.text == "missing header: client_type"


async def _killed_with(api, worker_broker, tenant, **headers):
    """A raw MQTT 5 client killed with ``headers``; returns (reason code, properties) of its DISCONNECT."""
    from tests.conformance import wire
    from tests.limits.helpers import open5

    cid = f"r{uid()}"
    c = await open5(worker_broker, cid, username=f"{tenant}/red")
    r = kill(api, tenant, user_id="red", client_id=cid, **headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"killed": 1}
    discs = [p for p in await c.expect_close() if p.type == wire.DISCONNECT]
    assert discs, "closed without DISCONNECT"
    props, _ = wire.parse_props(discs[0].body, 1) if len(discs[0].body) > 1 else ({}, 1)
    return discs[0].body[0], props


SERVER_REFERENCE = 0x1C


async def test_kill_redirects_mqtt5_clients_as_bifromq(api, worker_broker, tenant):
    """``server_redirect``: ``move`` -> 0x9D, ``temp_use`` -> 0x9C (with ``server_reference`` when given),
    ``no`` -> 0x98 (the reference is not sent without a redirect)."""
    code, props = await _killed_with(api, worker_broker, tenant, server_redirect="move",
                                     server_reference="mqtt-b.example:1883")
    assert (code, props.get(SERVER_REFERENCE)) == (0x9D, ["mqtt-b.example:1883"])
    code, props = await _killed_with(api, worker_broker, tenant, server_redirect="temp_use")
    assert (code, props.get(SERVER_REFERENCE)) == (0x9C, None)
    code, props = await _killed_with(api, worker_broker, tenant, server_redirect="no", server_reference="x:1")
    assert (code, props.get(SERVER_REFERENCE)) == (0x98, None)


def test_kill_bad_server_redirect_is_400(api, mqtt, tenant):
    c = mqtt(tenant, "bad")
    r = kill(api, tenant, user_id="bad", client_id=c.client_id, server_redirect="elsewhere")
    assert r.status_code == 400
    assert r.text == "server_redirect must be no, move or temp_use"
    assert not c.disconnected.is_set()
