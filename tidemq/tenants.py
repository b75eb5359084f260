"""Per-tenant settings: BifroMQ's tenant-level setting names and defaults, overridable per tenant in Redis.

``TenantSettings`` is a frozen dataclass of typed values. Each setting is
declared once, as one field: its BifroMQ name, initial value, validity
check, description and (where one exists) the process ``Settings`` knob that
provides its default; ``SPECS``, ``ALIASES`` and ``PROCESS_DEFAULTS`` are
derived from those declarations. Effective values are layered: BifroMQ's
initial value, then the process ``Settings`` where it has the same knob
(``inbox_size`` is ``SessionInboxSize``, ...), then the tenant's Redis hash
(``tidemq.store.settings``; field = BifroMQ name, value = decimal or
``true``/``false``) that operators edit with ``redis-cli``. A bad name or
value in the hash is logged (once per distinct value) and ignored: reading
settings never fails a connection. ``SettingsProvider`` caches each tenant's
settings for a short TTL (clock injectable): ``await get(tenant)`` for the
connect path, ``cached(tenant)`` (sync, never awaits) for the hot path, which
returns the cached value, even if stale, or the defaults, and schedules one
background refresh. This module does no Redis I/O of its own.

Where the overrides come from is pluggable (BifroMQ's setting-provider plugin): a
``SettingsSource`` answers ``await read(tenant)`` with ``{BifroMQ name: value}``. The
built-in ``RedisHashSettings`` reads the tenant's hash; ``TIDEMQ_SETTINGS_PROVIDER=
package.module:Class`` replaces it in every process that builds a ``SettingsProvider``
from its ``Settings`` (workers and API nodes alike), the class built as
``Class(settings, redis)``. A source's answer goes through the same validation as the
hash (bad entries logged and ignored); a source that raises keeps the cached value.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .config import Settings
from .plugins import load_plugin
from .store import settings as settings_store

log = logging.getLogger("tidemq.tenants")

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

_T = TypeVar("_T", bool, int)


def _between(lo: int, hi: int) -> Callable[[int], bool]:
    return lambda v: lo <= v <= hi


def _any(v: int) -> bool:
    return True


_ANY = _any
_POSITIVE = _between(1, INT32_MAX)
_NON_NEGATIVE = _between(0, INT32_MAX)


@dataclass(frozen=True, slots=True)
class _Declared:
    """What a field declaration says about its setting (the field name and type come from the field)."""

    name: str  # BifroMQ name (the Redis hash field)
    check: Callable[[int], bool]
    doc: str
    process: str  # the process Settings field providing the default ("" if none)
    aliases: tuple[str, ...]


def setting(name: str, initial: _T, doc: str, check: Callable[[int], bool] = _ANY, *,
            process: str = "", aliases: tuple[str, ...] = ()) -> _T:
    """Declare one setting as a ``TenantSettings`` field (typed as its value for the type checker)."""
    meta = _Declared(name, check, doc, process, aliases)
    value: _T = dataclasses.field(default=initial, metadata={"setting": meta})
    return value


@dataclass(frozen=True, slots=True)
class TenantSettings:
    """One tenant's effective settings: one field per BifroMQ setting, declared with ``setting(...)``."""

    mqtt3_enabled: bool = setting("MQTT3Enabled", True, "accept MQTT 3.1 clients")
    mqtt4_enabled: bool = setting("MQTT4Enabled", True, "accept MQTT 3.1.1 clients")
    mqtt5_enabled: bool = setting("MQTT5Enabled", True, "accept MQTT 5.0 clients")
    no_lwt_when_server_shutting_down: bool = setting(
        "NoLWTWhenServerShuttingDown", True, "no will messages when the server shuts down")
    debug_mode_enabled: bool = setting("DebugModeEnabled", False, "debug mode (verbose per-tenant events)")
    sys_topics_enabled: bool = setting("SysTopicsEnabled", False, "publish $SYS topics to this tenant (TideMQ)")
    force_transient: bool = setting("ForceTransient", False, "every session is transient (session expiry 0)")
    # BifroMQ's initial value is true; TideMQ fails closed unless the tenant opts in (docs/settings.md)
    by_pass_perm_check_error: bool = setting(
        "ByPassPermCheckError", False, "a permission check whose provider errors is granted (false: denied)")
    payload_format_validation_enabled: bool = setting(
        "PayloadFormatValidationEnabled", True, "check UTF-8 payloads flagged with payload format indicator 1")
    retain_enabled: bool = setting("RetainEnabled", True, "retained messages are stored", process="retain_enabled")
    wildcard_subscription_enabled: bool = setting("WildcardSubscriptionEnabled", True, "filters may use + and #")
    subscription_identifier_enabled: bool = setting(
        "SubscriptionIdentifierEnabled", True, "MQTT 5 subscription identifiers are accepted")
    shared_subscription_enabled: bool = setting("SharedSubscriptionEnabled", True, "$share/$oshare filters")
    maximum_qos: int = setting("MaximumQoS", 2, "highest QoS accepted", _between(0, 2))
    max_topic_level_length: int = setting("MaxTopicLevelLength", 40, "longest topic level, in bytes", _POSITIVE)
    max_topic_levels: int = setting("MaxTopicLevels", 16, "most levels in a topic or filter", _POSITIVE,
                                    process="max_topic_levels")
    max_topic_length: int = setting("MaxTopicLength", 255, "longest topic or filter, in bytes",
                                    _between(1, 65535), process="max_topic_length")
    max_topic_alias: int = setting("MaxTopicAlias", 10, "MQTT 5 topic alias maximum", _between(0, 65535))
    max_shared_group_members: int = setting("MaxSharedGroupMembers", 200, "members per shared group", _POSITIVE)
    max_topic_filters_per_inbox: int = setting("MaxTopicFiltersPerInbox", 100, "subscriptions per session",
                                               _POSITIVE)
    msg_pub_per_sec: int = setting("MsgPubPerSec", 200, "PUBLISH packets per second per connection", _POSITIVE,
                                   process="msg_pub_per_sec")
    receiving_maximum: int = setting("ReceivingMaximum", 200, "server receive maximum (inbound QoS 1/2 in flight)",
                                     _between(1, 65535), process="max_inflight")
    in_bound_bandwidth: int = setting("InBoundBandWidth", 512 * 1024,
                                      "bytes per second read from one connection (0: unlimited)",
                                      _between(0, INT64_MAX), process="inbound_bandwidth")
    out_bound_bandwidth: int = setting("OutBoundBandWidth", 512 * 1024,
                                       "bytes per second written to one connection (0: unlimited)",
                                       _between(0, INT64_MAX), process="outbound_bandwidth")
    max_last_will_bytes: int = setting("MaxLastWillBytes", 128, "largest will payload",
                                       _between(1, 250 * 1024 * 1024), process="max_will_bytes")
    max_user_payload_bytes: int = setting("MaxUserPayloadBytes", 256 * 1024, "largest PUBLISH payload",
                                          _between(3, 256 * 1024 * 1024), process="max_payload")
    min_send_per_sec: int = setting("MinSendPerSec", 8, "slowest acceptable consumer, acks/s",
                                     _POSITIVE)
    max_resend_times: int = setting("MaxResendTimes", 3, "in-session resends of an unacked QoS 1/2 (MQTT 3)",
                                     _NON_NEGATIVE)
    resend_timeout_seconds: int = setting("ResendTimeoutSeconds", 10, "seconds before a resend", _POSITIVE)
    max_topic_filters_per_sub: int = setting("MaxTopicFiltersPerSub", 10, "filters in one SUBSCRIBE packet",
                                             _between(1, 100))
    max_group_fanout: int = setting("MaxGroupFanout", 100, "shared groups one message reaches", _POSITIVE)
    max_persistent_fanout: int = setting("MaxPersistentFanout", INT32_MAX,
                                         "persistent sessions one message reaches", _POSITIVE)
    max_persistent_fanout_bytes: int = setting("MaxPersistentFanoutBytes", INT64_MAX,
                                               "bytes one message may fan out to persistent sessions",
                                               _between(1, INT64_MAX))
    max_session_expiry_seconds: int = setting("MaxSessionExpirySeconds", 86400, "longest session expiry granted",
                                              _between(1, 2**32 - 1), process="max_session_expiry")
    min_session_expiry_seconds: int = setting(
        "MinSessionExpirySeconds", 60, "shortest expiry of a persistent session (<= MaxSessionExpirySeconds)",
        _between(1, 2**32 - 1), process="min_session_expiry")
    min_keep_alive_seconds: int = setting("MinKeepAliveSeconds", 60, "smallest keep alive accepted (0: none)",
                                          _between(0, 65534), process="min_keep_alive")
    session_inbox_size: int = setting("SessionInboxSize", 1000, "messages per persistent inbox",
                                      _between(1, 65535), process="inbox_size")
    qos0_drop_oldest: bool = setting("QoS0DropOldest", False, "a full inbox drops its oldest message",
                                     process="inbox_drop_oldest")
    retain_message_match_limit: int = setting("RetainMessageMatchLimit", 10,
                                              "retained messages sent per new subscription", _NON_NEGATIVE,
                                              process="retain_match_limit")
    # TideMQ's equivalents of BifroMQ's resource-throttler limits (0: unlimited)
    retained_topic_limit: int = setting("RetainedTopicLimit", 10000, "retained topics per tenant", _NON_NEGATIVE,
                                        aliases=("TotalRetainTopics",))
    total_connections: int = setting("TotalConnections", 0, "connections of the tenant per worker (0: unlimited)",
                                     _NON_NEGATIVE, aliases=("MaxConnectionsPerTenant",))
    total_connect_per_second: int = setting("TotalConnectPerSecond", 0,
                                            "CONNECTs of the tenant per second per worker (0: unlimited)",
                                            _NON_NEGATIVE)

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


def _declared() -> list[tuple[dataclasses.Field[Any], _Declared]]:
    return [(f, f.metadata["setting"]) for f in dataclasses.fields(TenantSettings)]


SPECS: dict[str, Spec] = {
    d.name: Spec(d.name, f.name, type(f.default), d.check, d.doc) for f, d in _declared()
}
ALIASES: dict[str, str] = {alias: d.name for _f, d in _declared() for alias in d.aliases}

_BY_LOWER: dict[str, Spec] = {name.lower(): spec for name, spec in SPECS.items()}
_BY_LOWER.update({alias.lower(): SPECS[target] for alias, target in ALIASES.items()})

# process Settings field -> TenantSettings field it provides the default for
PROCESS_DEFAULTS: dict[str, str] = {d.process: f.name for f, d in _declared() if d.process}
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


class SettingsSource(Protocol):
    """Where a tenant's overrides come from (BifroMQ's ``ISettingProvider``, one read per tenant)."""

    async def read(self, tenant: str) -> Mapping[Any, Any]:
        """``{BifroMQ setting name: value}`` (text, bytes, int or bool) for the settings the tenant overrides;
        ``{}`` for none. Raising means "unreadable now": the cached value (or the defaults) is kept.
        A source may also offer ``describe(tenant) -> str``: where an operator looks (used in warnings)."""
        ...


class RedisHashSettings:
    """The built-in source: the tenant's Redis hash ``settings(t)`` that operators edit with ``redis-cli``."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    async def read(self, tenant: str) -> Mapping[Any, Any]:
        return await settings_store.settings_read(self.redis, tenant)

    def describe(self, tenant: str) -> str:
        return settings_store.settings_key(tenant)


def make_settings_source(redis: Any, settings: Settings | None) -> SettingsSource | None:
    """The source ``settings.settings_provider`` names (``""``/``redis``: the Redis hash; ``pkg.mod:Class``:
    ``Class(settings, redis)``); None when there is neither a plugin nor a Redis (defaults only)."""
    spec = (settings.settings_provider if settings is not None else "").strip()
    if spec and spec.lower() != "redis":
        source: SettingsSource = load_plugin("TIDEMQ_SETTINGS_PROVIDER", spec, (settings, redis), ("read",))
        return source
    return RedisHashSettings(redis) if redis is not None else None


class SettingsProvider:
    """Per-tenant settings read from a ``SettingsSource``, cached per process for ``ttl`` seconds.

    The source is ``source`` when given, else the one ``settings.settings_provider`` names
    (``make_settings_source``: the Redis hash by default). With neither a source nor a
    ``redis`` every tenant gets the defaults. ``clock`` is a monotonic seconds source
    (injectable for tests). At most ``max_tenants`` entries are cached; the least recently
    refreshed one is dropped first.
    """

    def __init__(self, redis: Any, settings: Settings | None = None, *, ttl: float | None = None,
                 clock: Callable[[], float] = time.monotonic, max_tenants: int = 10000,
                 source: SettingsSource | None = None) -> None:
        self.redis = redis
        self.source = source if source is not None else make_settings_source(redis, settings)
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
        task.add_done_callback(functools.partial(self._forget_inflight, tenant))
        return task

    def _forget_inflight(self, tenant: str, _task: asyncio.Task[TenantSettings]) -> None:
        self._inflight.pop(tenant, None)

    async def _load(self, tenant: str) -> TenantSettings:
        if self.source is None:
            return self._store(tenant, self.defaults)
        try:
            raw = _as_text(await self.source.read(tenant))
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
                            _describe(self.source, tenant), problem)
        return self._store(tenant, value)

    def _store(self, tenant: str, value: TenantSettings) -> TenantSettings:
        self._cache.pop(tenant, None)
        if len(self._cache) >= self.max_tenants:
            self._cache.pop(next(iter(self._cache)))
        self._cache[tenant] = (self.clock() + self.ttl, value)
        return value


def _as_text(raw: Mapping[Any, Any]) -> Mapping[Any, Any]:
    """A source's values as the hash holds them: ints and bools formatted, text and bytes as they are."""
    if all(isinstance(v, str | bytes) for v in raw.values()):
        return raw
    return {k: format_value(v) if isinstance(v, bool | int) else v for k, v in raw.items()}


def _describe(source: object, tenant: str) -> str:
    fn = getattr(source, "describe", None)
    return str(fn(tenant)) if callable(fn) else type(source).__name__


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
    await settings_store.settings_write(redis, tenant, validate_overrides(values))


async def clear_overrides(redis: Any, tenant: str, names: list[str] | None = None) -> None:
    """Remove some (or all) overrides of a tenant, back to the defaults."""
    fields = None
    if names is not None:
        fields = [spec.name if (spec := lookup(name)) is not None else name for name in names]
    await settings_store.settings_delete(redis, tenant, fields)
