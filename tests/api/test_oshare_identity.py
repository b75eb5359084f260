"""``$oshare`` over real sockets: ``POST /pub`` callers are publishers by ``client_type`` + ``client_meta_*``.

Each caller identity sticks to one member of the ordered-share group; members are
picked by rendezvous hashing, so when one member leaves only the identities that were
on it move (the others keep theirs). Real worker process, real HTTP, real Redis.
"""

from __future__ import annotations

import queue
from collections import Counter
from typing import Any

import pytest

from tests.api.conftest import pub_headers
from tests.interop.clients import Paho, uid

pytestmark = pytest.mark.redis

WAIT = 10.0
IDENTITIES = 40


def _tap(members: list[Paho]) -> queue.Queue[tuple[str, bytes]]:
    """One queue of ``(member client id, payload)`` for every message any member receives."""
    q: queue.Queue[tuple[str, bytes]] = queue.Queue()
    for m in members:
        def on_message(client: Any, userdata: Any, message: Any, cid: str = m.client_id) -> None:
            q.put((cid, bytes(message.payload)))
        m.client.on_message = on_message
    return q


def _round(api: Any, tenant: str, topic: str, q: queue.Queue[tuple[str, bytes]]) -> dict[str, str]:
    """Publish once per identity through ``/pub``; returns identity -> the member that got it."""
    for i in range(IDENTITIES):
        r = api.request("POST", "/pub", pub_headers(tenant, topic, client_meta_device=f"d{i}"), f"d{i}".encode())
        assert r.text == "OK", r.text
    homes: dict[str, str] = {}
    for _ in range(IDENTITIES):
        cid, payload = q.get(timeout=WAIT)
        ident = payload.decode()
        assert ident not in homes, f"{ident} delivered twice"
        homes[ident] = cid
    assert q.empty()
    return homes


def test_pub_identity_is_sticky_and_a_leaving_member_moves_only_its_publishers(api, mqtt, tenant):
    base = uid()
    flt = f"$oshare/g/{base}/#"
    members = [mqtt(tenant, f"m{i}") for i in range(4)]
    for m in members:
        assert m.subscribe(flt, qos=1) == [1]
    q = _tap(members)
    topic = f"{base}/x"
    first = _round(api, tenant, topic, q)
    assert len(Counter(first.values())) >= 3  # the identities spread over the members
    assert _round(api, tenant, topic, q) == first  # and each one sticks to its member
    leaving = members[1]
    leaving.unsubscribe(flt)  # the member leaves the group (UNSUBACK: no message of the group is routed to it)
    leaving.disconnect()
    rest = members[:1] + members[2:]
    after = _round(api, tenant, topic, q)
    moved = {i for i in first if first[i] != after[i]}
    assert moved == {i for i in first if first[i] == leaving.client_id}
    assert all(after[i] in {m.client_id for m in rest} for i in after)


def test_mqtt_publishers_and_api_callers_share_the_hashing(api, mqtt, tenant):
    base = uid()
    flt = f"$oshare/h/{base}"
    members = [mqtt(tenant, f"n{i}") for i in range(3)]
    for m in members:
        assert m.subscribe(flt, qos=1) == [1]
    q = _tap(members)
    pub = mqtt(tenant, "pub")
    homes = set()
    for _ in range(5):
        pub.publish(base, b"same", qos=1)
        homes.add(q.get(timeout=WAIT)[0])
    assert len(homes) == 1  # one MQTT publisher: one member
