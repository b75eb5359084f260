"""TLS context, client certificate subjects, and the listeners started in-process around a real ``Broker``.

The in-process tests run the worker on the embedded store with an auth
provider that records every ``ConnectInfo``, so they can check that the
client certificate subject reaches the provider over TLS and WSS (and that
plain TCP and WS report none).
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tidemq.worker.transport.listeners import start_listeners
from tidemq.worker.transport.tls import build_ssl_context, cert_subject

from tests.fixtures.brokers import free_port
from tests.transport import wsclient as wsc
from tests.transport.pki import PKI
from tests.transport.wsclient import client_frame, read_frame, read_response_head, upgrade_request
from tidemq.auth import AuthResult, ConnectInfo, Identity
from tidemq.config import Settings

WAIT = 10.0
CONNECT = b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02c1"
CONNACK_OK = b"\x20\x02\x00\x00"


def _settings(pki: PKI, **kw: Any) -> Settings:
    base = {"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key)}
    return Settings(**{**base, **kw})


# ------------------------------------------------------------------ units


def test_cert_subject_formats_rfc4514() -> None:
    peercert = {"subject": ((("countryName", "DE"),), (("organizationName", "Acme, Inc."),),
                            (("commonName", "device-1"), ("userId", "42")))}
    assert cert_subject(peercert) == "CN=device-1+UID=42,O=Acme\\, Inc.,C=DE"
    assert cert_subject({"subject": ((("commonName", " #lead"),),)}) == "CN=\\ #lead"
    assert cert_subject({"subject": ((("emailAddress", "a@b"),),)}) == "emailAddress=a@b"
    assert cert_subject(None) is None
    assert cert_subject({}) is None  # what an unverified certificate gives


def test_context_is_tls12_or_later_and_verifies_on_request(pki: PKI) -> None:
    ctx = build_ssl_context(_settings(pki))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_NONE
    assert build_ssl_context(_settings(pki, tls_ca=str(pki.ca))).verify_mode == ssl.CERT_OPTIONAL
    strict = build_ssl_context(_settings(pki, tls_ca=str(pki.ca), tls_require_client_cert=True))
    assert strict.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(("kw", "needle"), [
    ({"tls_cert": ""}, "TIDEMQ_TLS_CERT"),
    ({"tls_key": "/nonexistent/key.pem"}, "TIDEMQ_TLS_KEY"),
    ({"tls_require_client_cert": True}, "TIDEMQ_TLS_CA"),
    ({"tls_key": "CLIENT_KEY"}, "cannot load"),  # the key does not match the certificate
    ({"tls_ca": "SERVER_KEY"}, "TIDEMQ_TLS_CA"),  # not a certificate
])
def test_context_errors_name_the_setting(pki: PKI, kw: dict[str, Any], needle: str) -> None:
    files = {"CLIENT_KEY": str(pki.client_key), "SERVER_KEY": str(pki.server_key)}
    kw = {k: files.get(v, v) if isinstance(v, str) else v for k, v in kw.items()}
    with pytest.raises(ValueError, match=needle):
        build_ssl_context(_settings(pki, **kw))


async def test_no_ports_no_listeners() -> None:
    assert await start_listeners(Settings(), asyncio.Protocol, "127.0.0.1") == []


async def test_a_failing_listener_closes_the_others(pki: PKI) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        tls_port = free_port()
        settings = _settings(pki, tls_port=tls_port, ws_port=busy)
        with pytest.raises(OSError):
            await start_listeners(settings, asyncio.Protocol, "127.0.0.1")
        with socket.socket() as probe:  # the TLS listener started first was closed again
            probe.bind(("127.0.0.1", tls_port))


# ------------------------------------------------------------------ in-process broker


class Recorder:
    """DevOnly-like provider that keeps every ConnectInfo it was asked about."""

    def __init__(self) -> None:
        self.infos: list[ConnectInfo] = []

    async def authenticate(self, info: ConnectInfo) -> AuthResult:
        self.infos.append(info)
        return AuthResult(True, "DevOnly", info.cert_subject or "anonymous")

    async def check_publish(self, who: Identity, topic: str, qos: int, retain: bool) -> bool:
        return True

    async def check_subscribe(self, who: Identity, topic_filter: str, qos: int) -> bool:
        return True


@dataclasses.dataclass
class Running:
    settings: Settings
    tcp: int
    auth: Recorder


@pytest.fixture
async def running(pki: PKI) -> AsyncIterator[Running]:
    from tidemq.worker.broker import Broker

    from tidemq.store.connection import close_redis, open_redis

    settings = _settings(pki, host="127.0.0.1", redis_url=f"memory://tls-{uuid.uuid4().hex[:8]}",
                         tls_ca=str(pki.ca), tls_port=free_port(), ws_port=free_port(), wss_port=free_port())
    redis = await open_redis(settings.redis_url)
    auth = Recorder()
    broker = Broker(settings, redis, auth=auth)  # type: ignore[arg-type]
    tcp = await broker.start("127.0.0.1", 0)
    try:
        yield Running(settings, tcp, auth)
    finally:
        await broker.stop(grace=2.0)
        await close_redis(redis)


def _client_ctx(pki: PKI, with_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if with_cert:
        ctx.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    return ctx


async def _mqtt_connect(port: int, ctx: ssl.SSLContext | None) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                   server_hostname="localhost" if ctx else None)
    writer.write(CONNECT)
    data = await asyncio.wait_for(reader.readexactly(4), WAIT)
    writer.close()
    return data


async def _ws_connect(port: int, ctx: ssl.SSLContext | None) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                   server_hostname="localhost" if ctx else None)
    req, _ = upgrade_request()
    writer.write(req + client_frame(wsc.OP_BINARY, CONNECT[:5]) + client_frame(wsc.OP_BINARY, CONNECT[5:]))
    status, headers = await asyncio.wait_for(read_response_head(reader), WAIT)
    assert status == 101 and headers["sec-websocket-protocol"] == "mqtt"
    data = b""
    while len(data) < 4:
        _op, _fin, payload = await asyncio.wait_for(read_frame(reader), WAIT)
        data += payload
    writer.close()
    return data


@pytest.mark.parametrize(("transport", "with_cert", "subject"), [
    ("tcp", False, None),
    ("tls", True, "CN=device-1,O=Acme"),
    ("tls", False, None),
    ("ws", False, None),
    ("wss", True, "CN=device-1,O=Acme"),
    ("wss", False, None),
])
async def test_cert_subject_reaches_the_auth_provider(running: Running, pki: PKI, transport: str,
                                                      with_cert: bool, subject: str | None) -> None:
    s = running.settings
    ctx = _client_ctx(pki, with_cert) if transport in ("tls", "wss") else None
    if transport in ("tcp", "tls"):
        port = running.tcp if transport == "tcp" else s.tls_port
        assert await _mqtt_connect(port, ctx) == CONNACK_OK
    else:
        assert await _ws_connect(s.ws_port if transport == "ws" else s.wss_port, ctx) == CONNACK_OK
    assert [i.cert_subject for i in running.auth.infos] == [subject]
    assert running.auth.infos[0].address.startswith("127.0.0.1:")
