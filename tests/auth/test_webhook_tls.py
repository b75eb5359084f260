"""The webhook over HTTPS: a custom CA, a client certificate (mutual TLS) and an Authorization header.

The service is a real local HTTPS server (``tls_hook``: the test PKI's server certificate for
``localhost``, client certificates required); the provider is built the way the worker builds it, from
``Settings`` through ``make_provider``. Every misconfiguration fails closed: a call that cannot be made
denies, and a file that cannot be used stops the start with a ValueError naming it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.auth.conftest import Hook
from tests.transport.pki import PKI
from tidemq.auth import Identity, WebhookProvider, make_provider
from tidemq.config import Settings

WHO = Identity("acme", "alice", "dev1")


def provider(hook: Hook, **settings: str) -> WebhookProvider:
    p = make_provider(Settings(auth_provider="webhook", auth_webhook_url=hook.url, **settings))  # type: ignore[arg-type]
    assert isinstance(p, WebhookProvider)
    return p


async def test_custom_ca_and_client_certificate(tls_hook: Hook, pki: PKI) -> None:
    p = provider(tls_hook, auth_webhook_ca=str(pki.ca), auth_webhook_cert=str(pki.client_cert),
                 auth_webhook_key=str(pki.client_key))
    try:
        assert await p.check_publish(WHO, "a/b", 0, False)
        assert await p.check_publish(WHO, "a/c", 1, False)
        assert p.failures == 0 and tls_hook.connections == 1  # one pooled keep-alive connection
    finally:
        await p.close()


async def test_unknown_server_ca_denies(tls_hook: Hook, pki: PKI) -> None:
    p = provider(tls_hook, auth_webhook_cert=str(pki.client_cert), auth_webhook_key=str(pki.client_key))
    try:  # the system CAs do not know the test CA
        assert not await p.check_publish(WHO, "a/b", 0, False)
        assert p.failures == 1 and tls_hook.requests == []
    finally:
        await p.close()


@pytest.mark.parametrize("cert", ["none", "rogue"])
async def test_missing_or_untrusted_client_certificate_denies(tls_hook: Hook, pki: PKI, cert: str) -> None:
    extra = {} if cert == "none" else {"auth_webhook_cert": str(pki.rogue_cert),
                                       "auth_webhook_key": str(pki.rogue_key)}
    p = provider(tls_hook, auth_webhook_ca=str(pki.ca), **extra)
    try:
        assert not await p.check_publish(WHO, "a/b", 0, False)
        assert p.failures == 1 and tls_hook.requests == []
    finally:
        await p.close()


async def test_authorization_header_from_setting(hook: Hook) -> None:
    p = provider(hook, auth_webhook_authorization="Bearer s3cret")
    try:
        assert await p.check_publish(WHO, "a/b", 0, False)
        assert hook.headers[0]["authorization"] == "Bearer s3cret"
        assert hook.headers[0]["content-type"] == "application/json"
    finally:
        await p.close()


async def test_authorization_header_from_file_over_mtls(tls_hook: Hook, pki: PKI, tmp_path: Path) -> None:
    secret = tmp_path / "webhook-auth"
    secret.write_text("Basic dGlkZTptcQ==\n")  # a mounted secret ends with a newline
    p = provider(tls_hook, auth_webhook_ca=str(pki.ca), auth_webhook_cert=str(pki.client_cert),
                 auth_webhook_key=str(pki.client_key), auth_webhook_authorization_file=str(secret))
    try:
        assert await p.check_subscribe(WHO, "a/#", 1)
        assert tls_hook.headers[0]["authorization"] == "Basic dGlkZTptcQ=="
    finally:
        await p.close()


async def test_no_authorization_header_unless_configured(hook: Hook) -> None:
    p = provider(hook)
    try:
        assert await p.check_publish(WHO, "a/b", 0, False)
        assert "authorization" not in hook.headers[0]
    finally:
        await p.close()


@pytest.mark.parametrize(("setting", "message"), [
    ({"auth_webhook_ca": "/nonexistent/ca.pem"}, "CA bundle"),
    ({"auth_webhook_cert": "/nonexistent/client.pem"}, "client certificate"),
    ({"auth_webhook_key": "/nonexistent/client.key"}, "needs its certificate"),
    ({"auth_webhook_authorization_file": "/nonexistent/secret"}, "Authorization file"),
    ({"auth_webhook_authorization": "Bearer a\r\nX-Injected: 1"}, "one line"),
])
def test_unusable_settings_stop_the_start(setting: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_provider(Settings(auth_provider="webhook", auth_webhook_url="https://localhost/auth", **setting))  # type: ignore[arg-type]
