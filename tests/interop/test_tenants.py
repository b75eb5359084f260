"""Tenant isolation (TideMQ only): the DevOnly auth provider maps username "tenant/user" to a tenant.

Same topic, same client id, different tenants: no message, retained message or
session crosses the tenant boundary.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.interop.clients import Paho, sentinel_barrier, uid

pytestmark = pytest.mark.tidemq_only


def test_same_topic_in_two_tenants_is_isolated(paho: Callable[..., Paho]) -> None:
    u = uid()
    topic = f"iso/{u}"
    sub_a = paho(protocol="v5", username=f"tenantA{u}/u1")
    sub_b = paho(protocol="v311", username=f"tenantB{u}/u1")
    for c in (sub_a, sub_b):
        c.connect()
        c.subscribe([(topic, 1), ("#", 1)])
    pub_a = paho(protocol="v311", username=f"tenantA{u}/u2")
    pub_b = paho(protocol="v5", username=f"tenantB{u}/u2")
    pub_a.connect()
    pub_b.connect()

    pub_a.publish(topic, b"for-A", qos=1)
    assert sub_a.get().payload == b"for-A"
    # overlapping subscriptions ('#' and the topic) may deliver one copy or two
    assert [m.payload for m in sentinel_barrier(pub_a, sub_a, topic)] in ([], [b"for-A"])
    leaked = [m.payload for m in sentinel_barrier(pub_b, sub_b, topic) if not m.payload.startswith(b"sentinel")]
    assert leaked == []  # nothing from tenant A


def test_retained_is_per_tenant(paho: Callable[..., Paho]) -> None:
    u = uid()
    topic = f"iso-ret/{u}"
    pub_a = paho(protocol="v311", username=f"tenantA{u}/u1")
    pub_a.connect()
    pub_a.publish(topic, b"A-retained", qos=1, retain=True)
    sub_b = paho(protocol="v311", username=f"tenantB{u}/u1")
    sub_b.connect()
    sub_b.subscribe(topic, 1)
    pub_b = paho(protocol="v311", username=f"tenantB{u}/u2")
    pub_b.connect()
    assert sentinel_barrier(pub_b, sub_b, topic) == []
    sub_a = paho(protocol="v311", username=f"tenantA{u}/u2")
    sub_a.connect()
    sub_a.subscribe(topic, 1)
    assert sub_a.get().payload == b"A-retained"
    pub_a.publish(topic, b"", qos=1, retain=True)


def test_same_client_id_in_two_tenants_no_takeover(paho: Callable[..., Paho]) -> None:
    u = uid()
    cid = f"same{u}"
    a = paho(cid, protocol="v5", username=f"tenantA{u}/u")
    b = paho(cid, protocol="v5", username=f"tenantB{u}/u")
    a.connect()
    assert b.connect().session_present is False
    topic = f"alive/{u}"
    a.subscribe(topic, 1)  # a is still connected: its SUBACK and a round trip work
    a.publish(topic, b"still-here", qos=1)
    assert a.get().payload == b"still-here"
    assert not a.disconnected.is_set() and not b.disconnected.is_set()
