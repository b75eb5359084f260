"""``$SYS`` topics: mosquitto's broker statistics, per tenant, for the tenants that opt in.

Every ``TIDEMQ_SYS_INTERVAL`` seconds (``Settings.sys_interval``, default 10; mosquitto's ``sys_interval``)
the worker publishes, for each tenant with ``SysTopicsEnabled`` that has a session on this worker,
retained QoS 0 messages in that tenant only (a tenant's ``$SYS`` tree is built from that tenant's numbers
and published into that tenant's namespace, so nothing ever crosses tenants):

- per worker: ``$SYS/broker/workers/<id>/clients/connected``, ``.../messages/received``,
  ``.../messages/sent``, ``.../uptime`` (``<n> seconds``);
- cluster-wide (mosquitto's names): ``$SYS/broker/clients/connected``, ``$SYS/broker/messages/received``,
  ``$SYS/broker/messages/sent`` (sums over the live workers' per-worker topics, read back from the
  tenant's retained store), ``$SYS/broker/uptime`` (the oldest live worker's) and ``$SYS/broker/version``.

Every message expires after three intervals, so a stopped worker's topics disappear and the sums
only count live workers. Counters restart at zero when a worker restarts (as mosquitto's do).
"""

from __future__ import annotations

import logging
import time
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from tidemq.message import Message, unpack
from tidemq.store import retained as retained_store

if TYPE_CHECKING:
    from .metrics import WorkerMetrics
    from .services import WorkerServices

log = logging.getLogger("tidemq.worker")

ROOT = "$SYS/broker/"
SUMMED = ("clients/connected", "messages/received", "messages/sent")


def broker_version() -> str:
    try:
        return f"TideMQ {version('tidemq')}"
    except PackageNotFoundError:
        return "TideMQ"


class SysPublisher:
    def __init__(self, redis: Any, services: WorkerServices, metrics: WorkerMetrics,
                 interval: float | None = None) -> None:
        self.redis = redis
        self.services = services
        self.metrics = metrics
        self.interval = services.settings.sys_interval if interval is None else interval
        self.version = broker_version()
        self._next = 0.0

    async def maybe_publish(self) -> None:
        """Publish when an interval has passed since the last time (called about once a second)."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval
        for tenant in sorted({t for t, _c in self.services.registry.sessions}):
            try:
                if (await self.services.tenants.get(tenant)).sys_topics_enabled:
                    await self.publish_tenant(tenant)
            except Exception as exc:  # one tenant's failure never stops the others
                log.warning("$SYS publish failed tenant=%s: %r", tenant, exc)

    def worker_values(self, tenant: str) -> dict[str, int]:
        totals = self.metrics.tenant_totals(tenant)
        connected = sum(1 for t, _c in self.services.registry.sessions if t == tenant)
        return {"clients/connected": connected, "messages/received": totals["received"],
                "messages/sent": totals["sent"], "uptime": int(time.time() - self.metrics.started)}

    async def publish_tenant(self, tenant: str) -> None:
        svc = self.services
        mine = self.worker_values(tenant)
        own = f"{ROOT}workers/{svc.worker_id}/"
        now_ms = svc.clock.wall_ms()
        # what the other live workers published (expired entries are skipped), plus our fresh values
        sums = {k: mine[k] for k in SUMMED}
        uptime = mine["uptime"]
        for blob in await retained_store.retain_match(self.redis, tenant, f"{ROOT}workers/+/#", 1000, now_ms=now_ms):
            msg = unpack(blob)
            if msg.topic.startswith(own) or msg.expired(now_ms):
                continue
            rest = msg.topic[len(ROOT + "workers/"):].split("/", 1)
            if len(rest) != 2:
                continue
            try:
                value = int(msg.payload.split(b" ", 1)[0])
            except ValueError:
                continue
            if rest[1] in sums:
                sums[rest[1]] += value
            elif rest[1] == "uptime":
                uptime = max(uptime, value)
        out = {f"{own}{k}": _text(k, v) for k, v in mine.items()}
        out.update({f"{ROOT}{k}": str(v) for k, v in sums.items()})
        out[f"{ROOT}uptime"] = f"{uptime} seconds"
        out[f"{ROOT}version"] = self.version
        expire = now_ms + int(self.interval * 3000)
        for topic, text in out.items():
            svc.dispatcher.submit(tenant, Message(topic, text.encode(), 0, True, {}, expire, "", now_ms))


def _text(key: str, value: int) -> str:
    return f"{value} seconds" if key == "uptime" else str(value)
