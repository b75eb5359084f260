"""Authz fixtures: workers (module-scoped) running the static-file, webhook and custom enhanced-auth providers
on the real Redis, the JSON users/ACL file they share with an API process, and a local webhook service.

The webhook service is a ``ThreadingHTTPServer`` on a free port in a thread; ``decide`` below is its whole
policy and every question it was asked is kept in ``WebhookService.questions``. Everything started here is
stopped by the fixture that started it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.brokers import Broker, BrokerProcess
from tests.limits.helpers import attach_log, redis_url, worker_with_env
from tidemq.auth.passwd import hash_password

pytestmark = pytest.mark.redis

PASSWORDS = {"alice": "alice-pw", "sensor": "sensor-pw", "root": "root-pw"}


def auth_document() -> dict[str, Any]:
    """Tenant ``acme`` (the default tenant): alice and sensor with ACLs, root a superuser."""
    h = {name: hash_password(pw, iterations=1000) for name, pw in PASSWORDS.items()}
    return {
        "default_tenant": "acme",
        "tenants": {
            "acme": {
                "acl": [
                    {"permission": "deny", "action": "subscribe", "topics": ["internal/#"]},
                    {"permission": "allow", "action": "all", "topics": ["shared/#"]},
                ],
                "users": {
                    "alice": {"password": h["alice"], "acl": [
                        {"permission": "allow", "action": "subscribe", "topics": ["users/%u/#", "devices/+/status"]},
                        {"permission": "allow", "action": "publish", "topics": ["devices/+/cmd"], "qos": [0, 1]},
                    ]},
                    "sensor": {"password": h["sensor"], "acl": [
                        {"permission": "allow", "action": "publish", "topics": ["devices/%c/status"]},
                        {"permission": "allow", "action": "subscribe", "topics": ["devices/%c/cmd"]},
                    ]},
                    "root": {"password": h["root"], "superuser": True},
                },
            },
        },
    }


@pytest.fixture(scope="module")
def auth_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("authfile") / "auth.json"
    path.write_text(json.dumps(auth_document()))
    return path


@pytest.fixture(scope="module")
def file_env(auth_file: Path) -> dict[str, str]:
    return {"TIDEMQ_AUTH_PROVIDER": "file", "TIDEMQ_AUTH_FILE": str(auth_file)}


@pytest.fixture(scope="module")
def _file_worker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_server: Any,
                 file_env: dict[str, str]) -> Iterator[tuple[BrokerProcess, Broker]]:
    with worker_with_env(tmp_path_factory.mktemp("fileauth"), redis_url(redis_server), file_env) as w:
        yield w


@pytest.fixture
def file_worker(request: pytest.FixtureRequest, _file_worker: tuple[BrokerProcess, Broker]) -> Broker:
    proc, broker = _file_worker
    if not proc.alive:
        proc.start()
    attach_log(request, proc)
    return broker


# -- webhook -------------------------------------------------------------------------------------------------------

def decide(q: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The webhook's policy: (HTTP status, answer)."""
    if q["action"] == "connect":
        if q["username"] == "boom":
            return 500, {}
        if q["username"] in ("good", "dev") and q["password"] == "pw":
            return 200, {"result": "allow", "tenant_id": "hook", "user_id": q["username"]}
        return 200, {"result": "deny", "reason_code": 0x86}
    if q["action"] == "publish":
        mine = q["topic"].startswith(f"devices/{q['client_id']}/")
        return 200, {"result": "allow" if mine or q["topic"].startswith("open/") else "deny"}
    flt = q["topic_filter"]
    return 200, {"result": "allow" if flt.startswith(("open/", f"devices/{q['client_id']}/")) else "deny"}


class WebhookService:
    def __init__(self) -> None:
        self.questions: list[dict[str, Any]] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                question = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                service.questions.append(question)
                status, answer = decide(question)
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/mqtt"

    def asked(self, action: str) -> list[dict[str, Any]]:
        return [q for q in list(self.questions) if q["action"] == action]


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookService]:
    service = WebhookService()
    service.thread.start()
    try:
        yield service
    finally:
        service.server.shutdown()
        service.server.server_close()
        service.thread.join(10)


@pytest.fixture(scope="module")
def _webhook_worker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_server: Any,
                    webhook: WebhookService) -> Iterator[tuple[BrokerProcess, Broker]]:
    env = {"TIDEMQ_AUTH_PROVIDER": "webhook", "TIDEMQ_AUTH_WEBHOOK_URL": webhook.url,
           "TIDEMQ_AUTH_WEBHOOK_TIMEOUT": "2"}
    with worker_with_env(tmp_path_factory.mktemp("hookauth"), redis_url(redis_server), env) as w:
        yield w


@pytest.fixture
def webhook_worker(request: pytest.FixtureRequest, _webhook_worker: tuple[BrokerProcess, Broker]) -> Broker:
    proc, broker = _webhook_worker
    if not proc.alive:
        proc.start()
    attach_log(request, proc)
    return broker


# -- custom provider with enhanced authentication ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def _challenge_worker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                      redis_server: Any) -> Iterator[tuple[BrokerProcess, Broker]]:
    env = {"TIDEMQ_AUTH_PROVIDER": "tests.authz.provider:ChallengeProvider"}
    with worker_with_env(tmp_path_factory.mktemp("enhanced"), redis_url(redis_server), env) as w:
        yield w


@pytest.fixture
def challenge_worker(request: pytest.FixtureRequest, _challenge_worker: tuple[BrokerProcess, Broker]) -> Broker:
    proc, broker = _challenge_worker
    if not proc.alive:
        proc.start()
    attach_log(request, proc)
    return broker
