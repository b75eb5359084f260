"""Safe defaults: with no host every process listens on loopback only, and serving another address without
authentication needs the explicit opt-in ``TIDEMQ_ALLOW_INSECURE`` (mosquitto 2.0's lesson).

Attack: reach a broker started with the README's command from another interface of the machine, or start it
on every interface with the devonly provider / an open admin API by mistake. Each refused start must exit
non-zero with one line naming the setting; each started process must still serve a fresh local client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.fixtures.brokers import BrokerProcess
from tests.security.conftest import mqtt_connect, non_loopback_address, redis_url_of, refused, tcp_open

pytestmark = pytest.mark.redis


def _unreachable_elsewhere(*ports: int) -> None:
    other = non_loopback_address()
    if other is None:
        return  # a machine with loopback only: nothing else to try from
    for port in ports:
        assert not tcp_open(other, port), f"port {port} answers on {other}"


def test_standalone_default_binds_loopback_only(launch: Callable[..., BrokerProcess]) -> None:
    proc = launch("standalone")  # the README's first command, on free ports
    _unreachable_elsewhere(proc.port, proc.api_port or 0)
    assert mqtt_connect("127.0.0.1", proc.port) == 0
    with httpx.Client(base_url=f"http://127.0.0.1:{proc.api_port}", timeout=10) as http:
        assert http.get("/healthz").text == "ok"
    assert "INSECURE" not in proc.log_tail()


def test_worker_and_api_default_bind_loopback_only(launch: Callable[..., BrokerProcess], redis_server: Any) -> None:
    url = redis_url_of(redis_server)
    worker = launch("worker", "--redis-url", url)
    api = launch("api", "--redis-url", url)
    _unreachable_elsewhere(worker.port, api.port)
    assert mqtt_connect("127.0.0.1", worker.port) == 0
    with httpx.Client(base_url=f"http://127.0.0.1:{api.port}", timeout=10) as http:
        assert http.get("/readyz").text == "ready"


@pytest.mark.parametrize(("command", "env", "named"), [
    ("standalone", {}, "devonly"),
    ("worker", {}, "devonly"),
    ("api", {}, "admin API"),
    ("standalone", {"TIDEMQ_API_TOKEN": "x" * 24}, "devonly"),  # the API is fine, MQTT is not
    ("standalone", {"TIDEMQ_AUTH_PROVIDER": "file", "TIDEMQ_AUTH_FILE": "/nonexistent"}, "admin API"),
    ("worker", {"TIDEMQ_HOST": "0.0.0.0"}, "devonly"),  # from the environment as well as the flag
])
def test_unauthenticated_exposure_refuses_to_start(command: str, env: dict[str, str], named: str,
                                                   redis_server: Any) -> None:
    args = [] if "TIDEMQ_HOST" in env else ["--host", "0.0.0.0"]
    if command != "standalone":
        args += ["--redis-url", redis_url_of(redis_server)]
    done = refused(command, *args, env=env)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "TIDEMQ_ALLOW_INSECURE" in lines[0] and named in lines[0], lines[0]


def test_opt_in_starts_with_a_warning(launch: Callable[..., BrokerProcess], redis_server: Any) -> None:
    url = redis_url_of(redis_server)
    worker = launch("worker", "--host", "0.0.0.0", "--redis-url", url, env={"TIDEMQ_ALLOW_INSECURE": "1"})
    api = launch("api", "--host", "0.0.0.0", "--allow-insecure", "--redis-url", url)
    for proc, what in ((worker, "devonly"), (api, "admin API")):
        warnings = [line for line in proc.log_tail().splitlines() if "INSECURE" in line]
        assert len(warnings) == 1 and "warning" in warnings[0].lower() and what in warnings[0], warnings
    assert mqtt_connect("127.0.0.1", worker.port) == 0
    with httpx.Client(base_url=f"http://127.0.0.1:{api.port}", timeout=10) as http:
        assert http.get("/readyz").text == "ready"


def test_api_with_a_token_needs_no_opt_in(launch: Callable[..., BrokerProcess], redis_server: Any) -> None:
    api = launch("api", "--host", "0.0.0.0", "--redis-url", redis_url_of(redis_server),
                 env={"TIDEMQ_API_TOKEN": "t" * 24})
    assert "INSECURE" not in api.log_tail()
    with httpx.Client(base_url=f"http://127.0.0.1:{api.port}", timeout=10) as http:
        assert http.get("/metrics").status_code == 401
        assert http.get("/metrics", headers={"Authorization": "Bearer " + "t" * 24}).status_code == 200
