"""A test auth provider whose permission checks raise for topics under ``err/`` (a provider bug or an outage).

Loaded by a worker through ``TIDEMQ_AUTH_PROVIDER=tests.tenants.erring_provider:ErringProvider``. Identities
are DevOnly's (``<tenant>/<user>``); every other check is granted. It answers only asynchronously, like a
remote service.
"""

from __future__ import annotations

from tidemq.auth import AuthResult, BaseAuthProvider, ConnectInfo, DevOnlyProvider, Identity
from tidemq.config import Settings


class ProviderDown(RuntimeError):
    pass


class ErringProvider(BaseAuthProvider):
    def __init__(self, settings: Settings) -> None:
        self.dev = DevOnlyProvider()

    async def authenticate(self, info: ConnectInfo) -> AuthResult:
        return await self.dev.authenticate(info)

    async def check_publish(self, who: Identity, topic: str, qos: int, retain: bool) -> bool:
        if topic.startswith("err/"):
            raise ProviderDown("permission service unreachable")
        return True

    async def check_subscribe(self, who: Identity, topic_filter: str, qos: int) -> bool:
        if topic_filter.startswith("err/"):
            raise ProviderDown("permission service unreachable")
        return True
