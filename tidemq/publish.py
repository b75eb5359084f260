"""Publish routing shared by every publisher that is not a connection: plan, then fan out.

``plan_routes`` is pure: given the routes a topic matched (``TopicTrie.match``)
and the publish QoS, it splits the targets into persistent sessions (one
inbox-append per message, the blob passed once), transient sessions per owner
worker (one ``D`` signal per worker) and, when the caller is itself a worker,
its local transient sessions. ``RouteCache`` keeps per-tenant trie replicas and
trusts one only after reading the tenant's route version (the freshness check
of DESIGN.md), or, in a worker on a single Redis, while its route watch holds
the tenant fresh (``tidemq.store.route_watch``), so a subscription
acknowledged anywhere before the publish is always matched. ``publish`` is the whole path for a single message from a
process without connections (the admin API): check, match, plan, append and
signal in one pipelined round trip each, notify inbox owners.

Fan-out limits (BifroMQ's ``MaxGroupFanout``, ``MaxPersistentFanout``,
``MaxPersistentFanoutBytes``; ``FanoutLimits``): ``plan_routes`` keeps the
first ``MaxGroupFanout`` shared groups and the first persistent (non-shared)
sessions while fewer than ``MaxPersistentFanout`` were kept and the bytes
kept so far (topic + payload per copy, ``message_size``) stay below ``MaxPersistentFanoutBytes``;
the rest are dropped, the publish itself succeeds (as BifroMQ). A shared
group counts once against ``MaxGroupFanout`` whatever member it picks, and
never against the persistent limits. The cut targets are counted per tenant
in ``CUTS`` (``dropped_group_fanout``, ``dropped_persistent_fanout``,
``dropped_persistent_fanout_bytes``) and logged (``fanout_cut``, at most once
a minute per tenant and reason).

No silent loss: ``fan_out`` counts every inbox drop per tenant in ``DROPS``
(read by the worker's and the API's metrics) and logs it as an ``inbox_drop``
event (tenant, client, reason; never the payload); ``publish_code`` turns a
message that could be queued for no target because of the inbox quota into
0x97 (Quota exceeded) for the publisher.

Invariants: the subscriber QoS is ``min(publish qos, subscription qos)``; a
message is packed once; nothing here retains (retained messages are
``tidemq.store.retained``'s business).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from tidemq import signals
from tidemq.counters import LogThrottle, TenantCounters
from tidemq.message import Message, pack
from tidemq.mqtt.reason_codes import RC
from tidemq.routing.trie import Route, TenantRoutes
from tidemq.store import inbox as inbox_store
from tidemq.store import signals as signal_store
from tidemq.store import subscriptions as sub_store
from tidemq.store.models import AppendResult, InboxAppend, InboxTarget
from tidemq.store.route_watch import RouteWatch

log = logging.getLogger("tidemq.publish")

_SHARED = ("$share/", "$oshare/")
CUT_METRICS = ("dropped_group_fanout", "dropped_persistent_fanout", "dropped_persistent_fanout_bytes")


@dataclass(frozen=True, slots=True)
class FanoutLimits:
    """A tenant's fan-out limits (BifroMQ's ``MaxGroupFanout``, ``MaxPersistentFanout``,
    ``MaxPersistentFanoutBytes``); build one with ``FanoutLimits.of(tenant_settings)``."""

    max_groups: int
    max_persistent: int
    max_persistent_bytes: int

    @classmethod
    def of(cls, ts: Any) -> FanoutLimits:
        return cls(ts.max_group_fanout, ts.max_persistent_fanout, ts.max_persistent_fanout_bytes)

    def may_cut(self, n: int, size: int) -> bool:
        """Whether ``n`` targets of a ``size``-byte message can exceed a limit (False: skip the count)."""
        return n > self.max_groups or n > self.max_persistent or (n - 1) * size >= self.max_persistent_bytes


@dataclass(slots=True)
class RoutePlan:
    """Where one message goes (see module doc)."""

    matched: bool = False
    inbox: list[InboxTarget] = field(default_factory=list)
    remote: dict[str, list[signals.DeliverTarget]] = field(default_factory=dict)
    local: list[tuple[Route, int]] = field(default_factory=list)
    cut: tuple[int, int, int] = (0, 0, 0)  # targets dropped by the limits, in CUT_METRICS order


def apply_fanout_limits(routes: list[Route], size: int,
                        limits: FanoutLimits) -> tuple[list[Route], tuple[int, int, int]]:
    """The routes ``limits`` keep (in match order) and how many were cut (groups, persistent by count,
    persistent by bytes); ``size`` is one copy's bytes (topic + payload)."""
    kept: list[Route] = []
    groups = persistent = 0
    spent = 0
    cut_g = cut_p = cut_b = 0
    for rt in routes:
        if rt.topic_filter.startswith(_SHARED):
            if groups >= limits.max_groups:
                cut_g += 1
                continue
            groups += 1
        elif rt.persistent:
            if persistent >= limits.max_persistent:
                cut_p += 1
                continue
            if spent >= limits.max_persistent_bytes:
                cut_b += 1
                continue
            persistent += 1
            spent += size
        kept.append(rt)
    return kept, (cut_g, cut_p, cut_b)


def message_size(msg: Message) -> int:
    """One copy's size for ``MaxPersistentFanoutBytes``: topic length plus payload bytes (BifroMQ also
    estimates it; the topic is counted in characters, not re-encoded on the hot path)."""
    return len(msg.topic) + len(msg.payload)


def sub_ids(route: Route) -> tuple[int, ...]:
    """Every subscription identifier a delivery through ``route`` must carry."""
    if route.subscription_ids:
        return tuple(route.subscription_ids)
    return (route.subscription_id,) if route.subscription_id else ()


def plan_routes(
    routes: list[Route], qos: int, *, local_worker: str | None = None, retain: bool = False,
    limits: FanoutLimits | None = None, size: int = 0,
) -> RoutePlan:
    """Split matched ``routes`` by destination; ``local_worker`` is the caller's worker id, if any;
    ``retain`` is the published RETAIN flag (kept for retain-as-published subscriptions); ``limits``
    (with ``size``, one copy's topic + payload bytes) cuts the fan-out (module doc: ``plan.cut``)."""
    out = RoutePlan(matched=bool(routes))
    if limits is not None and limits.may_cut(len(routes), size):
        routes, out.cut = apply_fanout_limits(routes, size, limits)
    remote: dict[str, list[signals.DeliverTarget]] = defaultdict(list)
    for rt in routes:
        q = min(qos, rt.qos)
        ids = sub_ids(rt)
        if rt.persistent:
            out.inbox.append(InboxTarget(rt.client_id, q, ids, retain and rt.retain_as_published, rt.gen))
        elif local_worker is not None and rt.worker == local_worker:
            out.local.append((rt, q))
        elif rt.worker:
            remote[rt.worker].append(signals.DeliverTarget(rt.client_id, q, ids, rt.retain_as_published))
    out.remote = dict(remote)
    return out


class RouteCache:
    """Per-tenant trie replicas, each trusted only while its route version is current.

    Without a ``watch`` every ``refresh`` reads the versions of its tenants (one pipelined ``GET``
    each). With one (a worker on a single Redis), tenants the watch holds fresh are trusted without
    a round trip while the watch is trusted (``tidemq.store.route_watch`` has the protocol and why a
    SUBACK still precedes every stale read). At most ``max_tenants`` replicas are kept (the whole
    cache is dropped past that: a replica is only ever a cache, rebuilt on the next publish of its
    tenant).
    """

    def __init__(self, max_tenants: int = 10000, *, watch: RouteWatch | None = None) -> None:
        self.tenants: dict[str, TenantRoutes] = {}
        self.max_tenants = max_tenants
        self.watch = watch
        if watch is not None:
            watch.on_change = self.apply_change
            watch.on_reset = self.forget_versions

    def apply_change(self, tenant: str, version: int, changes: list[list[str]]) -> bool:
        """A route change published with the version it made (``tenant_apply``): applied in order when the
        replica holds the version before it, so it stays current without a reload; False otherwise, and then
        the replica is read again whatever version it holds (after a flush, versions start again and could
        meet the replica's old number)."""
        tr = self.tenants.get(tenant)
        if tr is None:
            return False
        if tr.version != version - 1:
            tr.version = -1
            return False
        trie = tr.trie
        for change in changes:
            if change[0] == "P":
                trie.add(sub_store.decode_route_str(change[1], change[2], change[3]))
            else:
                trie.remove(change[1], change[2])
        tr.version = version
        return True

    def forget_versions(self) -> None:
        """The watch may have missed changes (its connection dropped): every replica is read again."""
        for tr in self.tenants.values():
            tr.version = -1

    async def refresh(self, r: Any, tenants: list[str]) -> None:
        """Make the replicas of ``tenants`` current: no round trip for fresh ones, else one pipelined
        version read and a reload of the stale ones."""
        watch = self.watch
        if watch is not None and watch.trusted():
            fresh, have = watch.fresh, self.tenants
            tenants = [t for t in tenants if t not in fresh or t not in have]
            if not tenants:
                return
        token = watch.token() if watch is not None else None
        versions = await sub_store.route_versions(r, tenants)
        stale = [t for t in tenants if t not in self.tenants or self.tenants[t].version != versions.get(t, 0)]
        if stale:
            if len(self.tenants) + len(stale) > self.max_tenants:
                self.tenants.clear()
            loaded = await asyncio.gather(*(sub_store.load_routes(r, t) for t in stale))
            for t, (version, routes) in zip(stale, loaded, strict=True):
                tr = self.tenants.get(t)
                if tr is None:
                    tr = self.tenants[t] = TenantRoutes()
                tr.replace_all(version, routes)
        if watch is not None:
            watch.confirm([t for t in tenants if t in self.tenants], token)

    def match(self, tenant: str, topic: str, *, publisher: str = "", sticky_key: str = "") -> list[Route]:
        tr = self.tenants.get(tenant)
        if tr is None:
            return []
        return tr.match(topic, publisher=publisher, sticky_key=sticky_key)


@dataclass(slots=True)
class PublishResult:
    matched: bool
    inbox_targets: int = 0
    remote_targets: int = 0
    dropped: int = 0
    refused: int = 0  # inbox targets that did not get the message (inbox full)
    queued: int = 0  # inbox targets that got it


# metric name per inbox drop reason (tidemq.store.models.DROP_REASONS), in the family of the
# worker's ``refused_<reason>`` / ``dropped_qos0`` counters
DROP_METRICS = {
    "inbox_full": "refused_inbox_full",  # a QoS 1/2 message not queued: its inbox is full
    "qos0_inbox_full": "dropped_qos0_inbox_full",  # a new QoS 0 message not queued
    "qos0_oldest": "dropped_qos0_oldest",  # the oldest queued QoS 0 entry deleted to make room
}


class InboxDrops(TenantCounters):
    """Per-tenant counters of inbox drops (one process); ``DROPS`` is the process-wide one."""

    def __init__(self) -> None:
        super().__init__(tuple(DROP_METRICS.values()))

    def record(self, tenant: str, results: list[AppendResult]) -> None:
        """Count and log the drops of ``results`` (one log line per client and reason per call)."""
        per: Counter[tuple[str, str]] = Counter()
        for res in results:
            per.update(res.drops)
        for (client, reason), n in sorted(per.items()):
            self.add(tenant, DROP_METRICS[reason], n)
            log.warning("inbox drop tenant=%s client=%s reason=%s count=%d", tenant, client, reason, n,
                        extra={"event": "inbox_drop", "tenant": tenant, "client": client, "reason": reason,
                               "count": n})


DROPS = InboxDrops()


class FanoutCuts(TenantCounters):
    """Per-tenant counters of targets cut by the fan-out limits (one process); ``CUTS`` is the process-wide one."""

    LOG_EVERY = 60.0  # seconds between two log lines of one tenant and reason

    def __init__(self) -> None:
        super().__init__(CUT_METRICS)
        self._throttle = LogThrottle(self.LOG_EVERY, 10000)

    def record(self, tenant: str, topic: str, cut: tuple[int, int, int]) -> None:
        now = time.monotonic()
        for name, n in zip(CUT_METRICS, cut, strict=True):
            if not n:
                continue
            self.add(tenant, name, n)
            if self._throttle.allow((tenant, name), now):
                log.warning("fanout cut tenant=%s reason=%s topic=%s count=%d", tenant, name, topic, n,
                            extra={"event": "fanout_cut", "tenant": tenant, "reason": name, "count": n})


CUTS = FanoutCuts()


def publish_code(matched: bool, delivered_elsewhere: bool, append: AppendResult | None) -> int:
    """The reason code for a publisher: 0x10 without a match; 0x97 (Quota exceeded) when the message
    went to no transient subscriber and to no inbox because inboxes were full; else success."""
    if not matched:
        return RC.NO_MATCHING_SUBSCRIBERS
    if not delivered_elsewhere and append is not None and append.queued == 0 and append.refused:
        return RC.QUOTA_EXCEEDED
    return RC.SUCCESS


async def fan_out(
    r: Any, appends: list[InboxAppend], remote: dict[str, list[signals.Delivery]], *,
    local_worker: str | None = None, drops: InboxDrops = DROPS, wait: tuple[int, int] | None = None,
) -> tuple[list[AppendResult], list[tuple[str, str]]]:
    """Write planned deliveries: ``append_all``, then ``signal_all`` (see both).

    Returns the append results (one per append, in order: ``publish_code`` reads them) and the
    ``(tenant, client)`` inboxes owned by ``local_worker`` (the caller wakes those itself).
    """
    results = await append_all(r, appends, drops=drops, wait=wait)
    return results, await signal_all(r, appends, results, remote, local_worker=local_worker)


async def append_all(r: Any, appends: list[InboxAppend], *, drops: InboxDrops = DROPS,
                     wait: tuple[int, int] | None = None, q2: dict[int, tuple[int, str]] | None = None
                     ) -> list[AppendResult]:
    """The inbox appends, first and on their own: a failed append (the publisher is told, and resends)
    never leaves clean sessions on other workers with a copy already signalled. Every inbox drop is
    counted and logged in ``drops``; ``wait``: the appends wait for Redis replicas."""
    results: list[AppendResult] = (await inbox_store.inbox_append_many(r, appends, wait=wait, q2=q2)
                                   if appends else [])
    dropped: dict[str, list[AppendResult]] = defaultdict(list)
    for item, res in zip(appends, results, strict=True):
        if res.drops:
            dropped[item.tenant].append(res)
    for tenant, rs in dropped.items():
        drops.record(tenant, rs)
    return results


async def signal_all(r: Any, appends: list[InboxAppend], results: list[AppendResult],
                     remote: dict[str, list[signals.Delivery]], *, local_worker: str | None = None
                     ) -> list[tuple[str, str]]:
    """One pipelined step: the per-worker ``D`` signals and an ``N`` signal to every other worker owning
    an inbox that got entries. Returns the ``(tenant, client)`` inboxes owned by ``local_worker``, each once."""
    outgoing = [(w, signals.encode_deliveries(items)) for w, items in remote.items() if items]
    local: dict[tuple[str, str], None] = {}  # each local inbox once per call, in first-seen order
    notify: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for item, res in zip(appends, results, strict=True):
        if not res.owners:
            continue
        for owner in res.owners:
            if owner == local_worker:
                for tgt in item.targets:
                    local[(item.tenant, tgt.client_id)] = None
            else:
                notify[owner][item.tenant].update(tgt.client_id for tgt in item.targets)
    outgoing += [(w, signals.encode(signals.Notify([(t, sorted(cs)) for t, cs in per_t.items()])))
                 for w, per_t in sorted(notify.items())]
    if outgoing:
        await signal_store.publish_signals_many(r, outgoing)
    return list(local)


async def publish(
    r: Any, cache: RouteCache, tenant: str, msg: Message, *, inbox_limit: int, drop_oldest: bool,
    limits: FanoutLimits | None = None, sticky_key: str | None = None,
) -> PublishResult:
    """Route ``msg`` of ``tenant`` like a client publish, from a process that owns no connections.
    ``sticky_key``: the publisher identity ``$oshare`` groups hash (default: ``msg.sender``)."""
    await cache.refresh(r, [tenant])
    routes = cache.match(tenant, msg.topic, publisher=msg.sender,
                         sticky_key=msg.sender if sticky_key is None else sticky_key)
    plan = plan_routes(routes, msg.qos, retain=msg.retain, limits=limits, size=message_size(msg))
    if any(plan.cut):
        CUTS.record(tenant, msg.topic, plan.cut)
    if not plan.matched:
        return PublishResult(False)
    blob = pack(msg)
    appends = [InboxAppend(tenant, blob, plan.inbox, inbox_limit, drop_oldest)] if plan.inbox else []
    remote = {w: [signals.Delivery(tenant, targets, blob)] for w, targets in plan.remote.items()}
    results, _ = await fan_out(r, appends, remote)
    res = results[0] if results else None
    return PublishResult(True, len(plan.inbox), sum(len(v) for v in plan.remote.values()),
                         res.dropped if res else 0, res.refused if res else 0, res.queued if res else 0)
