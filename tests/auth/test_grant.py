"""The worker-facing grant interface: normalising provider answers, the per-connection DeliveryFilter, provider
generations (auth-file reload), the static provider's read check and the webhook's deny lists."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from tests.auth.conftest import Hook
from tidemq.auth import (
    AuthResult,
    BaseAuthProvider,
    ConnectInfo,
    DevOnlyProvider,
    Identity,
    StaticFileProvider,
    WebhookProvider,
)
from tidemq.auth.acl import DENY_ALL, GRANTED, REFUSED, ReadFilter, SubscribeGrant, narrow
from tidemq.auth.grant import (
    DeliveryFilter,
    as_grant,
    poll,
    provider_generation,
    subscribe_grant,
    subscribe_grant_now,
)
from tidemq.auth.passwd import hash_password

WHO = Identity("acme", "alice", "dev1")
PW = hash_password("pw", iterations=1000)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class BoolProvider(BaseAuthProvider):
    """A custom provider written before narrowing: answers ``answer`` (a bool, or junk), asynchronously only."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    async def authenticate(self, info: ConnectInfo) -> AuthResult:
        return AuthResult(True, "acme", info.username or "u")

    async def check_publish(self, who: Identity, topic: str, qos: int, retain: bool) -> bool:
        return True

    async def check_subscribe(self, who: Identity, topic_filter: str, qos: int) -> Any:
        return self.answer


class NarrowingProvider(BoolProvider):
    """A custom provider that narrows: everything but ``private/#``."""

    async def check_subscribe(self, who: Identity, topic_filter: str, qos: int) -> SubscribeGrant:
        return narrow(topic_filter, ["private/#"])


def write(path: Path, rules: list[dict[str, Any]], bump: float) -> None:
    path.write_text(json.dumps({"tenants": {"acme": {"users": {"alice": {"password": PW, "acl": rules}}}}}))
    st = path.stat()
    os.utime(path, (st.st_atime, st.st_mtime + bump))


SENSORS = [{"permission": "deny", "action": "subscribe", "topics": ["sensors/secret/#"]},
           {"permission": "allow", "action": "all", "topics": ["sensors/#", "public/#"]}]


async def test_bool_answers_are_normalised_in_one_place(caplog: pytest.LogCaptureFixture) -> None:
    assert await subscribe_grant(BoolProvider(True), WHO, "a/#", 0) is GRANTED
    assert await subscribe_grant(BoolProvider(False), WHO, "a/#", 0) is REFUSED
    g = await subscribe_grant(NarrowingProvider(None), WHO, "#", 0)
    assert g.granted and g.deny == ReadFilter.denying(["private/#"])
    with caplog.at_level(logging.WARNING, logger="tidemq.auth"):
        for junk in (None, 1, "yes", [True]):
            assert await subscribe_grant(BoolProvider(junk), WHO, "a", 0) is REFUSED  # fail closed
    assert "not a bool or SubscribeGrant" in caplog.text
    assert as_grant(True) is GRANTED and as_grant(REFUSED) is REFUSED


async def test_sync_answers_when_the_provider_has_them(tmp_path: Path) -> None:
    assert subscribe_grant_now(BoolProvider(True), WHO, "a", 0) is None  # async only: await subscribe_grant
    assert subscribe_grant_now(DevOnlyProvider(), WHO, "#", 2) is GRANTED  # legacy allowed_subscribe -> bool
    path = tmp_path / "auth.json"
    write(path, SENSORS, 0)
    p = StaticFileProvider(path)
    g = subscribe_grant_now(p, WHO, "sensors/#", 1)
    assert g is not None and g.granted and g.deny is not None
    assert g == await subscribe_grant(p, WHO, "sensors/#", 1)
    assert not p.allowed_subscribe(WHO, "sensors/#", 1)  # the old bool: a narrowed grant is no plain yes
    assert not await p.check_subscribe(WHO, "sensors/#", 1)  # same for `if not await check_subscribe(...)`
    assert p.allowed_subscribe(WHO, "public/#", 1)


async def test_static_provider_shares_read_filters_and_checks_reads(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    write(path, SENSORS, 0)
    p = StaticFileProvider(path)
    bob = Identity("acme", "alice", "dev2")  # another connection of the same user
    g1, g2 = p.subscribe_grant_now(WHO, "sensors/#", 0), p.subscribe_grant_now(bob, "sensors/+/+", 1)
    assert g1.deny is g2.deny  # one ReadFilter, one verdict cache for every equal narrowing
    assert p.allowed_read(WHO, "sensors/a") and not p.allowed_read(WHO, "sensors/secret/b")
    assert not p.allowed_read(WHO, "elsewhere") and await p.check_read(WHO, "public/x", 0)
    assert p.subscribe_grant_now(WHO, "sensors/secret/#", 0) == REFUSED
    ghost = Identity("acme", "ghost", "g")
    assert p.subscribe_grant_now(ghost, "#", 0) == REFUSED and not p.allowed_read(ghost, "sensors/a")


async def test_generation_moves_on_reload_and_refresh_applies_new_rules(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    write(path, [{"permission": "allow", "action": "all", "topics": ["#"]}], 0)
    clock = FakeClock()
    p = StaticFileProvider(path, clock=clock, watch_interval=2.0)
    assert provider_generation(p) == 0 and p.generation == 0
    reads = DeliveryFilter(p.generation)
    subs = {"sensors/#": 1, "$share/g/sensors/secret/#": 0, "public/a": 0}
    await reads.refresh(p, WHO, subs)
    assert not reads and reads.allows("sensors/secret/b")  # nothing narrowed: everything delivered
    write(path, SENSORS, 5)
    assert poll(p) == 0  # not looked at before watch_interval
    clock.now += 3
    assert poll(p) == 1 and reads.stale(p)
    assert reads.allows("sensors/secret/b")  # the worker refreshes on the next delivery, then checks
    await reads.refresh(p, WHO, subs)
    assert not reads.stale(p) and reads.generation == 1
    assert set(reads.narrowed) == {"sensors/#", "$share/g/sensors/secret/#"}  # the shared one is now refused
    assert reads.narrowed["$share/g/sensors/secret/#"] is DENY_ALL
    assert reads.allows("sensors/a") and not reads.allows("sensors/secret/b") and reads.allows("public/a")
    p.reload()  # a failed or explicit reload: only a successful one bumps
    assert p.generation == 2
    path.write_text("{broken")
    assert not p.reload() and p.generation == 2
    assert provider_generation(DevOnlyProvider()) == 0 and poll(DevOnlyProvider()) == 0


def test_delivery_filter_any_matching_subscription_may_deliver() -> None:
    reads = DeliveryFilter()
    assert not reads and reads.allows("anything")
    reads.set("#", narrow("#", ["secret/#"]))
    reads.set("public/a", GRANTED)
    assert reads and not reads.allows("secret/x") and reads.allows("public/a") and reads.allows("other")
    reads.set("secret/x", GRANTED)  # a plain subscription that matches: delivered through it
    assert reads.allows("secret/x") and not reads.allows("secret/y")
    reads.set("secret/+", narrow("secret/+", ["secret/y"]))  # narrowed, but allows secret/z
    assert reads.allows("secret/z") and not reads.allows("secret/y")
    reads.set("secret/+", REFUSED)  # a filter the rules no longer allow delivers nothing
    assert not reads.allows("secret/z") and reads.narrowed["secret/+"] is DENY_ALL
    reads.discard("secret/+")
    reads.discard("#")
    assert not reads and reads.allows("secret/y")
    reads.set("$share/g/s/#", narrow("$share/g/s/#", ["s/k"]))
    assert not reads.allows("s/k") and reads.allows("s/j")
    reads.set("$share/g/s/#", GRANTED)  # re-granted plainly
    assert not reads and reads.allows("s/k")
    reads.clear()
    assert not reads.narrowed


async def test_webhook_deny_list(hook: Hook, caplog: pytest.LogCaptureFixture) -> None:
    answers: dict[str, Any] = {
        "sensors/#": {"result": "allow", "deny": ["sensors/secret/#"]},
        "sensors/secret/#": {"result": "allow", "deny": ["sensors/secret/#"]},
        "plain/#": {"result": "allow", "deny": []},
        "bad/#": {"result": "allow", "deny": ["bad/#/x"]},
        "worse/#": {"result": "allow", "deny": "worse/a"},
        "no/#": {"result": "deny", "deny": ["whatever"]},
    }
    hook.respond = lambda body: (200, answers[body["topic_filter"]])
    p = WebhookProvider(hook.url)
    try:
        g = await subscribe_grant(p, WHO, "sensors/#", 1)
        assert g.granted and g.deny is not None and not g.deny.allows("sensors/secret/b") and g.deny.allows("sensors/a")
        assert await p.check_subscribe(WHO, "sensors/secret/#", 1) == REFUSED  # a deny covering the filter
        assert await p.check_subscribe(WHO, "plain/#", 1) == GRANTED
        assert await p.check_subscribe(WHO, "no/#", 1) == REFUSED
        assert subscribe_grant_now(p, WHO, "sensors/#", 1) is None  # webhooks answer asynchronously
        with caplog.at_level(logging.WARNING, logger="tidemq.auth"):
            assert await p.check_subscribe(WHO, "bad/#", 1) == REFUSED
            assert await p.check_subscribe(WHO, "worse/#", 1) == REFUSED
        assert "bad deny list" in caplog.text and "deny must be a list" in caplog.text
        n = len(hook.requests)
        assert await p.check_subscribe(WHO, "sensors/#", 1) == g  # cached
        assert await p.check_subscribe(WHO, "bad/#", 1) == REFUSED  # a malformed answer is not cached
        assert len(hook.requests) == n + 1 and p.failures == 2 + 1
    finally:
        await p.close()
