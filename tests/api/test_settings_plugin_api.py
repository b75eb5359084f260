"""``TIDEMQ_SETTINGS_PROVIDER`` on an API node: the admin API reads tenant settings through the same plugin.

The API is served over real HTTP on a real Redis with ``tests.tenants.file_settings_provider:FileSettings``;
a tenant's ``MaxTopicLevels`` from the plugin decides whether ``POST /pub`` accepts a topic, and the
tenant's Redis hash is not consulted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from tests.api.conftest import pub_headers
from tests.interop.clients import uid
from tests.limits.helpers import set_tenant

pytestmark = pytest.mark.redis


def test_api_node_uses_the_settings_plugin(api_factory, redis_server, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tenants.json"
    narrow, hashed = f"n{uid()}", f"h{uid()}"
    path.write_text(json.dumps({narrow: {"MaxTopicLevels": 2}}))
    monkeypatch.setenv("TIDEMQ_TEST_SETTINGS_FILE", str(path))
    r = redis.Redis.from_url(redis_server.url)
    try:
        set_tenant(r, hashed, MaxTopicLevels=2)  # the built-in source would read this; the plugin does not
    finally:
        r.close()
    api = api_factory(settings_provider="tests.tenants.file_settings_provider:FileSettings", tenant_settings_ttl=0.0)
    deep = "a/b/c"
    assert api.request("POST", "/pub", pub_headers(narrow, deep), b"x").status_code == 400
    assert api.request("POST", "/pub", pub_headers(narrow, "a/b"), b"x").text == "NO_MATCH"
    assert api.request("POST", "/pub", pub_headers(hashed, deep), b"x").text == "NO_MATCH"
