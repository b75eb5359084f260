"""Security fixtures: TideMQ processes started exactly as an operator would (``python -m tidemq.cli``),
on free ports and the real ``redis_server``, and small raw-socket probes an attacker would use.

``launch(command, *args, env=...)`` starts a process and waits until its port accepts TCP (the MQTT port,
or the API port for ``api``); every process is stopped when the test ends and its log is attached to a
failing test's report. ``refused(command, *args, env=...)`` runs one that must exit by itself and returns
its exit code and output. ``mqtt_connect`` is a fresh MQTT 3.1.1 client on a raw socket: it returns the
CONNACK return code (or None when the connection is closed or refused first).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conformance import wire
from tests.fixtures.brokers import BrokerProcess, free_port

WAIT = 10.0
# a clean environment for the children: no TIDEMQ_* setting from the developer's shell leaks in
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith("TIDEMQ_")}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tidemq.cli", *args]


def mqtt_connect(host: str, port: int, client_id: str = "fresh", *, username: str | None = None,
                 password: bytes | None = None, bind: str | None = None) -> int | None:
    """CONNACK return code of a raw MQTT 3.1.1 CONNECT, or None if the broker closed or refused first."""
    try:
        with socket.create_connection((host, port), timeout=WAIT,
                                      source_address=(bind, 0) if bind else None) as s:
            s.sendall(wire.connect(client_id, username=username, password=password))
            data = b""
            while len(data) < 4:
                chunk = s.recv(4 - len(data))
                if not chunk:
                    return None
                data += chunk
    except OSError:
        return None
    assert data[:2] == b"\x20\x02", data
    return data[3]


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not loopback (None when it has none)."""
    candidates = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, it only picks a route
            candidates.append(s.getsockname()[0])
        except OSError:
            pass
    try:
        candidates += socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:
        pass
    return next((a for a in candidates if not a.startswith("127.") and a != "0.0.0.0"), None)


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return True
    except OSError:
        return False


def wait_port(port: int, proc: BrokerProcess) -> None:
    """Poll until ``port`` accepts TCP on loopback, bounded; fails with the log if ``proc`` exits first."""
    deadline = time.monotonic() + 30.0
    delay = 0.01
    while not tcp_open("127.0.0.1", port):
        assert proc.alive and time.monotonic() < deadline, f"port {port} never opened:\n{proc.log_tail()}"
        time.sleep(delay)  # a port of another process: no event to wait on
        delay = min(delay * 2, 0.2)


@pytest.fixture
def launch(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., BrokerProcess]]:
    started: list[BrokerProcess] = []

    def make(command: str, *args: str, env: dict[str, str] | None = None, mqtt_port: int | None = None,
             api_port: int | None = None) -> BrokerProcess:
        mqtt_port = mqtt_port or free_port()
        api_port = api_port or free_port()
        argv = cli(command, "--api-port", str(api_port), *args)
        if command != "api":
            argv[4:4] = ["--mqtt-port", str(mqtt_port)]
        ready = api_port if command == "api" else mqtt_port
        proc = BrokerProcess(command, argv, port=ready, api_port=api_port,
                             log_path=tmp_path / f"{command}-{ready}.log")
        proc.env = {**BASE_ENV, "PYTHONUNBUFFERED": "1", **(env or {})}
        started.append(proc)
        proc.start()
        if command == "standalone":  # ready = the MQTT port; the admin API opens just after it
            wait_port(api_port, proc)
        request.node._tidemq_brokers = [*getattr(request.node, "_tidemq_brokers", []), (proc, 0)]
        return proc

    yield make
    for proc in started:
        proc.stop()


def refused(command: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a process that must refuse to start; it is killed (and the test fails) if it does start."""
    argv = cli(command, *args)
    if command != "api":
        argv += ["--mqtt-port", str(free_port())]
    argv += ["--api-port", str(free_port())]
    try:
        return subprocess.run(argv, env={**BASE_ENV, **(env or {})}, capture_output=True, text=True,
                              timeout=30, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{command} {args} started instead of refusing: {exc.stderr!r}") from None


def redis_url_of(server: Any) -> str:
    return f"redis://127.0.0.1:{server.port}/0"
