"""A test auth provider answering BifroMQ's check results (``TIDEMQ_AUTH_PROVIDER=tests.api.result_provider:
ResultProvider``): topics under ``granted/`` get ``Granted()``, ``denied/`` get ``Denied(..)``, ``error/`` get
``Error(..)``, anything else a plain ``True`` (bool answers stay accepted). Identities are DevOnly's; every
CONNECT carries the attributes ``plan=gold`` and ``login=<user>``, and ``ver`` (a built-in metadata key,
which must not be overridden).
"""

from __future__ import annotations

from tidemq.auth import (
    AuthResult,
    BaseAuthProvider,
    CheckResult,
    ConnectInfo,
    Denied,
    DevOnlyProvider,
    Error,
    Granted,
    Identity,
)
from tidemq.config import Settings


def _answer(topic: str) -> bool | CheckResult:
    if topic.startswith("granted/"):
        return Granted()
    if topic.startswith("denied/"):
        return Denied("not for you")
    if topic.startswith("error/"):
        return Error("permission service unreachable")
    return True


class ResultProvider(BaseAuthProvider):
    def __init__(self, settings: Settings) -> None:
        self.dev = DevOnlyProvider()

    async def authenticate(self, info: ConnectInfo) -> AuthResult:
        res = await self.dev.authenticate(info)
        res.attributes = {"plan": "gold", "login": res.user_id, "ver": "forged"}
        return res

    async def check_publish(self, who: Identity, topic: str, qos: int, retain: bool) -> bool | CheckResult:
        return _answer(topic)

    async def check_subscribe(self, who: Identity, topic_filter: str, qos: int) -> bool | CheckResult:
        return _answer(topic_filter)
