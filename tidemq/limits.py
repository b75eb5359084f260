"""Rate and count limits, sans clock: every method that needs the time takes ``now`` (seconds, monotonic).

``TokenBucket`` refills at ``rate`` tokens per second up to ``burst``; a rate
of 0 (or less) means unlimited. ``try_take`` is all-or-nothing (a PUBLISH is
admitted or refused); ``consume`` always takes, possibly into debt, and
returns how long the caller should pause (bytes already read from a socket
cannot be refused, only paid for by not reading for a while). On top of it:
``ConnectionLimiter`` (one connection's publish rate and in/out bandwidth,
from a tenant's settings), ``ConnectRateLimiter`` (CONNECTs per second per
worker and per tenant) and ``ConnectionCounter`` (connections per worker and
per tenant). Everything is in-memory and per process; nothing here awaits,
reads a clock or touches Redis.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConnectRateLimiter", "ConnectionCounter", "ConnectionLimiter", "TokenBucket"]


class TokenBucket:
    """A token bucket: ``rate`` tokens/s, at most ``burst`` banked (default: one second's worth)."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float | None = None, now: float = 0.0) -> None:
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else max(self.rate, 1.0)
        self.tokens = self.burst
        self.stamp = now

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def _refill(self, now: float) -> None:
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now

    def try_take(self, now: float, n: float = 1.0) -> bool:
        """Take ``n`` tokens if they are all there; False (and nothing taken) otherwise."""
        if self.rate <= 0:
            return True
        self._refill(now)
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    def consume(self, now: float, n: float) -> float:
        """Take ``n`` tokens even into debt; returns the seconds until the balance is back to zero (0 if none)."""
        if self.rate <= 0:
            return 0.0
        self._refill(now)
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def delay(self, now: float, n: float = 1.0) -> float:
        """Seconds until ``n`` tokens will be available (0 if they are now); takes nothing."""
        if self.rate <= 0:
            return 0.0
        self._refill(now)
        missing = n - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate

    def set_rate(self, now: float, rate: float, burst: float | None = None) -> None:
        """Change the rate (e.g. after a tenant setting changed), keeping the banked tokens up to the new burst."""
        self._refill(now)
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else max(self.rate, 1.0)
        self.tokens = min(self.tokens, self.burst)


class ConnectionLimiter:
    """One connection's limits: PUBLISH packets per second and inbound/outbound bytes per second.

    Built from a tenant's settings (``msg_pub_per_sec``, ``in_bound_bandwidth``,
    ``out_bound_bandwidth``; any object with those attributes); ``update`` applies
    changed settings without resetting the buckets.
    """

    __slots__ = ("bytes_in", "bytes_out", "publish")

    def __init__(self, settings: Any, now: float) -> None:
        self.publish = TokenBucket(settings.msg_pub_per_sec, now=now)
        self.bytes_in = TokenBucket(settings.in_bound_bandwidth, now=now)
        self.bytes_out = TokenBucket(settings.out_bound_bandwidth, now=now)

    @classmethod
    def for_settings(cls, settings: Any, now: float) -> ConnectionLimiter | None:
        """A limiter when ``settings`` set any of the three rates, else None (unlimited: a connection then
        keeps no buckets, ~0.4 KiB)."""
        if settings.msg_pub_per_sec > 0 or settings.in_bound_bandwidth > 0 or settings.out_bound_bandwidth > 0:
            return cls(settings, now)
        return None

    def update(self, settings: Any, now: float) -> None:
        if self.publish.rate != settings.msg_pub_per_sec:
            self.publish.set_rate(now, settings.msg_pub_per_sec)
        if self.bytes_in.rate != settings.in_bound_bandwidth:
            self.bytes_in.set_rate(now, settings.in_bound_bandwidth)
        if self.bytes_out.rate != settings.out_bound_bandwidth:
            self.bytes_out.set_rate(now, settings.out_bound_bandwidth)

    def allow_publish(self, now: float) -> bool:
        """One more PUBLISH within MsgPubPerSec?"""
        return self.publish.try_take(now)

    def received(self, now: float, nbytes: int) -> float:
        """Account bytes read; returns seconds to pause reading (0: keep reading)."""
        return self.bytes_in.consume(now, nbytes)

    def sent(self, now: float, nbytes: int) -> float:
        """Account bytes written; returns seconds to hold further (QoS 0 droppable) sends."""
        return self.bytes_out.consume(now, nbytes)


class ConnectRateLimiter:
    """CONNECTs per second: one worker-wide bucket and one bucket per tenant (a rate of 0 is unlimited).

    Tenant buckets are kept for at most ``max_tenants`` tenants; when full, the
    bucket of the tenant seen longest ago is dropped (it restarts full).
    """

    def __init__(self, worker_rate: float = 0.0, *, now: float = 0.0, max_tenants: int = 10000) -> None:
        self.worker = TokenBucket(worker_rate, now=now)
        self.max_tenants = max_tenants
        self._tenants: dict[str, TokenBucket] = {}

    def allow(self, tenant: str, now: float, tenant_rate: float = 0.0) -> bool:
        """Admit one CONNECT of ``tenant`` (checks the tenant's bucket first, then the worker's)."""
        if tenant_rate > 0:
            bucket = self._tenants.pop(tenant, None)
            if bucket is None:
                if len(self._tenants) >= self.max_tenants:
                    self._tenants.pop(next(iter(self._tenants)))
                bucket = TokenBucket(tenant_rate, now=now)
            elif bucket.rate != tenant_rate:
                bucket.set_rate(now, tenant_rate)
            self._tenants[tenant] = bucket  # most recently used last
            if not bucket.try_take(now):
                return False
        return self.worker.try_take(now)


class ConnectionCounter:
    """Live connections per worker process and per tenant.

    ``acquire`` admits a connection if both limits allow it (0: unlimited) and
    counts it; the caller must call ``release(tenant)`` exactly once for every
    successful ``acquire`` (typically when the connection is lost).
    """

    def __init__(self, max_total: int = 0) -> None:
        self.max_total = max_total
        self.total = 0
        self._per_tenant: dict[str, int] = {}

    def count(self, tenant: str) -> int:
        return self._per_tenant.get(tenant, 0)

    def acquire(self, tenant: str, tenant_limit: int = 0) -> bool:
        """Count one more connection of ``tenant``; False (nothing counted) if a limit is reached."""
        if self.max_total > 0 and self.total >= self.max_total:
            return False
        current = self._per_tenant.get(tenant, 0)
        if tenant_limit > 0 and current >= tenant_limit:
            return False
        self._per_tenant[tenant] = current + 1
        self.total += 1
        return True

    def release(self, tenant: str) -> None:
        current = self._per_tenant.get(tenant, 0)
        if current <= 0:
            return
        if current == 1:
            del self._per_tenant[tenant]
        else:
            self._per_tenant[tenant] = current - 1
        self.total -= 1
