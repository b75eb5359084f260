"""Tenant settings: BifroMQ names and defaults, parsing, layering, and the TTL cache with a fake clock."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import pytest

from tidemq.config import Settings
from tidemq.store import keys
from tidemq.tenants import (
    SPECS,
    SettingsProvider,
    TenantSettings,
    apply_overrides,
    defaults_from,
    lookup,
    parse_value,
    validate_overrides,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeRedis:
    """Just HGETALL, with a call counter, optional failure and an optional gate to hold reads."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[bytes, bytes]] = {}
        self.calls = 0
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("store down")
        return dict(self.hashes.get(key, {}))

    def set(self, tenant: str, **values: str) -> None:
        self.hashes[keys.tenant_settings(tenant)] = {k.encode(): v.encode() for k, v in values.items()}


def test_every_field_has_one_bifromq_name() -> None:
    field_names = [f.name for f in dataclasses.fields(TenantSettings)]
    spec_fields = [s.field for s in SPECS.values()]
    assert sorted(field_names) == sorted(spec_fields)
    for spec in SPECS.values():
        default = getattr(TenantSettings(), spec.field)
        assert type(default) is spec.type, spec.name
        if spec.type is int:
            assert spec.check(default), spec.name


def test_bifromq_initial_values() -> None:
    d = TenantSettings().to_bifromq()
    assert d["MaxTopicLevels"] == 16
    assert d["MaxTopicLength"] == 255
    assert d["MaxTopicLevelLength"] == 40
    assert d["MaxUserPayloadBytes"] == 256 * 1024
    assert d["SessionInboxSize"] == 1000
    assert d["MsgPubPerSec"] == 200
    assert d["ReceivingMaximum"] == 200
    assert d["InBoundBandWidth"] == d["OutBoundBandWidth"] == 512 * 1024
    assert d["MaxSharedGroupMembers"] == 200
    assert d["MaxTopicFiltersPerInbox"] == 100
    assert d["MaxTopicFiltersPerSub"] == 10
    assert d["MaxSessionExpirySeconds"] == 86400
    assert d["MaxLastWillBytes"] == 128
    assert d["QoS0DropOldest"] is False
    assert d["MQTT3Enabled"] and d["MQTT4Enabled"] and d["MQTT5Enabled"]
    assert d["DebugModeEnabled"] is False and d["ForceTransient"] is False


def test_process_settings_provide_defaults() -> None:
    s = Settings(max_inflight=70000, inbox_size=50, inbox_drop_oldest=True, max_payload=1000,
                 max_topic_levels=8, max_topic_length=100, retain_enabled=False, min_keep_alive=5,
                 max_session_expiry=30)
    d = defaults_from(s)
    assert d.receiving_maximum == 65535  # clamped to the MQTT range
    assert (d.session_inbox_size, d.qos0_drop_oldest, d.max_user_payload_bytes) == (50, True, 1000)
    assert (d.max_topic_levels, d.max_topic_length, d.retain_enabled) == (8, 100, False)
    assert (d.min_keep_alive_seconds, d.max_session_expiry_seconds) == (5, 30)
    assert d.min_session_expiry_seconds == 30  # never above the maximum
    assert defaults_from(Settings()).receiving_maximum == Settings().max_inflight
    assert defaults_from(None) == TenantSettings()


@pytest.mark.parametrize(("name", "raw", "value"), [
    ("MQTT3Enabled", "false", False), ("MQTT3Enabled", " TRUE ", True), ("RetainEnabled", "0", False),
    ("MaxTopicLevels", "32", 32), ("MaxTopicLength", "65535", 65535), ("MaximumQoS", "0", 0),
    ("InBoundBandWidth", "0", 0), ("MinKeepAliveSeconds", "0", 0), ("SessionInboxSize", b"10", 10),
])
def test_parse_value(name: str, raw: Any, value: Any) -> None:
    assert parse_value(SPECS[name], raw) == value


@pytest.mark.parametrize(("name", "raw"), [
    ("MQTT3Enabled", "yes please"), ("MaxTopicLevels", "0"), ("MaxTopicLevels", "1.5"),
    ("MaxTopicLength", "65536"), ("MaximumQoS", "3"), ("SessionInboxSize", "0x10"),
    ("ReceivingMaximum", "-1"), ("MaxTopicFiltersPerSub", "101"), ("MaxTopicLevels", ""),
])
def test_parse_value_rejects(name: str, raw: str) -> None:
    with pytest.raises(ValueError, match=name):
        parse_value(SPECS[name], raw)


def test_lookup_is_case_insensitive_with_aliases() -> None:
    assert lookup("maxtopiclevels") is SPECS["MaxTopicLevels"]
    assert lookup("MaxConnectionsPerTenant") is SPECS["TotalConnections"]
    assert lookup("TotalRetainTopics") is SPECS["RetainedTopicLimit"]
    assert lookup("NoSuchSetting") is None


def test_apply_overrides_keeps_good_values_and_reports_bad_ones() -> None:
    base = TenantSettings()
    got, errors = apply_overrides(base, {b"MaxTopicLevels": b"4", b"RetainEnabled": b"false",
                                         b"MaximumQoS": b"7", b"Bogus": b"1", "maxconnectionspertenant": "5"})
    assert got.max_topic_levels == 4 and got.retain_enabled is False and got.total_connections == 5
    assert got.maximum_qos == 2
    assert set(errors) == {"MaximumQoS", "Bogus"}
    same, none = apply_overrides(base, {})
    assert same is base and none == {}


def test_min_session_expiry_never_exceeds_max() -> None:
    got, errors = apply_overrides(TenantSettings(), {"MaxSessionExpirySeconds": "30"})
    assert (got.max_session_expiry_seconds, got.min_session_expiry_seconds) == (30, 30)
    assert errors == {}
    got, errors = apply_overrides(TenantSettings(), {"MinSessionExpirySeconds": "500",
                                                     "MaxSessionExpirySeconds": "100"})
    assert got.min_session_expiry_seconds == 100 and "MinSessionExpirySeconds" in errors


def test_validate_overrides() -> None:
    assert validate_overrides({"maxtopiclevels": 8, "RetainEnabled": False}) == {
        "MaxTopicLevels": "8", "RetainEnabled": "false"}
    with pytest.raises(ValueError):
        validate_overrides({"MaxTopicLevels": 0})
    with pytest.raises(ValueError):
        validate_overrides({"Nope": 1})


def test_protocol_enabled() -> None:
    ts = dataclasses.replace(TenantSettings(), mqtt3_enabled=False)
    assert [ts.protocol_enabled(v) for v in (3, 4, 5, 6)] == [False, True, True, False]


# --- provider with a fake clock ---------------------------------------------------------------


async def test_get_caches_for_the_ttl() -> None:
    clock, r = FakeClock(), FakeRedis()
    r.set("acme", MaxTopicLevels="4")
    p = SettingsProvider(r, Settings(tenant_settings_ttl=5.0), clock=clock)
    assert (await p.get("acme")).max_topic_levels == 4
    r.set("acme", MaxTopicLevels="6")
    clock.now += 4.9
    assert (await p.get("acme")).max_topic_levels == 4
    assert r.calls == 1
    clock.now += 0.2
    assert (await p.get("acme")).max_topic_levels == 6
    assert r.calls == 2
    assert (await p.get("other")) is p.defaults


async def test_cached_returns_defaults_then_refreshes_in_background() -> None:
    clock, r = FakeClock(), FakeRedis()
    r.set("acme", SessionInboxSize="7")
    p = SettingsProvider(r, ttl=5.0, clock=clock)
    assert p.cached("acme") is p.defaults  # nothing cached yet: defaults, one refresh scheduled
    assert p.cached("acme") is p.defaults  # no second refresh while one is in flight
    await p._inflight["acme"]
    assert r.calls == 1
    assert p.cached("acme").session_inbox_size == 7
    r.set("acme", SessionInboxSize="9")
    clock.now += 6
    assert p.cached("acme").session_inbox_size == 7  # stale value served, refresh scheduled
    await p._inflight["acme"]
    assert p.cached("acme").session_inbox_size == 9


def test_cached_without_a_loop_returns_defaults() -> None:
    p = SettingsProvider(FakeRedis(), clock=FakeClock())
    assert p.cached("acme") is p.defaults


async def test_concurrent_gets_share_one_read() -> None:
    clock, r = FakeClock(), FakeRedis()
    r.gate = asyncio.Event()
    p = SettingsProvider(r, clock=clock)
    waiters = [asyncio.create_task(p.get("acme")) for _ in range(5)]
    r.gate.set()
    results = await asyncio.gather(*waiters)
    assert r.calls == 1 and all(x is results[0] for x in results)


async def test_store_errors_keep_the_last_value(caplog: pytest.LogCaptureFixture) -> None:
    clock, r = FakeClock(), FakeRedis()
    r.set("acme", MaxTopicLevels="4")
    p = SettingsProvider(r, ttl=5.0, clock=clock)
    assert (await p.get("acme")).max_topic_levels == 4
    r.fail = True
    clock.now += 10
    with caplog.at_level(logging.WARNING, "tidemq.tenants"):
        assert (await p.get("acme")).max_topic_levels == 4
        assert (await p.get("fresh")) is p.defaults
    assert "unreadable" in caplog.text
    calls = r.calls
    assert (await p.get("acme")).max_topic_levels == 4  # retried only after one more TTL
    assert r.calls == calls


async def test_bad_values_are_logged_once_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    clock, r = FakeClock(), FakeRedis()
    r.set("acme", MaxTopicLevels="many", RetainEnabled="false")
    p = SettingsProvider(r, ttl=1.0, clock=clock)
    with caplog.at_level(logging.WARNING, "tidemq.tenants"):
        got = await p.get("acme")
        clock.now += 2
        await p.get("acme")
    assert got.max_topic_levels == 16 and got.retain_enabled is False
    assert len([r for r in caplog.records if "MaxTopicLevels" in r.getMessage()]) == 1


async def test_invalidate_and_bounded_cache() -> None:
    clock, r = FakeClock(), FakeRedis()
    p = SettingsProvider(r, clock=clock, max_tenants=2)
    for t in ("a", "b", "c"):
        await p.get(t)
    assert len(p._cache) == 2 and "a" not in p._cache
    p.invalidate("b")
    await p.get("b")
    assert r.calls == 4
    p.invalidate()
    assert not p._cache


async def test_no_store_means_defaults() -> None:
    p = SettingsProvider(None, Settings(inbox_size=5))
    assert (await p.get("x")).session_inbox_size == 5


def test_docs_list_every_setting() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "settings.md").read_text()
    for name in SPECS:
        assert f"| `{name}` |" in doc, name
