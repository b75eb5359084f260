"""MQTT 5 enhanced authentication (AUTH packets) through a custom provider class, on the raw wire.

The worker runs ``TIDEMQ_AUTH_PROVIDER=tests.authz.provider:ChallengeProvider``: CONNECT with an
Authentication Method -> AUTH 0x18 with a nonce -> client AUTH 0x18 with the response -> CONNACK 0x00 that
echoes the method. A wrong response, an unknown method or a method switch mid-exchange refuses the CONNECT.
Also: ``make_provider`` builds custom classes and rejects bad ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

import pytest

from tests.authz.provider import METHOD, ChallengeProvider, response_for
from tests.conformance import wire
from tests.limits.helpers import AUTH_DATA, AUTH_METHOD, open5, uid
from tests.mqtt5.v5wire import V5
from tidemq.auth import make_provider
from tidemq.config import Settings

pytestmark = pytest.mark.redis

CONTINUE = 0x18


async def _start(broker, client_id: str, method: str, data: bytes) -> tuple[V5, wire.Packet]:
    """Send CONNECT with an authentication method; return the client and the server's first answer."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(broker.host, broker.port), wire.TIMEOUT)
    c = V5(reader, writer)
    props = wire.props((AUTH_METHOD, method), (AUTH_DATA, data))
    await c.send(wire.connect(client_id, version=5, properties=props))
    return c, await c.read()


def _auth(method: str, data: bytes, reason: int = CONTINUE) -> bytes:
    return wire.packet(wire.AUTH, 0, bytes([reason]) + wire.props((AUTH_METHOD, method), (AUTH_DATA, data)))


def _auth_fields(p: wire.Packet) -> tuple[int, dict[int, list[object]]]:
    props, _ = wire.parse_props(p.body, 1)
    return p.body[0], props


async def test_challenge_response_succeeds(challenge_worker) -> None:
    tenant = f"ea{uid()}"
    c, first = await _start(challenge_worker, f"c{uid()}", METHOD, f"{tenant}/eve".encode())
    assert first.type == wire.AUTH, first
    reason, props = _auth_fields(first)
    assert reason == CONTINUE
    assert props[AUTH_METHOD] == [METHOD]
    nonce = props[AUTH_DATA][0]
    assert isinstance(nonce, bytes) and len(nonce) == 32
    await c.send(_auth(METHOD, response_for(nonce)))
    ack = await c.read()
    assert ack.type == wire.CONNACK and ack.body[1] == 0, ack
    cprops, _ = wire.parse_props(ack.body, 2)
    assert cprops[AUTH_METHOD] == [METHOD]
    assert cprops[AUTH_DATA] == [b"welcome eve"]
    # the identity the exchange established is the session's: same tenant as a DevOnly-style client
    assert await c.subscribe(("ea/t", 1), ("forbidden/x", 1)) == [1, 0x87]
    peer = await open5(challenge_worker, f"p{uid()}", username=f"{tenant}/other")
    assert await peer.publish("ea/t", b"same tenant", qos=1) == 0
    assert (await c.get()).payload == b"same tenant"
    await peer.close()
    await c.close()


async def test_wrong_response_is_refused(challenge_worker) -> None:
    c, first = await _start(challenge_worker, f"c{uid()}", METHOD, b"t/eve")
    assert first.type == wire.AUTH
    await c.send(_auth(METHOD, b"not the answer"))
    ack = await c.read()
    assert ack.type == wire.CONNACK and ack.body[1] == 0x87, ack  # Not Authorized
    await c.expect_close()


async def test_unknown_method_and_method_switch(challenge_worker) -> None:
    c, ack = await _start(challenge_worker, f"c{uid()}", "SCRAM-SHA-512", b"x")
    assert ack.type == wire.CONNACK and ack.body[1] == 0x8C, ack  # Bad Authentication Method
    await c.expect_close()
    c, first = await _start(challenge_worker, f"c{uid()}", METHOD, b"t/eve")
    assert first.type == wire.AUTH
    await c.send(_auth("OTHER", b"x"))
    ack = await c.read()
    assert ack.type == wire.CONNACK and ack.body[1] == 0x8C, ack
    await c.expect_close()


async def test_plain_connect_still_uses_authenticate(challenge_worker) -> None:
    c = await open5(challenge_worker, f"c{uid()}", username=f"ea{uid()}/plain")
    assert c.connack.prop(AUTH_METHOD) is None
    await c.close()


async def test_make_provider_custom_class() -> None:
    p = make_provider(Settings(auth_provider="tests.authz.provider:ChallengeProvider", max_inflight=7))
    assert isinstance(p, ChallengeProvider) and p.settings.max_inflight == 7
    for bad in ("tests.authz.nope:X", "tests.authz.provider:Nope", "tests.authz.provider:METHOD",
                "tests.authz.provider:response_for", ":X", "tests.authz.provider:"):
        with pytest.raises((ValueError, TypeError)):
            make_provider(Settings(auth_provider=bad))


DOC = (Path(__file__).resolve().parents[2] / "docs" / "auth.md").read_text()


async def test_docs_example_provider_runs() -> None:
    """The challenge/response example in docs/auth.md does what the text says, in-process."""
    from tidemq.auth import ConnectInfo
    from tidemq.mqtt.packets import Auth, Connect

    block = next(b for b in re.findall(r"```python\n(.*?)```", DOC, flags=re.S) if "ChallengeProvider" in b)
    ns: dict[str, object] = {}
    exec(compile(block, "docs/auth.md", "exec"), ns)  # our own documentation
    p = ns["ChallengeProvider"](Settings())  # type: ignore[operator]
    info = ConnectInfo("c", None, None, 5, auth_method=ns["METHOD"], auth_data=b"acme/eve")  # type: ignore[arg-type]
    step = await p.auth(info, Connect(client_id="c"))
    assert step.kind == "continue" and step.data
    info.auth_data = hashlib.sha256(step.data + ns["SECRET"]).hexdigest().encode()  # type: ignore[operator]
    done = await p.auth(info, Auth(0x18))
    assert done.kind == "success" and (done.result.tenant_id, done.result.user_id) == ("acme", "eve")
    info2 = ConnectInfo("c", None, None, 5, auth_method=ns["METHOD"], auth_data=b"acme/eve")  # type: ignore[arg-type]
    await p.auth(info2, Connect(client_id="c"))
    info2.auth_data = b"wrong"
    assert (await p.auth(info2, Auth(0x18))).reason_code == 0x87
