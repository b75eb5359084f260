"""Token buckets and connection counters, driven by an explicit clock value."""

from __future__ import annotations

import dataclasses

import pytest

from tidemq.limits import ConnectionCounter, ConnectionLimiter, ConnectRateLimiter, TokenBucket
from tidemq.tenants import TenantSettings


def test_bucket_admits_a_burst_then_the_rate() -> None:
    b = TokenBucket(10, now=0.0)
    assert sum(b.try_take(0.0) for _ in range(20)) == 10
    assert not b.try_take(0.05)
    assert b.try_take(0.1)  # one token back after 1/rate seconds
    assert not b.try_take(0.1)
    assert sum(b.try_take(100.0) for _ in range(20)) == 10  # never more than the burst banked


def test_bucket_delay_and_all_or_nothing() -> None:
    b = TokenBucket(4, burst=4, now=0.0)
    assert not b.try_take(0.0, 5)
    assert b.tokens == 4
    assert b.delay(0.0, 4) == 0
    assert b.try_take(0.0, 4)
    assert b.delay(0.0, 2) == pytest.approx(0.5)


def test_consume_goes_into_debt_and_returns_the_pause() -> None:
    b = TokenBucket(1000, now=0.0)  # bytes per second, burst 1000
    assert b.consume(0.0, 600) == 0
    assert b.consume(0.0, 900) == pytest.approx(0.5)  # 500 in debt: half a second
    assert b.consume(0.25, 0) == pytest.approx(0.25)
    assert b.consume(0.5, 0) == 0


def test_zero_rate_is_unlimited() -> None:
    b = TokenBucket(0)
    assert b.unlimited and all(b.try_take(0.0) for _ in range(10000))
    assert b.consume(0.0, 10**9) == 0 and b.delay(0.0, 10**9) == 0


def test_set_rate_keeps_banked_tokens_within_the_new_burst() -> None:
    b = TokenBucket(100, now=0.0)
    b.set_rate(0.0, 10)
    assert b.burst == 10 and b.tokens == 10
    b.set_rate(0.0, 1000)
    assert b.tokens == 10


def test_connection_limiter_follows_tenant_settings() -> None:
    ts = dataclasses.replace(TenantSettings(), msg_pub_per_sec=2, in_bound_bandwidth=100, out_bound_bandwidth=0)
    lim = ConnectionLimiter(ts, now=0.0)
    assert [lim.allow_publish(0.0) for _ in range(3)] == [True, True, False]
    assert lim.received(0.0, 150) == pytest.approx(0.5)
    assert lim.sent(0.0, 10**9) == 0
    lim.update(dataclasses.replace(ts, msg_pub_per_sec=5), now=1.0)
    assert sum(lim.allow_publish(1.0) for _ in range(10)) == 2  # banked tokens carried over, burst now 5
    assert sum(lim.allow_publish(2.0) for _ in range(10)) == 5


def test_connection_limiter_only_when_a_rate_is_set() -> None:
    unlimited = dataclasses.replace(TenantSettings(), msg_pub_per_sec=0, in_bound_bandwidth=0, out_bound_bandwidth=0)
    assert ConnectionLimiter.for_settings(unlimited, now=0.0) is None
    lim = ConnectionLimiter.for_settings(dataclasses.replace(unlimited, msg_pub_per_sec=7), now=0.0)
    assert lim is not None and lim.publish.rate == 7
    lim = ConnectionLimiter.for_settings(dataclasses.replace(unlimited, in_bound_bandwidth=7), now=0.0)
    assert lim is not None and lim.bytes_in.rate == 7
    lim = ConnectionLimiter.for_settings(dataclasses.replace(unlimited, out_bound_bandwidth=7), now=0.0)
    assert lim is not None and lim.bytes_out.rate == 7


def test_connect_rate_per_tenant_and_worker() -> None:
    lim = ConnectRateLimiter(worker_rate=3, now=0.0)
    assert lim.allow("a", 0.0, tenant_rate=1)
    assert not lim.allow("a", 0.0, tenant_rate=1)  # tenant bucket empty
    assert lim.allow("b", 0.0)
    assert lim.allow("c", 0.0)
    assert not lim.allow("d", 0.0)  # worker bucket empty
    assert lim.allow("a", 1.0, tenant_rate=1)


def test_connect_rate_tenant_buckets_are_bounded() -> None:
    lim = ConnectRateLimiter(now=0.0, max_tenants=2)
    for t in ("a", "b", "c"):
        assert lim.allow(t, 0.0, tenant_rate=1)
    assert set(lim._tenants) == {"b", "c"}


def test_connection_counter() -> None:
    c = ConnectionCounter(max_total=3)
    assert c.acquire("a", tenant_limit=2) and c.acquire("a", tenant_limit=2)
    assert not c.acquire("a", tenant_limit=2)
    assert c.acquire("b")
    assert not c.acquire("c")  # worker full
    assert (c.total, c.count("a"), c.count("b")) == (3, 2, 1)
    c.release("a")
    c.release("b")
    c.release("b")  # extra releases are harmless
    assert (c.total, c.count("a"), c.count("b")) == (1, 1, 0)
    assert c.acquire("c")
