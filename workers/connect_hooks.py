"""CONNECT-time extension points the worker consults: the client balancer and the auth attributes record.

``redirected`` asks the balancer (``TIDEMQ_CLIENT_BALANCER``, ``tidemq.balancer``) about a client that
authenticated, before anything is claimed in Redis, and answers the CONNECT itself when the client is
sent away (MQTT 5: 0x9D / 0x9C with the Server Reference; MQTT 3: 3, Server unavailable). The balancer
is built once per process on first use; a name that does not load is logged once as an error and no
client is redirected (the broker keeps serving). ``record_attributes`` writes the auth provider's
attributes of the connection that now holds the session (``tidemq.store.session_attrs``), so
``GET /session`` shows them; a failed write is logged, never a reason to refuse the client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tidemq.auth import AuthResult
from tidemq.balancer import BalancerClient, ClientBalancer, ask, make_balancer
from tidemq.config import Settings
from tidemq.mqtt.reason_codes import RC
from tidemq.store import session_attrs

if TYPE_CHECKING:
    from .connection import MQTTConnection
    from .services import WorkerServices

log = logging.getLogger("tidemq.conn")

MAX_SERVER_REFERENCE = 65535  # bytes of an MQTT UTF-8 string

_balancers: dict[str, ClientBalancer | None] = {}  # TIDEMQ_CLIENT_BALANCER -> its instance (None: off / broken)


def _balancer(settings: Settings) -> ClientBalancer | None:
    spec = settings.client_balancer.strip()
    if not spec:
        return None
    if spec not in _balancers:
        try:
            _balancers[spec] = make_balancer(settings)
        except Exception as exc:  # a bad plugin name or a failing constructor: serve without it
            log.error("client balancer not loaded, no client is redirected: %s", exc,
                      extra={"event": "balancer_error"})
            _balancers[spec] = None
    return _balancers[spec]


async def redirected(conn: MQTTConnection, client_id: str, auth: AuthResult) -> bool:
    """True when the client balancer sent this authenticated client elsewhere (its CONNECT is answered)."""
    svc = conn.services
    balancer = _balancer(svc.settings)
    if balancer is None:
        return False
    level = conn.machine.protocol_level
    where = await ask(balancer, BalancerClient(auth.tenant_id, auth.user_id, client_id, level, conn.address,
                                               dict(auth.attributes)))
    if where is None:
        return False
    code = svc.metrics.refuse("redirect", auth.tenant_id, RC.SERVER_MOVED if where.permanent
                              else RC.USE_ANOTHER_SERVER)
    ref = where.server_reference if len(where.server_reference.encode("utf-8", "replace")) <= MAX_SERVER_REFERENCE \
        else ""
    conn.machine.refuse(code, properties={"server_reference": ref} if ref else None)  # v3: 3 (Server unavailable)
    conn.close_reason = "redirected by the client balancer"
    conn.flush()
    return True


async def record_attributes(svc: WorkerServices, tenant: str, client_id: str, epoch: int,
                            attributes: Mapping[str, Any]) -> None:
    """The auth provider's attributes of connection ``epoch``, for ``GET /session`` (nothing when there are none)."""
    if not attributes:
        return
    try:
        await session_attrs.write_attributes(svc.redis, tenant, client_id, epoch, attributes)
    except Exception as exc:
        log.warning("auth attributes of tenant=%s client=%s not recorded: %s", tenant, client_id, exc)
