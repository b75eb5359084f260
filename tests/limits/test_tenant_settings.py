"""Tenant settings from the Redis hash, enforced by a real worker over real sockets.

Each test writes its own tenant's ``tidemq:settings:{tenant}`` hash (BifroMQ names) before connecting and then
checks what MQTT 5 and 3.1.1 clients see on the wire: CONNACK reason codes and properties, SUBACK codes, PUBACK
codes and server DISCONNECTs. "Not delivered" is always proven with a sentinel published after.
"""

from __future__ import annotations

import pytest

from tests.conformance import wire
from tests.interop.clients import Paho
from tests.limits.helpers import (
    MAX_QOS,
    RECEIVE_MAXIMUM,
    RETAIN_AVAILABLE,
    SESSION_EXPIRY,
    SHARED_AVAILABLE,
    WILDCARD_AVAILABLE,
    connect311,
    open5,
    subscribe311,
    uid,
    until_async,
)
from tidemq.store import keys
from tidemq.store.keys import session_name

pytestmark = pytest.mark.redis


# -- protocol switches ------------------------------------------------------------------------------------------

async def test_mqtt5_disabled_refuses_v5_but_not_v311(worker, tenant, settings, c5) -> None:
    settings(MQTT5Enabled=False)
    refused = await c5(expect=0x84)
    assert refused.connack.reason == 0x84  # Unsupported Protocol Version
    c, code = await connect311(worker, f"c{uid()}", username=f"{tenant}/u")
    assert code == 0
    await c.close()
    other = await open5(worker, f"c{uid()}", username=f"other{uid()}/u")  # another tenant: unaffected
    await other.close()


async def test_mqtt4_disabled_gives_v311_return_code_1(worker, tenant, settings, c5) -> None:
    settings(MQTT4Enabled=False)
    _, code = await connect311(worker, f"c{uid()}", username=f"{tenant}/u")
    assert code == 0x01  # unacceptable protocol version
    await c5()


async def test_settings_change_applies_within_the_cache_ttl(worker, tenant, settings, c5) -> None:
    first = await c5()  # the tenant's settings are now cached (TTL 0.2 s in this worker)
    settings(MQTT5Enabled=False)

    async def refused() -> bool:
        try:
            c = await open5(worker, f"c{uid()}", username=f"{tenant}/u")
        except AssertionError as exc:
            assert "0x84" in str(exc), exc
            return True
        await c.close()
        return False

    await until_async(refused, 5.0, what="MQTT5Enabled=false taking effect")
    assert await first.publish("still/here", b"x", qos=1) == 0x10  # an open connection is not cut


# -- topic shape --------------------------------------------------------------------------------------------------

async def test_topic_levels_and_length(worker, tenant, settings, c5) -> None:
    settings(MaxTopicLevels=3, MaxTopicLength=20)
    c = await c5()
    assert await c.subscribe(("a/b/c/d", 0), ("a/b/c", 0), ("x" * 21, 0), ("a/+/#", 0)) == [0x8F, 0, 0x8F, 0]
    await c.publish("a/b/c/d", b"too deep")
    assert await c.disconnect_reason() == 0x90  # Topic Name Invalid
    c2 = await c5()
    await c2.publish("y" * 21, b"too long", qos=1, wait=False)
    assert await c2.disconnect_reason() == 0x90
    raw, code = await connect311(worker, f"c{uid()}", username=f"{tenant}/u")
    assert code == 0
    assert await subscribe311(raw, 1, ("a/b/c/d", 0), ("a/b", 1)) == [0x80, 1]
    await raw.close()


async def test_payload_limit_puback_0x95_and_not_delivered(worker, tenant, settings, c5) -> None:
    settings(MaxUserPayloadBytes=100)
    sub = await c5()
    assert await sub.subscribe(("p/t", 1)) == [1]
    pub = await c5()
    assert await pub.publish("p/t", b"x" * 101, qos=1) == 0x95  # Packet Too Large
    await pub.publish("p/t", b"q" * 101, qos=0)  # QoS 0: silently dropped
    assert await pub.publish("p/t", b"y" * 100, qos=1) in (0, 0x10)
    got = await sub.until_sentinel(pub, "p/t")
    assert [m.payload for m in got] == [b"y" * 100]


# -- retain and QoS -----------------------------------------------------------------------------------------------

async def test_retain_disabled(worker, tenant, settings, c5) -> None:
    settings(RetainEnabled=False)
    c = await c5()
    assert c.connack.prop(RETAIN_AVAILABLE) == 0
    await c.publish("r/t", b"keep me", retain=True)
    assert await c.disconnect_reason() == 0x9A  # Retain Not Supported
    fresh = await c5()
    assert await fresh.subscribe(("r/#", 0)) == [0]
    assert await fresh.until_sentinel(await c5(), "r/t") == []  # nothing was stored


async def test_maximum_qos_1(worker, tenant, settings, c5) -> None:
    settings(MaximumQoS=1)
    c = await c5()
    assert c.connack.prop(MAX_QOS) == 1
    assert await c.subscribe(("q/#", 2)) == [1]  # granted QoS is capped
    await c.publish("q/t", b"two", qos=2)
    assert await c.disconnect_reason() == 0x9B  # QoS Not Supported


# -- subscription quotas and features -----------------------------------------------------------------------------

async def test_filters_per_subscribe_and_per_inbox(worker, tenant, settings, c5) -> None:
    settings(MaxTopicFiltersPerSub=2, MaxTopicFiltersPerInbox=3)
    c = await c5()
    assert await c.subscribe(("f/1", 0), ("f/2", 0), ("f/3", 0)) == [0, 0, 0x97]  # Quota Exceeded
    assert await c.subscribe(("f/4", 1), ("f/5", 1)) == [1, 0x97]  # the third filter of the session fills it
    assert await c.subscribe(("f/6", 0)) == [0x97]
    pub = await c5()
    await pub.publish("f/5", b"refused filter", qos=1)
    got = await c.until_sentinel(pub, "f/4")
    assert got == []
    raw, _ = await connect311(worker, f"c{uid()}", username=f"{tenant}/u")
    assert await subscribe311(raw, 1, ("g/1", 0), ("g/2", 0), ("g/3", 0)) == [0, 0, 0x80]
    await raw.close()


async def test_resubscribing_at_the_inbox_limit_replaces(worker, tenant, settings, c5) -> None:
    """A SUBSCRIBE to a filter the session already has replaces it, even when the session is at its quota."""
    settings(MaxTopicFiltersPerInbox=2)
    c = await c5()
    assert await c.subscribe(("h/1", 0), ("h/2", 0)) == [0, 0]
    assert await c.subscribe(("h/3", 0)) == [0x97]
    assert await c.subscribe(("h/1", 1)) == [1]


async def test_wildcards_disabled(worker, tenant, settings, c5) -> None:
    settings(WildcardSubscriptionEnabled=False)
    c = await c5()
    assert c.connack.prop(WILDCARD_AVAILABLE) == 0
    assert await c.subscribe(("w/+", 0), ("w/#", 0), ("w/x", 0), ("$share/g/w/+", 0)) == [0xA2, 0xA2, 0, 0xA2]


async def test_shared_subscriptions_disabled(worker, tenant, settings, c5) -> None:
    settings(SharedSubscriptionEnabled=False)
    c = await c5()
    assert c.connack.prop(SHARED_AVAILABLE) == 0
    assert await c.subscribe(("$share/g/s/t", 0), ("$oshare/g/s/t", 0), ("s/t", 0)) == [0x9E, 0x9E, 0]


# -- persistent inbox ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("drop_oldest", [True, False])
async def test_session_inbox_size(worker, tenant, settings, c5, r, drop_oldest) -> None:
    settings(SessionInboxSize=3, QoS0DropOldest=drop_oldest)
    cid = f"p{uid()}"
    sub = await c5(cid, clean=False, props=wire.props((SESSION_EXPIRY, 600)))
    assert await sub.subscribe(("box/t", 1)) == [1]
    await sub.bye()
    await until_async(lambda: r.hget(keys.sess(tenant, session_name("u", cid)), "worker") in (b"", None), 5.0,
                      "the session going offline")
    pub = await c5()
    # a full inbox never trims queued QoS 1 entries, whatever QoS0DropOldest says: the overflow is refused
    codes = [await pub.publish("box/t", b"m%d" % i, qos=1) for i in range(6)]
    assert codes == [0, 0, 0, 0x97, 0x97, 0x97]
    assert r.xlen(keys.inbox(tenant, session_name("u", cid))) == 3
    again = await c5(cid, clean=False, props=wire.props((SESSION_EXPIRY, 600)))
    assert again.connack.session_present
    got = [(await again.get()).payload for _ in range(3)]
    assert got == [b"m0", b"m1", b"m2"]
    # the acks reach Redis, then nothing but the sentinel is left to deliver
    await until_async(lambda: r.xlen(keys.inbox(tenant, session_name("u", cid))) == 0, 5.0, "acked entries deleted")
    assert await again.until_sentinel(pub, "box/t") == []


# -- rates and connection counts ----------------------------------------------------------------------------------

async def test_publish_rate(worker, tenant, settings, c5) -> None:
    settings(MsgPubPerSec=5)
    c = await c5()
    n = 30
    pids = []
    for i in range(n):  # pipelined: all sent before any PUBACK is read
        pid = c.next_pid()
        pids.append(pid)
        await c.send(wire.publish("rate/t", b"%d" % i, qos=1, pid=pid, version=5))
    codes = {}
    for _ in range(n):
        ack = await c._until(wire.PUBACK)
        codes[ack.pid] = ack.body[2] if len(ack.body) > 2 else 0
    assert sorted(codes) == sorted(pids)
    refused = [p for p in pids if codes[p] == 0x96]  # Message Rate Too High
    assert codes[pids[0]] in (0, 0x10) and len(refused) >= n - 12, codes
    assert set(codes.values()) <= {0, 0x10, 0x96}


async def test_total_connections_per_tenant(worker, tenant, settings, c5) -> None:
    settings(TotalConnections=2)
    a = await c5()
    await c5()
    await c5(expect=0x97)  # Quota Exceeded
    _, code = await connect311(worker, f"c{uid()}", username=f"{tenant}/u")
    assert code == 0x03  # MQTT 3.1.1 has no quota code: server unavailable
    other = await open5(worker, f"c{uid()}", username=f"other{uid()}/u")
    await other.close()
    await a.bye()  # a slot is released once the worker has cleaned the connection up

    async def admitted() -> bool:
        try:
            c = await open5(worker, f"c{uid()}", username=f"{tenant}/u")
        except AssertionError:
            return False
        await c.close()
        return True

    await until_async(admitted, 5.0, "a released connection slot")


# -- CONNECT-time bounds ------------------------------------------------------------------------------------------

async def test_session_expiry_bounds(worker, tenant, settings, c5) -> None:
    settings(MaxSessionExpirySeconds=100, MinSessionExpirySeconds=30)
    c = await c5(props=wire.props((SESSION_EXPIRY, 1000)))
    assert c.connack.prop(SESSION_EXPIRY) == 100
    c = await c5(props=wire.props((SESSION_EXPIRY, 5)))
    assert c.connack.prop(SESSION_EXPIRY) == 30
    c = await c5(props=wire.props((SESSION_EXPIRY, 50)))
    assert c.connack.prop(SESSION_EXPIRY) is None  # granted as asked
    c = await c5()
    assert c.connack.prop(SESSION_EXPIRY) is None  # 0 stays 0 (transient)


async def test_will_size_limit(worker, tenant, settings, c5) -> None:
    settings(MaxLastWillBytes=10)
    await c5(will=("will/t", b"x" * 11, 0, False), expect=0x95)  # Packet Too Large
    await c5(will=("will/t", b"x" * 10, 0, False))


async def test_receiving_maximum_is_announced(worker, tenant, settings, c5) -> None:
    settings(ReceivingMaximum=7)
    c = await c5()
    assert c.connack.prop(RECEIVE_MAXIMUM) == 7


def test_v311_paho_still_connects_when_v5_is_disabled(worker, tenant, settings) -> None:
    settings(MQTT5Enabled=False)
    ok = Paho(worker, username=f"{tenant}/u", protocol="v311")
    try:
        assert ok.connect().reason == 0
    finally:
        ok.close()
    refused = Paho(worker, username=f"{tenant}/u", protocol="v5")
    try:
        assert refused.connect(expect_success=False).reason == 0x84
    finally:
        refused.close()


async def test_payload_format_validation(worker, tenant, settings, c5) -> None:
    settings(PayloadFormatValidationEnabled=True)
    sub = await c5()
    assert await sub.subscribe(("pf/t", 1)) == [1]
    pub = await c5()
    utf8 = wire.props((0x01, 1))  # Payload Format Indicator: UTF-8
    assert await pub.publish("pf/t", b"\xff\xfe not utf-8", qos=1, props=utf8) == 0x99  # Payload Format Invalid
    assert await pub.publish("pf/t", "héllo".encode(), qos=1, props=utf8) in (0, 0x10)
    assert await pub.publish("pf/t", b"\xff binary", qos=1) in (0, 0x10)  # no indicator: any bytes
    got = await sub.until_sentinel(pub, "pf/t")
    assert [m.payload for m in got] == ["héllo".encode(), b"\xff binary"]


async def test_max_shared_group_members(worker, tenant, settings, c5) -> None:
    settings(MaxSharedGroupMembers=2)
    a, b, c = await c5(), await c5(), await c5()
    assert await a.subscribe(("$share/g/sg/t", 1)) == [1]
    assert await b.subscribe(("$share/g/sg/t", 1)) == [1]
    assert await c.subscribe(("$share/g/sg/t", 1), ("$share/other/sg/t", 1)) == [0x97, 1]
    assert await a.subscribe(("$share/g/sg/t", 0)) == [0]  # a member may re-subscribe
