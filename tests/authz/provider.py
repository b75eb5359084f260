"""A test auth provider with a two-step MQTT 5 enhanced authentication method (challenge/response).

Loaded by a worker through ``TIDEMQ_AUTH_PROVIDER=tests.authz.provider:ChallengeProvider`` (the custom-class
form of ``make_provider``) and constructed with the process ``Settings``. Method ``TIDEMQ-TEST-CHALLENGE``:
the CONNECT's authentication data names the identity (``<tenant>/<user>``); the server answers AUTH 0x18 with a
random nonce; the client proves itself with ``sha256(nonce + SECRET)`` in its AUTH; success carries
``b"welcome <user>"``. Clients without an authentication method are admitted as by DevOnly; every publish and
subscribe is allowed except topics under ``forbidden/``.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from tidemq.auth import AuthResult, AuthStep, BaseAuthProvider, ConnectInfo, DevOnlyProvider, Identity
from tidemq.config import Settings
from tidemq.mqtt.packets import Connect
from tidemq.mqtt.reason_codes import RC

METHOD = "TIDEMQ-TEST-CHALLENGE"
SECRET = b"open sesame"


def response_for(nonce: bytes) -> bytes:
    """What a client that knows ``SECRET`` answers to ``nonce``."""
    return hashlib.sha256(nonce + SECRET).hexdigest().encode()


class ChallengeProvider(BaseAuthProvider):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dev = DevOnlyProvider()
        self._pending: dict[int, tuple[bytes, str, str]] = {}  # id(ConnectInfo) -> (nonce, tenant, user)

    async def authenticate(self, info: ConnectInfo) -> AuthResult:
        return await self.dev.authenticate(info)

    async def auth(self, info: ConnectInfo, packet: Any) -> AuthStep:
        if info.auth_method != METHOD:
            return AuthStep.failure(RC.BAD_AUTHENTICATION_METHOD)
        if isinstance(packet, Connect):  # round 1: who, then a challenge
            tenant, _, user = (info.auth_data or b"").decode("utf-8", "replace").partition("/")
            if not tenant or not user:
                return AuthStep.failure(RC.BAD_USER_NAME_OR_PASSWORD)
            nonce = secrets.token_hex(16).encode()
            self._pending[id(info)] = (nonce, tenant, user)
            return AuthStep.proceed(nonce)
        state = self._pending.pop(id(info), None)  # round 2: the response
        if state is None:
            return AuthStep.failure(RC.PROTOCOL_ERROR)
        nonce, tenant, user = state
        if info.auth_data != response_for(nonce):
            return AuthStep.failure(RC.NOT_AUTHORIZED)
        return AuthStep.success(AuthResult(True, tenant, user), data=f"welcome {user}".encode())

    async def check_publish(self, who: Identity, topic: str, qos: int, retain: bool) -> bool:
        return not topic.startswith("forbidden/")

    async def check_subscribe(self, who: Identity, topic_filter: str, qos: int) -> bool:
        return not topic_filter.startswith("forbidden/")
