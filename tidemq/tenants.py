"""Per-tenant settings: BifroMQ's tenant-level setting names and defaults, overridable per tenant in Redis.

``TenantSettings`` is a frozen dataclass of typed values, one field per
setting; ``SPECS`` maps each BifroMQ name (``MaxTopicLevels``, ...) to its
field, type, initial value and validity check. Effective values are layered:
BifroMQ's initial value, then the process ``Settings`` where it has the same
knob (``inbox_size`` is ``SessionInboxSize``, ...; see ``PROCESS_DEFAULTS``),
then the tenant's Redis hash ``tidemq:settings:{tenant}`` (field = BifroMQ
name, value = decimal or ``true``/``false``) that operators edit with
``redis-cli``. A bad name or value in the hash is logged (once per distinct
value) and ignored: reading settings never fails a connection.
``SettingsProvider`` caches each tenant's settings for a short TTL (clock
injectable): ``await get(tenant)`` for the connect path, ``cached(tenant)``
(sync, never awaits) for the hot path, which returns the cached value, even
if stale, or the defaults, and schedules one background refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .config import Settings
from .store import keys

log = logging.getLogger("tidemq.tenants")

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class TenantSettings:
    """One tenant's effective settings (field comments name the BifroMQ setting)."""

    mqtt3_enabled: bool = True  # MQTT3Enabled
    mqtt4_enabled: bool = True  # MQTT4Enabled
    mqtt5_enabled: bool = True  # MQTT5Enabled
    no_lwt_when_server_shutting_down: bool = True  # NoLWTWhenServerShuttingDown
    debug_mode_enabled: bool = False  # DebugModeEnabled
    force_transient: bool = False  # ForceTransient
    payload_format_validation_enabled: bool = True  # PayloadFormatValidationEnabled
    retain_enabled: bool = True  # RetainEnabled
    wildcard_subscription_enabled: bool = True  # WildcardSubscriptionEnabled
    subscription_identifier_enabled: bool = True  # SubscriptionIdentifierEnabled
    shared_subscription_enabled: bool = True  # SharedSubscriptionEnabled
    maximum_qos: int = 2  # MaximumQoS
    max_topic_level_length: int = 40  # MaxTopicLevelLength
    max_topic_levels: int = 16  # MaxTopicLevels
    max_topic_length: int = 255  # MaxTopicLength
    max_topic_alias: int = 10  # MaxTopicAlias
    max_shared_group_members: int = 200  # MaxSharedGroupMembers
    max_topic_filters_per_inbox: int = 100  # MaxTopicFiltersPerInbox
    msg_pub_per_sec: int = 200  # MsgPubPerSec
    receiving_maximum: int = 200  # ReceivingMaximum
    in_bound_bandwidth: int = 512 * 1024  # InBoundBandWidth, bytes/s (0: unlimited)
    out_bound_bandwidth: int = 512 * 1024  # OutBoundBandWidth, bytes/s (0: unlimited)
    max_last_will_bytes: int = 128  # MaxLastWillBytes
    max_user_payload_bytes: int = 256 * 1024  # MaxUserPayloadBytes
    min_send_per_sec: int = 8  # MinSendPerSec
    max_resend_times: int = 3  # MaxResendTimes
    resend_timeout_seconds: int = 10  # ResendTimeoutSeconds
    max_topic_filters_per_sub: int = 10  # MaxTopicFiltersPerSub
    max_group_fanout: int = 100  # MaxGroupFanout
    max_persistent_fanout: int = INT32_MAX  # MaxPersistentFanout
    max_persistent_fanout_bytes: int = INT64_MAX  # MaxPersistentFanoutBytes
    max_session_expiry_seconds: int = 86400  # MaxSessionExpirySeconds
    min_session_expiry_seconds: int = 60  # MinSessionExpirySeconds
    min_keep_alive_seconds: int = 60  # MinKeepAliveSeconds
    session_inbox_size: int = 1000  # SessionInboxSize
    qos0_drop_oldest: bool = False  # QoS0DropOldest
    retain_message_match_limit: int = 10  # RetainMessageMatchLimit
    # TideMQ's equivalents of BifroMQ's resource-throttler limits (0: unlimited)
    retained_topic_limit: int = 10000  # RetainedTopicLimit (BifroMQ TotalRetainTopics)
    total_connections: int = 0  # TotalConnections (alias MaxConnectionsPerTenant), per worker
    total_connect_per_second: int = 0  # TotalConnectPerSecond, per worker

    def protocol_enabled(self, protocol_level: int) -> bool:
        """Whether MQTT 3.1 (level 3), 3.1.1 (4) or 5.0 (5) clients may connect."""
        if protocol_level == 5:
            return self.mqtt5_enabled
        if protocol_level == 4:
            return self.mqtt4_enabled
        if protocol_level == 3:
            return self.mqtt3_enabled
        return False

    def to_bifromq(self) -> dict[str, bool | int]:
        """``{BifroMQ name: value}`` for every setting (what the admin API would show)."""
        return {spec.name: getattr(self, spec.field) for spec in SPECS.values()}


@dataclass(frozen=True, slots=True)
class Spec:
    name: str  # BifroMQ name (the Redis hash field)
    field: str  # TenantSettings attribute
    type: type  # bool or int
    check: Callable[[int], bool]
    doc: str


def _between(lo: int, hi: int) -> Callable[[int], bool]:
    return lambda v: lo <= v <= hi


_ANY: Callable[[int], bool] = lambda v: True  # noqa: E731
_POSITIVE = _between(1, INT32_MAX)
_NON_NEGATIVE = _between(0, INT32_MAX)

SPECS: dict[str, Spec] = {s.name: s for s in (
    Spec("MQTT3Enabled", "mqtt3_enabled", bool, _ANY, "accept MQTT 3.1 clients"),
    Spec("MQTT4Enabled", "mqtt4_enabled", bool, _ANY, "accept MQTT 3.1.1 clients"),
    Spec("MQTT5Enabled", "mqtt5_enabled", bool, _ANY, "accept MQTT 5.0 clients"),
    Spec("NoLWTWhenServerShuttingDown", "no_lwt_when_server_shutting_down", bool, _ANY,
         "no will messages when the server shuts down"),
    Spec("DebugModeEnabled", "debug_mode_enabled", bool, _ANY, "debug mode (verbose per-tenant events)"),
    Spec("ForceTransient", "force_transient", bool, _ANY, "every session is transient (session expiry 0)"),
    Spec("PayloadFormatValidationEnabled", "payload_format_validation_enabled", bool, _ANY,
         "check UTF-8 payloads flagged with payload format indicator 1"),
    Spec("RetainEnabled", "retain_enabled", bool, _ANY, "retained messages are stored"),
    Spec("WildcardSubscriptionEnabled", "wildcard_subscription_enabled", bool, _ANY, "filters may use + and #"),
    Spec("SubscriptionIdentifierEnabled", "subscription_identifier_enabled", bool, _ANY,
         "MQTT 5 subscription identifiers are accepted"),
    Spec("SharedSubscriptionEnabled", "shared_subscription_enabled", bool, _ANY, "$share/$oshare filters"),
    Spec("MaximumQoS", "maximum_qos", int, _between(0, 2), "highest QoS accepted"),
    Spec("MaxTopicLevelLength", "max_topic_level_length", int, _POSITIVE, "longest topic level, in bytes"),
    Spec("MaxTopicLevels", "max_topic_levels", int, _POSITIVE, "most levels in a topic or filter"),
    Spec("MaxTopicLength", "max_topic_length", int, _between(1, 65535), "longest topic or filter, in bytes"),
    Spec("MaxTopicAlias", "max_topic_alias", int, _between(0, 65535), "MQTT 5 topic alias maximum"),
    Spec("MaxSharedGroupMembers", "max_shared_group_members", int, _POSITIVE, "members per shared group"),
    Spec("MaxTopicFiltersPerInbox", "max_topic_filters_per_inbox", int, _POSITIVE, "subscriptions per session"),
    Spec("MsgPubPerSec", "msg_pub_per_sec", int, _POSITIVE, "PUBLISH packets per second per connection"),
    Spec("ReceivingMaximum", "receiving_maximum", int, _between(1, 65535),
         "server receive maximum (inbound QoS 1/2 in flight)"),
    Spec("InBoundBandWidth", "in_bound_bandwidth", int, _between(0, INT64_MAX),
         "bytes per second read from one connection (0: unlimited)"),
    Spec("OutBoundBandWidth", "out_bound_bandwidth", int, _between(0, INT64_MAX),
         "bytes per second written to one connection (0: unlimited)"),
    Spec("MaxLastWillBytes", "max_last_will_bytes", int, _between(1, 250 * 1024 * 1024), "largest will payload"),
    Spec("MaxUserPayloadBytes", "max_user_payload_bytes", int, _between(3, 256 * 1024 * 1024),
         "largest PUBLISH payload"),
    Spec("MinSendPerSec", "min_send_per_sec", int, _POSITIVE, "slowest acceptable consumer, messages/s"),
    Spec("MaxResendTimes", "max_resend_times", int, _NON_NEGATIVE, "resends of an unacknowledged QoS 1/2"),
    Spec("ResendTimeoutSeconds", "resend_timeout_seconds", int, _POSITIVE, "seconds before a resend"),
    Spec("MaxTopicFiltersPerSub", "max_topic_filters_per_sub", int, _between(1, 100),
         "filters in one SUBSCRIBE packet"),
    Spec("MaxGroupFanout", "max_group_fanout", int, _POSITIVE, "shared groups one message reaches"),
    Spec("MaxPersistentFanout", "max_persistent_fanout", int, _POSITIVE, "persistent sessions one message reaches"),
    Spec("MaxPersistentFanoutBytes", "max_persistent_fanout_bytes", int, _between(1, INT64_MAX),
         "bytes one message may fan out to persistent sessions"),
    Spec("MaxSessionExpirySeconds", "max_session_expiry_seconds", int, _between(1, 2**32 - 1),
         "longest session expiry granted"),
    Spec("MinSessionExpirySeconds", "min_session_expiry_seconds", int, _between(1, 2**32 - 1),
         "shortest expiry of a persistent session (<= MaxSessionExpirySeconds)"),
    Spec("MinKeepAliveSeconds", "min_keep_alive_seconds", int, _between(0, 65534),
         "smallest keep alive accepted (0: none)"),
    Spec("SessionInboxSize", "session_inbox_size", int, _between(1, 65535), "messages per persistent inbox"),
    Spec("QoS0DropOldest", "qos0_drop_oldest", bool, _ANY, "a full inbox drops its oldest message"),
    Spec("RetainMessageMatchLimit", "retain_message_match_limit", int, _NON_NEGATIVE,
         "retained messages sent per new subscription"),
    Spec("RetainedTopicLimit", "retained_topic_limit", int, _NON_NEGATIVE, "retained topics per tenant"),
    Spec("TotalConnections", "total_connections", int, _NON_NEGATIVE,
         "connections of the tenant per worker (0: unlimited)"),
    Spec("TotalConnectPerSecond", "total_connect_per_second", int, _NON_NEGATIVE,
         "CONNECTs of the tenant per second per worker (0: unlimited)"),
)}

ALIASES = {"MaxConnectionsPerTenant": "TotalConnections", "TotalRetainTopics": "RetainedTopicLimit"}

_BY_LOWER: dict[str, Spec] = {name.lower(): spec for name, spec in SPECS.items()}
_BY_LOWER.update({alias.lower(): SPECS[target] for alias, target in ALIASES.items()})

# process Settings field -> TenantSettings field it provides the default for
PROCESS_DEFAULTS = {
    "max_inflight": "receiving_maximum",
    "max_session_expiry": "max_session_expiry_seconds",
    "min_keep_alive": "min_keep_alive_seconds",
    "inbox_size": "session_inbox_size",
    "inbox_drop_oldest": "qos0_drop_oldest",
    "max_payload": "max_user_payload_bytes",
    "max_topic_levels": "max_topic_levels",
    "max_topic_length": "max_topic_length",
    "retain_enabled": "retain_enabled",
    "msg_pub_per_sec": "msg_pub_per_sec",
    "inbound_bandwidth": "in_bound_bandwidth",
    "outbound_bandwidth": "out_bound_bandwidth",
    "retain_match_limit": "retain_message_match_limit",
    "min_session_expiry": "min_session_expiry_seconds",
    "max_will_bytes": "max_last_will_bytes",
}
# process knobs where 0 means "unlimited" but the BifroMQ setting must stay positive
_UNLIMITED_WHEN_ZERO = {"msg_pub_per_sec": INT32_MAX, "retain_message_match_limit": INT32_MAX}


def lookup(name: str) -> Spec | None:
    """The spec for a BifroMQ setting name (case-insensitive; aliases accepted)."""
    return _BY_LOWER.get(name.strip().lower())


def parse_value(spec: Spec, raw: str | bytes) -> bool | int:
    """Parse one hash value for ``spec``: ``true``/``false`` (or 1/0) or a decimal integer; raises ValueError."""
    text = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)).strip()
    if spec.type is bool:
        low = text.lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        raise ValueError(f"{spec.name}: expected true or false, got {text!r}")
    try:
        value = int(text, 10)
    except ValueError:
        raise ValueError(f"{spec.name}: expected a decimal integer, got {text!r}") from None
    if not spec.check(value):
        raise ValueError(f"{spec.name}: {value} is out of range")
    return value


def format_value(value: bool | int) -> str:
    """How a value is written to the hash (``true``/``false`` or decimal)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(int(value))


def defaults_from(settings: Settings | None) -> TenantSettings:
    """BifroMQ's initial values, replaced by the process ``Settings`` where it has the same knob."""
    base = TenantSettings()
    if settings is None:
        return base
    values: dict[str, Any] = {}
    for src, dst in PROCESS_DEFAULTS.items():
        values[dst] = getattr(settings, src)
    values["receiving_maximum"] = max(1, min(65535, values["receiving_maximum"]))
    for name, unlimited in _UNLIMITED_WHEN_ZERO.items():
        if not values[name]:
            values[name] = unlimited
    # TIDEMQ_MIN_SESSION_EXPIRY when set (> 0), else BifroMQ's default; never above the maximum
    values["min_session_expiry_seconds"] = max(0, min(values["min_session_expiry_seconds"]
                                                      or base.min_session_expiry_seconds,
                                                      values["max_session_expiry_seconds"]))
    return dataclasses.replace(base, **values)


def apply_overrides(base: TenantSettings, raw: Mapping[Any, Any]) -> tuple[TenantSettings, dict[str, str]]:
    """``base`` with the valid entries of ``raw`` (a hash: name -> value) applied.

    Returns the settings and ``{name: problem}`` for every entry that was ignored
    (unknown name, unparsable or out-of-range value, or a cross-field conflict).
    """
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key, value in raw.items():
        name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        spec = lookup(name)
        if spec is None:
            errors[name] = "unknown setting"
            continue
        try:
            values[spec.field] = parse_value(spec, value)
        except ValueError as exc:
            errors[name] = str(exc)
    result = dataclasses.replace(base, **values) if values else base
    if result.min_session_expiry_seconds > result.max_session_expiry_seconds:
        if "min_session_expiry_seconds" in values:
            errors["MinSessionExpirySeconds"] = (
                f"{result.min_session_expiry_seconds} > MaxSessionExpirySeconds "
                f"{result.max_session_expiry_seconds}; clamped")
        result = dataclasses.replace(result, min_session_expiry_seconds=result.max_session_expiry_seconds)
    return result, errors


class SettingsProvider:
    """Per-tenant settings read from Redis, cached per process for ``ttl`` seconds.

    ``redis`` may be ``None`` (every tenant gets the defaults). ``clock`` is a
    monotonic seconds source (injectable for tests). At most ``max_tenants``
    entries are cached; the least recently refreshed one is dropped first.
    """

    def __init__(self, redis: Any, settings: Settings | None = None, *, ttl: float | None = None,
                 clock: Callable[[], float] = time.monotonic, max_tenants: int = 10000) -> None:
        self.redis = redis
        self.defaults = defaults_from(settings)
        if ttl is None:
            ttl = settings.tenant_settings_ttl if settings is not None else 5.0
        self.ttl = ttl
        self.clock = clock
        self.max_tenants = max_tenants
        self._cache: dict[str, tuple[float, TenantSettings]] = {}  # tenant -> (expires at, value)
        self._inflight: dict[str, asyncio.Task[TenantSettings]] = {}
        self._warned: set[tuple[str, str, str]] = set()

    async def get(self, tenant: str) -> TenantSettings:
        """The tenant's settings: cached while fresh, else read from Redis (one read per tenant at a time)."""
        entry = self._cache.get(tenant)
        if entry is not None and entry[0] > self.clock():
            return entry[1]
        task = self._inflight.get(tenant)
        if task is None:
            task = self._start(tenant)
        return await asyncio.shield(task)

    def cached(self, tenant: str) -> TenantSettings:
        """Hot path, never awaits: the cached value (even stale) or the defaults; refreshes in the background."""
        entry = self._cache.get(tenant)
        if (entry is None or entry[0] <= self.clock()) and tenant not in self._inflight:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to schedule on
                self._start(tenant)
        return entry[1] if entry is not None else self.defaults

    def invalidate(self, tenant: str | None = None) -> None:
        """Forget one tenant's cached settings (or all): the next ``get`` reads Redis."""
        if tenant is None:
            self._cache.clear()
        else:
            self._cache.pop(tenant, None)

    def _start(self, tenant: str) -> asyncio.Task[TenantSettings]:
        task = asyncio.get_running_loop().create_task(self._load(tenant))
        self._inflight[tenant] = task
        task.add_done_callback(lambda _t, tenant=tenant: self._inflight.pop(tenant, None))
        return task

    async def _load(self, tenant: str) -> TenantSettings:
        if self.redis is None:
            return self._store(tenant, self.defaults)
        try:
            raw = await self.redis.hgetall(keys.tenant_settings(tenant))
        except Exception as exc:  # the store is down: keep what we had, retry after one TTL
            log.warning("tenant settings of %r unreadable, using cached/defaults: %s", tenant, exc)
            entry = self._cache.get(tenant)
            return self._store(tenant, entry[1] if entry is not None else self.defaults)
        if not raw:
            return self._store(tenant, self.defaults)
        value, errors = apply_overrides(self.defaults, raw)
        for name, problem in errors.items():
            mark = (tenant, name, problem)
            if mark not in self._warned:
                if len(self._warned) > 10000:
                    self._warned.clear()
                self._warned.add(mark)
                log.warning("tenant %r: ignoring setting %s in %s: %s", tenant, name,
                            keys.tenant_settings(tenant), problem)
        return self._store(tenant, value)

    def _store(self, tenant: str, value: TenantSettings) -> TenantSettings:
        self._cache.pop(tenant, None)
        if len(self._cache) >= self.max_tenants:
            self._cache.pop(next(iter(self._cache)))
        self._cache[tenant] = (self.clock() + self.ttl, value)
        return value


# --- operator helpers (admin API, tests) ----------------------------------------------------


def validate_overrides(values: Mapping[str, Any]) -> dict[str, str]:
    """``{BifroMQ name: hash value}`` for ``values`` (names checked, values parsed); raises ValueError."""
    out: dict[str, str] = {}
    for name, value in values.items():
        spec = lookup(name)
        if spec is None:
            raise ValueError(f"unknown setting {name!r}")
        text = format_value(value) if isinstance(value, bool | int) else str(value)
        out[spec.name] = format_value(parse_value(spec, text))
    return out


async def write_overrides(redis: Any, tenant: str, values: Mapping[str, Any]) -> None:
    """Validate and HSET tenant overrides (what ``redis-cli HSET`` would do, but checked first)."""
    mapping = validate_overrides(values)
    if mapping:
        await redis.hset(keys.tenant_settings(tenant), mapping=mapping)


async def clear_overrides(redis: Any, tenant: str, names: list[str] | None = None) -> None:
    """Remove some (or all) overrides of a tenant, back to the defaults."""
    key = keys.tenant_settings(tenant)
    if names is None:
        await redis.delete(key)
    elif names:
        fields = []
        for name in names:
            spec = lookup(name)
            fields.append(spec.name if spec is not None else name)
        await redis.hdel(key, *fields)
