"""``WorkerServices``: the collaborators a packet handler may use, passed in explicitly.

Built once by the composition root (``workers/broker.py``) and handed to every
connection; handlers reach the store, auth, settings, dispatcher, inbox
batchers, registry, wills and clock only through it (never through the
broker). Tests build one with fakes (``tests/unit``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from tidemq.auth import AuthProvider
from tidemq.clock import Clock
from tidemq.config import Settings
from tidemq.limits import ConnectionCounter, ConnectRateLimiter
from tidemq.mqtt.reason_codes import RC
from tidemq.mqtt.session import Limits
from tidemq.tenants import SettingsProvider, TenantSettings

from .dispatch import Dispatcher
from .inbox import InboxOps, InboxReader
from .metrics import WorkerMetrics
from .registry import Registry
from .timers import ExpiryTimers
from .wills import WillService


class PendingConnection(Protocol):
    pending_connect: bool
    opened: float  # monotonic time the transport was accepted

    @property
    def connected(self) -> bool: ...


@dataclass(slots=True)
class Lifecycle:
    """What the whole worker is doing; handlers read it, only the broker writes it."""

    stopping: bool = False  # draining: no new sessions; wills only where NoLWTWhenServerShuttingDown is false


class Admission:
    """Connection-level limits: before authentication (connections that have not finished CONNECT,
    CONNECT attempts per source address) and at CONNECT (protocol switches, connect rate, caps)."""

    def __init__(self, settings: Settings, metrics: WorkerMetrics, clock: Clock) -> None:
        self.settings = settings
        self.counter = ConnectionCounter(settings.max_connections)
        self.rate = ConnectRateLimiter(settings.max_connect_rate)
        self.per_address = ConnectRateLimiter(0.0)  # keyed by source address, bounded like tenants
        self.metrics = metrics
        self.clock = clock
        self.pending = 0  # connections that have not finished CONNECT

    def pre_auth(self, conn: PendingConnection, address: str) -> str:
        """Admit a new transport before anything is read: "" to admit, else why it is refused."""
        s = self.settings
        if s.max_pending_connects and self.pending >= s.max_pending_connects:
            self.metrics.refuse("pending_connects", "", RC.SERVER_BUSY)
            return "too many connections awaiting CONNECT"
        if s.connect_rate_per_ip and not self.per_address.allow(address, self.clock.monotonic(),
                                                                 s.connect_rate_per_ip):
            self.metrics.refuse("connect_rate_address", "", RC.CONNECTION_RATE_EXCEEDED)
            return "connect rate of the source address"
        self.pending += 1
        conn.pending_connect = True
        return ""

    def connect_done(self, conn: PendingConnection) -> None:
        """The CONNECT of ``conn`` was decided (or the transport closed): it no longer counts as pending."""
        if conn.pending_connect:
            conn.pending_connect = False
            self.pending -= 1
            self.metrics.connect_done(conn.opened, self.clock.monotonic(), conn.connected)

    def admit(self, tenant: str, level: int, ts: TenantSettings, now: float) -> int:
        """0 to admit (a connection slot is then held until ``release``), else the refusal code."""
        if not ts.protocol_enabled(level):
            return self.metrics.refuse("protocol_disabled", tenant, RC.UNSUPPORTED_PROTOCOL_VERSION)
        if not self.rate.allow(tenant, now, ts.total_connect_per_second):
            return self.metrics.refuse("connect_rate", tenant, RC.CONNECTION_RATE_EXCEEDED)
        if not self.counter.acquire(tenant, ts.total_connections):
            return self.metrics.refuse("max_connections", tenant, RC.QUOTA_EXCEEDED)
        return 0

    def release(self, tenant: str) -> None:
        self.counter.release(tenant)


@dataclass(slots=True)
class WorkerServices:
    settings: Settings
    redis: Any
    auth: AuthProvider
    tenants: SettingsProvider
    clock: Clock
    metrics: WorkerMetrics
    registry: Registry
    dispatcher: Dispatcher
    inbox_reader: InboxReader
    inbox_ops: InboxOps
    wills: WillService
    expiry: ExpiryTimers
    admission: Admission
    worker_id: str
    lifecycle: Lifecycle

    def connection_limits(self) -> Limits:
        """The state machine's limits before a tenant is known (pre-authentication caps)."""
        s = self.settings
        return Limits(max_packet_size=s.max_packet_size, receive_maximum=s.max_inflight, topic_alias_maximum=16,
                      server_keep_alive=s.server_keep_alive, min_keep_alive=s.min_keep_alive,
                      preauth_max_packet_size=min(s.preauth_max_packet, s.max_packet_size))
