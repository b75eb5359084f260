"""Key names: one builder module, a hash tag per tenant and one per session, escaping that keeps tags intact."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from tidemq.store import keys

TENANTS = ["DevOnly", "", "a{b}c", "}{", "%7B", "x}", "{y", "t:1", "ünïcode"]


CLIENTS = ["c1", "", "cli{ent}:x", "}", "{", "%", "a|b", "ünï"]


@pytest.mark.parametrize("tenant", TENANTS)
def test_tenant_keys_share_the_tenant_slot(tenant: str) -> None:
    slots = {key_slot(k.encode()) for k in keys.tenant_keys(tenant)}
    assert slots == {key_slot(keys.tag(tenant).encode())}


@pytest.mark.parametrize("tenant", TENANTS)
@pytest.mark.parametrize("client", CLIENTS)
def test_session_keys_share_the_session_slot(tenant: str, client: str) -> None:
    slots = {key_slot(k.encode()) for k in keys.session_keys(tenant, client)}
    assert slots == {key_slot(keys.session_tag(tenant, client).encode())}


def test_sessions_of_one_tenant_spread_over_the_slots() -> None:
    slots = {key_slot(keys.sess("DevOnly", f"c{i}").encode()) for i in range(1000)}
    assert len(slots) > 900  # ~ uniform over 16384 slots: a few collisions at most


def test_session_tags_are_injective() -> None:
    pairs = [(t, c) for t in [*TENANTS, "a|b", "a", "a%7C"] for c in [*CLIENTS, "b", "b|c"]]
    tags = {keys.session_tag(t, c) for t, c in pairs}
    assert len(tags) == len(set(pairs))
    for tag in tags:
        assert tag.count("{") == 1 and tag.count("}") == 1 and "|" in tag  # the first | ends the tenant


def test_escaping_is_injective_and_closes_the_tag() -> None:
    escaped = [keys.escape_tenant(t) for t in TENANTS]
    assert len(set(escaped)) == len(TENANTS)
    for e in escaped:
        assert "{" not in e and "}" not in e
    assert keys.escape_tenant("%7B") == "%257B"
    assert keys.escape_tenant("{") == "%7B"
    assert keys.escape_tenant("") == "%"


def test_readable_layout() -> None:
    assert keys.sess("DevOnly", "c1") == "tidemq:sess:{DevOnly|c1}"
    assert keys.inbox("DevOnly", "c1") == "tidemq:inbox:{DevOnly|c1}"
    assert keys.routes("DevOnly") == "tidemq:routes:{DevOnly}"
    assert keys.tenants() == "tidemq:tenants"
    assert keys.worker_channel("w7") == "tidemq:w:w7"
