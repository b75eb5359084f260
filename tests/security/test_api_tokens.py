"""Admin API tokens: listings and metrics need the token; a tenant-scoped token acts on its tenants only.

Attack: read another tenant's sessions, retained topics or everybody's metrics without a token, with a wrong
one, or with a token the operator scoped to a different tenant (``TIDEMQ_API_TOKEN_FILE``). Each must get
401/403 with a one-line reason, and the API must go on serving a properly authorised request.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tidemq.api.tokens import TokenFileError, parse_token_file

from tests.fixtures.brokers import BrokerProcess
from tests.interop.clients import uid
from tests.security.conftest import redis_url_of, refused

pytestmark = pytest.mark.redis

ADMIN = "admin-token-0123456789abcdef"
ACME = "acme-only-token-0123456789"
FLEET = "fleet-token-0123456789abcd"


@pytest.fixture
def api(launch: Callable[..., BrokerProcess], redis_server: Any, tmp_path: Path) -> httpx.Client:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# token  tenants\n{ACME} acme\n{FLEET} *   # ops\n")
    proc = launch("api", "--redis-url", redis_url_of(redis_server),
                  env={"TIDEMQ_API_TOKEN": ADMIN, "TIDEMQ_API_TOKEN_FILE": str(tokens)})
    return httpx.Client(base_url=f"http://127.0.0.1:{proc.port}", timeout=10)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


LISTINGS = [("GET", "/sessions"), ("GET", "/retain")]


def test_listings_and_metrics_need_a_token(api: httpx.Client) -> None:
    with api:
        for method, path in [*LISTINGS, ("GET", "/metrics")]:
            for headers in ({}, bearer("wrong-token-0123456789"), {"Authorization": ADMIN}):
                r = api.request(method, path, headers={"tenant_id": "acme", **headers})
                assert r.status_code == 401 and r.text == "missing or invalid bearer token", (path, headers)
        assert api.get("/healthz").status_code == 200 and api.get("/readyz").status_code == 200
        # still serving: the right tokens work
        for token in (ADMIN, FLEET, ACME):
            r = api.get("/sessions", headers={"tenant_id": "acme", **bearer(token)})
            assert r.status_code == 200 and r.json() == {"sessions": [], "cursor": None}
        assert api.get("/metrics", headers=bearer(ADMIN)).status_code == 200
        assert api.get("/metrics", headers=bearer(FLEET)).status_code == 200


def test_tenant_scoped_token_cannot_act_on_another_tenant(api: httpx.Client) -> None:
    other = f"t{uid()}"
    with api:
        for method, path in [*LISTINGS, ("DELETE", "/session"), ("DELETE", "/retain")]:
            r = api.request(method, path, headers={"tenant_id": other, **bearer(ACME)})
            assert r.status_code == 403, (path, r.text)
            assert r.text == f"token not allowed for tenant {other}"
        r = api.post("/retain", headers={"tenant_id": other, "topic": "x", "qos": "0", "client_type": "evil",
                                         **bearer(ACME)}, content=b"planted")
        assert r.status_code == 403
        r = api.get("/metrics", headers=bearer(ACME))  # every tenant's inbox depth: not for a scoped token
        assert r.status_code == 403 and r.text == "metrics need a token for every tenant"
        # nothing was planted, and the scoped token still works on its own tenant
        assert api.get("/retain", headers={"tenant_id": other, **bearer(ADMIN)}).json()["retained"] == []
        r = api.post("/retain", headers={"tenant_id": "acme", "topic": f"ok/{uid()}", "qos": "0",
                                         "client_type": "ops", **bearer(ACME)}, content=b"fine")
        assert r.text == "RETAINED"


def test_standalone_api_enforces_the_token(launch: Callable[..., BrokerProcess]) -> None:
    proc = launch("standalone", env={"TIDEMQ_API_TOKEN": ADMIN})
    with httpx.Client(base_url=f"http://127.0.0.1:{proc.api_port}", timeout=10) as http:
        assert http.get("/sessions", headers={"tenant_id": "a"}).status_code == 401
        assert http.get("/metrics").status_code == 401
        assert http.get("/sessions", headers={"tenant_id": "a", **bearer(ADMIN)}).status_code == 200


@pytest.mark.parametrize(("text", "error"), [
    ("short acme\n", "at least 16"),
    (f"{ACME}\n", "name the tenants"),
    (f"{ACME} * acme\n", "cannot be combined"),
    (f"{ACME} a\n{ACME} b\n", "already listed"),
])
def test_bad_token_file_is_refused(text: str, error: str, tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match=error):
        parse_token_file(text)
    path = tmp_path / "tokens"
    path.write_text(text)
    done = refused("api", "--redis-url", "redis://127.0.0.1:1/0", env={"TIDEMQ_API_TOKEN_FILE": str(path)})
    assert done.returncode != 0 and error in done.stderr and len(done.stderr.strip().splitlines()) == 1
