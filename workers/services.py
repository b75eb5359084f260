"""``WorkerServices``: the collaborators a packet handler may use, passed in explicitly.

Built once by the composition root (``workers/broker.py``) and handed to every
connection; handlers reach the store, auth, settings, dispatcher, inbox
batchers, registry, wills and clock only through it (never through the
broker). Tests build one with fakes (``tests/unit``).

``Admission`` holds the connection-level limits; the tenant's
``TotalConnections`` and ``TotalConnectPerSecond`` are enforced across every
worker by ``ClusterAdmission`` (places leased from Redis, so a CONNECT under
the limit costs no round trip of its own; docs/settings.md gives the accuracy).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tidemq.auth import AuthProvider
from tidemq.clock import Clock
from tidemq.config import Settings
from tidemq.limits import ConnectionCounter, ConnectRateLimiter
from tidemq.mqtt.reason_codes import RC
from tidemq.mqtt.session import Limits
from tidemq.store import tenant_limits
from tidemq.store.coalesce import Coalescer
from tidemq.store.tenant_limits import ConnsRequest
from tidemq.tenants import SettingsProvider, TenantSettings

from .dispatch import Dispatcher
from .inbox import InboxOps, InboxReader
from .metrics import WorkerMetrics
from .registry import Registry
from .timers import ExpiryTimers
from .wills import WillService

log = logging.getLogger("tidemq.worker")

FIELD_TTL_MS = 6000  # a worker's connection count stops counting this long after its last sync (= lease TTL)
MAX_LEASE = 64  # most places one worker leases at a time (connections, or CONNECTs of one second)


class PendingConnection(Protocol):
    pending_connect: bool
    opened: float  # monotonic time the transport was accepted

    @property
    def connected(self) -> bool: ...


@dataclass(slots=True)
class Lifecycle:
    """What the whole worker is doing; handlers read it, only the broker writes it."""

    stopping: bool = False  # draining: no new sessions; wills only where NoLWTWhenServerShuttingDown is false


@dataclass(slots=True)
class _Quota:
    """One tenant's leased places on this worker (connections, or CONNECTs of the current second)."""

    limit: int
    spare: int = 0  # places leased and not used yet
    valid_until: float = float("inf")  # monotonic end of the spare places (a connect-rate second)
    roomy_until: float = 0.0  # until then, the last answer showed the tenant under half its limit
    workers: int = 1  # live workers holding places of the tenant (the last answer): sizes a lease
    waiting: int = 0  # CONNECTs waiting for a lease (counted locally, no place yet)
    taken: int = 0  # connect rate: CONNECTs admitted without a place, to count at the next lease
    leases: int = 0  # leases started (a waiter is decided by the first one that started after it came)
    inflight: asyncio.Future[None] | None = None


class ClusterAdmission:
    """``TotalConnections`` and ``TotalConnectPerSecond`` across every worker (``tidemq.store.tenant_limits``).

    Each limited tenant has leased places here: a CONNECT takes one without a
    round trip. Without a place, a CONNECT is admitted at once when the last
    answer (at most ``FIELD_TTL_MS`` old) showed the tenant under half its
    limit, and counted by a lease sent in the background (at most one such
    CONNECT per tenant per lease in flight); otherwise it waits for a lease
    (one round trip, shared by every CONNECT waiting) and is refused if the
    lease brings no place. Leases take spare places only while the tenant is
    under half its limit (``_extra``). Connection places freed here stay here
    until the next ``sync`` (every lease period) trims them: to one lease's
    extra while the tenant is under half its limit, to none above.
    Accuracy: docs/settings.md.
    """

    def __init__(self, redis: Any, worker_id: str, counter: ConnectionCounter, clock: Clock) -> None:
        self.redis = redis
        self.worker_id = worker_id
        self.counter = counter
        self.clock = clock
        self.conns: dict[str, _Quota] = {}
        self.rates: dict[str, _Quota] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned = 0.0
        self.workers = 0  # live workers of the deployment (read by every sync; 0: not known yet, no extra)

    def _extra(self, limit: int, q: _Quota) -> int:
        """Places to lease beyond those needed now: while the tenant is under half its limit, a quarter of
        the limit split over the live workers (at most MAX_LEASE; none for a limit under 4 per worker, and
        none near the limit, where a place held idle here could refuse a CONNECT elsewhere)."""
        if self.clock.monotonic() >= q.roomy_until or not self.workers:
            return 0
        return min(MAX_LEASE, limit // (4 * max(1, q.workers, self.workers)))

    # -- connections ------------------------------------------------------------------------------------

    def _held(self, tenant: str, q: _Quota) -> int:
        """What the worker's field says: connections open here that have a place, plus the spare places."""
        return self.counter.count(tenant) - q.waiting + q.spare

    async def hold_connection(self, tenant: str, limit: int) -> bool:
        """A place for one more connection of ``tenant``, already counted by ``self.counter``."""
        q = self.conns.get(tenant)
        if q is None:
            q = self.conns[tenant] = _Quota(limit)
        q.limit = limit
        if q.spare > 0:
            q.spare -= 1
            return True
        if q.inflight is None and self.clock.monotonic() < q.roomy_until:
            self._start(q, self._conns_lease(tenant, q, self._extra(limit, q)))  # counts this one too
            return True
        placed = await self._wait(q, lambda: self._conns_lease(tenant, q, q.waiting + self._extra(limit, q)))
        return placed if placed is not None else self.counter.count(tenant) <= limit  # Redis failed: this worker

    def release_connection(self, tenant: str) -> None:
        """A connection of ``tenant`` ended (after ``self.counter.release``): its place stays here, spare."""
        q = self.conns.get(tenant)
        if q is not None:
            q.spare += 1

    async def _conns_lease(self, tenant: str, q: _Quota, want: int) -> None:
        (answer,) = await tenant_limits.conns_sync(
            self.redis, self.worker_id, [ConnsRequest(tenant, self._held(tenant, q), want, q.limit)],
            ttl_ms=FIELD_TTL_MS)
        q.spare += answer.granted
        self._conns_answered(tenant, q, answer.others, answer.workers)

    def _conns_answered(self, tenant: str, q: _Quota, others: int, workers: int) -> None:
        q.workers = workers
        roomy = 2 * (others + self._held(tenant, q)) < q.limit
        q.roomy_until = self.clock.monotonic() + FIELD_TTL_MS / 1000 if roomy else 0.0

    async def sync(self) -> None:
        """Every lease period: trim spare places, renew this worker's field of every limited tenant (one
        pipelined round trip), forget tenants with nothing held; drop connect-rate state that ran out."""
        self.workers = max(1, await tenant_limits.live_workers(self.redis))
        now = self.clock.monotonic()
        for tenant in [t for t, q in self.rates.items() if q.inflight is None and now >= q.valid_until
                       and now >= q.roomy_until and not q.taken]:
            del self.rates[tenant]
        batch = [(t, q) for t, q in self.conns.items() if q.inflight is None]
        if not batch:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for _tenant, q in batch:
            q.spare = min(q.spare, self._extra(q.limit, q))
            q.inflight = done
        try:
            answers = await tenant_limits.conns_sync(
                self.redis, self.worker_id,
                [ConnsRequest(t, self._held(t, q), 0, q.limit) for t, q in batch], ttl_ms=FIELD_TTL_MS)
            for (tenant, q), answer in zip(batch, answers, strict=True):
                self._conns_answered(tenant, q, answer.others, answer.workers)
                if self._held(tenant, q) <= 0 and not q.waiting and self.conns.get(tenant) is q:
                    del self.conns[tenant]
        finally:
            for _tenant, q in batch:
                q.inflight = None
            done.set_result(None)

    async def close(self) -> None:
        """Graceful exit: this worker's fields go (its connections were closed by the drain)."""
        for q in self.conns.values():
            q.spare = 0
        await tenant_limits.conns_sync(
            self.redis, self.worker_id, [ConnsRequest(t, 0, 0, q.limit) for t, q in self.conns.items()],
            ttl_ms=FIELD_TTL_MS)
        self.conns.clear()

    # -- connect rate -------------------------------------------------------------------------------------

    async def take_connect(self, tenant: str, limit: int) -> bool:
        """One CONNECT of ``tenant`` within ``limit`` per second (of the Redis clock), cluster-wide."""
        q = self.rates.get(tenant)
        if q is None:
            q = self.rates[tenant] = _Quota(limit, valid_until=0.0)
        q.limit = limit
        now = self.clock.monotonic()
        if now >= q.valid_until:
            q.spare = 0
        if q.spare > 0:
            q.spare -= 1
            return True
        if q.inflight is None and now < q.roomy_until:
            q.taken += 1  # admitted now, counted by the lease sent in the background
            self._start(q, self._rate_lease(tenant, q, self._extra(limit, q)))
            return True
        placed = await self._wait(q, lambda: self._rate_lease(tenant, q, q.waiting + self._extra(limit, q)))
        return placed is not False  # Redis failed: the CONNECT itself will tell the client

    async def _rate_lease(self, tenant: str, q: _Quota, want: int) -> None:
        sent = self.clock.monotonic()
        taken, q.taken = q.taken, 0
        try:
            answer = await tenant_limits.rate_lease(self.redis, tenant, want=want, limit=q.limit, taken=taken)
        except BaseException:
            q.taken += taken
            raise
        q.spare = answer.granted
        q.valid_until = sent + answer.ms_left / 1000  # the Redis second ends no earlier than this
        q.roomy_until = sent + FIELD_TTL_MS / 1000 if 2 * answer.count < q.limit else 0.0
        if conns := self.conns.get(tenant):
            q.workers = conns.workers

    # -- shared -------------------------------------------------------------------------------------------

    def _start(self, q: _Quota, lease: Awaitable[None]) -> asyncio.Future[None]:
        async def run() -> None:
            try:
                await lease
            finally:
                q.inflight = None

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._done)
        q.inflight = task
        q.leases += 1
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._warn(exc)

    def _warn(self, exc: BaseException) -> None:
        now = self.clock.monotonic()
        if now - self._warned >= 60.0:
            self._warned = now
            log.warning("cluster-wide connection limits: Redis call failed (%s); deciding locally", exc)

    async def _wait(self, q: _Quota, lease: Callable[[], Awaitable[None]]) -> bool | None:
        """Wait for a lease that started after we came (one round trip, shared); take a place if it brought one.
        None when Redis failed: the caller decides alone."""
        q.waiting += 1
        joined = q.leases
        try:
            while True:
                if q.spare > 0 and self.clock.monotonic() < q.valid_until:
                    q.spare -= 1
                    return True
                if q.leases > joined and q.inflight is None:
                    return False
                fut = q.inflight if q.inflight is not None else self._start(q, lease())
                try:
                    await asyncio.shield(fut)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._warn(exc)
                    return None
        finally:
            q.waiting -= 1


class Admission:
    """Connection-level limits: before authentication (connections that have not finished CONNECT,
    CONNECT attempts per source address) and at CONNECT (protocol switches, connect rate, caps).
    The process-wide ones (``TIDEMQ_MAX_CONNECTIONS``, ``TIDEMQ_MAX_CONNECT_RATE``) are this worker's;
    the tenant's are cluster-wide when a Redis client is given."""

    def __init__(self, settings: Settings, metrics: WorkerMetrics, clock: Clock, *, redis: Any = None,
                 worker_id: str = "") -> None:
        self.settings = settings
        self.counter = ConnectionCounter(settings.max_connections)
        self.rate = ConnectRateLimiter(settings.max_connect_rate)
        # TotalConnections / TotalConnectPerSecond across the workers (None: per worker, as tidemq.limits)
        self.cluster = ClusterAdmission(redis, worker_id, self.counter, clock) if redis is not None else None
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

    async def admit(self, tenant: str, level: int, ts: TenantSettings, now: float) -> int:
        """0 to admit (a connection slot is then held until ``release``), else the refusal code.

        ``TotalConnectPerSecond`` and ``TotalConnections`` are the tenant's across every worker
        (``ClusterAdmission``): no round trip while this worker holds leased places."""
        if not ts.protocol_enabled(level):
            return self.metrics.refuse("protocol_disabled", tenant, RC.UNSUPPORTED_PROTOCOL_VERSION)
        cluster = self.cluster
        rate, limit = ts.total_connect_per_second, ts.total_connections
        if not self.rate.allow(tenant, now, 0 if cluster is not None else rate):
            return self.metrics.refuse("connect_rate", tenant, RC.CONNECTION_RATE_EXCEEDED)
        if cluster is not None and rate > 0 and not await cluster.take_connect(tenant, rate):
            return self.metrics.refuse("connect_rate", tenant, RC.CONNECTION_RATE_EXCEEDED)
        if not self.counter.acquire(tenant, 0 if cluster is not None else limit):
            return self.metrics.refuse("max_connections", tenant, RC.QUOTA_EXCEEDED)
        if cluster is not None and limit > 0 and not await cluster.hold_connection(tenant, limit):
            self.counter.release(tenant)
            return self.metrics.refuse("max_connections", tenant, RC.QUOTA_EXCEEDED)
        return 0

    def release(self, tenant: str) -> None:
        self.counter.release(tenant)
        if self.cluster is not None:
            self.cluster.release_connection(tenant)

    async def sync(self) -> None:
        """Every lease period (``workers/leases.py``): renew this worker's share of the tenants' limits."""
        if self.cluster is not None:
            await self.cluster.sync()

    async def close(self) -> None:
        """Graceful exit, after the drain: this worker holds no places any more."""
        if self.cluster is not None:
            await self.cluster.close()


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
    # the session steps of CONNECTs and session ends share pipelined round trips (store/coalesce.py)
    store_calls: Coalescer = field(init=False)
    # the state machine's limits are never mutated, only replaced: one object per worker before
    # authentication, one per TenantSettings value after (handle_connect; id -> (settings, limits))
    _preauth_limits: Limits | None = field(default=None, init=False)
    limits_by_settings: dict[int, tuple[TenantSettings, Limits]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.store_calls = Coalescer(self.redis)

    def connection_limits(self) -> Limits:
        """The state machine's limits before a tenant is known (pre-authentication caps), built once."""
        limits = self._preauth_limits
        if limits is None:
            s = self.settings
            limits = self._preauth_limits = Limits(
                max_packet_size=s.max_packet_size, receive_maximum=s.max_inflight, topic_alias_maximum=16,
                server_keep_alive=s.server_keep_alive, min_keep_alive=s.min_keep_alive,
                preauth_max_packet_size=min(s.preauth_max_packet, s.max_packet_size))
        return limits
