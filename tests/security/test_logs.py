"""Logs an attacker writes into: no forged lines from client-supplied fields, no leaked webhook secrets.

Attack 1: a client id / username holding a newline and a fake log line (or terminal escapes), sent to a
worker logging in the text format: every record must stay one line, the fake one never starts a line.
Attack 2: make the auth webhook fail so the worker logs its URL: the URL's credentials and query string
must not appear. After both, the worker still serves a fresh client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.authz.conftest import WebhookService
from tests.fixtures.brokers import BrokerProcess
from tests.security.conftest import mqtt_connect, redis_url_of

pytestmark = pytest.mark.redis

FORGED = "2026-01-01 00:00:00,000 INFO tidemq.worker: FORGED root logged in"


def test_client_fields_cannot_forge_text_log_lines(launch: Callable[..., BrokerProcess], redis_server: Any) -> None:
    worker = launch("worker", "--redis-url", redis_url_of(redis_server), env={"TIDEMQ_LOG_JSON": "false"})
    rc = mqtt_connect("127.0.0.1", worker.port, f"evil\n{FORGED}\r\x1b[2J", username=f"t/u\n{FORGED}\u2028x")
    assert rc == 0  # the broker accepted it (devonly): the question is only what it logged
    assert mqtt_connect("127.0.0.1", worker.port, "fresh") == 0  # still serving
    worker.stop()
    text = worker.log_path.read_text(encoding="utf-8")
    assert "FORGED" in text  # it was logged...
    lines = text.splitlines()
    assert not [line for line in lines if line.startswith(FORGED[:23]) or line.startswith("FORGED")]
    assert "\x1b" not in text and "\u2028" not in text
    forged = [line for line in lines if "FORGED" in line]
    assert forged and all("\\n" in line for line in forged)  # ...escaped, inside the real record


def test_webhook_url_secrets_are_redacted(launch: Callable[..., BrokerProcess], redis_server: Any) -> None:
    hook = WebhookService()
    hook.thread.start()
    try:
        port = hook.server.server_address[1]
        url = f"http://hookuser:hunter2@127.0.0.1:{port}/mqtt?api_key=sekrit#frag"
        worker = launch("worker", "--redis-url", redis_url_of(redis_server),
                        env={"TIDEMQ_AUTH_PROVIDER": "webhook", "TIDEMQ_AUTH_WEBHOOK_URL": url,
                             "TIDEMQ_LOG_JSON": "false"})
        assert mqtt_connect("127.0.0.1", worker.port, "b1", username="boom", password=b"pw") == 5  # 500: denied
        assert hook.asked("connect")  # the webhook was called, and failed
        assert mqtt_connect("127.0.0.1", worker.port, "g1", username="good", password=b"pw") == 0
        worker.stop()
        text = worker.log_path.read_text(encoding="utf-8")
        assert f"auth webhook http://127.0.0.1:{port}/mqtt?… answered HTTP 500" in text
        for secret in ("hunter2", "hookuser", "sekrit", "api_key", "frag"):
            assert secret not in text, secret
    finally:
        hook.server.shutdown()
        hook.server.server_close()
