"""The admin API node reaches clients on any worker: ``DELETE /kill`` and ``PUT /sub`` across processes.

The API process never talks to a worker: it reads the session registry and
signals the owning workers through Redis (kill), or writes the subscription
and its route before answering (sub) — so a client connected to another
worker process is disconnected, or receives publishes from a third one.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.conftest import Deployment
from tests.interop.clients import Paho, sentinel_barrier, uid

pytestmark = [
    pytest.mark.parametrize("_deployment", ["redis", "cluster"], indirect=True, scope="module"),
    pytest.mark.timeout(60),
]


def _kill_headers(tenant: str, user: str | None = None, client: str | None = None) -> dict[str, str]:
    h = {"tenant_id": tenant, "client_type": "e2e-test"}
    if user is not None:
        h["user_id"] = user
    if client is not None:
        h["client_id"] = client
    return h


def test_kill_one_client_on_another_worker(deployment: Deployment, clients: Callable[..., Paho]) -> None:
    tenant, user = f"t{uid()}", "alice"
    w = deployment.workers
    victim = clients(w[1], f"k{uid()}", protocol="v5", username=f"{tenant}/{user}")
    victim.connect()
    bystander = clients(w[2], f"b{uid()}", protocol="v5", username=f"{tenant}/{user}")
    bystander.connect()
    with deployment.http() as http:
        r = http.delete("/kill", headers=_kill_headers(tenant, user, victim.client_id))
    assert r.status_code == 200, r.text
    assert r.json() == {"killed": 1}
    assert victim.wait_disconnected() == 0x98  # administrative action
    # only the named connection: the other one still works
    topic = f"k/{uid()}"
    bystander.subscribe(topic, 1)
    bystander.publish(topic, b"alive", qos=1)
    assert bystander.get().payload == b"alive"


def test_kill_a_whole_tenant_across_workers(deployment: Deployment, clients: Callable[..., Paho]) -> None:
    tenant = f"t{uid()}"
    w = deployment.workers
    victims = [clients(w[i], f"kt{i}{uid()}", protocol="v5", username=f"{tenant}/u{i}") for i in range(3)]
    for v in victims:
        v.connect()
    other = clients(w[0], protocol="v5", username=f"other{uid()}/u")  # another tenant is untouched
    other.connect()
    with deployment.http() as http:
        r = http.delete("/kill", headers=_kill_headers(tenant))
        assert r.status_code == 200, r.text
        assert r.json() == {"killed": 3}
        assert [v.wait_disconnected() for v in victims] == [0x98] * 3
        again = http.delete("/kill", headers=_kill_headers(tenant))
    assert again.status_code == 404, again.text  # the registry says nobody is online any more
    assert not other.disconnected.is_set()


@pytest.mark.parametrize("persistent", [False, True], ids=["transient", "persistent"])
def test_put_sub_reaches_a_client_on_another_worker(
    deployment: Deployment, clients: Callable[..., Paho], persistent: bool
) -> None:
    tenant, user = f"t{uid()}", "bob"
    w = deployment.workers
    sub = clients(w[1], f"s{uid()}", protocol="v311", clean=not persistent, username=f"{tenant}/{user}")
    sub.connect()
    pub = clients(w[2], protocol="v311", username=f"{tenant}/pub")
    pub.connect()
    topic = f"api/{uid()}"
    with deployment.http() as http:
        r = http.put("/sub", headers={"tenant_id": tenant, "user_id": user, "client_id": sub.client_id,
                                      "topic_filter": f"{topic}/#", "sub_qos": "1"})
    assert r.status_code == 200, r.text
    assert r.text == "OK"
    # effective before the 200: the very next publish on a third worker reaches it
    pub.publish(f"{topic}/a", b"via-api", qos=1)
    m = sub.get()
    assert (m.topic, m.payload, m.qos) == (f"{topic}/a", b"via-api", 1)
    assert sentinel_barrier(pub, sub, f"{topic}/a") == []


def test_put_sub_on_offline_session_then_resume_elsewhere(
    deployment: Deployment, clients: Callable[..., Paho]
) -> None:
    tenant, user = f"t{uid()}", "carol"
    w = deployment.workers
    cid, topic = f"o{uid()}", f"api/{uid()}"
    first = clients(w[0], cid, protocol="v5", clean=False, session_expiry=600, username=f"{tenant}/{user}")
    first.connect()
    first.disconnect()
    with deployment.http() as http:
        r = http.put("/sub", headers={"tenant_id": tenant, "user_id": user, "client_id": cid,
                                      "topic_filter": topic, "sub_qos": "2"})
    assert r.status_code == 200, r.text
    pub = clients(w[2], protocol="v311", username=f"{tenant}/pub")
    pub.connect()
    for i in range(5):
        pub.publish(topic, b"%d" % i, qos=2)
    back = clients(w[1], cid, protocol="v5", clean=False, session_expiry=600, username=f"{tenant}/{user}")
    assert back.connect().session_present is True
    got = back.get_many(5)
    assert [(m.payload, m.qos) for m in got] == [(b"%d" % i, 2) for i in range(5)]
