"""WebhookProvider against a local HTTP server: allow, deny, timeout -> deny, errors fail closed, caching."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from tests.auth.conftest import Hook
from tidemq.auth import ConnectInfo, Identity, WebhookProvider
from tidemq.auth.acl import GRANTED
from tidemq.auth.http import HttpClient, HttpError
from tidemq.mqtt.reason_codes import RC

WHO = Identity("acme", "alice", "dev1")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def decide(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    if body["action"] == "connect":
        if body["password"] == "good":
            return 200, {"result": "allow", "tenant_id": "acme", "user_id": body["username"],
                         "attributes": {"role": "dev"}}
        return 200, {"result": "deny", "reason_code": 0x86}
    topic = str(body.get("topic") or body.get("topic_filter"))
    return 200, {"result": "allow" if topic.startswith("ok/") else "deny"}


async def test_connect_allow_and_deny(hook: Hook) -> None:
    hook.respond = decide
    p = WebhookProvider(hook.url, timeout=2.0)
    try:
        res = await p.authenticate(ConnectInfo("c1", "alice", b"good", 5, "1.2.3.4:5"))
        assert (res.ok, res.tenant_id, res.user_id, res.attributes) == (True, "acme", "alice", {"role": "dev"})
        sent = hook.requests[0]
        assert sent["action"] == "connect" and sent["client_id"] == "c1" and sent["password_b64"] == "Z29vZA=="
        assert sent["protocol_level"] == 5 and sent["address"] == "1.2.3.4:5"
        res = await p.authenticate(ConnectInfo("c1", "alice", b"bad", 5))
        assert not res.ok and res.reason_code == RC.BAD_USER_NAME_OR_PASSWORD
        res = await p.authenticate(ConnectInfo("c1", "alice", b"\xff\xfe", 4))  # not UTF-8: b64 only
        assert not res.ok and hook.requests[-1]["password"] is None
    finally:
        await p.close()


async def test_publish_and_subscribe_checks(hook: Hook) -> None:
    hook.respond = decide
    p = WebhookProvider(hook.url)
    try:
        assert await p.check_publish(WHO, "ok/a", 1, True)
        assert not await p.check_publish(WHO, "no/a", 1, False)
        assert await p.check_subscribe(WHO, "ok/#", 2)
        assert not await p.check_subscribe(WHO, "#", 0)
        assert hook.requests[0] == {"action": "publish", "tenant_id": "acme", "user_id": "alice",
                                    "client_id": "dev1", "topic": "ok/a", "qos": 1, "retain": True}
        assert hook.requests[2]["topic_filter"] == "ok/#"
        assert hook.connections == 1  # one keep-alive connection for all four
    finally:
        await p.close()


async def test_cache_hits_and_ttl(hook: Hook) -> None:
    clock = FakeClock()
    p = WebhookProvider(hook.url, cache_ttl=10, clock=clock)
    try:
        for _ in range(5):
            assert await p.check_publish(WHO, "a", 0, False)
        assert p.requests == 1 and p.cache.hits == 4
        assert await p.check_publish(WHO, "a", 1, False)  # another question
        assert p.requests == 2
        clock.now += 11
        assert await p.check_publish(WHO, "a", 0, False)
        assert p.requests == 3
    finally:
        await p.close()


async def test_timeout_denies_and_is_not_cached(hook: Hook) -> None:
    hook.hold = asyncio.Event()  # never set: the service does not answer
    p = WebhookProvider(hook.url, timeout=0.2)
    try:
        assert not await p.check_publish(WHO, "a", 0, False)
        res = await p.authenticate(ConnectInfo("c", "u", b"p", 5))
        assert not res.ok and res.reason_code == RC.NOT_AUTHORIZED
        hook.hold = None
        assert await p.check_publish(WHO, "a", 0, False)  # asked again, now answered
        assert p.failures == 2
    finally:
        await p.close()


async def test_concurrent_questions_share_one_request(hook: Hook) -> None:
    hook.hold = asyncio.Event()
    p = WebhookProvider(hook.url)
    try:
        tasks = [asyncio.create_task(p.check_subscribe(WHO, "x/#", 1)) for _ in range(5)]
        await hook.received.wait()
        hook.hold.set()
        assert await asyncio.gather(*tasks) == [GRANTED] * 5
        assert len(hook.requests) == 1
    finally:
        await p.close()


@pytest.mark.parametrize(("status", "answer"), [
    (500, {"result": "allow"}), (200, b"not json"), (200, {"result": "yes"}), (200, ["allow"]),
    (200, {"result": "allow"}),  # connect allow without tenant_id
])
async def test_bad_answers_fail_closed(hook: Hook, status: int, answer: object) -> None:
    hook.respond = lambda body: (status, answer)
    p = WebhookProvider(hook.url)
    try:
        assert not (await p.authenticate(ConnectInfo("c", "u", b"p", 5))).ok
        if answer != {"result": "allow"}:
            assert not await p.check_publish(WHO, "a", 0, False)
    finally:
        await p.close()


async def test_unreachable_service_denies() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = WebhookProvider(f"http://127.0.0.1:{port}/", timeout=2.0)
    try:
        assert not await p.check_publish(WHO, "a", 0, False)
        assert p.failures == 1
    finally:
        await p.close()


async def test_chunked_and_connection_close(hook: Hook) -> None:
    hook.chunked = True
    hook.close_after = True
    hook.respond = decide
    p = WebhookProvider(hook.url)
    try:
        assert await p.check_publish(WHO, "ok/1", 0, False)
        assert not await p.check_publish(WHO, "no/1", 0, False)
        assert hook.connections == 2  # the server closed after each answer
    finally:
        await p.close()


async def test_stale_keepalive_connection_is_retried(hook: Hook) -> None:
    client = HttpClient(hook.url, timeout=2.0)
    try:
        assert (await client.post(b'{"action": "publish", "topic": "a"}'))[0] == 200
        for task in list(hook.tasks):  # the server drops the idle keep-alive connection
            task.cancel()
        assert (await client.post(b'{"action": "publish", "topic": "a"}'))[0] == 200
        assert hook.connections == 2
    finally:
        await client.close()


def test_http_client_refuses_bad_urls() -> None:
    for url in ("ftp://x/", "http:///nohost", "localhost:80"):
        with pytest.raises(HttpError):
            HttpClient(url)
    c = HttpClient("https://example.com/a/b?x=1")
    assert c.url == "https://example.com/a/b?x=1"
