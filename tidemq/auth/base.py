"""The auth provider interface, its value types and the DevOnly provider.

A provider binds a connection to ``(tenant_id, user_id)`` at CONNECT
(``authenticate``) and answers publish/subscribe permission checks for that
``Identity``; the worker and the admin API call the same interface and
nothing else decides who a client is. ``check_subscribe`` answers a bool or
a ``SubscribeGrant`` (granted but narrowed: some topics filtered out at
delivery); ``tidemq.auth.grant`` normalises the answer and documents what
the worker does with it. MQTT 5 enhanced authentication (a
CONNECT with an Authentication Method, then AUTH packets) goes through
``auth``, which returns one ``AuthStep`` per round: continue with data,
success with an ``AuthResult``, or failure with a reason code; providers
that do not implement it inherit ``BaseAuthProvider.auth``, which refuses
with Bad authentication method (0x8C). ``DevOnlyProvider`` is the
development default: a username ``tenant/user`` selects that tenant,
anything else lands in ``DevOnly``.

Permission checks may answer BifroMQ's three results instead of a bool:
``Granted()``, ``Denied(reason)`` or ``Error(reason)`` (the provider could not
decide: the tenant's ``ByPassPermCheckError`` does, as when it raises); a
bool stays accepted, so older providers need no change. ``AuthResult.attributes``
(strings a provider attaches at CONNECT) show in ``GET /session`` metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..mqtt.reason_codes import RC
from .acl import SubscribeGrant

DEFAULT_TENANT = "DevOnly"
DEFAULT_USER = "DevUser"


@dataclass(slots=True)
class ConnectInfo:
    client_id: str
    username: str | None
    password: bytes | None
    protocol_level: int
    address: str = ""
    auth_method: str | None = None
    auth_data: bytes | None = None
    cert_subject: str | None = None


@dataclass(slots=True)
class AuthResult:
    ok: bool
    tenant_id: str = ""
    user_id: str = ""
    reason_code: int = RC.SUCCESS
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class Granted:
    """A permission check's answer: allowed (BifroMQ's ``CheckResult.Granted``)."""

    reason: str = ""


@dataclass(slots=True, frozen=True)
class Denied:
    """A permission check's answer: refused (BifroMQ's ``CheckResult.Denied``)."""

    reason: str = ""


@dataclass(slots=True, frozen=True)
class Error:
    """A permission check's answer: the provider could not decide (BifroMQ's ``CheckResult.Error``); the
    tenant's ``ByPassPermCheckError`` decides, exactly as when the provider raises."""

    reason: str = ""


CheckResult = Granted | Denied | Error


class ProviderError(RuntimeError):
    """A provider answered ``Error(reason)``: raised where the answer is read, handled like any raise."""


def check_verdict(answer: object) -> object:
    """``Granted``/``Denied`` as True/False, ``Error`` raised as ``ProviderError``; other answers as they are."""
    if isinstance(answer, Granted):
        return True
    if isinstance(answer, Denied):
        return False
    if isinstance(answer, Error):
        raise ProviderError(answer.reason or "the provider answered Error")
    return answer


@dataclass(slots=True, frozen=True)
class Identity:
    tenant_id: str
    user_id: str
    client_id: str


@dataclass(slots=True)
class AuthStep:
    """One round of MQTT 5 enhanced authentication.

    ``kind`` is ``continue`` (send AUTH 0x18 with ``data``), ``success`` (CONNACK
    0x00, or AUTH 0x00 on re-authentication, with ``data``; ``result`` is the
    identity) or ``failure`` (CONNACK/DISCONNECT with ``reason_code``).
    """

    kind: Literal["continue", "success", "failure"]
    reason_code: int = RC.SUCCESS
    data: bytes | None = None
    result: AuthResult | None = None

    @classmethod
    def proceed(cls, data: bytes | None = None) -> AuthStep:
        return cls("continue", RC.CONTINUE_AUTHENTICATION, data)

    @classmethod
    def success(cls, result: AuthResult, data: bytes | None = None) -> AuthStep:
        return cls("success", RC.SUCCESS, data, result)

    @classmethod
    def failure(cls, reason_code: int = RC.NOT_AUTHORIZED) -> AuthStep:
        return cls("failure", reason_code)


class AuthProvider(Protocol):
    async def authenticate(self, info: ConnectInfo) -> AuthResult: ...

    async def auth(self, info: ConnectInfo, packet: Any) -> AuthStep:
        """Enhanced auth: ``packet`` is the CONNECT (first round) or an AUTH packet (later rounds)."""
        ...

    async def check_publish(self, who: Identity, topic: str, qos: int, retain: bool) -> bool | CheckResult: ...

    async def check_subscribe(self, who: Identity, topic_filter: str, qos: int
                              ) -> bool | SubscribeGrant | CheckResult:
        """True/False, a ``SubscribeGrant`` (``tidemq.auth.acl.narrow`` builds a narrowed one), or
        ``Granted()`` / ``Denied()`` / ``Error()``."""
        ...


class BaseAuthProvider:
    """Defaults every provider inherits: enhanced auth is refused; ``close`` releases nothing."""

    async def auth(self, info: ConnectInfo, packet: Any) -> AuthStep:
        return AuthStep.failure(RC.BAD_AUTHENTICATION_METHOD)

    async def close(self) -> None:
        return None


class DevOnlyProvider(BaseAuthProvider):
    """Everyone is welcome; ``tenant/user`` usernames pick the tenant."""

    async def authenticate(self, info: ConnectInfo) -> AuthResult:
        username = info.username or ""
        if "/" in username:
            tenant, _, user = username.partition("/")
            if tenant and user:
                return AuthResult(True, tenant, user)
            return AuthResult(False, reason_code=RC.BAD_USER_NAME_OR_PASSWORD)
        return AuthResult(True, DEFAULT_TENANT, username or DEFAULT_USER)

    async def check_publish(self, who: Identity, topic: str, qos: int, retain: bool) -> bool:
        return True

    async def check_subscribe(self, who: Identity, topic_filter: str, qos: int) -> bool:
        return True

    def allowed_publish(self, who: Identity, topic: str, qos: int, retain: bool) -> bool:
        """Synchronous fast path the worker uses when a provider offers it."""
        return True

    def allowed_subscribe(self, who: Identity, topic_filter: str, qos: int) -> bool:
        return True
