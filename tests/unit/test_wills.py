"""Wills: encoding, the delay rule, and the ACL re-check at fire time — with a fake clock, no sleeping."""

from __future__ import annotations

from typing import Any

import pytest
from tidemq.worker.metrics import WorkerMetrics
from tidemq.worker.wills import (
    StoredWill,
    WillService,
    check_will_shape,
    decode_will,
    delay_ms,
    encode_will,
    will_from_connect,
)

from tidemq.auth import Identity
from tidemq.clock import FakeClock
from tidemq.message import Message, pack
from tidemq.mqtt.packets import Will
from tidemq.mqtt.reason_codes import RC
from tidemq.tenants import TenantSettings


class FakeAuth:
    def __init__(self, allow: bool) -> None:
        self.allow = allow
        self.calls: list[tuple[Identity, str, int, bool]] = []

    async def check_publish(self, who: Identity, topic: str, qos: int, retain: bool) -> bool:
        self.calls.append((who, topic, qos, retain))
        return self.allow


class FakeDispatcher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Message]] = []

    def submit(self, tenant: str, msg: Message, done: Any = None) -> None:
        self.sent.append((tenant, msg))


def _service(allow: bool, clock: FakeClock) -> tuple[WillService, FakeAuth, FakeDispatcher]:
    auth, disp = FakeAuth(allow), FakeDispatcher()
    return WillService(None, auth, disp, clock, WorkerMetrics()), auth, disp  # type: ignore[arg-type]


def test_from_connect_round_trip() -> None:
    will = Will("a/b", b"bye", 1, True, {"will_delay_interval": 30, "message_expiry_interval": 60,
                                         "content_type": "text/plain"})
    stored = will_from_connect(will, "alice", 5)
    assert (stored.delay, stored.expiry_interval, stored.user) == (30, 60, "alice")
    back = decode_will(encode_will(stored, "c1"), delay=30)
    assert back == stored


def test_v3_will_has_no_properties() -> None:
    stored = will_from_connect(Will("t", b"x", 0, False, {"will_delay_interval": 5}), "u", 4)
    assert stored.delay == 0 and stored.properties == {}


def test_legacy_blob_is_read() -> None:
    blob = pack(Message("t", b"p", 1, False, {}, 0, "c1", 0, {"wexp": 9}))
    stored = decode_will(blob)
    assert stored.expiry_interval == 9 and stored.user == ""


@pytest.mark.parametrize(("delay", "persistent", "expiry", "want"), [
    (0, True, 100, 0), (30, False, 0, 0), (30, True, 0, 0), (30, True, 100, 30_000), (300, True, 100, 100_000),
])
def test_delay_is_capped_by_session_expiry(delay: int, persistent: bool, expiry: int, want: int) -> None:
    w = StoredWill("t", b"", 0, False, "u", delay=delay)
    assert delay_ms(w, persistent=persistent, session_expiry=expiry) == want


async def test_publish_rechecks_acl_with_stored_identity() -> None:
    clock = FakeClock()
    svc, auth, disp = _service(False, clock)
    ok = await svc.publish("t1", "c1", StoredWill("x/y", b"bye", 1, True, "alice"))
    assert not ok and disp.sent == []
    assert auth.calls == [(Identity("t1", "alice", "c1"), "x/y", 1, True)]
    assert svc.metrics.counters["refused_will_denied"] == 1


async def test_publish_counts_expiry_from_fire_time() -> None:
    clock = FakeClock()
    svc, _auth, disp = _service(True, clock)
    clock.advance(120)
    assert await svc.publish("t1", "c1", StoredWill("x/y", b"bye", 1, False, "alice", expiry_interval=10))
    (_tenant, msg), = disp.sent
    assert msg.created_ms == clock.wall_ms() and msg.expire_at_ms == clock.wall_ms() + 10_000


@pytest.mark.parametrize(("will", "code"), [
    (Will("ok/topic", b"x", 1, False), 0),
    (Will("$SYS/x", b"x", 0, False), RC.NOT_AUTHORIZED),
    (Will("a/+", b"x", 0, False), RC.TOPIC_NAME_INVALID),
    (Will("a", b"x" * 200, 0, False), RC.PACKET_TOO_LARGE),
    (Will("a", b"x", 2, False), RC.QOS_NOT_SUPPORTED),
    (Will("a", b"x", 0, True), RC.RETAIN_NOT_SUPPORTED),
])
def test_will_shape(will: Will, code: int) -> None:
    ts = TenantSettings(max_last_will_bytes=128, maximum_qos=1, retain_enabled=False)
    assert check_will_shape(will, ts, WorkerMetrics(), "t1") == code
