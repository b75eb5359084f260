"""Authentication and authorisation: the provider interface and its three implementations.

``from tidemq.auth import ...`` gives the interface and value types
(``AuthProvider``, ``ConnectInfo``, ``AuthResult``, ``Identity``,
``AuthStep``, the check results ``Granted`` / ``Denied`` / ``Error``), the
subscription-grant types and helpers the worker uses
(``SubscribeGrant``, ``ReadFilter``, ``DeliveryFilter``, ``subscribe_grant``,
``subscribe_grant_now``; see ``tidemq.auth.grant``), the providers
(``DevOnlyProvider``, ``StaticFileProvider``,
``WebhookProvider``) and ``make_provider(settings)``, which picks one from
``Settings.auth_provider`` (``devonly`` | ``file`` | ``webhook`` |
``package.module:Class``, a custom class built as ``Class(settings)``). Provider
modules are imported lazily by the factory and the attribute hook, so a
worker that runs DevOnly loads no file parser or HTTP client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .acl import ReadFilter, SubscribeGrant
from .base import (
    DEFAULT_TENANT,
    DEFAULT_USER,
    AuthProvider,
    AuthResult,
    AuthStep,
    BaseAuthProvider,
    CheckResult,
    ConnectInfo,
    Denied,
    DevOnlyProvider,
    Error,
    Granted,
    Identity,
    ProviderError,
)
from .grant import DeliveryFilter, subscribe_grant, subscribe_grant_now

if TYPE_CHECKING:
    from ..config import Settings
    from .static import StaticFileProvider
    from .webhook import WebhookProvider

__all__ = [
    "DEFAULT_TENANT",
    "DEFAULT_USER",
    "AuthProvider",
    "AuthResult",
    "AuthStep",
    "BaseAuthProvider",
    "CheckResult",
    "ConnectInfo",
    "DeliveryFilter",
    "Denied",
    "DevOnlyProvider",
    "Error",
    "Granted",
    "Identity",
    "ProviderError",
    "ReadFilter",
    "StaticFileProvider",
    "SubscribeGrant",
    "WebhookProvider",
    "make_provider",
    "subscribe_grant",
    "subscribe_grant_now",
]


def make_provider(settings: Settings) -> AuthProvider:
    """The provider ``settings.auth_provider`` names; raises ValueError on a bad name or missing option."""
    kind = (settings.auth_provider or "devonly").strip().lower()
    if kind == "devonly":
        return DevOnlyProvider()
    if kind == "file":
        from .static import StaticFileProvider

        if not settings.auth_file:
            raise ValueError("TIDEMQ_AUTH_PROVIDER=file needs TIDEMQ_AUTH_FILE")
        return StaticFileProvider(settings.auth_file, acl_file=settings.auth_acl_file or None,
                                  tenant=settings.auth_file_tenant or DEFAULT_TENANT,
                                  allow_anonymous=settings.auth_allow_anonymous,
                                  cache_ttl=settings.auth_cache_ttl, cache_size=settings.auth_cache_size)
    if kind == "webhook":
        from .webhook import WebhookProvider

        if not settings.auth_webhook_url:
            raise ValueError("TIDEMQ_AUTH_PROVIDER=webhook needs TIDEMQ_AUTH_WEBHOOK_URL")
        return WebhookProvider(settings.auth_webhook_url, timeout=settings.auth_webhook_timeout,
                               cache_ttl=settings.auth_cache_ttl, cache_size=settings.auth_cache_size,
                               ca_file=settings.auth_webhook_ca, cert_file=settings.auth_webhook_cert,
                               key_file=settings.auth_webhook_key,
                               authorization=settings.auth_webhook_authorization,
                               authorization_file=settings.auth_webhook_authorization_file)
    if ":" in (settings.auth_provider or ""):
        return _custom_provider(settings)
    raise ValueError(f"unknown auth provider {settings.auth_provider!r} (devonly, file, webhook or "
                     "package.module:Class)")


def _custom_provider(settings: Settings) -> AuthProvider:
    """``auth_provider = "package.module:Class"``: import it and build ``Class(settings)``."""
    from tidemq.plugins import load_plugin

    provider: AuthProvider = load_plugin("TIDEMQ_AUTH_PROVIDER", settings.auth_provider, (settings,),
                                         ("authenticate", "check_publish", "check_subscribe"))
    return provider


def __getattr__(name: str) -> Any:
    if name == "StaticFileProvider":
        from .static import StaticFileProvider

        return StaticFileProvider
    if name == "WebhookProvider":
        from .webhook import WebhookProvider

        return WebhookProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
