"""StaticFileProvider: users and password hashes from JSON/TOML, per-identity ACLs, reload, the passwd helper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tidemq.auth import ConnectInfo, Identity, StaticFileProvider
from tidemq.auth.passwd import hash_password, verify_password
from tidemq.auth.static import load_auth_file
from tidemq.mqtt.reason_codes import RC

ALICE = hash_password("alice-pw", iterations=1000)
BOB = hash_password("bob-pw", iterations=1000)
ROOT = hash_password("root-pw", iterations=1000)

TOML = f"""
default_tenant = "acme"

[anonymous]
tenant = "public"
user = "guest"
acl = [{{ permission = "allow", action = "subscribe", topics = ["news/#"] }}]

[tenants.acme]
acl = [
  {{ permission = "allow", action = "all", topics = ["shared/#"] }},
]

[tenants.acme.users.alice]
password = "{ALICE}"
attributes = {{ plan = "gold" }}
acl = [
  {{ permission = "allow", action = "publish", topics = ["devices/%c/up"] }},
  {{ permission = "allow", action = "subscribe", topics = ["users/%u/#"] }},
]

[tenants.acme.users.root]
password = "{ROOT}"
superuser = true

[tenants.beta.users.bob]
password = "{BOB}"

[tenants.public]
"""


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def toml_file(tmp_path: Path) -> Path:
    path = tmp_path / "auth.toml"
    path.write_text(TOML)
    return path


def info(username: str | None, password: bytes | None, client: str = "c1") -> ConnectInfo:
    return ConnectInfo(client, username, password, 5)


async def test_authenticate(toml_file: Path) -> None:
    p = StaticFileProvider(toml_file)
    ok = await p.authenticate(info("alice", b"alice-pw"))
    assert (ok.ok, ok.tenant_id, ok.user_id, ok.attributes) == (True, "acme", "alice", {"plan": "gold"})
    ok = await p.authenticate(info("acme/alice", b"alice-pw"))
    assert (ok.ok, ok.tenant_id, ok.user_id) == (True, "acme", "alice")
    ok = await p.authenticate(info("beta/bob", b"bob-pw"))
    assert (ok.ok, ok.tenant_id, ok.user_id) == (True, "beta", "bob")
    for bad in (info("alice", b"wrong"), info("alice", None), info("bob", b"bob-pw"),  # bob is not in acme
                info("nobody", b"x"), info("beta/alice", b"alice-pw")):
        res = await p.authenticate(bad)
        assert not res.ok and res.reason_code == RC.BAD_USER_NAME_OR_PASSWORD
    anon = await p.authenticate(info(None, None))
    assert (anon.ok, anon.tenant_id, anon.user_id) == (True, "public", "guest")


async def test_verified_passwords_are_cached(toml_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    p = StaticFileProvider(toml_file, clock=clock, cache_ttl=10)
    calls = []

    def counting(pw: bytes, encoded: str) -> bool:
        calls.append(pw)
        return verify_password(pw, encoded)

    monkeypatch.setattr("tidemq.auth.static.verify_password", counting)
    for _ in range(3):
        assert (await p.authenticate(info("alice", b"alice-pw"))).ok
    assert len(calls) == 1
    assert not (await p.authenticate(info("alice", b"nope"))).ok  # a different password is checked
    assert len(calls) == 2
    clock.now += 11
    assert (await p.authenticate(info("alice", b"alice-pw"))).ok
    assert len(calls) == 3


async def test_acl_per_identity(toml_file: Path) -> None:
    p = StaticFileProvider(toml_file)
    alice = Identity("acme", "alice", "dev7")
    assert await p.check_publish(alice, "devices/dev7/up", 1, False)
    assert not await p.check_publish(alice, "devices/dev8/up", 1, False)
    assert await p.check_publish(alice, "shared/x", 0, True)  # the tenant-wide rule
    assert await p.check_subscribe(alice, "users/alice/#", 1)
    assert not await p.check_subscribe(alice, "users/bob/#", 1)
    assert not await p.check_subscribe(alice, "#", 0)
    root = Identity("acme", "root", "x")
    assert await p.check_subscribe(root, "#", 2) and await p.check_publish(root, "any", 2, True)
    bob = Identity("beta", "bob", "b")  # no rules at all: everything in his tenant
    assert await p.check_publish(bob, "whatever", 2, True) and await p.check_subscribe(bob, "#", 0)
    guest = Identity("public", "guest", "g")
    assert await p.check_subscribe(guest, "news/today", 0)
    assert not await p.check_publish(guest, "news/today", 0, False)
    ghost = Identity("acme", "ghost", "g")  # not (or no longer) in the file: nothing allowed
    assert not await p.check_publish(ghost, "shared/x", 0, False)
    assert not await p.check_subscribe(ghost, "shared/x", 0)


async def test_decisions_are_cached_and_bounded(toml_file: Path) -> None:
    p = StaticFileProvider(toml_file, cache_size=4)
    alice = Identity("acme", "alice", "dev7")
    for i in range(10):
        p.allowed_publish(alice, f"devices/dev7/up{i}", 0, False)
    assert len(p._decisions) <= 4 and len(p._acls) == 1
    assert p.allowed_publish(alice, "devices/dev7/up", 0, False)
    assert p._decisions[(alice, 1, "devices/dev7/up", 0, False)] is True


async def test_json_file_and_reload_on_change(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    doc = {"tenants": {"t": {"users": {"u": {"password": ALICE}}}}}
    path.write_text(json.dumps(doc))
    clock = FakeClock()
    p = StaticFileProvider(path, clock=clock, watch_interval=2.0)
    assert (await p.authenticate(info("t/u", b"alice-pw"))).ok
    assert p.allowed_publish(Identity("t", "u", "c"), "x", 0, False)
    doc["tenants"]["t"]["users"]["u"]["password"] = BOB
    doc["tenants"]["t"]["acl"] = [{"permission": "deny", "action": "publish", "topics": ["x"]}]
    path.write_text(json.dumps(doc))
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + 5))
    assert (await p.authenticate(info("t/u", b"alice-pw"))).ok  # not checked again before watch_interval
    clock.now += 3
    assert not (await p.authenticate(info("t/u", b"alice-pw"))).ok
    assert (await p.authenticate(info("t/u", b"bob-pw"))).ok
    assert not p.allowed_publish(Identity("t", "u", "c"), "x", 0, False)
    # a broken file keeps the previous content
    path.write_text("{not json")
    os.utime(path, (stat.st_atime, stat.st_mtime + 10))
    clock.now += 3
    assert (await p.authenticate(info("t/u", b"bob-pw"))).ok


@pytest.mark.parametrize(("content", "message"), [
    ('{"tenants": {"t": {"users": {"u": {"password": "plain"}}}}}', "password"),
    ('{"tenants": {"t": {"users": {"u": {}}}}}', "password"),
    ('{"tenants": {"t": {"acl": [{"permission": "allow", "topics": ["a/#/b"]}]}}}', "tenants.t.acl"),
    ('{"default_tenant": "nope", "tenants": {}}', "default_tenant"),
    ('{"tenant": {}}', "unknown top-level"),
    ('[1, 2]', "top level"),
    ('{"tenants": {"t": {"users": {"u": {"password": "' + ALICE + '", "superuser": "yes"}}}}}', "superuser"),
])
def test_bad_files_are_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "auth.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_auth_file(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        StaticFileProvider(tmp_path / "absent.toml")


def test_passwd_helper() -> None:
    out = subprocess.run([sys.executable, "-m", "tidemq.auth.passwd", "--iterations", "1000"],
                         input="s3cret\n", capture_output=True, text=True, check=True, timeout=30)
    encoded = out.stdout.strip()
    assert encoded.startswith("pbkdf2_sha256$1000$")
    assert verify_password("s3cret", encoded) and not verify_password("s3cret!", encoded)
    assert verify_password(b"s3cret", encoded)


def test_hash_format_is_djangos() -> None:
    # same algorithm, layout and encoding as Django's PBKDF2PasswordHasher
    import base64
    import hashlib

    encoded = hash_password("pw", iterations=10, salt="saltsalt")
    expected = base64.b64encode(hashlib.pbkdf2_hmac("sha256", b"pw", b"saltsalt", 10)).decode()
    assert encoded == f"pbkdf2_sha256$10$saltsalt${expected}"
    assert not verify_password("pw", "pbkdf2_sha256$x$y$z") and not verify_password("pw", "md5$1$a$b")
