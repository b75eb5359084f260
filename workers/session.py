"""``ClientSession``: who a connection is once CONNECT succeeded, and what its session holds here.

Created by ``handle_connect`` when the client is admitted and the session
claimed in Redis; read by every other handler. The triple (tenant, user,
client id) is the session's identity [BifroMQ: sessions of different users
are independent], named ``<user>/<client id>`` in Redis and in the registry.
``epoch`` is the claim this connection holds (a takeover or kill names it,
so a later reconnect is never closed by a stale signal).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tidemq.auth import DeliveryFilter, Identity
from tidemq.limits import ConnectionLimiter
from tidemq.store.keys import session_name

from .wills import StoredWill


@dataclass(slots=True)
class ClientSession:
    tenant: str
    user: str
    client_id: str  # the MQTT client identifier (ACLs' %c, logs)
    protocol_level: int
    persistent: bool = False
    expiry: int = 0  # session expiry interval (s), capped by the tenant's settings
    epoch: int = 0
    will: StoredWill | None = None
    publish_will: bool = True  # False after a normal DISCONNECT (v5 0x04 sets it again)
    limiter: ConnectionLimiter | None = None
    sub_count: int = 0  # filters of the session (MaxTopicFiltersPerInbox)
    sub_filters: dict[str, int] = field(default_factory=dict)  # filter -> granted QoS (re-subscribing: no quota)
    publish_failed: bool = False  # a publish was not taken by the store (MQTT 3: the client was closed)
    reads: DeliveryFilter = field(default_factory=DeliveryFilter)  # narrowed subscriptions' read checks
    name: str = ""  # the session's name in its tenant, "<user>/<client id>": its keys, routes, registry entry

    def __post_init__(self) -> None:
        self.name = session_name(self.user, self.client_id)

    @property
    def identity(self) -> Identity:
        return Identity(self.tenant, self.user, self.client_id)

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant, self.name)
