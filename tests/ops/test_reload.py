"""SIGHUP on a real worker process: the auth file, the log level (from the env file) and the TLS certificate are
reloaded while a connected client stays connected; new logins and new handshakes see the new files."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.brokers import Broker, BrokerProcess, _redis_db_url, free_port, worker_process
from tests.interop.clients import Paho, uid
from tests.transport.pki import make_pki

WAIT = 15.0


def set_password(path: Path, user: str, password: str, *create: str) -> None:
    subprocess.run([sys.executable, "-m", "tidemq.cli", "passwd", *create, str(path), user, "--password-stdin",
                    "--iterations", "1000"], input=f"{password}\n", text=True, check=True, timeout=60)


def wait_for_log(proc: BrokerProcess, text: str, since: int) -> None:
    """The log file has no event to await: read it until ``text`` shows up after ``since``, bounded."""
    deadline = time.monotonic() + WAIT
    while text not in proc.log_tail(10_000, since):
        assert proc.alive, f"worker died:\n{proc.log_tail(since=since)}"
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{proc.log_tail(since=since)}"
        time.sleep(0.05)


@pytest.fixture
def start(redis_server: object, tmp_path: Path) -> Iterator[object]:
    started: list[BrokerProcess] = []

    def run(env: dict[str, str], env_file: Path | None = None) -> tuple[Broker, BrokerProcess]:
        proc = worker_process(tmp_path, _redis_db_url(redis_server), env=env)
        if env_file is not None:
            proc.argv += ["--env-file", str(env_file)]
        started.append(proc)
        proc.start()
        return Broker(proc.host, proc.port, "worker", process=proc), proc

    yield run
    for proc in started:
        proc.stop()


def test_sighup_reloads_auth_file_and_log_level_without_dropping(start: object, tmp_path: Path) -> None:
    pw, env_file = tmp_path / "passwd", tmp_path / "tidemq.env"
    set_password(pw, "alice", "old-pw", "-c")
    env_file.write_text(f"TIDEMQ_AUTH_PROVIDER=file\nTIDEMQ_AUTH_FILE={pw}\nTIDEMQ_LOG_LEVEL=INFO\n")
    broker, proc = start({"TIDEMQ_LOG_JSON": "false"}, env_file)  # type: ignore[operator]
    old = Paho(broker, f"old{uid()}", username="alice", password="old-pw")
    try:
        old.connect()
        assert old.subscribe("reload/t", 1) == [1]
        # a new password, the file's mtime put back: only SIGHUP (not the file watch) can notice the change
        before = pw.stat()
        set_password(pw, "alice", "new-pw")
        os.utime(pw, ns=(before.st_atime_ns, before.st_mtime_ns))
        env_file.write_text(env_file.read_text().replace("TIDEMQ_LOG_LEVEL=INFO", "TIDEMQ_LOG_LEVEL=DEBUG"))
        mark = proc.log_size()
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGHUP)
        wait_for_log(proc, "SIGHUP: reloaded log level DEBUG, auth", mark)
        assert proc.alive
        assert not old.disconnected.is_set()
        old.publish("reload/t", b"still here", qos=1)  # the old connection still works
        assert old.get().payload == b"still here"
        new = Paho(broker, f"new{uid()}", username="alice", password="new-pw")
        try:
            assert new.connect().reason == 0
        finally:
            new.close()
        stale = Paho(broker, f"stale{uid()}", username="alice", password="old-pw")
        try:
            assert stale.connect(expect_success=False).reason != 0
        finally:
            stale.close()
        assert "DEBUG" in proc.log_tail(10_000, mark)  # the new log level is in force
    finally:
        old.close()


def test_sighup_with_a_broken_file_keeps_the_old_one(start: object, tmp_path: Path) -> None:
    pw = tmp_path / "passwd"
    set_password(pw, "alice", "pw", "-c")
    broker, proc = start({"TIDEMQ_AUTH_PROVIDER": "file", "TIDEMQ_AUTH_FILE": str(pw)})  # type: ignore[operator]
    pw.write_text("alice:not-a-hash\n")
    mark = proc.log_size()
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGHUP)
    wait_for_log(proc, "SIGHUP: reloaded", mark)
    assert "keeping the previous one" in proc.log_tail(10_000, mark)
    c = Paho(broker, f"c{uid()}", username="alice", password="pw")
    try:
        assert c.connect().reason == 0
    finally:
        c.close()


def _mqtt_connect(sock: ssl.SSLSocket) -> bytes:
    client_id = b"tls-" + uid().encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
    sock.sendall(bytes([0x10, len(body)]) + body)
    return sock.recv(4)


def _tls(port: int) -> ssl.SSLSocket:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    return ctx.wrap_socket(raw)


def test_sighup_reloads_the_tls_certificate(start: object, tmp_path: Path) -> None:
    first, second = make_pki(_dir(tmp_path / "a")), make_pki(_dir(tmp_path / "b"))
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copy(first.server_cert, cert)
    shutil.copy(first.server_key, key)
    tls_port = free_port()
    _, proc = start({"TIDEMQ_TLS_PORT": str(tls_port), "TIDEMQ_TLS_CERT": str(cert),  # type: ignore[operator]
                     "TIDEMQ_TLS_KEY": str(key)})
    old = _tls(tls_port)
    try:
        assert _mqtt_connect(old) == b"\x20\x02\x00\x00"
        der = old.getpeercert(binary_form=True)
        assert der == ssl.PEM_cert_to_DER_cert(first.server_cert.read_text())
        shutil.copy(second.server_cert, cert)
        shutil.copy(second.server_key, key)
        mark = proc.log_size()
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGHUP)
        wait_for_log(proc, "SIGHUP: reloaded", mark)
        assert "tls" in proc.log_tail(10_000, mark)
        new = _tls(tls_port)
        try:
            assert new.getpeercert(binary_form=True) == ssl.PEM_cert_to_DER_cert(second.server_cert.read_text())
            assert _mqtt_connect(new) == b"\x20\x02\x00\x00"
        finally:
            new.close()
        old.sendall(b"\xc0\x00")  # PINGREQ on the connection made before the reload
        assert old.recv(2) == b"\xd0\x00"
    finally:
        old.close()


def _dir(path: Path) -> Path:
    path.mkdir()
    return path
