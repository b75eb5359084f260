"""A test client balancer (``TIDEMQ_CLIENT_BALANCER=tests.mqtt5.balancer_plugin:TenantBalancer``).

Tenants named ``moved...`` are sent away for good (Server moved, with a reference), ``busy...`` to another
server without a reference (answered from a coroutine), ``boom...`` make the balancer raise (the client
stays); everyone else stays. The user ``vip`` is never redirected (the balancer sees the identity).
"""

from __future__ import annotations

from tidemq.balancer import BalancerClient, Redirection
from tidemq.config import Settings

REFERENCE = "mqtt-eu-2.example.com:1883"


class TenantBalancer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def need_redirect(self, client: BalancerClient) -> Redirection | None:
        if client.user_id == "vip":
            return None
        if client.tenant_id.startswith("moved"):
            return Redirection(permanent=True, server_reference=REFERENCE)
        if client.tenant_id.startswith("boom"):
            raise RuntimeError("balancer bug")
        if client.tenant_id.startswith("busy"):
            return self._later()  # type: ignore[return-value]  # an awaitable answer is accepted too
        return None

    async def _later(self) -> Redirection:
        return Redirection()
