"""The composition root of the MQTT worker process: wires the services and owns their lifecycles.

``Broker`` builds one ``WorkerServices`` (store, auth, tenant settings,
registry, dispatcher, inbox batchers, wills, admission, clock) and hands it to
every connection; it starts, in order, the script cache, the lease, the
signal listener (no client is accepted before takeover/kill signals can reach
this worker), the timers, the sweeper and the lease keeper, the health
endpoint and finally the listeners; ``stop`` drains in the reverse order. ``reload`` (the CLI's SIGHUP) re-reads
the auth provider's files and the TLS files; no connection is dropped: the
timers re-check the subscriptions of live sessions against the new rules, new
TLS handshakes get the new certificate.
Nothing else imports this module except the CLI: handlers get services, not
the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Coroutine
from typing import Any

from tidemq.auth import AuthProvider, make_provider
from tidemq.clock import SYSTEM_CLOCK, Clock
from tidemq.config import ConfigError, Settings
from tidemq.events import bus_from_settings
from tidemq.mqtt.reason_codes import RC
from tidemq.publish import CUTS, DROPS
from tidemq.store import route_watch
from tidemq.store import scripts as store_scripts
from tidemq.store import signals as signal_store
from tidemq.store.route_watch import RouteWatch
from tidemq.tenants import SettingsProvider

from . import control, timers
from .connection import MQTTConnection
from .dispatch import Dispatcher
from .health import start_health
from .inbox import InboxOps, InboxReader
from .leases import LEASE_RENEW_S, LEASE_TTL_MS, LeaseKeeper
from .metrics import WorkerMetrics
from .registry import Registry
from .services import Admission, Lifecycle, WorkerServices
from .timers import ExpiryTimers
from .transport.listeners import start_listeners
from .transport.tls import ReloadableTLS
from .wills import WillService

log = logging.getLogger("tidemq.worker")

__all__ = ["LEASE_RENEW_S", "LEASE_TTL_MS", "Broker"]


class Broker:
    def __init__(self, settings: Settings, redis: Any, *, auth: AuthProvider | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.settings = settings
        self.redis = redis
        worker_id = settings.worker_id or f"w-{uuid.uuid4().hex[:12]}"
        try:
            events = bus_from_settings(settings)
        except ValueError as exc:  # a custom event sink that cannot be built: one line, not a traceback
            raise ConfigError(str(exc)) from exc
        metrics = WorkerMetrics(events, settings.metrics_tenant_top)
        registry = Registry(metrics)
        tenants = SettingsProvider(redis, settings)
        try:
            provider = auth or make_provider(settings)
        except ValueError as exc:  # a missing or bad auth file: one line, not a traceback
            raise ConfigError(str(exc)) from exc
        wait = (settings.redis_wait_replicas, settings.redis_wait_timeout_ms) if settings.redis_wait_replicas else None
        inbox_ops = InboxOps(redis)
        # route caches told of every change by push on a single Redis (not on a cluster)
        self.route_watch = RouteWatch(redis, worker_id) if route_watch.enabled(redis) else None
        dispatcher = Dispatcher(redis, worker_id, tenants, registry, clock, wait=wait, watch=self.route_watch)
        wills = WillService(redis, provider, dispatcher, clock, metrics, tenants=tenants)
        self.services = WorkerServices(
            settings=settings, redis=redis, auth=provider, tenants=tenants, clock=clock, metrics=metrics,
            registry=registry, dispatcher=dispatcher, inbox_reader=InboxReader(redis), inbox_ops=inbox_ops,
            wills=wills, expiry=ExpiryTimers(redis, clock),
            admission=Admission(settings, metrics, clock, redis=redis, worker_id=worker_id),
            worker_id=worker_id, lifecycle=Lifecycle())
        self.leases = LeaseKeeper(redis, worker_id, clock, wills, self.stats, on_reaped=self._close_all,
                                  on_renew=self.services.admission.sync, on_release=self.services.admission.close)
        self.servers: list[asyncio.Server] = []
        self.health_server: asyncio.Server | None = None  # answers 503 while draining
        self.tls: ReloadableTLS | None = None  # the TLS/WSS listeners' context, reloadable
        self._bg: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------ read-only views (health, tests)

    @property
    def worker_id(self) -> str:
        return self.services.worker_id

    @property
    def stopping(self) -> bool:
        return self.services.lifecycle.stopping

    @property
    def lease_renewed_at(self) -> float:
        return self.leases.renewed_at

    def _close_all(self) -> None:
        """Every client reconnects (0x89 server busy; MQTT 3: closed) and resumes its session from Redis."""
        for conn in list(self.services.registry.connections):
            conn.close(RC.SERVER_BUSY, "this worker was reaped: reconnect")

    def _new_connection(self) -> MQTTConnection:
        return MQTTConnection(self.services)

    # ------------------------------------------------------------ lifecycle

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Load scripts, start background loops and the listeners; returns the bound TCP port."""
        svc = self.services
        await store_scripts.load_all(self.redis)
        await self.leases.renew()
        await self.leases.clear_stale_reap()
        ready = asyncio.Event()
        self._spawn(control.listen(self.redis, svc.worker_id, svc.registry, svc.clock, svc.lifecycle, ready))
        # accept no client before takeover/kill signals can reach us
        await asyncio.wait_for(ready.wait(), timeout=15)
        if self.route_watch is not None:  # nor before our route changes can be acknowledged to us
            self._spawn(self.route_watch.run())
            await asyncio.wait_for(self.route_watch.ready.wait(), timeout=15)
        self._spawn(timers.connection_timers(svc.registry, svc.clock, svc.auth))
        self._spawn(timers.sweeper(self.redis, svc.wills, svc.clock, self.settings.sweep_interval))
        self._spawn(self.leases.run())
        self._spawn(svc.metrics.run(self.redis, svc, self.stats, lambda: self.leases.renewed_at))  # $SYS, events
        if self.settings.health_port:  # before MQTT: a probe must see "ready" no earlier than clients can
            self.health_server = await start_health(self, host, self.settings.health_port, reuse_port=reuse_port,
                                                    metrics=svc.metrics.exposition)
        if self.settings.tls_port or self.settings.wss_port:
            try:
                self.tls = ReloadableTLS(self.settings)
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
        # TLS / WebSocket listeners first: TCP accepting means all are up
        self.servers += await start_listeners(self.settings, self._new_connection, host, reuse_port=reuse_port,
                                              ssl_context=self.tls.context if self.tls is not None else None)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(self._new_connection, host, port, backlog=2048,
                                          reuse_port=reuse_port or None)
        self.servers.append(server)
        bound: int = server.sockets[0].getsockname()[1]
        log.info("worker %s listening mqtt=%s:%d", svc.worker_id, host, bound)
        return bound

    def reload(self, settings: Settings | None = None) -> list[str]:
        """SIGHUP: re-read the auth provider's files and the TLS files (paths and passphrase from ``settings``,
        default the current ones). What fails to load is logged and the previous version kept; connections
        stay. Returns what was reloaded (``auth``, ``tls``)."""
        done = []
        reload = getattr(self.services.auth, "reload", None)  # optional in the provider interface
        if callable(reload):
            try:
                if reload():
                    done.append("auth")
            except Exception as exc:
                log.error("auth provider not reloaded: %s", exc)
        if self.tls is not None:
            try:
                self.tls.reload(settings or self.settings)
                done.append("tls")
            except ValueError as exc:
                log.error("TLS files not reloaded, keeping the previous ones: %s", exc)
        return done

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def stop(self, grace: float | None = None) -> None:
        """Graceful drain: refuse new connections, disconnect clients (0x8B, or 0x9C with the server
        reference when one is configured), fire the wills of the sessions it closes only for tenants whose
        ``NoLWTWhenServerShuttingDown`` is false (``end_session`` decides), flush writes (those wills
        included), release the lease — all within ``drain_grace`` seconds."""
        svc = self.services
        grace = self.settings.drain_grace if grace is None else grace
        svc.lifecycle.stopping = True
        for server in self.servers:
            server.close()
        conns = list(svc.registry.connections)
        ref = self.settings.server_reference
        cleanups: list[asyncio.Task[Any]] = []
        for conn in conns:
            if ref:
                conn.close(RC.USE_ANOTHER_SERVER, "server shutting down", {"server_reference": ref})
            else:
                conn.close(RC.SERVER_SHUTTING_DOWN, "server shutting down")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        # connection_lost (and so each session's end) runs on a later loop turn: wait for all of them
        while loop.time() < deadline:
            cleanups = [t for c in conns for t in c.live_tasks()]
            if not svc.registry.connections and not cleanups:
                break
            if cleanups:
                await asyncio.wait(cleanups, timeout=max(0.0, deadline - loop.time()))
            else:
                await asyncio.sleep(0.01)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(svc.dispatcher.drain(), timeout=grace)
            await asyncio.wait_for(svc.inbox_ops.flush_now(), timeout=grace)
        if self.route_watch is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.route_watch.close(), timeout=grace)
        for task in list(self._bg):
            task.cancel()
        svc.wills.cancel_all()
        svc.expiry.stopped = True
        with contextlib.suppress(Exception):
            await self.leases.release()
            await signal_store.drop_stream(self.redis, svc.worker_id)
        close = getattr(svc.auth, "close", None)  # optional in the provider interface
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=1.0)
        if self.health_server is not None:  # probes saw 503 "draining" until here
            self.health_server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.health_server.wait_closed(), timeout=1.0)

    def stats(self) -> dict[str, int]:
        """Counters and gauges for /metrics (published to Redis with the lease)."""
        svc = self.services
        out = svc.metrics.counter_values()
        out.update(svc.registry.counts())
        for qos, n in enumerate(svc.dispatcher.stats_in):
            out[f"messages_in_qos{qos}"] = n
        out["messages_routed"] = svc.dispatcher.stats_routed
        out["dispatch_backlog"] = svc.dispatcher.backlog
        out["pending_connects"] = svc.admission.pending
        out.update(DROPS.totals())  # inbox drops (refused_inbox_full, dropped_qos0_*)
        out.update(CUTS.totals())  # fan-out limits (dropped_group_fanout, dropped_persistent_fanout*)
        return out
