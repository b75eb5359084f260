"""Permission checks as the broker makes them: the provider's answer, or the tenant's choice when it errors.

A provider's ``check_publish`` / ``check_subscribe`` (and their synchronous
fast paths ``allowed_publish``, ``subscribe_grant_now`` / ``allowed_subscribe``)
may raise, or answer ``Error(reason)`` (``tidemq.auth.base``): a bug, a dependency
that is down. ``Granted()`` and ``Denied()`` are read as True and False. BifroMQ's tenant setting
``ByPassPermCheckError`` says what that means: ``false`` (TideMQ's default)
denies, ``true`` grants. Every caller in the worker and the admin API goes
through these functions and passes the tenant's value as ``bypass``.

An error is logged (logger ``tidemq.auth``, WARNING) at most once per minute
per provider, with the tenant, the action and the exception, never a payload
or password; ``ERRORS`` counts every one. ``asyncio.CancelledError`` is not
an error here: it propagates. Providers that turn their own failures into a
deny (the webhook does) answer "denied", not "error": the setting does not
apply to them.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..counters import LogThrottle
from .acl import GRANTED, REFUSED, SubscribeGrant
from .base import AuthProvider, Identity, check_verdict
from .grant import subscribe_grant, subscribe_grant_now

log = logging.getLogger("tidemq.auth")

LOG_EVERY = 60.0  # seconds between two error lines of one provider


class _Errors:
    """How many permission checks errored (process-wide), and when each provider was last logged."""

    def __init__(self) -> None:
        self.count = 0
        self._throttle = LogThrottle(LOG_EVERY, 1000)

    def record(self, provider: object, who: Identity, action: str, exc: BaseException, bypass: bool) -> None:
        self.count += 1
        if not self._throttle.allow(id(provider), time.monotonic()):
            return
        log.warning("auth provider %s failed a %s check (tenant=%s): %s: %s (ByPassPermCheckError=%s: %s)",
                    type(provider).__name__, action, who.tenant_id, type(exc).__name__, exc,
                    str(bypass).lower(), "granted" if bypass else "denied",
                    extra={"event": "perm_check_error", "tenant": who.tenant_id, "action": action})


ERRORS = _Errors()


async def check_publish(provider: AuthProvider, who: Identity, topic: str, qos: int, retain: bool, *,
                        bypass: bool) -> bool:
    """``provider.check_publish``; when it raises, ``bypass`` (the tenant's ``ByPassPermCheckError``)."""
    try:
        return bool(check_verdict(await provider.check_publish(who, topic, qos, retain)))
    except Exception as exc:
        ERRORS.record(provider, who, "publish", exc, bypass)
        return bypass


def allowed_publish_now(provider: object, who: Identity, topic: str, qos: int, retain: bool, *,
                        bypass: bool) -> bool | None:
    """The provider's synchronous publish answer (``allowed_publish``), None when it has none."""
    fn: Any = getattr(provider, "allowed_publish", None)
    if fn is None:
        return None
    try:
        return bool(check_verdict(fn(who, topic, qos, retain)))
    except Exception as exc:
        ERRORS.record(provider, who, "publish", exc, bypass)
        return bypass


async def check_subscribe(provider: AuthProvider, who: Identity, topic_filter: str, qos: int, *,
                          bypass: bool, prefer_sync: bool = True) -> SubscribeGrant:
    """The normalised subscribe grant (the synchronous answer first unless ``prefer_sync`` is false, else
    awaited); when the provider raises, ``GRANTED`` if ``bypass`` else ``REFUSED``."""
    try:
        grant = subscribe_grant_now(provider, who, topic_filter, qos) if prefer_sync else None
        if grant is None:
            grant = await subscribe_grant(provider, who, topic_filter, qos)
    except Exception as exc:
        ERRORS.record(provider, who, "subscribe", exc, bypass)
        return GRANTED if bypass else REFUSED
    return grant
