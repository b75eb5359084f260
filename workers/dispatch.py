"""Publish routing for one worker: batch, match, fan out.

Every inbound PUBLISH (from a client, a will, or a retained-on-subscribe
replay for an inbox) is queued here. One flush runs at a time and takes
everything queued so far, so a busy worker makes one pipelined round trip per
batch, never one per message or per subscriber:

1. route versions of the batch's tenants (one pipelined GET each) — the
   freshness check that makes the in-memory trie safe to trust; a stale
   tenant's routes are reloaded before matching. On a single Redis the
   worker's route watch makes that read unnecessary while the tenant's cache is
   fresh (``tidemq.store.route_watch``): then a batch needs no round trip at all
   before local deliveries;
2. match each message against the tenant trie; split targets into local
   transient sessions, transient sessions on other workers (one ``D`` signal
   per worker) and persistent sessions (one inbox-append script per message,
   the blob passed once), within the tenant's fan-out limits (``tidemq.publish``:
   ``MaxGroupFanout``, ``MaxPersistentFanout``, ``MaxPersistentFanoutBytes``);
3. notify owners of inboxes that received entries, deliver locally, then
   complete the publishers' acknowledgements — only after the store wrote.

Ordering: flushes are serial and batches keep arrival order, so messages of
one publisher reach every subscriber in the order they were published.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tidemq import signals
from tidemq.clock import Clock
from tidemq.message import Message, pack
from tidemq.mqtt.reason_codes import RC
from tidemq.publish import (
    CUTS,
    FanoutLimits,
    RouteCache,
    RoutePlan,
    append_all,
    message_size,
    plan_routes,
    publish_code,
    signal_all,
    sub_ids,
)
from tidemq.routing.trie import Route
from tidemq.store import inbox as inbox_store
from tidemq.store import retained as retained_store
from tidemq.store.models import InboxAppend, InboxTarget
from tidemq.store.route_watch import RouteWatch
from tidemq.tenants import SettingsProvider, TenantSettings

if TYPE_CHECKING:
    from .registry import Registry

log = logging.getLogger("tidemq.dispatch")

YIELD_EVERY = 2000  # local deliveries between two yields to the event loop

# publish completion: called with RC.SUCCESS, RC.NO_MATCHING_SUBSCRIBERS or an error code
Done = Callable[[int], None]


@dataclass(slots=True)
class Pending:
    tenant: str
    msg: Message
    done: Done | None = None
    only: str | None = None  # deliver to this one client only (retained replay into an inbox)
    only_qos: int = 0
    blob: bytes = b""
    only_sids: tuple[int, ...] = ()  # subscription identifier of the replayed subscription
    origin: Origin | None = None  # the publishing session, when a client published it
    dedupe: tuple[str, int] | None = None  # (publisher, packet id): a persistent session's QoS 2 publish


class Origin(Protocol):
    """The publisher of a queued message: once one of its publishes failed (and an MQTT 3 client was
    disconnected to resend it), its later queued publishes are not routed either, so a resend after
    the reconnect cannot be overtaken by messages published after it."""

    publish_failed: bool


class Dispatcher:
    """Batches publishes per event-loop turn and routes them (see module doc)."""

    HIGH_WATER = 20000  # queued publishes before publishers are paused
    LOW_WATER = 5000
    HIGH_WATER_BYTES = 16 * 1024 * 1024  # queued (and in-flight) payload bytes before publishers are paused
    LOW_WATER_BYTES = 4 * 1024 * 1024
    BATCH_MAX = 2048  # publishes routed in one batch: the first deliveries never wait for a huge match

    def __init__(self, redis: Any, worker_id: str, tenants: SettingsProvider, registry: Registry,
                 clock: Clock, *, wait: tuple[int, int] | None = None, watch: RouteWatch | None = None) -> None:
        self.redis = redis
        self.wait = wait  # (replicas, timeout ms): persistent deliveries wait for Redis replicas
        self.worker_id = worker_id
        self.tenants = tenants
        self.registry = registry
        self.clock = clock
        self.routes = RouteCache(watch=watch)  # with a watch: no route-version read while fresh
        self._queue: list[Pending] = []
        self._task: asyncio.Task[None] | None = None
        self._paused: set[Callable[[], None]] = set()
        self.stats_in = [0, 0, 0]
        self.stats_routed = 0
        self.queued_bytes = 0  # payload bytes submitted and not yet routed
        # publishers should pause reading: too many messages or payload bytes waiting (kept up to date where
        # the queue grows and shrinks: read once per publish, so a plain attribute)
        self.overloaded = False

    def _update_overloaded(self) -> None:
        self.overloaded = len(self._queue) > self.HIGH_WATER or self.queued_bytes > self.HIGH_WATER_BYTES

    @property
    def backlog(self) -> int:
        return len(self._queue)

    def submit(self, tenant: str, msg: Message, done: Done | None = None, origin: Origin | None = None,
               dedupe: tuple[str, int] | None = None) -> None:
        """Queue a publish; ``dedupe`` (publisher client id, packet id) records a persistent publisher's QoS 2
        packet id atomically with the routing, so a resend of a routed message is never routed again."""
        queue = self._queue
        queue.append(Pending(tenant, msg, done, origin=origin, dedupe=dedupe))
        self.queued_bytes += len(msg.payload)
        self.stats_in[msg.qos] += 1
        if len(queue) > self.HIGH_WATER or self.queued_bytes > self.HIGH_WATER_BYTES:
            self.overloaded = True
        self._kick()

    def submit_to(self, tenant: str, client_id: str, msg: Message, qos: int,
                  sub_ids: tuple[int, ...] = (), done: Done | None = None) -> None:
        """Queue ``msg`` for one session's inbox only (retained replay for persistent sessions);
        ``done`` is called once the entry is appended (or failed)."""
        self._queue.append(Pending(tenant, msg, done, client_id, qos, only_sids=sub_ids))
        self.queued_bytes += len(msg.payload)
        self._update_overloaded()
        self._kick()

    def pause_until_drained(self, resume: Callable[[], None]) -> None:
        self._paused.add(resume)

    def _kick(self) -> None:
        if self._task is None or self._task.done():  # one flush task at a time; it loops until empty
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._queue:
            if len(self._queue) > self.BATCH_MAX:  # bounded: a batch is matched whole before its deliveries
                batch = self._queue[:self.BATCH_MAX]
                del self._queue[:self.BATCH_MAX]
            else:
                batch, self._queue = self._queue, []
            self._update_overloaded()  # the batch's bytes still count until it is routed
            size = sum(len(p.msg.payload) for p in batch)
            if any(p.origin is not None and p.origin.publish_failed for p in batch):
                batch = self._without_failed_publishers(batch)
            try:
                await self._route(batch)
            except Exception as exc:  # store down: fail the publishers, keep serving
                log.error("routing batch of %d failed: %s", len(batch), exc)
                for p in batch:
                    if p.done:
                        p.done(RC.UNSPECIFIED_ERROR)
            self.queued_bytes -= size
            self._update_overloaded()
            if self._paused and len(self._queue) < self.LOW_WATER and self.queued_bytes < self.LOW_WATER_BYTES:
                resumes, self._paused = self._paused, set()
                for resume in resumes:
                    resume()

    @staticmethod
    def _without_failed_publishers(batch: list[Pending]) -> list[Pending]:
        kept = []
        for p in batch:
            if p.origin is not None and p.origin.publish_failed:
                if p.done:
                    p.done(RC.UNSPECIFIED_ERROR)
            else:
                kept.append(p)
        return kept

    async def drain(self) -> None:
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    # ------------------------------------------------------------------ routing

    async def _route(self, batch: list[Pending]) -> None:
        me = self.worker_id
        registry = self.registry
        now_ms = self.clock.wall_ms()
        # retained writes come BEFORE the route-version read: a subscriber either finds the
        # retained message (its retain lookup ran after our write) or its route is visible to us
        # (its route write preceded its retain lookup, which preceded our write)
        for p in batch:
            if p.msg.retain and p.only is None:
                await self._retain(p)
        await self.routes.refresh(self.redis, sorted({p.tenant for p in batch if p.only is None}))
        # inbound QoS 2 from persistent sessions: the packet id is recorded in the publisher's session first, and
        # its token travels with the message, so a resend routed again reaches no inbox and no connection twice
        deduped = [i for i, p in enumerate(batch) if p.dedupe is not None and p.only is None]
        q2_of: dict[int, tuple[int, str]] = {}
        if deduped:
            answers = await inbox_store.q2_begin_many(
                self.redis, [(batch[i].tenant, batch[i].dedupe[0], batch[i].dedupe[1])  # type: ignore[index]
                             for i in deduped])
            for i, (dup, token) in zip(deduped, answers, strict=True):
                q2_of[i] = (dup, token)
                if token:
                    batch[i].msg.token = token
        q2_for_append: dict[int, tuple[int, str]] = {}

        appends: list[InboxAppend] = []
        remote_items: list[tuple[int, str, signals.Delivery]] = []  # (batch index, worker, delivery)
        local: list[tuple[int, Pending, Route, int]] = []
        matched = [False] * len(batch)
        elsewhere = [False] * len(batch)  # also went to a transient session (local or remote)
        append_at: dict[int, int] = {}  # batch index -> its inbox append (its result: quota refusals)

        settings: dict[str, tuple[TenantSettings, FanoutLimits]] = {}
        memo: dict[tuple[str, str, str, int, bool, int], tuple[list[Route], RoutePlan | None]] = {}
        for i, p in enumerate(batch):
            entry = settings.get(p.tenant)
            if entry is None:
                ts = self.tenants.cached(p.tenant)
                entry = settings[p.tenant] = (ts, FanoutLimits.of(ts))
            ts, limits = entry
            if p.only is not None:
                p.blob = pack(p.msg)  # a retained replay: delivered with RETAIN set
                target = InboxTarget(p.only, p.only_qos, p.only_sids, retain=True)
                appends.append(InboxAppend(p.tenant, p.blob, [target], ts.session_inbox_size, ts.qos0_drop_oldest))
                continue
            msg = p.msg
            size = message_size(msg)
            key = (p.tenant, msg.topic, msg.sender, msg.qos, msg.retain, size)
            hit = memo.get(key)
            if hit is None:
                routes = self.routes.match(p.tenant, msg.topic, publisher=msg.sender, sticky_key=msg.sender)
                plan = plan_routes(routes, msg.qos, local_worker=me, retain=msg.retain, limits=limits,
                                   size=size) if routes else None
                # the same publisher, topic and shape again in this batch: the same targets, unless a $share
                # group is among them (round-robin: each message picks its member)
                if not any(rt.topic_filter.startswith("$share/") for rt in routes):
                    memo[key] = (routes, plan)
            else:
                routes, plan = hit
            if not routes or plan is None:
                if p.dedupe is not None:  # no subscriber, but the QoS 2 packet id is recorded all the same
                    q2_for_append[len(appends)] = q2_of[i]
                    append_at[i] = len(appends)
                    appends.append(InboxAppend(p.tenant, b"", [], ts.session_inbox_size, ts.qos0_drop_oldest,
                                               dedupe=p.dedupe))
                continue
            matched[i] = True
            if plan.cut != (0, 0, 0):  # MaxGroupFanout / MaxPersistentFanout(Bytes): dropped, still a success
                CUTS.record(p.tenant, p.msg.topic, plan.cut)
            local.extend((i, p, rt, qos) for rt, qos in plan.local)
            elsewhere[i] = bool(plan.local or plan.remote)
            if plan.inbox or plan.remote:  # encoded once, and only when it leaves the process
                p.blob = pack(p.msg)
            if plan.inbox or p.dedupe is not None:
                if p.dedupe is not None:
                    q2_for_append[len(appends)] = q2_of[i]
                append_at[i] = len(appends)
                appends.append(InboxAppend(
                    p.tenant, p.blob, plan.inbox, ts.session_inbox_size, ts.qos0_drop_oldest, dedupe=p.dedupe))
            for w, targets in plan.remote.items():
                remote_items.append((i, w, signals.Delivery(p.tenant, targets, p.blob)))

        # inboxes first; then, in one step, other workers' deliveries and inbox wake-ups (ours directly).
        # A QoS 2 resend that the append script recognised (its packet id was recorded) goes nowhere.
        results = await append_all(self.redis, appends, wait=self.wait, q2=q2_for_append)
        # 1: routed before, clean-session deliveries confirmed: nothing to do; 2: those were maybe lost
        # with the reply the publisher never got: send them again (never the inbox appends)
        duplicate = {i for i, at in append_at.items() if results[at].duplicate == 1}
        remote: dict[str, list[signals.Delivery]] = defaultdict(list)
        for i, w, delivery in remote_items:
            if i not in duplicate:
                remote[w].append(delivery)
        local_inboxes = await signal_all(self.redis, appends, results, remote, local_worker=me)
        for tenant, cid in local_inboxes:
            registry.notify_inbox(tenant, cid)

        for n, (i, p, rt, qos) in enumerate(local, 1):
            if i not in duplicate:
                registry.deliver_local(p.tenant, rt.client_id, p.msg, qos, sub_ids(rt), rt.retain_as_published,
                                       now_ms)
            if n % YIELD_EVERY == 0:  # a huge fan-out never holds the event loop for long (order is kept:
                await asyncio.sleep(0)  # flushes are serial and this loop goes on where it stopped)
        self.stats_routed += len(batch)
        for i, p in enumerate(batch):
            if p.done:
                at = append_at.get(i)
                p.done(publish_code(matched[i], elsewhere[i], results[at] if at is not None else None))

    async def _retain(self, p: Pending) -> None:
        limit = self.tenants.cached(p.tenant).retained_topic_limit
        blob = pack(p.msg) if p.msg.payload else b""
        await retained_store.retain_set(self.redis, p.tenant, p.msg.topic, blob, limit=limit)

