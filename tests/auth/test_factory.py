"""Provider selection from Settings, the old import path, DevOnly and the default enhanced-auth refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tidemq.auth import (
    AuthProvider,
    AuthResult,
    AuthStep,
    ConnectInfo,
    DevOnlyProvider,
    Identity,
    StaticFileProvider,
    WebhookProvider,
    make_provider,
)
from tidemq.auth.passwd import hash_password
from tidemq.config import Settings
from tidemq.mqtt.packets import Auth
from tidemq.mqtt.reason_codes import RC


async def test_make_provider(tmp_path: Path) -> None:
    assert isinstance(make_provider(Settings()), DevOnlyProvider)
    path = tmp_path / "a.json"
    doc = {"tenants": {"t": {"users": {"u": {"password": hash_password("p", iterations=5)}}}}}
    path.write_text(json.dumps(doc))
    p = make_provider(Settings(auth_provider="file", auth_file=str(path)))
    assert isinstance(p, StaticFileProvider)
    w = make_provider(Settings(auth_provider="WEBHOOK", auth_webhook_url="http://127.0.0.1:9/x",
                               auth_webhook_timeout=0.5, auth_cache_ttl=3, auth_cache_size=7))
    assert isinstance(w, WebhookProvider)
    assert (w.timeout, w.cache.ttl, w.cache.maxsize) == (0.5, 3, 7)
    await w.close()
    for bad in (Settings(auth_provider="file"), Settings(auth_provider="webhook"), Settings(auth_provider="ldap")):
        with pytest.raises(ValueError):
            make_provider(bad)


def test_settings_from_env() -> None:
    s = Settings.from_env({"TIDEMQ_AUTH_PROVIDER": "webhook", "TIDEMQ_AUTH_WEBHOOK_TIMEOUT": "0.25",
                           "TIDEMQ_TENANT_SETTINGS_TTL": "1", "TIDEMQ_MAX_CONNECTIONS": "10"})
    assert (s.auth_provider, s.auth_webhook_timeout, s.tenant_settings_ttl, s.max_connections) == (
        "webhook", 0.25, 1.0, 10)


async def test_devonly() -> None:
    p: AuthProvider = DevOnlyProvider()
    assert await p.authenticate(ConnectInfo("c", "acme/bob", None, 4)) == AuthResult(True, "acme", "bob")
    assert await p.authenticate(ConnectInfo("c", None, None, 4)) == AuthResult(True, "DevOnly", "DevUser")
    assert not (await p.authenticate(ConnectInfo("c", "acme/", None, 4))).ok
    who = Identity("t", "u", "c")
    assert await p.check_publish(who, "a", 0, False) and await p.check_subscribe(who, "#", 0)


async def test_enhanced_auth_is_refused_by_default(tmp_path: Path) -> None:
    info = ConnectInfo("c", None, None, 5, auth_method="SCRAM-SHA-1", auth_data=b"x")
    for p in (DevOnlyProvider(), WebhookProvider("http://127.0.0.1:9/")):
        step = await p.auth(info, Auth(reason_code=0x18))
        assert (step.kind, step.reason_code) == ("failure", RC.BAD_AUTHENTICATION_METHOD)
        await p.close()


def test_auth_steps() -> None:
    assert AuthStep.proceed(b"chal") == AuthStep("continue", RC.CONTINUE_AUTHENTICATION, b"chal")
    ok = AuthStep.success(AuthResult(True, "t", "u"))
    assert ok.kind == "success" and ok.result is not None and ok.result.tenant_id == "t"
    assert AuthStep.failure().reason_code == RC.NOT_AUTHORIZED
