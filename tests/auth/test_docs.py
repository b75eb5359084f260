"""The examples in docs/auth.md work: the TOML file loads and says what the text claims; the webhook runs."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from tidemq.auth import ConnectInfo, Identity, StaticFileProvider, WebhookProvider
from tidemq.auth.acl import GRANTED

DOC = Path(__file__).resolve().parents[2] / "docs" / "auth.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


async def test_toml_example(tmp_path: Path) -> None:
    path = tmp_path / "auth.toml"
    path.write_text(blocks("toml")[0])
    p = StaticFileProvider(path)
    alice, admin, sensor = await asyncio.gather(
        p.authenticate(ConnectInfo("web1", "alice", b"alice-secret", 5)),
        p.authenticate(ConnectInfo("x", "ops/admin", b"ops-secret", 4)),
        p.authenticate(ConnectInfo("d1", "sensor", b"sensor-secret", 4)))
    assert (alice.ok, alice.tenant_id, alice.user_id, alice.attributes) == (True, "acme", "alice", {"team": "web"})
    assert (admin.ok, admin.tenant_id) == (True, "ops")
    assert (sensor.ok, sensor.tenant_id) == (True, "acme")
    guest = await p.authenticate(ConnectInfo("g", None, None, 4))
    assert (guest.ok, guest.tenant_id, guest.user_id) == (True, "public", "guest")
    a = Identity("acme", "alice", "web1")
    assert await p.check_publish(a, "devices/d1/cmd", 1, False)
    assert not await p.check_publish(a, "devices/d1/cmd", 2, False)
    assert await p.check_subscribe(a, "users/alice/#", 0) and await p.check_subscribe(a, "devices/+/status", 0)
    assert await p.check_subscribe(a, "shared/x", 0) and not await p.check_subscribe(a, "#", 0)
    s = Identity("acme", "sensor", "d1")
    assert await p.check_publish(s, "devices/d1/telemetry/temp", 0, False)
    assert not await p.check_publish(s, "devices/d2/telemetry/temp", 0, False)
    assert await p.check_publish(Identity("ops", "admin", "x"), "anything/at/all", 2, True)


async def test_narrowing_example(tmp_path: Path) -> None:
    path = tmp_path / "auth.toml"
    path.write_text(blocks("toml")[1])
    p = StaticFileProvider(path)
    assert (await p.authenticate(ConnectInfo("v", "plant/viewer", b"sensor-secret", 5))).ok
    v = Identity("plant", "viewer", "v")
    g = p.subscribe_grant_now(v, "sensors/#", 1)
    assert g.granted and g.deny is not None
    assert g.deny.allows("sensors/a") and g.deny.allows("sensors/b/temp")
    assert not g.deny.allows("sensors/secret") and not g.deny.allows("sensors/secret/b")
    plus = p.subscribe_grant_now(v, "sensors/+", 1)
    assert plus.deny is not None and plus.deny.allows("sensors/a") and not plus.deny.allows("sensors/secret")
    assert p.subscribe_grant_now(v, "sensors/public/#", 1) == GRANTED
    for refused in ("sensors/secret/#", "sensors/secret/b", "#"):
        assert not (await p.check_subscribe(v, refused, 1)).granted


async def test_webhook_example(tmp_path: Path) -> None:
    script = next(b for b in blocks("python") if "ThreadingHTTPServer" in b)
    path = tmp_path / "auth_hook.py"
    path.write_text(script)
    proc = await asyncio.create_subprocess_exec(sys.executable, str(path), "0", stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=20)).decode()
        assert line.startswith("listening on ")
        port = int(line.split()[-1])
        p = WebhookProvider(f"http://127.0.0.1:{port}/", timeout=5)
        try:
            ok = await p.authenticate(ConnectInfo("d1", "d1", b"d1-secret", 5))
            assert (ok.ok, ok.tenant_id, ok.user_id) == (True, "acme", "d1")
            assert not (await p.authenticate(ConnectInfo("d1", "d1", b"wrong", 5))).ok
            who = Identity("acme", "d1", "d1")
            assert await p.check_subscribe(who, "devices/d1/#", 1)
            assert await p.check_publish(who, "devices/d1/up", 0, False)
            assert not await p.check_publish(who, "devices/d2/up", 0, False)
        finally:
            await p.close()
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
