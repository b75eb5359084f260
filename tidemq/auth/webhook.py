"""WebhookProvider: every auth decision is an HTTP POST of JSON to one URL, cached, and failing closed.

Request bodies carry ``"action"``: ``connect`` (client_id, username,
password as UTF-8 text or null, password_b64, protocol_level, address,
cert_subject, auth_method), ``publish`` (tenant_id, user_id, client_id,
topic, qos, retain) or ``subscribe`` (tenant_id, user_id, client_id,
topic_filter, qos). The service answers 200 with ``{"result": "allow"}`` or
``{"result": "deny"}``; a connect allow must name ``tenant_id`` (``user_id``
defaults to the username; optional ``attributes``), a connect deny may give
a ``reason_code``; a subscribe allow may carry ``"deny": [patterns]``, literal
MQTT patterns whose topics are filtered out of the subscription at delivery
(``acl.narrow``: a pattern covering the whole filter refuses it). Anything
else (another status, bad JSON, a malformed ``deny`` list, a timeout, a
refused connection) denies, and that failure is not cached: the next call
asks again. Narrowing is fixed when the subscription is granted (or the
session resumes); ``generation`` never moves, a changed policy reaches
existing subscriptions at the next resume. Answers are cached for ``cache_ttl`` seconds in a bounded LRU
(connect answers keyed by an HMAC of the password under a per-process
random key), and concurrent identical questions share one request.

Transport: ``tidemq.auth.http.HttpClient`` (httpx, pooled keep-alive). For an
``https`` URL the service's certificate is checked against ``ca_file`` (default:
the system CAs); ``cert_file``/``key_file`` present a client certificate
(mutual TLS); ``authorization`` (or the first line of ``authorization_file``,
read once at start) is sent as the ``Authorization`` header of every call.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import orjson

from ..logs import redact_url
from ..mqtt.reason_codes import RC
from .acl import REFUSED, SubscribeGrant, narrow
from .base import AuthResult, BaseAuthProvider, ConnectInfo, Identity
from .cache import MISSING, TTLCache
from .http import HttpClient, tls_context

log = logging.getLogger("tidemq.auth")

_REFUSED = AuthResult(False, reason_code=RC.NOT_AUTHORIZED)

T = TypeVar("T")


class BadAnswer(ValueError):
    """A 200 answer whose content cannot be used: a deny, not cached."""


class WebhookProvider(BaseAuthProvider):
    def __init__(self, url: str, *, timeout: float = 2.0, cache_ttl: float = 10.0, cache_size: int = 10000,
                 clock: Callable[[], float] = time.monotonic, client: HttpClient | None = None,
                 ca_file: str = "", cert_file: str = "", key_file: str = "", authorization: str = "",
                 authorization_file: str = "") -> None:
        self.url = redact_url(url)  # what log lines show: no credentials, no query
        self.timeout = timeout
        if client is None:
            if authorization_file and not authorization:
                authorization = read_secret(authorization_file)
            ctx = tls_context(ca_file=ca_file, cert_file=cert_file, key_file=key_file)
            client = HttpClient(url, timeout=timeout, ssl_context=ctx, authorization=authorization)
        self.http = client
        self.cache = TTLCache(cache_size, cache_ttl, clock)
        self.requests = 0  # HTTP requests made (cache misses that reached the service)
        self.failures = 0
        self._key = secrets.token_bytes(32)
        self._inflight: dict[Hashable, asyncio.Task[Any]] = {}

    async def close(self) -> None:
        await self.http.close()

    # ------------------------------------------------------------ transport

    async def _call(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """POST ``body``; the decoded JSON object of a 200 answer, or None (logged) on any failure."""
        self.requests += 1
        try:
            status, data = await self.http.post(orjson.dumps(body))
        except TimeoutError:
            self.failures += 1
            log.warning("auth webhook %s: no answer within %.1fs (%s): denied", self.url, self.timeout,
                        body["action"])
            return None
        except Exception as exc:  # OSError, HttpError, anything the transport raises: a deny
            self.failures += 1
            log.warning("auth webhook %s failed (%s): denied: %s", self.url, body["action"], exc)
            return None
        if status != 200:
            self.failures += 1
            log.warning("auth webhook %s answered HTTP %d (%s): denied", self.url, status, body["action"])
            return None
        try:
            answer = orjson.loads(data)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict) or answer.get("result") not in ("allow", "deny"):
            self.failures += 1
            log.warning("auth webhook %s: answer is not {\"result\": \"allow\"|\"deny\"}: denied", self.url)
            return None
        return answer

    async def _decide(self, key: Hashable, body: dict[str, Any], interpret: Callable[[dict[str, Any]], T],
                      refused: T) -> T:
        """Cached answer for ``key``, else one shared request (a caller's cancellation does not cancel it)."""
        cached: T = self.cache.get(key)
        if cached is not MISSING:
            return cached
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch(key, body, interpret, refused))
            self._inflight[key] = task
        value: T = await asyncio.shield(task)
        return value

    async def _fetch(self, key: Hashable, body: dict[str, Any], interpret: Callable[[dict[str, Any]], T],
                     refused: T) -> T:
        try:
            answer = await self._call(body)
            if answer is None:
                return refused
            try:
                value = interpret(answer)
            except BadAnswer as exc:
                self.failures += 1
                log.warning("auth webhook %s (%s): %s: denied", self.url, body["action"], exc)
                return refused
            self.cache.put(key, value)
            return value
        finally:
            self._inflight.pop(key, None)

    # ------------------------------------------------------------ provider

    async def authenticate(self, info: ConnectInfo) -> AuthResult:
        pw = info.password
        mark = hmac.new(self._key, pw, hashlib.sha256).digest() if pw is not None else None
        key = ("c", info.client_id, info.username, mark, info.protocol_level, info.cert_subject,
               info.auth_method)
        text: str | None = None
        if pw is not None:
            try:
                text = pw.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        body = {"action": "connect", "client_id": info.client_id, "username": info.username,
                "password": text, "password_b64": base64.b64encode(pw).decode() if pw is not None else None,
                "protocol_level": info.protocol_level, "address": info.address,
                "cert_subject": info.cert_subject, "auth_method": info.auth_method}

        def interpret(answer: dict[str, Any]) -> AuthResult:
            if answer["result"] != "allow":
                rc = answer.get("reason_code")
                if not isinstance(rc, int) or isinstance(rc, bool) or not 0x80 <= rc <= 0xFF:
                    rc = RC.NOT_AUTHORIZED
                return AuthResult(False, reason_code=rc)
            tenant = answer.get("tenant_id")
            user = answer.get("user_id", info.username)
            if not isinstance(tenant, str) or not tenant or not isinstance(user, str) or not user:
                log.warning("auth webhook %s: allow without tenant_id/user_id: denied", self.url)
                return _REFUSED
            attributes = answer.get("attributes")
            return AuthResult(True, tenant, user, attributes=dict(attributes) if isinstance(attributes, dict)
                              else {})

        result = await self._decide(key, body, interpret, _REFUSED)
        # a fresh copy: callers may mutate attributes
        return AuthResult(result.ok, result.tenant_id, result.user_id, result.reason_code, dict(result.attributes))

    async def check_publish(self, who: Identity, topic: str, qos: int, retain: bool) -> bool:
        key = ("p", who, topic, qos, retain)
        body = {"action": "publish", "tenant_id": who.tenant_id, "user_id": who.user_id,
                "client_id": who.client_id, "topic": topic, "qos": qos, "retain": retain}
        return await self._decide(key, body, _allowed, False)

    async def check_subscribe(self, who: Identity, topic_filter: str, qos: int) -> SubscribeGrant:
        key = ("s", who, topic_filter, qos)
        body = {"action": "subscribe", "tenant_id": who.tenant_id, "user_id": who.user_id,
                "client_id": who.client_id, "topic_filter": topic_filter, "qos": qos}

        def interpret(answer: dict[str, Any]) -> SubscribeGrant:
            if answer["result"] != "allow":
                return REFUSED
            deny = answer.get("deny")
            if deny is None:
                deny = []
            if not isinstance(deny, list):
                raise BadAnswer(f"deny must be a list of topic patterns, got {deny!r}")
            try:
                return narrow(topic_filter, deny)
            except ValueError as exc:
                raise BadAnswer(f"bad deny list: {exc}") from None

        return await self._decide(key, body, interpret, REFUSED)


def read_secret(path: str) -> str:
    """The first line of a secret file (a mounted Kubernetes/Docker secret), without its line end."""
    try:
        with open(path, encoding="utf-8") as f:
            value = f.readline().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the webhook Authorization file {path!r}: {exc}") from None
    if not value:
        raise ValueError(f"the webhook Authorization file {path!r} is empty")
    return value


def _allowed(answer: dict[str, Any]) -> bool:
    return bool(answer["result"] == "allow")
