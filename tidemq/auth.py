"""Authentication and authorisation providers.

A provider binds a connection to ``(tenant_id, user_id)`` at CONNECT and
answers publish/subscribe permission checks with that identity. The worker
and the admin API both call the same interface; nothing else decides who a
client is. ``DevOnlyProvider`` is the development default: a username of the
form ``tenant/user`` selects that tenant, anything else lands in ``DevOnly``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .mqtt.reason_codes import RC

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
class Identity:
    tenant_id: str
    user_id: str
    client_id: str


class AuthProvider(Protocol):
    async def authenticate(self, info: ConnectInfo) -> AuthResult: ...

    async def check_publish(self, who: Identity, topic: str, qos: int, retain: bool) -> bool: ...

    async def check_subscribe(self, who: Identity, topic_filter: str, qos: int) -> bool: ...


class DevOnlyProvider:
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
