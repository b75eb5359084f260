"""Tenant settings hash I/O: raw reads, validated writes, field and whole-hash deletes."""

from __future__ import annotations

from typing import Any

from tidemq.store import keys as K
from tidemq.store import settings as st
from tidemq.tenants import SettingsProvider, clear_overrides, write_overrides

T = "set{t}"


async def test_read_write_delete(r: Any) -> None:
    assert st.settings_key(T) == K.tenant_settings(T)
    assert await st.settings_read(r, T) == {}
    await st.settings_write(r, T, {"MaxTopicLevels": "4", "RetainEnabled": "false"})
    await st.settings_write(r, T, {})  # nothing to write is not an error
    assert await st.settings_read(r, T) == {b"MaxTopicLevels": b"4", b"RetainEnabled": b"false"}
    await st.settings_delete(r, T, ["RetainEnabled", "NotThere"])
    await st.settings_delete(r, T, [])  # no names: nothing deleted
    assert await st.settings_read(r, T) == {b"MaxTopicLevels": b"4"}
    await st.settings_delete(r, T)
    assert not await r.exists(K.tenant_settings(T))


async def test_tenants_helpers_go_through_the_store(r: Any) -> None:
    await write_overrides(r, T, {"maxtopiclevels": 3, "MaxConnectionsPerTenant": 9})
    assert await st.settings_read(r, T) == {b"MaxTopicLevels": b"3", b"TotalConnections": b"9"}
    provider = SettingsProvider(r, ttl=0.0)
    got = await provider.get(T)
    assert (got.max_topic_levels, got.total_connections) == (3, 9)
    await clear_overrides(r, T, ["MAXTOPICLEVELS"])
    assert await st.settings_read(r, T) == {b"TotalConnections": b"9"}
    await clear_overrides(r, T)
    assert await st.settings_read(r, T) == {}
