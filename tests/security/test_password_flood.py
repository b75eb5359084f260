"""Wrong-password floods: verification runs on a small bounded pool, and one address that keeps failing is
refused without hashing (``tidemq.auth.passwd``).

Attack: many CONNECTs with wrong passwords from one address, to burn the worker's CPU on PBKDF2 or to guess.
After ``TIDEMQ_AUTH_FAIL_THRESHOLD`` failures the address is refused at once (even with the right password,
until its back-off ends), the worker says so in one WARNING line, and a fresh client from another address
still logs in. The pool bound and the back-off arithmetic are checked without sleeping (fake clock, events);
the CPU share under a flood belongs in a benchmark, not in a timed test.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.brokers import BrokerProcess
from tests.security.conftest import mqtt_connect, redis_url_of
from tidemq.auth import passwd
from tidemq.auth.passwd import FailureBackoff, hash_password, source_of, verify_off_loop

BAD_CREDENTIALS = 4  # MQTT 3.1.1 CONNACK return code


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_starts_after_the_threshold_and_doubles() -> None:
    clock = Clock()
    b = FailureBackoff(threshold=3, backoff_max=8.0, clock=clock)
    assert [b.failure("10.0.0.1") for _ in range(2)] == [0.0, 0.0]
    assert b.wait("10.0.0.1") == 0.0
    assert b.failure("10.0.0.1") == 1.0
    assert b.wait("10.0.0.1") == 1.0 and b.wait("10.0.0.2") == 0.0  # per address
    clock.now += 1.0
    assert b.wait("10.0.0.1") == 0.0
    assert [b.failure("10.0.0.1") for _ in range(4)] == [2.0, 4.0, 8.0, 8.0]  # capped
    clock.now += 8.0  # quiet for backoff_max: forgotten
    assert b.wait("10.0.0.1") == 0.0 and len(b) == 0
    b.failure("10.0.0.3")
    b.success("10.0.0.3")  # a right password clears the count
    assert len(b) == 0


def test_backoff_memory_is_bounded() -> None:
    b = FailureBackoff(threshold=1, max_entries=100, clock=Clock())
    for i in range(1000):
        b.failure(f"10.0.{i // 256}.{i % 256}")
    assert len(b) == 100
    assert b.wait("10.0.3.231") > 0 and b.wait("10.0.0.0") == 0.0  # the newest kept, the oldest forgotten


def test_source_of_strips_the_port() -> None:
    assert source_of("10.1.2.3:5555") == "10.1.2.3"
    assert source_of("::1:5555") == "::1"
    assert source_of("[2001:db8::1]:80") == "2001:db8::1"
    assert source_of("10.1.2.3") == "10.1.2.3"


async def test_verification_pool_is_bounded() -> None:
    passwd.configure(threads=2, fail_threshold=0)
    running, peak, lock = 0, 0, threading.Lock()
    release = threading.Event()
    two_in = threading.Event()

    def slow_verify(pw: str | bytes, encoded: str) -> bool:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            if running == 2:
                two_in.set()
        release.wait(10)
        with lock:
            running -= 1
        return False

    try:
        tasks = [asyncio.create_task(verify_off_loop(b"x", "h", verify=slow_verify)) for _ in range(8)]
        assert await asyncio.to_thread(two_in.wait, 10)
        await asyncio.sleep(0)  # the event loop stays free while the pool is busy
        release.set()
        assert await asyncio.gather(*tasks) == [False] * 8
        assert peak == 2
    finally:
        release.set()
        passwd.configure()


async def test_backing_off_source_is_not_hashed() -> None:
    passwd.configure(threads=1, fail_threshold=2)
    calls: list[bytes] = []

    def verify(pw: str | bytes, encoded: str) -> bool:
        calls.append(bytes(pw) if isinstance(pw, bytes) else pw.encode())
        return pw == b"right"

    try:
        for _ in range(5):
            assert not await verify_off_loop(b"wrong", "h", source="10.9.9.9:4000", verify=verify)
        assert len(calls) == 2  # the rest were refused without hashing
        assert not await verify_off_loop(b"right", "h", source="10.9.9.9:4001", verify=verify)
        assert await verify_off_loop(b"right", "h", source="10.9.9.8:4000", verify=verify)
        assert len(calls) == 3
    finally:
        passwd.configure()


@pytest.mark.redis
def test_wrong_password_flood_backs_off(launch: Callable[..., BrokerProcess], redis_server: Any,
                                        tmp_path: Path) -> None:
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"default_tenant": "acme", "tenants": {"acme": {"users": {
        "alice": {"password": hash_password("right", iterations=1000)}}}}}))
    worker = launch("worker", "--redis-url", redis_url_of(redis_server),
                    env={"TIDEMQ_AUTH_PROVIDER": "file", "TIDEMQ_AUTH_FILE": str(auth),
                         "TIDEMQ_AUTH_FAIL_THRESHOLD": "3", "TIDEMQ_AUTH_FAIL_BACKOFF_MAX": "60",
                         "TIDEMQ_AUTH_VERIFY_THREADS": "1"})
    codes = [mqtt_connect("127.0.0.1", worker.port, f"guess{i}", username="alice", password=f"g{i}".encode())
             for i in range(20)]
    assert codes == [BAD_CREDENTIALS] * 20
    # backing off: the right password from that address is refused too, without being checked
    assert mqtt_connect("127.0.0.1", worker.port, "owner", username="alice", password=b"right") == BAD_CREDENTIALS
    # a fresh client from another address logs in
    assert mqtt_connect("127.0.0.1", worker.port, "fresh", username="alice", password=b"right",
                        bind="127.0.0.2") == 0
    warnings = [line for line in worker.log_tail(400).splitlines() if "refused without checking" in line]
    assert len(warnings) == 1 and "127.0.0.1" in warnings[0], warnings


def test_attempts_under_way_count_against_the_threshold() -> None:
    """A burst of concurrent wrong passwords from one address cannot all slip past the check."""
    b = FailureBackoff(threshold=3, clock=Clock())
    assert [b.begin("10.0.0.9") for _ in range(3)] == [True, True, False]  # at most 2 under way
    b.end("10.0.0.9")
    b.failure("10.0.0.9")
    assert b.begin("10.0.0.9") is True  # 1 failure + 1 under way < 3 ... then 1 + 2 reaches it
    assert b.begin("10.0.0.9") is False
    assert b.suspect("10.0.0.9") and not b.suspect("10.0.0.10")


async def test_clean_addresses_are_verified_before_suspect_ones() -> None:
    from tidemq.auth.passwd import _Slots

    slots = _Slots(1)
    await slots.acquire(False)  # the one thread is busy
    order: list[str] = []

    async def wait(name: str, suspect: bool) -> None:
        await slots.acquire(suspect)
        order.append(name)
        slots.release()

    tasks = [asyncio.create_task(wait(f"flood{i}", True)) for i in range(3)]
    tasks.append(asyncio.create_task(wait("legit", False)))
    await asyncio.sleep(0)
    slots.release()
    await asyncio.gather(*tasks)
    assert order[0] == "legit"


async def test_a_full_verification_queue_answers_busy_at_once() -> None:
    """Beyond 8 waiting verifications per thread the answer is "busy" (never "bad password"), at once."""
    from tidemq.auth import passwd

    passwd.configure(threads=1, fail_threshold=0)
    release = threading.Event()

    def slow(_pw: str | bytes, _enc: str) -> bool:
        release.wait(10)
        return True

    try:
        running = [asyncio.create_task(passwd.verify_off_loop("p", "h", verify=slow)) for _ in range(9)]
        await asyncio.sleep(0.05)  # let them take the thread and the queue (no event for "queued")
        with pytest.raises(passwd.VerifierBusy):
            await asyncio.wait_for(passwd.verify_off_loop("p", "h", verify=slow), 1.0)
        release.set()
        assert await asyncio.gather(*running) == [True] * 9
    finally:
        release.set()
        passwd.configure()
