"""Operator-facing configuration: ``--env-file``, ``TIDEMQ_*_FILE`` secrets, ``--version``, and bad settings that
end the process with status 2 and one line naming the setting (never a traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from cryptography.hazmat.primitives import serialization

from tests.fixtures.brokers import BrokerProcess, free_port
from tests.transport.pki import make_pki
from tidemq.auth.passwd import hash_mosquitto
from tidemq.config import ConfigError, Settings, load_env_file


def tidemq(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TIDEMQ_")}
    return subprocess.run([sys.executable, "-m", "tidemq.cli", *args], env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_version() -> None:
    out = tidemq("--version")
    assert out.returncode == 0 and out.stdout.startswith("tidemq ") and out.stdout.split()[1][0].isdigit()


def _one_line_error(out: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert out.returncode == 2, (out.returncode, out.stderr)
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("tidemq: ") and "Traceback" not in out.stderr, out.stderr
    for needle in needles:
        assert needle in last, (needle, last)


@pytest.mark.parametrize(("env", "needle"), [
    ({"TIDEMQ_MQTT_PORT": "abc"}, "TIDEMQ_MQTT_PORT"),
    ({"TIDEMQ_MQTT_PORT": "70000"}, "TIDEMQ_MQTT_PORT"),
    ({"TIDEMQ_INBOX_SIZE": "-1"}, "TIDEMQ_INBOX_SIZE"),
    ({"TIDEMQ_LOG_LEVEL": "LOUD"}, "TIDEMQ_LOG_LEVEL"),
    ({"TIDEMQ_RETAIN_ENABLED": "maybe"}, "TIDEMQ_RETAIN_ENABLED"),
    ({"TIDEMQ_AUTH_PROVIDER": "ldap"}, "TIDEMQ_AUTH_PROVIDER"),
    ({"TIDEMQ_AUTH_PROVIDER": "file"}, "TIDEMQ_AUTH_FILE"),
    ({"TIDEMQ_AUTH_PROVIDER": "file", "TIDEMQ_AUTH_FILE": "/no/such/file"}, "TIDEMQ_AUTH_FILE"),
    ({"TIDEMQ_REDIS_URL": "http://x"}, "TIDEMQ_REDIS_URL"),
    ({"TIDEMQ_TLS_KEY_PASSWORD_FILE": "/no/such/secret"}, "TIDEMQ_TLS_KEY_PASSWORD_FILE"),
    ({"TIDEMQ_REDIS_PASSWORD": "a", "TIDEMQ_REDIS_PASSWORD_FILE": "/etc/hostname"}, "TIDEMQ_REDIS_PASSWORD_FILE"),
])
def test_bad_settings_exit_2_with_one_line(env: dict[str, str], needle: str) -> None:
    _one_line_error(tidemq("worker", env=env), needle)


def test_bad_env_file(tmp_path: Path) -> None:
    _one_line_error(tidemq("worker", "--env-file", str(tmp_path / "missing.env")), "missing.env")
    bad = tmp_path / "bad.env"
    bad.write_text("# comment\nTIDEMQ_MQTT_PROT=1883\n")
    _one_line_error(tidemq("worker", "--env-file", str(bad)), "bad.env:2", "TIDEMQ_MQTT_PROT")
    bad.write_text("just words\n")
    _one_line_error(tidemq("worker", "--env-file", str(bad)), "bad.env:1")


def test_unusable_files_found_at_start_exit_2(tmp_path: Path) -> None:
    pw = tmp_path / "passwd"
    pw.write_text("alice:not-a-hash\n")
    _one_line_error(tidemq("worker", "--redis-url", "redis://127.0.0.1:1/0", "--mqtt-port", str(free_port()),
                           env={"TIDEMQ_AUTH_PROVIDER": "file", "TIDEMQ_AUTH_FILE": str(pw)}), "passwd:1")
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate\n")
    _one_line_error(tidemq("standalone", "--mqtt-port", str(free_port()), "--api-port", str(free_port()),
                           env={"TIDEMQ_TLS_PORT": str(free_port()), "TIDEMQ_TLS_CERT": str(cert)}),
                    "TIDEMQ_TLS_CERT")


def test_env_file_precedence_and_secret_files(tmp_path: Path) -> None:
    env_file = tmp_path / "tidemq.env"
    env_file.write_text('# TideMQ\nexport TIDEMQ_MQTT_PORT=1999\nTIDEMQ_API_PORT="8099"\nTIDEMQ_LOG_LEVEL=DEBUG\n'
                        "OTHER_TOOL=ignored\n")
    assert load_env_file(str(env_file))["TIDEMQ_API_PORT"] == "8099"
    s = Settings.from_env({"TIDEMQ_LOG_LEVEL": "WARNING"}, env_file=str(env_file), api_port=8100)
    assert (s.mqtt_port, s.log_level, s.api_port) == (1999, "WARNING", 8100)  # env file < environment < flags
    secret = tmp_path / "secret"
    secret.write_text("p@ss:w/rd\n")
    s = Settings.from_env({"TIDEMQ_REDIS_PASSWORD_FILE": str(secret), "TIDEMQ_REDIS_URL": "redis://db:6380/2"})
    assert s.redis_password == "p@ss:w/rd"  # one trailing newline stripped
    assert s.store_url() == "redis://:p%40ss%3Aw%2Frd@db:6380/2"
    assert Settings(redis_url="redis://u:old@db/0", redis_password="x").store_url() == "redis://u:x@db/0"
    with pytest.raises(ConfigError, match="TIDEMQ_MAX_PACKET_SIZE"):
        Settings.from_env({"TIDEMQ_MAX_PACKET_SIZE": "0"})


def test_secrets_from_files_reach_redis_and_tls(tmp_path: Path, own_redis: tuple[int, subprocess.Popen]) -> None:
    """A real worker: the Redis password and the TLS key passphrase come from files (Docker/Kubernetes secrets)."""
    port, _ = own_redis
    redis.Redis(port=port).config_set("requirepass", "s3cret pass")
    pki = make_pki(tmp_path)
    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"key passphrase")))
    (tmp_path / "redis-pw").write_text("s3cret pass\n")
    (tmp_path / "key-pw").write_text("key passphrase\n")
    (tmp_path / "auth").write_text(f"alice:{hash_mosquitto('pw', iterations=10)}\n")
    mqtt = free_port()
    proc = BrokerProcess("worker", [sys.executable, "-m", "tidemq.cli", "worker", "--mqtt-port", str(mqtt)],
                         port=mqtt, log_path=tmp_path / "worker.log", env={
                             "TIDEMQ_REDIS_URL": f"redis://127.0.0.1:{port}/0",
                             "TIDEMQ_REDIS_PASSWORD_FILE": str(tmp_path / "redis-pw"),
                             "TIDEMQ_TLS_PORT": str(free_port()), "TIDEMQ_TLS_CERT": str(pki.server_cert),
                             "TIDEMQ_TLS_KEY": str(encrypted), "TIDEMQ_TLS_KEY_PASSWORD_FILE": str(tmp_path / "key-pw"),
                             "TIDEMQ_AUTH_PROVIDER": "file", "TIDEMQ_AUTH_FILE": str(tmp_path / "auth")})
    try:
        proc.start()  # listening: the scripts loaded into the password-protected Redis, the key decrypted
        assert proc.alive
    finally:
        proc.stop()
