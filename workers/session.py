"""``ClientSession``: who a connection is once CONNECT succeeded, and what its session holds here.

Created by ``handle_connect`` when the client is admitted and the session
claimed in Redis; read by every other handler. The triple (tenant, user,
client id) is the session's identity [BifroMQ: sessions of different users
are independent], named ``<user>/<client id>`` in Redis and in the registry.
``epoch`` is the claim this connection holds (a takeover or kill names it,
so a later reconnect is never closed by a stale signal).

The read checks of narrowed subscriptions (``reads``) are created on first
use: most sessions never have a narrowed subscription, and an idle connection
should cost little memory; ``narrowed`` is the per-delivery check that never
creates them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tidemq.auth import DeliveryFilter, Identity
from tidemq.limits import ConnectionLimiter
from tidemq.store.keys import session_name

from .wills import StoredWill

RECENT_TOKENS = 1024  # QoS 2 tokens a transient session remembers (a resend comes within seconds)


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
    name: str = ""  # the session's name in its tenant, "<user>/<client id>": its keys, routes, registry entry
    gen: str = ""  # the session's generation (from session_connect): the one its routes carry
    _reads: DeliveryFilter | None = field(default=None, init=False)  # narrowed subscriptions' read checks

    @property
    def reads(self) -> DeliveryFilter:
        """The read checks of narrowed subscriptions (created on first use, to record a grant)."""
        reads = self._reads
        if reads is None:
            reads = self._reads = DeliveryFilter()
        return reads

    @property
    def narrowed(self) -> DeliveryFilter | None:
        """The read checks when some subscription is narrowed (``reads.active``), else None: the
        per-delivery test, which creates nothing."""
        reads = self._reads
        return reads if reads is not None and reads.active else None

    _identity: Identity | None = field(default=None, init=False)
    _tokens: dict[str, None] | None = field(default=None, init=False)  # recent inbound QoS 2 tokens delivered

    def seen_before(self, token: str) -> bool:
        """Whether a message with this QoS 2 token reached this connection already (else remember it; the
        last ``RECENT_TOKENS`` are kept, created on first use)."""
        tokens = self._tokens
        if tokens is None:
            tokens = self._tokens = {}
        elif token in tokens:
            return True
        tokens[token] = None
        if len(tokens) > RECENT_TOKENS:
            del tokens[next(iter(tokens))]
        return False

    def __post_init__(self) -> None:
        self.name = session_name(self.user, self.client_id)

    @property
    def identity(self) -> Identity:
        """Who the session is (built once: read by the ACL check of every publish)."""
        ident = self._identity
        if ident is None or ident.tenant_id != self.tenant or ident.user_id != self.user \
                or ident.client_id != self.client_id:
            ident = self._identity = Identity(self.tenant, self.user, self.client_id)
        return ident

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant, self.name)
