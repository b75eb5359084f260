"""Last wills: one guarded path from CONNECT to publication, whatever ends the session.

A will is checked at CONNECT exactly like a PUBLISH (topic rules and the
tenant's topic limits, ``$``-topics, size, QoS, retain, and the provider's
``check_publish`` with the will's QoS and retain: refused → CONNACK 0x87, or
return code 5 for MQTT 3). It is then stored with the session (``StoredWill``,
encoded only here) so any worker can fire it. Every way a will fires goes
through ``WillService.publish``, which checks the ACL again with the identity
stored with the will — the rules may have changed since CONNECT:

- the connection ends abnormally: now, or after the will delay, which is
  capped by the session expiry [MQTT-3.1.3-9] (``delay_ms``);
- a delayed will: this worker's timer or any worker's sweep takes it from
  Redis exactly once (``will_take``); a reconnect anywhere cancels it;
- the worker that held the connection died: the reaper (``workers/leases.py``) ends the session,
  then fires it.

No will fires when the client said DISCONNECT 0x00, or while the worker drains
if the tenant's ``NoLWTWhenServerShuttingDown`` is true (the default).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tidemq.auth import AuthProvider, Identity
from tidemq.auth.checks import check_publish
from tidemq.clock import Clock
from tidemq.message import Message, expiry_deadline, pack, unpack
from tidemq.mqtt import topics
from tidemq.mqtt.packets import Will
from tidemq.mqtt.reason_codes import RC
from tidemq.store import wills as will_store
from tidemq.store.keys import split_session_name
from tidemq.tenants import SettingsProvider, TenantSettings

from .metrics import WorkerMetrics

if TYPE_CHECKING:
    from .dispatch import Dispatcher

log = logging.getLogger("tidemq.wills")

_ORIGIN_KEY = "will"  # the stored will's own fields ride in the message header's origin


@dataclass(slots=True)
class StoredWill:
    """A will as kept with the session: the message, who set it, its delay and expiry interval."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    user: str
    properties: dict[str, Any] = field(default_factory=dict)  # forwarded publish properties
    delay: int = 0  # Will Delay Interval (s)
    expiry_interval: int = 0  # Message Expiry Interval (s), counted from publication


def will_from_connect(will: Will, user: str, level: int) -> StoredWill:
    props = dict(will.properties) if level == 5 else {}
    delay = int(props.pop("will_delay_interval", 0) or 0)
    expiry = int(props.pop("message_expiry_interval", 0) or 0)
    return StoredWill(will.topic, will.payload, will.qos, will.retain, user, props, delay, expiry)


def encode_will(w: StoredWill, client_id: str) -> bytes:
    origin = {_ORIGIN_KEY: {"u": w.user, "x": w.expiry_interval}}
    return pack(Message(w.topic, w.payload, w.qos, w.retain, w.properties, 0, client_id, 0, origin))


def decode_will(blob: bytes, delay: int = 0) -> StoredWill:
    msg = unpack(blob)
    meta = msg.origin.get(_ORIGIN_KEY) or {}
    expiry = int(meta.get("x", msg.origin.get("wexp", 0)) or 0)  # "wexp": wills stored by 0.1
    return StoredWill(msg.topic, msg.payload, msg.qos, msg.retain, str(meta.get("u", "")), msg.properties,
                      delay, expiry)


def delay_ms(will: StoredWill, *, persistent: bool, session_expiry: int) -> int:
    """How long a will waits after its connection ended (ms): the will delay, capped by the session
    expiry [MQTT-3.1.3-9]; 0 publishes it now (also for sessions that end with the connection)."""
    if not will.delay or not persistent or not session_expiry:
        return 0
    return min(will.delay, session_expiry) * 1000


def check_will_shape(will: Will, ts: TenantSettings, metrics: WorkerMetrics, tenant: str) -> int:
    """The PUBLISH rules a will must meet at CONNECT (not the ACL): 0 when fine, else the CONNACK code."""
    try:
        topics.validate_topic_name(will.topic, max_levels=ts.max_topic_levels, max_length=ts.max_topic_length,
                                   max_level_length=ts.max_topic_level_length)
    except topics.TopicError:
        return metrics.refuse("will_topic_invalid", tenant, RC.TOPIC_NAME_INVALID)
    if will.topic.startswith("$"):  # $SYS and other server topics are not the client's to publish
        return metrics.refuse("will_denied", tenant, RC.NOT_AUTHORIZED)
    if len(will.payload) > ts.max_last_will_bytes or len(will.payload) > ts.max_user_payload_bytes:
        return metrics.refuse("will_too_large", tenant, RC.PACKET_TOO_LARGE)
    if will.qos > ts.maximum_qos:  # [MQTT-3.2.2-12]
        return metrics.refuse("will_qos", tenant, RC.QOS_NOT_SUPPORTED)
    if will.retain and not ts.retain_enabled:  # [MQTT-3.2.2-13]
        return metrics.refuse("will_retain", tenant, RC.RETAIN_NOT_SUPPORTED)
    return 0


class WillService:
    """Publishes wills (see module doc); owns the timers of delayed wills on this worker."""

    def __init__(self, redis: Any, auth: AuthProvider, dispatcher: Dispatcher, clock: Clock,
                 metrics: WorkerMetrics, *, tenants: SettingsProvider | None = None) -> None:
        self.redis = redis
        self.tenants = tenants  # ByPassPermCheckError per tenant (None: a provider error denies)
        self.auth = auth
        self.dispatcher = dispatcher
        self.clock = clock
        self.metrics = metrics
        self._timers: set[asyncio.Task[None]] = set()

    def _bypass(self, tenant: str) -> bool:
        return self.tenants is not None and self.tenants.cached(tenant).by_pass_perm_check_error

    async def allowed(self, identity: Identity, will: Will) -> bool:
        """The ACL check at CONNECT (the same call as for a PUBLISH, ByPassPermCheckError included)."""
        return await check_publish(self.auth, identity, will.topic, will.qos, will.retain,
                                   bypass=self._bypass(identity.tenant_id))

    async def publish(self, tenant: str, name: str, will: StoredWill) -> bool:
        """The one place a will is published: ACL re-checked with the stored identity, then routed.

        ``name``: the session's name (``<user>/<client id>``); the ACL sees the MQTT client id."""
        client_id = split_session_name(name)[1]
        who = Identity(tenant, will.user, client_id)
        if not await check_publish(self.auth, who, will.topic, will.qos, will.retain, bypass=self._bypass(tenant)):
            self.metrics.refuse("will_denied", tenant, RC.NOT_AUTHORIZED)
            log.warning("will not published tenant=%s client=%s: denied by the ACL at fire time", tenant,
                        client_id, extra={"event": "will_denied", "tenant": tenant, "client": client_id,
                                          "reason": "acl"})
            return False
        now_ms = self.clock.wall_ms()
        msg = Message(will.topic, will.payload, will.qos, will.retain, dict(will.properties),
                      expiry_deadline(now_ms, will.expiry_interval), name, now_ms)
        self.dispatcher.submit(tenant, msg)
        self.metrics.inc("wills_published")
        self.metrics.event("will", tenant, client_id, topic=will.topic)
        log.info("will published tenant=%s client=%s", tenant, client_id,
                 extra={"event": "will", "tenant": tenant, "client": client_id})
        return True

    def schedule(self, tenant: str, client_id: str, fire_at_ms: int) -> None:
        """A timer for a delayed will stored in Redis; any worker's sweep fires it too (once)."""
        task = asyncio.get_running_loop().create_task(self._fire_later(tenant, client_id, fire_at_ms))
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def _fire_later(self, tenant: str, client_id: str, fire_at_ms: int) -> None:
        await asyncio.sleep(max(0.0, (fire_at_ms - self.clock.wall_ms()) / 1000))
        try:
            await self.fire_stored(tenant, client_id)
        except Exception as exc:  # a sweep takes it later
            log.warning("delayed will of %s/%s not fired now: %s", tenant, client_id, exc)

    async def fire_stored(self, tenant: str, client_id: str, hint_at: int | None = None) -> bool:
        """Take a due delayed will from Redis (exactly one worker gets it) and publish it."""
        blob = await will_store.will_take(self.redis, tenant, client_id, now_ms=self.clock.wall_ms(),
                                          hint_at=hint_at)
        if blob is None:
            return False  # not due, already fired elsewhere, or the client came back [MQTT-3.1.3-9]
        return await self.publish(tenant, client_id, decode_will(blob))

    async def fire_due(self, tenant: str) -> None:
        """The sweep: every due delayed will of ``tenant``."""
        for client_id, hint_at in await will_store.wills_due(self.redis, tenant, now_ms=self.clock.wall_ms()):
            await self.fire_stored(tenant, client_id, hint_at)

    def cancel_all(self) -> None:
        for task in list(self._timers):
            task.cancel()
