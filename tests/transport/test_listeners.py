"""End to end: a TideMQ process with TCP, TLS, WebSocket and WSS listeners, driven by paho-mqtt and raw sockets."""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Callable

import pytest

from tests.interop.clients import Paho, uid
from tests.transport.conftest import TRANSPORTS, Endpoints
from tests.transport.wsclient import upgrade_request

pytestmark = pytest.mark.interop

WAIT = 10.0
CONNECT = b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02c1"  # MQTT 3.1.1, clean session, client id "c1"
CONNACK_OK = b"\x20\x02\x00\x00"


def _raw_tls_connect(ep: Endpoints, port: int, cert: tuple[str, str] | None) -> bytes:
    """TLS handshake + CONNECT on a blocking socket; the CONNACK, or b"" if the server refused us."""
    ctx = ssl.create_default_context(cafile=str(ep.pki.ca))
    if cert is not None:
        ctx.load_cert_chain(*cert)
    with socket.create_connection((ep.host, port), timeout=WAIT) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(CONNECT)
                data = b""
                while len(data) < 4:
                    chunk = s.recv(4 - len(data))
                    if not chunk:
                        break
                    data += chunk
                return data
        except (ssl.SSLError, ConnectionError):
            return b""


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("protocol", ["v311", "v5"])
def test_connect_subscribe_publish(client: Callable[..., Paho], endpoints: Endpoints, transport: str,
                                   protocol: str) -> None:
    c = client(endpoints, transport, protocol=protocol)
    assert c.connect().reason == 0
    topic = f"t/{uid()}"
    assert c.subscribe(topic, qos=1) == [1]
    c.publish(topic, b"\x00\x01binary\xff", qos=1)
    msg = c.get()
    assert (msg.topic, msg.payload, msg.qos) == (topic, b"\x00\x01binary\xff", 1)
    c.disconnect()


def test_mixed_transports_one_tenant(client: Callable[..., Paho], endpoints: Endpoints) -> None:
    """TCP, TLS, WS and WSS clients of one tenant exchange QoS 1 messages byte for byte; another tenant sees none."""
    tenant = f"t{uid()}"
    topic = f"mixed/{uid()}"
    clients = {}
    for i, transport in enumerate(TRANSPORTS):
        c = client(endpoints, transport, protocol="v5" if i % 2 else "v311", username=f"{tenant}/u{i}")
        c.connect()
        assert c.subscribe(topic, qos=1) == [1]
        clients[transport] = c
    outsider = client(endpoints, "ws", username=f"other{uid()}/u")
    outsider.connect()
    outsider.subscribe(topic, qos=1)
    payloads = {
        "tcp": bytes(range(256)),
        "tls": os.urandom(100_000),  # many TLS records
        "ws": os.urandom(200_000),  # 64-bit WebSocket length, several reads
        "wss": b"",  # zero-length payload
    }
    for transport, c in clients.items():
        c.publish(topic, payloads[transport], qos=1)
    for transport, c in clients.items():
        got = sorted((m.payload for m in c.get_many(len(payloads))), key=len)
        assert got == sorted(payloads.values(), key=len), transport
        assert c.drain() == []
    # the outsider's tenant is another world: a sentinel in its own tenant arrives, nothing else did
    outsider.publish(topic, b"sentinel", qos=1)
    assert outsider.get().payload == b"sentinel"
    assert outsider.drain() == []
    for c in clients.values():
        c.disconnect()


def test_qos1_persistent_session_over_wss(client: Callable[..., Paho], endpoints: Endpoints) -> None:
    """A persistent session made over WSS keeps its messages while offline and gets them over TLS."""
    cid = f"p{uid()}"
    topic = f"persist/{uid()}"
    c = client(endpoints, "wss", client_id=cid, protocol="v5", clean=True, session_expiry=300)
    c.connect()
    c.subscribe(topic, qos=1)
    c.disconnect()
    pub = client(endpoints, "ws")
    pub.connect()
    pub.publish(topic, b"while you were away", qos=1)
    back = client(endpoints, "tls", client_id=cid, protocol="v5", clean=False, session_expiry=300)
    assert back.connect().session_present
    msg = back.get()
    assert (msg.payload, msg.qos) == (b"while you were away", 1)
    back.disconnect()
    pub.disconnect()


def test_client_certificate_is_optional_but_checked(client: Callable[..., Paho], endpoints: Endpoints) -> None:
    good = client(endpoints, "tls", cert="client")
    assert good.connect().reason == 0
    good.disconnect()
    pki = endpoints.pki
    assert _raw_tls_connect(endpoints, endpoints.ports["tls"], None) == CONNACK_OK
    assert _raw_tls_connect(endpoints, endpoints.ports["tls"], (str(pki.rogue_cert), str(pki.rogue_key))) == b""


@pytest.mark.parametrize("transport", ["tls", "wss"])
def test_required_client_certificate_accepted(client: Callable[..., Paho], mtls_endpoints: Endpoints,
                                              transport: str) -> None:
    c = client(mtls_endpoints, transport, cert="client")
    assert c.connect().reason == 0
    topic = f"mtls/{uid()}"
    c.subscribe(topic, qos=1)
    c.publish(topic, b"signed", qos=1)
    assert c.get().payload == b"signed"
    c.disconnect()


@pytest.mark.parametrize("transport", ["tls", "wss"])
def test_required_client_certificate_refused(mtls_endpoints: Endpoints, transport: str) -> None:
    ep = mtls_endpoints
    port = ep.ports[transport]
    assert _raw_tls_connect(ep, port, None) == b""
    assert _raw_tls_connect(ep, port, (str(ep.pki.rogue_cert), str(ep.pki.rogue_key))) == b""


def test_required_client_certificate_refused_paho(client: Callable[..., Paho], mtls_endpoints: Endpoints) -> None:
    c = client(mtls_endpoints, "tls")  # no certificate
    try:
        c.client.connect(mtls_endpoints.host, mtls_endpoints.ports["tls"], keepalive=60)
    except (ssl.SSLError, ConnectionError):
        return  # refused during the handshake (TLS 1.2 style)
    c.client.loop_start()
    c.wait_disconnected()  # TLS 1.3: the alert arrives after the client finished its side
    assert not c.connected.is_set()


def test_plain_mqtt_on_the_tls_port_is_dropped(endpoints: Endpoints) -> None:
    with socket.create_connection((endpoints.host, endpoints.ports["tls"]), timeout=WAIT) as s:
        s.sendall(CONNECT)
        try:
            data = s.recv(64)
        except ConnectionError:
            data = b""
    assert not data.startswith(b"\x20")


def test_websocket_wrong_path_is_404(endpoints: Endpoints) -> None:
    req, _ = upgrade_request("/not-mqtt")
    with socket.create_connection((endpoints.host, endpoints.ports["ws"]), timeout=WAIT) as s:
        s.sendall(req)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(1024)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 404 ")
