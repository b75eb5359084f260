"""The client balancer extension point (BifroMQ's ``IClientBalancer``): may a CONNECT stay on this worker?

``TIDEMQ_CLIENT_BALANCER=package.module:Class`` names a class built once per worker as
``Class(settings)``. For every CONNECT that authenticated, the worker calls
``need_redirect(client)`` with a ``BalancerClient`` (tenant, user, client id, protocol
level, address, the auth provider's attributes) before anything is claimed in Redis; an
answer of ``None`` keeps the client, a ``Redirection`` sends it away: MQTT 5 clients get
CONNACK 0x9D Server moved (``permanent``) or 0x9C Use another server, with the Server
Reference when one is given; MQTT 3 clients get return code 3, Server unavailable (as
BifroMQ). The method may be a plain function or a coroutine; it must be quick (it runs
on the CONNECT path). A balancer that raises keeps the client (logged at most once a
minute): the balancer is advice, never a reason to lose a connection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .config import Settings
from .counters import LogThrottle
from .plugins import load_plugin

log = logging.getLogger("tidemq.balancer")

__all__ = ["BalancerClient", "ClientBalancer", "Redirection", "ask", "make_balancer"]


@dataclass(frozen=True, slots=True)
class Redirection:
    """Where a redirected client should go: ``permanent`` is 0x9D Server moved, else 0x9C Use another server."""

    permanent: bool = False
    server_reference: str = ""


@dataclass(frozen=True, slots=True)
class BalancerClient:
    """The client a balancer decides about (BifroMQ's ``ClientInfo`` at CONNECT)."""

    tenant_id: str
    user_id: str
    client_id: str
    protocol_level: int
    address: str = ""
    attributes: Mapping[str, Any] = field(default_factory=dict)


class ClientBalancer(Protocol):
    def need_redirect(self, client: BalancerClient) -> Redirection | None:
        """None: keep the client here; a ``Redirection``: send it away (may also be ``async def``)."""
        ...


def make_balancer(settings: Settings) -> ClientBalancer | None:
    """The balancer ``settings.client_balancer`` names (None when unset); raises ValueError on a bad name."""
    spec = settings.client_balancer.strip()
    if not spec:
        return None
    balancer: ClientBalancer = load_plugin("TIDEMQ_CLIENT_BALANCER", spec, (settings,), ("need_redirect",))
    return balancer


_errors = LogThrottle(60.0, 100)


async def ask(balancer: ClientBalancer, client: BalancerClient) -> Redirection | None:
    """The balancer's answer for ``client``; None (keep it) when the balancer raises or answers nonsense."""
    try:
        answer: Any = balancer.need_redirect(client)
        if hasattr(answer, "__await__"):
            answer = await answer
    except Exception as exc:
        if _errors.allow(id(balancer), time.monotonic()):
            log.warning("client balancer %s failed (tenant=%s): %s: %s; the client stays",
                        type(balancer).__name__, client.tenant_id, type(exc).__name__, exc,
                        extra={"event": "balancer_error", "tenant": client.tenant_id})
        return None
    return answer if isinstance(answer, Redirection) else None
