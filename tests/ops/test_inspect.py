"""``tidemq inspect`` on a real worker's state: every view decodes what the scene put in Redis, ``--json``
parses, times are ISO-8601 UTC next to the raw ms, nothing is written (a Redis user allowed reads only runs
every view), a missing session exits 1, an unreachable store exits 2 with one line, and the views work on a
Redis Cluster URL too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import redis

from tests.ops.scene import TENANT, WORKER, Scene, inspect, scene
from tidemq.inspect import views
from tidemq.store import keys

pytestmark = pytest.mark.redis

VIEWS = [["session", TENANT, "ops/sensor-1"], ["session", TENANT, "ops/logger"], ["inbox", TENANT, "ops/logger"],
         ["routes", TENANT], ["routes", TENANT, "plant/1/temp"], ["retained", TENANT],
         ["retained", TENANT, "plant/#"], ["settings", TENANT], ["workers"]]


@pytest.fixture(scope="module")
def sc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    yield from scene(tmp_path_factory.mktemp("inspect"))


def js(sc: Scene | None, *args: str, url: str | None = None) -> Any:
    proc = inspect(url or (sc.url if sc else ""), "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def ms_of(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def test_session_online_and_offline(sc: Scene) -> None:
    s = js(sc, "session", TENANT, "ops/sensor-1")
    assert (s["online"], s["worker"], s["worker_alive"], s["persistent"], s["expiry_s"]) == (True, WORKER, True,
                                                                                             True, 3600)
    assert s["subscriptions"] == {"plant/+/temp": {"qos": 1, "no_local": False, "retain_as_published": False,
                                                   "retain_handling": 0, "subscription_id": 7}}
    assert ms_of(s["connected_at_iso"]) == s["connected_at"]
    assert s["disconnected_at_iso"] is None and s["expire_at"] is None
    off = js(sc, "session", TENANT, "ops/logger")
    assert (off["online"], off["worker"], off["inbox_len"]) == (False, "", 2)
    assert off["expire_at"] == off["disconnected_at"] + 3600 * 1000
    text = sc.inspect("session", TENANT, "ops/logger").stdout
    assert "no (last epoch" in text and off["expire_at_iso"] in text and str(off["expire_at"]) in text


def test_inbox_entries_decoded(sc: Scene) -> None:
    d = js(sc, "inbox", TENANT, "ops/logger")
    assert [(e["seq"], e["qos"], e["sent"]) for e in d["entries"]] == [(1, 1, False), (2, 1, False)]
    first, second = (e["message"] for e in d["entries"])
    assert (first["topic"], first["payload_preview"], first["sender"]) == ("plant/1/temp", "21.5", "ops/pub-1")
    assert ms_of(first["expire_at_iso"]) == first["expire_at"] == first["created"] + 3600 * 1000
    assert second["expire_at"] == 0 and second["expire_at_iso"] is None
    assert [e["seq"] for e in js(sc, "inbox", TENANT, "ops/logger", "--after", "1")["entries"]] == [2]


def test_routes_and_receivers(sc: Scene) -> None:
    d = js(sc, "routes", TENANT)
    assert d["version"] > 0 and d["count"] == 4
    assert {(x["client"], x["filter"], x["worker"], x["persistent"]) for x in d["routes"]} == {
        ("ops/dash", "plant/#", WORKER, False), ("ops/dash", "$share/ops/alerts/#", WORKER, False),
        ("ops/sensor-1", "plant/+/temp", "", True), ("ops/logger", "plant/1/temp", "", True)}
    hit = js(sc, "routes", TENANT, "plant/1/temp")
    assert [x["client"] for x in hit["receivers"]] == ["ops/dash", "ops/logger", "ops/sensor-1"]
    assert js(sc, "routes", TENANT, "plant/1/temp", "--publisher", "ops/dash")["receivers"][0]["client"] == "ops/dash"
    assert [x["client"] for x in js(sc, "routes", TENANT, "plant/9/humidity")["receivers"]] == ["ops/dash"]
    group = js(sc, "routes", TENANT, "alerts/fire")["shared_groups"]
    assert group == [{"filter": "$share/ops/alerts/#", "kind": "share", "group": "ops", "members": ["ops/dash"],
                      "pick": "round robin"}]


def test_retained(sc: Scene) -> None:
    d = js(sc, "retained", TENANT, "plant/+/status")
    assert [(m["topic"], m["qos"], m["payload_preview"]) for m in d["messages"]] == [
        ("plant/1/status", 1, "online"), ("plant/2/status", 0, "offline")]
    assert [m["topic"] for m in js(sc, "retained", TENANT, "plant/2/status")["messages"]] == ["plant/2/status"]
    assert js(sc, "retained", TENANT, "other/#")["messages"] == []
    capped = js(sc, "retained", TENANT, "--limit", "1")
    assert (len(capped["messages"]), capped["complete"], capped["total_topics"]) == (1, False, 2)


def test_settings_overrides_and_ignored_values(sc: Scene) -> None:
    key = keys.tenant_settings("acme-settings")
    sc.r.hset(key, mapping={"MaxTopicLevels": "5", "MaximumQoS": "7", "NoSuchSetting": "1"})
    d = js(sc, "settings", "acme-settings")
    by = {s["name"]: s for s in d["settings"]}
    assert (by["MaxTopicLevels"]["value"], by["MaxTopicLevels"]["source"]) == (5, "redis")
    assert (by["MaximumQoS"]["value"], by["MaximumQoS"]["source"]) == (2, "default")
    assert set(d["ignored"]) == {"MaximumQoS", "NoSuchSetting"}
    text = sc.inspect("settings", "acme-settings").stdout
    assert "1 overridden" in text and "ignored in the hash: NoSuchSetting: unknown setting" in text


def test_workers(sc: Scene) -> None:
    (w,) = js(sc, "workers")["workers"]
    assert (w["worker"], w["alive"]) == (WORKER, True)
    assert 0 < w["lease_ttl_ms"] <= 6000 and ms_of(w["heartbeat_iso"]) == w["heartbeat"]
    assert w["stats"]["sessions_online"] == 2


def test_json_flag_after_the_view_and_text_default(sc: Scene) -> None:
    proc = sc.inspect("workers", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["workers"][0]["worker"] == WORKER
    text = sc.inspect("workers").stdout
    assert text.startswith("1 workers") and WORKER in text


def test_missing_session_and_unreachable_store(sc: Scene) -> None:
    proc = sc.inspect("session", TENANT, "nobody")
    assert proc.returncode == 1 and "no such session" in proc.stdout
    proc = sc.inspect("--json", "inbox", TENANT, "nobody")
    assert proc.returncode == 1 and json.loads(proc.stdout)["exists"] is False
    proc = sc.inspect("workers", url="redis://127.0.0.1:1/0")
    assert proc.returncode == 2 and proc.stderr.startswith("tidemq inspect: ") and proc.stderr.count("\n") == 1


def test_every_view_only_reads(sc: Scene) -> None:
    """A Redis user allowed read commands only (no write, no script) runs every view."""
    sc.r.acl_setuser("inspector", enabled=True, reset=True, passwords=["+insp"], keys=["*"], channels=["*"],
                     commands=["+@read", "+@connection", "+ping"])
    url = f"redis://inspector:insp@127.0.0.1:{sc.port}/0"
    for args in VIEWS:
        proc = sc.inspect(*args, url=url)
        assert proc.returncode == 0, (args, proc.stderr)
    denied = redis.Redis(port=sc.port, username="inspector", password="insp")
    with pytest.raises(redis.exceptions.NoPermissionError):
        denied.set("probe", "1")  # the user really cannot write
    denied.close()


def test_preview_and_undecodable_blob() -> None:
    assert views.preview(b"21.5") == "21.5"
    assert views.preview(b"\x00\x01") == "hex:0001"
    assert views.preview(b"x" * 100).endswith("…")
    assert "error" in views.message_view(b"not a blob", 0)


def test_views_on_a_cluster(redis_cluster: Any) -> None:
    """The same views through a ``redis+cluster://`` URL (keys spread over three primaries)."""
    from tidemq.message import Message, pack
    from tidemq.store import connection, leases, retained, sessions, subscriptions
    from tidemq.store.models import SubOpts

    url = redis_cluster.url
    for port in redis_cluster.ports:
        redis.Redis(port=port).flushall()

    async def build() -> None:
        r = await connection.open_redis(url)
        try:
            await sessions.session_connect(r, "ct", "c1", user="u", ver=5, clean_start=True, persistent=True,
                                           expiry=60, worker="cw", address="a", client_type="MQTT", now_ms=1)
            await subscriptions.subscribe(r, "ct", "c1", [("x/#", SubOpts(qos=1))])
            await retained.retain_set(r, "ct", "x/1", pack(Message("x/1", b"v", qos=1, retain=True)), limit=10)
            await leases.lease_renew(r, "cw", ttl_ms=60000, now_ms=2)
        finally:
            await connection.close_redis(r)

    asyncio.run(build())
    s = js(None, "session", "ct", "c1", url=url)
    assert (s["worker"], s["worker_alive"], list(s["subscriptions"])) == ("cw", True, ["x/#"])
    assert [x["client"] for x in js(None, "routes", "ct", "x/1", url=url)["receivers"]] == ["c1"]
    assert [m["payload_preview"] for m in js(None, "retained", "ct", "x/+", url=url)["messages"]] == ["v"]
    assert js(None, "workers", url=url)["workers"][0]["worker"] == "cw"
