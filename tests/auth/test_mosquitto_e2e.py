"""A worker process on a mosquitto password file made by the real ``mosquitto_passwd`` and a mosquitto ACL file:
logins and allowed/denied publish and subscribe, seen by real MQTT clients over real sockets."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.brokers import Broker
from tests.interop.clients import Paho, uid

pytestmark = pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd not installed")

ACL = """\
topic read public/#

user alice
topic write sensors/alice/#
topic read sensors/#
topic deny sensors/secret

user bob
topic readwrite sensors/#
topic write public/#
"""


@pytest.fixture
def worker(worker_factory: Callable[..., Broker], tmp_path: Path) -> Broker:
    pw, acl = tmp_path / "passwd", tmp_path / "acl"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), "alice", "alice-pw"], check=True, timeout=30)
    subprocess.run(["mosquitto_passwd", "-H", "sha512", "-b", str(pw), "bob", "bob-pw"], check=True, timeout=30)
    acl.write_text(ACL)
    return worker_factory(env={"TIDEMQ_AUTH_PROVIDER": "file", "TIDEMQ_AUTH_FILE": str(pw),
                               "TIDEMQ_AUTH_ACL_FILE": str(acl), "TIDEMQ_AUTH_ALLOW_ANONYMOUS": "true"})


@pytest.fixture
def clients(worker: Broker) -> Iterator[Callable[..., Paho]]:
    made: list[Paho] = []

    def make(username: str | None, password: str | None, **kw: object) -> Paho:
        c = Paho(worker, f"m{uid()}", username=username, password=password, **kw)  # type: ignore[arg-type]
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def test_logins_with_mosquitto_passwd_hashes(clients: Callable[..., Paho]) -> None:
    assert clients("alice", "alice-pw").connect().reason == 0  # $7$ PBKDF2-SHA512
    assert clients("bob", "bob-pw").connect().reason == 0  # $6$ SHA-512
    assert clients("alice", "bob-pw").connect(expect_success=False).reason == 0x86  # paho reports v3 code 4 as 0x86
    assert clients("carol", "x", protocol="v5").connect(expect_success=False).reason == 0x86
    assert clients(None, None).connect().reason == 0  # allow_anonymous


def test_subscribe_allowed_and_denied(clients: Callable[..., Paho]) -> None:
    alice = clients("alice", "alice-pw", protocol="v5")
    alice.connect()
    assert alice.subscribe("sensors/#", 1) == [1]
    assert alice.subscribe("sensors/secret", 1) == [0x87]  # topic deny
    assert alice.subscribe("admin/#", 0) == [0x87]  # nothing grants it
    anon = clients(None, None)
    anon.connect()
    assert anon.subscribe("public/#", 0) == [0] and anon.subscribe("sensors/#", 0) == [0x80]


def test_publish_allowed_and_denied_and_reads(clients: Callable[..., Paho]) -> None:
    alice, bob, anon = clients("alice", "alice-pw"), clients("bob", "bob-pw"), clients(None, None)
    for c in (alice, bob, anon):
        c.connect()
    assert bob.subscribe("sensors/#", 1) == [1]
    assert alice.subscribe("sensors/#", 1) == [1]
    assert anon.subscribe("public/#", 1) == [1]
    alice.publish("sensors/bob/t", b"denied", qos=1)  # alice may only read there: dropped
    alice.publish("sensors/alice/t", b"allowed", qos=1)
    got = bob.get()
    assert (got.topic, got.payload) == ("sensors/alice/t", b"allowed")
    assert alice.get().payload == b"allowed"
    bob.publish("sensors/secret", b"hidden", qos=1)  # alice's subscription is narrowed: no delivery to her
    bob.publish("sensors/open", b"seen", qos=1)
    assert [m.payload for m in bob.get_many(2)] == [b"hidden", b"seen"]  # bob may read both
    msg = alice.get()
    assert (msg.topic, msg.payload) == ("sensors/open", b"seen")
    anon.publish("public/x", b"anon-denied", qos=1)  # read only for anonymous clients
    bob.publish("public/x", b"from-bob", qos=1)
    assert anon.get().payload == b"from-bob"
