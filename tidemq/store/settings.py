"""Tenant settings in Redis: the hash ``settings(t)`` of BifroMQ setting name -> text value.

Only the I/O lives here: read the whole hash, write validated fields, delete
some or all of them. What the names and values mean (the schema, parsing,
layering and the per-process cache) is ``tidemq.tenants``' business; this
module never interprets a value. Operators may edit the same hash with
``redis-cli HSET``, so a read returns the raw bytes as stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tidemq.store import keys


def settings_key(tenant: str) -> str:
    """The name of the tenant's settings hash (for log lines that tell an operator where to look)."""
    return keys.tenant_settings(tenant)


async def settings_read(r: Any, tenant: str) -> dict[bytes, bytes]:
    """Every field of the tenant's settings hash, raw (``{}`` when the tenant has no overrides)."""
    raw: dict[bytes, bytes] = await r.hgetall(keys.tenant_settings(tenant))
    return raw


async def settings_write(r: Any, tenant: str, mapping: Mapping[str, str]) -> None:
    """HSET ``mapping`` (name -> already validated text value) into the tenant's hash."""
    if mapping:
        await r.hset(keys.tenant_settings(tenant), mapping=dict(mapping))


async def settings_delete(r: Any, tenant: str, names: Sequence[str] | None = None) -> None:
    """Delete the named fields of the tenant's hash, or the whole hash when ``names`` is None."""
    key = keys.tenant_settings(tenant)
    if names is None:
        await r.delete(key)
    elif names:
        await r.hdel(key, *names)
