"""Mosquitto's files in the file provider: mosquitto_passwd hashes (made by the real binary), the ACL file mapping,
``tidemq passwd`` and the password file it writes (which mosquitto_passwd, in turn, still edits)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tidemq.auth import ConnectInfo, Identity, StaticFileProvider
from tidemq.auth.mosquitto import parse_acl_file, parse_password_file, rules_for
from tidemq.auth.passwd import check_hash, hash_mosquitto, verify_password
from tidemq.auth.static import load_auth_file
from tidemq.mqtt.reason_codes import RC

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
needs_binary = pytest.mark.skipif(MOSQUITTO_PASSWD is None, reason="mosquitto_passwd is not installed")

ACL = """\
# anonymous clients
topic read public/#

user alice
topic write sensors/alice/#
topic read sensors/#
topic deny sensors/secret

user bob
topic sensors/#

pattern write devices/%u/status
pattern read inbox/%c/#
"""


def mosquitto_passwd(*args: str) -> None:
    assert MOSQUITTO_PASSWD is not None
    subprocess.run([MOSQUITTO_PASSWD, *args], check=True, capture_output=True, timeout=30)


def tidemq_passwd(*args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tidemq.cli", "passwd", *args]
                          + (["--password-stdin"] if password is not None else []),
                          input=f"{password}\n" if password is not None else None, capture_output=True,
                          text=True, timeout=60)


@needs_binary
def test_hashes_made_by_mosquitto_passwd_verify(tmp_path: Path) -> None:
    pw = tmp_path / "passwd"
    mosquitto_passwd("-c", "-b", str(pw), "alice", "alice-pw")  # $7$ (sha512-pbkdf2, the default)
    mosquitto_passwd("-H", "sha512", "-b", str(pw), "bob", "bob-pw")  # $6$ (mosquitto 1.x)
    users = parse_password_file(pw.read_text())
    assert users["alice"].startswith("$7$101$") and users["bob"].startswith("$6$")
    assert verify_password("alice-pw", users["alice"]) and not verify_password("alice-pw ", users["alice"])
    assert verify_password("bob-pw", users["bob"]) and not verify_password("alice-pw", users["bob"])


def test_own_mosquitto_hash_and_malformed_ones() -> None:
    encoded = hash_mosquitto("s3cret", iterations=1000)
    assert encoded.startswith("$7$1000$") and verify_password("s3cret", encoded)
    for bad in ("$7$x$AAAA$AAAA", "$7$0$c2FsdA==$" + "A" * 88, "$6$c2FsdA==$AAAA", "$5$abc$def", "$7$10$%%$%%"):
        assert not verify_password("s3cret", bad)
        with pytest.raises(ValueError):
            check_hash(bad)


def test_acl_file_lines_and_errors() -> None:
    acl = parse_acl_file(ACL)
    assert acl.anonymous == [("read", "public/#")]
    assert acl.users["bob"] == [("readwrite", "sensors/#")]
    assert acl.patterns == [("write", "devices/%u/status"), ("read", "inbox/%c/#")]
    # denies first, then grants, then "everything else is refused"
    alice = rules_for(acl, "alice")
    assert [r.allow for r in alice] == [False, True, True, True, True, False]
    for text, where in (("topic read a/#/b\n", ":1:"), ("user\n", ":1:"), ("\nfoo bar\n", ":2:"),
                        ("topic read\n", ":1:")):
        with pytest.raises(ValueError, match=where):
            parse_acl_file(text)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    pw, acl = tmp_path / "passwd", tmp_path / "acl"
    pw.write_text(f"alice:{hash_mosquitto('alice-pw', iterations=100)}\n"
                  f"bob:{hash_mosquitto('bob-pw', iterations=100)}\n")
    acl.write_text(ACL)
    return pw, acl


async def test_provider_applies_the_acl_file(files: tuple[Path, Path]) -> None:
    pw, acl = files
    p = StaticFileProvider(pw, acl_file=acl, tenant="acme", allow_anonymous=True)
    ok = await p.authenticate(ConnectInfo(client_id="c1", username="alice", password=b"alice-pw", protocol_level=4))
    assert ok.ok and (ok.tenant_id, ok.user_id) == ("acme", "alice")
    bad = await p.authenticate(ConnectInfo(client_id="c1", username="alice", password=b"bob-pw", protocol_level=4))
    assert not bad.ok and bad.reason_code == RC.BAD_USER_NAME_OR_PASSWORD
    alice, bob = Identity("acme", "alice", "c1"), Identity("acme", "bob", "c2")
    assert p.allowed_publish(alice, "sensors/alice/t", 1, False)
    assert not p.allowed_publish(alice, "sensors/bob/t", 1, False)  # read only
    assert not p.allowed_publish(alice, "sensors/secret", 0, False)  # deny wins over the grants
    assert p.allowed_publish(alice, "devices/alice/status", 0, False)  # pattern, %u
    assert not p.allowed_publish(alice, "devices/bob/status", 0, False)
    assert p.allowed_subscribe(alice, "inbox/c1/#", 0) and not p.allowed_subscribe(alice, "inbox/c2/#", 0)  # %c
    assert not p.allowed_subscribe(alice, "sensors/secret", 0)
    assert p.allowed_read(alice, "sensors/x") and not p.allowed_read(alice, "sensors/secret")
    assert not p.allowed_subscribe(alice, "other/#", 0)  # not granted: refused
    assert p.allowed_publish(bob, "sensors/x", 0, False) and p.allowed_subscribe(bob, "sensors/#", 0)
    anon = await p.authenticate(ConnectInfo(client_id="a1", username=None, password=None, protocol_level=4))
    assert anon.ok and anon.user_id == "anonymous"
    guest = Identity("acme", "anonymous", "a1")
    assert p.allowed_subscribe(guest, "public/#", 0) and not p.allowed_publish(guest, "public/x", 0, False)
    assert not p.allowed_publish(guest, "devices/anonymous/status", 0, False)  # %u patterns: not anonymous


async def test_without_acl_file_everyone_authenticated_may_do_everything(files: tuple[Path, Path]) -> None:
    p = StaticFileProvider(files[0])  # the DevOnly tenant, no anonymous clients
    res = await p.authenticate(ConnectInfo(client_id="c", username="bob", password=b"bob-pw", protocol_level=4))
    assert res.ok and res.tenant_id == "DevOnly"
    assert p.allowed_publish(Identity("DevOnly", "bob", "c"), "any/thing", 2, True)
    anon = await p.authenticate(ConnectInfo(client_id="c", username=None, password=None, protocol_level=4))
    assert not anon.ok


def test_format_errors_name_the_file_and_line(tmp_path: Path) -> None:
    pw = tmp_path / "passwd"
    pw.write_text("alice:$7$101$bad\n")
    with pytest.raises(ValueError, match=r"passwd:1: user 'alice'"):
        load_auth_file(pw)
    pw.write_text(f"anonymous:{hash_mosquitto('x', iterations=10)}\n")
    with pytest.raises(ValueError, match="anonymous"):
        load_auth_file(pw, allow_anonymous=True)
    toml = tmp_path / "auth.toml"
    toml.write_text("")
    with pytest.raises(ValueError, match="TIDEMQ_AUTH_ACL_FILE"):
        load_auth_file(toml, acl_file=tmp_path / "acl")


async def test_acl_file_change_is_picked_up(files: tuple[Path, Path]) -> None:
    pw, acl = files
    p = StaticFileProvider(pw, acl_file=acl, watch_interval=0)
    alice = Identity("DevOnly", "alice", "c1")
    assert not p.allowed_publish(alice, "other/x", 0, False)
    acl.write_text("user alice\ntopic other/#\n")
    assert p.reload() and p.generation == 1
    assert p.allowed_publish(alice, "other/x", 0, False)
    acl.write_text("user alice\ntopic other/#/x\n")  # a bad file keeps the previous rules
    assert not p.reload() and p.allowed_publish(alice, "other/x", 0, False)


def test_tidemq_passwd_create_update_delete(tmp_path: Path) -> None:
    pw = tmp_path / "passwd"
    assert tidemq_passwd("-c", str(pw), "alice", "--iterations", "1000", password="one").returncode == 0
    assert oct(pw.stat().st_mode & 0o777) == "0o600"
    assert tidemq_passwd(str(pw), "bob", "--iterations", "1000", password="two").returncode == 0
    first = parse_password_file(pw.read_text())
    assert list(first) == ["alice", "bob"] and verify_password("one", first["alice"])
    assert tidemq_passwd(str(pw), "alice", "--iterations", "1000", password="three").returncode == 0
    users = parse_password_file(pw.read_text())
    assert list(users) == ["alice", "bob"] and verify_password("three", users["alice"])
    assert users["bob"] == first["bob"]
    assert tidemq_passwd("-D", str(pw), "bob").returncode == 0
    assert list(parse_password_file(pw.read_text())) == ["alice"]
    missing = tidemq_passwd("-D", str(pw), "bob")
    assert missing.returncode == 1 and "not found" in missing.stderr
    assert tidemq_passwd(str(tmp_path / "none"), "x", password="p").returncode == 1
    assert tidemq_passwd("-c", "-D", str(pw), "x").returncode == 2
    assert tidemq_passwd(str(pw), "a:b", password="p").returncode == 1
    assert tidemq_passwd(str(tmp_path / "auth.toml"), "x", password="p").returncode == 2


@needs_binary
def test_mosquitto_passwd_edits_a_file_tidemq_wrote(tmp_path: Path) -> None:
    """Both ways: a file written by ``tidemq passwd`` stays a mosquitto password file."""
    pw = tmp_path / "passwd"
    assert tidemq_passwd("-c", str(pw), "alice", "--iterations", "1000", password="one").returncode == 0
    mosquitto_passwd("-b", str(pw), "bob", "two")
    users = parse_password_file(pw.read_text())
    assert verify_password("one", users["alice"]) and verify_password("two", users["bob"])


def test_verification_stays_off_the_loop(files: tuple[Path, Path]) -> None:
    """The provider's verification of a mosquitto hash runs on the verifier pool, not the event loop."""
    import threading

    from tidemq.auth import passwd

    seen: list[str] = []
    real = passwd.verify_password

    def spy(password: str | bytes, encoded: str) -> bool:
        seen.append(threading.current_thread().name)
        return real(password, encoded)

    async def run() -> bool:
        p = StaticFileProvider(files[0])
        res = await passwd.verify_off_loop(b"alice-pw", p.data.tenants["DevOnly"].users["alice"].password or "",
                                           verify=spy)
        return res

    assert asyncio.run(run())
    assert seen and seen[0].startswith("tidemq-passwd")
