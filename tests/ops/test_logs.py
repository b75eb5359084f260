"""Structured logs: JSON lines off a terminal, one line per connect/disconnect with tenant, user,
client id and reason, and never a payload."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.fixtures.brokers import Broker, broker_kinds
from tests.interop.clients import Paho, sentinel_barrier, uid

pytestmark = [
    pytest.mark.tidemq_only,
    pytest.mark.skipif("worker" not in broker_kinds(), reason="worker broker kind not selected"),
]


def test_connect_disconnect_lines_are_json_without_payloads(worker_factory: Callable[..., Broker]) -> None:
    broker = worker_factory()
    assert broker.process is not None
    secret = f"payload-{uid()}".encode()
    cid, topic = f"log{uid()}", f"logs/{uid()}"
    sub = Paho(broker, cid, protocol="v5", username="acme/alice")
    pub = Paho(broker, protocol="v311", username="acme/bob")
    try:
        sub.connect()
        sub.subscribe(topic, 1)
        pub.connect()
        pub.publish(topic, secret, qos=1)
        assert sub.get().payload == secret
        assert sentinel_barrier(pub, sub, topic) == []
        sub.disconnect()
        pub.disconnect()
    finally:
        sub.close()
        pub.close()
    broker.process.stop()
    text = broker.process.log_path.read_text()
    assert secret.decode() not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(d) for d in lines)
    connects = [d for d in lines if d.get("event") == "connect" and d.get("client") == cid]
    disconnects = [d for d in lines if d.get("event") == "disconnect" and d.get("client") == cid]
    assert len(connects) == 1 and len(disconnects) == 1
    assert (connects[0]["tenant"], connects[0]["user"], connects[0]["ver"]) == ("acme", "alice", 5)
    assert disconnects[0]["reason"].startswith("client disconnect")


def test_text_format_escapes_control_characters() -> None:
    import logging

    from tidemq.logs import TextFormatter

    record = logging.LogRecord("tidemq", logging.INFO, __file__, 1, "connect client=%s", ("a\nb\r\x1b[2J\u2028",), None)
    line = TextFormatter().format(record)
    assert "\n" not in line and "\x1b" not in line
    assert line.endswith("connect client=a\\nb\\r\\x1b[2J\\u2028")


@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:pw@hooks.example.com:8443/auth?token=abc#f", "https://hooks.example.com:8443/auth?…"),
    ("http://[::1]:9000/x", "http://[::1]:9000/x"),
    ("http://h/p", "http://h/p"),
    ("http://h:notaport/p", "<unparsable URL>"),
])
def test_redact_url(url: str, shown: str) -> None:
    from tidemq.logs import redact_url

    assert redact_url(url) == shown
