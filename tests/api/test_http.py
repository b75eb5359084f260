"""Cross-cutting HTTP rules: req_id, header spelling, 404/405, bearer token, 503 when Redis is gone."""

from __future__ import annotations

import socket
import time

import pytest

from tests.api.conftest import pub_headers
from tests.fixtures.brokers import free_port

pytestmark = pytest.mark.redis

INT64_MAX = 2**63 - 1


def test_req_id_echoed(api, tenant):
    r = api.request("POST", "/pub", pub_headers(tenant, "a", req_id="-9223372036854775808"), b"x")
    assert r.status_code == 200
    assert r.headers["req_id"] == "-9223372036854775808"
    r = api.request("POST", "/pub", pub_headers(tenant, "a", **{"Req-Id": str(INT64_MAX)}), b"x")
    assert r.headers["req_id"] == str(INT64_MAX)


def test_req_id_generated_when_absent_and_on_errors(api, tenant):
    ids = set()
    for path in ("/pub", "/nope", "/healthz"):
        r = api.request("POST" if path != "/healthz" else "GET", path, {"topic": "a"})
        ids.add(int(r.headers["req_id"]))
    assert len(ids) == 3
    assert all(-(2**63) <= i <= INT64_MAX for i in ids)
    r = api.request("POST", "/pub", {"req_id": "77"})  # an error still echoes it
    assert r.status_code == 400
    assert r.headers["req_id"] == "77"


@pytest.mark.parametrize("bad", ["abc", "1.0", "9223372036854775808", "-9223372036854775809", "+5", "1_000", "0x10"])
def test_req_id_not_int64_is_replaced_by_a_generated_one(api, tenant, bad):
    """As BifroMQ: the request is served and the response echoes the id generated for it."""
    r = api.request("POST", "/pub", pub_headers(tenant, "a", req_id=bad), b"x")
    assert r.status_code == 200, r.text
    assert r.headers["req_id"] != bad
    assert -(2**63) <= int(r.headers["req_id"]) < 2**63
    health = api.request("GET", "/healthz", {"req_id": bad})
    assert health.status_code == 200 and health.headers["req_id"] != bad


def test_tenant_missing_is_400_on_every_endpoint(api):
    for method, path in [("POST", "/pub"), ("POST", "/retain"), ("GET", "/session"), ("DELETE", "/session"),
                         ("DELETE", "/kill"), ("PUT", "/sub"), ("DELETE", "/unsub"), ("GET", "/sessions"),
                         ("GET", "/retain"), ("DELETE", "/retain")]:
        r = api.request(method, path, {})
        assert r.status_code == 400, (method, path)
        assert r.text == "missing header: tenant_id", (method, path, r.text)


def test_unknown_path_404_and_wrong_method_405(api, tenant):
    r = api.request("GET", "/no/such/thing", {"tenant_id": tenant})
    assert r.status_code == 404
    r = api.request("GET", "/pub", {"tenant_id": tenant})
    assert r.status_code == 405
    r = api.request("POST", "/session", {"tenant_id": tenant})
    assert r.status_code == 405
    assert "req_id" in r.headers


def test_bearer_token(api_factory, tenant):
    api = api_factory(api_token="s3cret")
    h = pub_headers(tenant, "a")
    assert api.request("POST", "/pub", h, b"x").status_code == 401
    assert api.request("POST", "/pub", {**h, "Authorization": "Bearer wrong"}, b"x").status_code == 401
    assert api.request("POST", "/pub", {**h, "Authorization": "Basic s3cret"}, b"x").status_code == 401
    assert api.request("POST", "/pub", {**h, "Authorization": "Bearer s3cret"}, b"x").text == "NO_MATCH"
    assert api.request("GET", "/openapi.json").status_code == 401
    assert api.request("GET", "/metrics").status_code == 401
    assert api.request("GET", "/metrics", {"Authorization": "Bearer s3cret"}).status_code == 200
    for path in ("/healthz", "/readyz"):
        assert api.request("GET", path).status_code == 200, path


def test_redis_unreachable_is_503_fast(api_factory, tenant):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    api = api_factory(redis_url=dead, store_timeout=1.0)
    for method, path, headers in [
        ("POST", "/pub", pub_headers(tenant, "a")),
        ("GET", "/session", {"tenant_id": tenant, "user_id": "u", "client_id": "c"}),
        ("DELETE", "/kill", {"tenant_id": tenant, "client_type": "x"}),
    ]:
        t0 = time.monotonic()
        r = api.request(method, path, headers, b"x" if path == "/pub" else b"")
        assert r.status_code == 503, (path, r.text)
        assert r.text.startswith("store "), r.text
        assert "req_id" in r.headers
        assert time.monotonic() - t0 < 5
    assert api.request("GET", "/readyz").status_code == 503
    assert api.request("GET", "/healthz").status_code == 200


def test_redis_hanging_is_503_not_a_hang(api_factory, tenant):
    with socket.socket() as silent:  # accepts connections (kernel backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        api = api_factory(redis_url=url, store_timeout=0.5)
        t0 = time.monotonic()
        r = api.request("POST", "/pub", pub_headers(tenant, "a"), b"x")
        assert r.status_code == 503
        assert "timeout" in r.text
        assert time.monotonic() - t0 < 5
        assert api.request("GET", "/readyz").status_code == 503


def test_utf8_header_values_and_invalid_bytes(api, mqtt, tenant):
    sub = mqtt(tenant)
    topic = "温度/é"
    sub.subscribe(topic, qos=1)
    headers = {**pub_headers(tenant, "x"), "topic": topic.encode()}
    assert api.request("POST", "/pub", headers, b"utf8").text == "OK"  # type: ignore[dict-item]
    msg = sub.get()
    assert (msg.topic, msg.payload) == (topic, b"utf8")
    bad = {**pub_headers(tenant, "x"), "topic": b"a/\xff"}
    r = api.request("POST", "/pub", bad, b"x")  # type: ignore[arg-type]
    assert r.status_code == 400
    assert r.text == "topic must be well-formed UTF-8"
    r = api.request("GET", "/session", {"tenant_id": tenant, "user_id": "u", "client_id": b"c\xfe"})  # type: ignore[dict-item]
    assert r.status_code == 400
    assert "client_id" in r.text
