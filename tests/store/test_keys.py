"""Key names: one builder module, one hash tag per tenant, escaping that keeps the tag intact."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from tidemq.store import keys

TENANTS = ["DevOnly", "", "a{b}c", "}{", "%7B", "x}", "{y", "t:1", "ünïcode"]


def all_keys(t: str, c: str) -> list[str]:
    return [*keys.session_keys(t, c), *keys.tenant_keys(t)]


@pytest.mark.parametrize("tenant", TENANTS)
def test_every_key_of_a_tenant_shares_one_slot(tenant: str) -> None:
    slots = {key_slot(k.encode()) for k in all_keys(tenant, "cli{ent}:x")}
    assert slots == {key_slot(keys.tag(tenant).encode())}


def test_escaping_is_injective_and_closes_the_tag() -> None:
    escaped = [keys.escape_tenant(t) for t in TENANTS]
    assert len(set(escaped)) == len(TENANTS)
    for e in escaped:
        assert "{" not in e and "}" not in e
    assert keys.escape_tenant("%7B") == "%257B"
    assert keys.escape_tenant("{") == "%7B"
    assert keys.escape_tenant("") == "%"


def test_readable_layout() -> None:
    assert keys.sess("DevOnly", "c1") == "tidemq:sess:{DevOnly}:c1"
    assert keys.inbox("DevOnly", "c1") == "tidemq:inbox:{DevOnly}:c1"
    assert keys.routes("DevOnly") == "tidemq:routes:{DevOnly}"
    assert keys.tenants() == "tidemq:tenants"
    assert keys.worker_channel("w7") == "tidemq:w:w7"
