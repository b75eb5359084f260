"""Topic aliases in both directions (MQTT 5 3.3.2.3.4, 4.13), on raw bytes.

Client -> server: an alias is set by a PUBLISH carrying topic + alias and used
by a later PUBLISH with an empty topic; alias 0 or above the Topic Alias
Maximum of our CONNACK is answered with DISCONNECT 0x94 [MQTT-3.3.2-9].
Server -> client: only when the client's CONNECT allows aliases; the first
PUBLISH of a topic carries topic + alias, later ones an empty topic + the same
alias [MQTT-3.3.2-10..12]; mappings never outlive a network connection
[MQTT-3.3.2-7].
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conformance import wire
from tests.mqtt5.v5wire import SESSION_EXPIRY, TOPIC_ALIAS, TOPIC_ALIAS_MAX, sub_options

TOPIC_ALIAS_INVALID = 0x94


async def test_client_alias_set_then_used(raw5: Any, uid: str) -> None:
    topic = f"ta/{uid}"
    sub = await raw5(f"s{uid}")
    await sub.subscribe((topic, sub_options(1)))
    pub = await raw5(f"p{uid}")
    tam = pub.connack.prop(TOPIC_ALIAS_MAX, 0)
    assert tam >= 1, "the server announces a Topic Alias Maximum"
    assert await pub.publish(topic, b"first", qos=1, props=wire.props((TOPIC_ALIAS, 1))) == 0
    assert await pub.publish("", b"second", qos=1, props=wire.props((TOPIC_ALIAS, 1))) == 0
    await pub.publish("", b"third", qos=0, props=wire.props((TOPIC_ALIAS, 1)))
    got = [await sub.get() for _ in range(3)]
    assert [(m.topic, m.payload) for m in got] == [(topic, b"first"), (topic, b"second"), (topic, b"third")]
    assert all(TOPIC_ALIAS not in m.props for m in got)  # the subscriber did not allow aliases


async def test_client_alias_remapped(raw5: Any, uid: str) -> None:
    a, b = f"ta/{uid}/a", f"ta/{uid}/b"
    sub = await raw5(f"s{uid}")
    await sub.subscribe((f"ta/{uid}/+", sub_options(1)))
    pub = await raw5(f"p{uid}")
    await pub.publish(a, b"1", qos=1, props=wire.props((TOPIC_ALIAS, 1)))
    await pub.publish(b, b"2", qos=1, props=wire.props((TOPIC_ALIAS, 1)))  # alias 1 now means b
    await pub.publish("", b"3", qos=1, props=wire.props((TOPIC_ALIAS, 1)))
    assert [(m.topic, m.payload) for m in [await sub.get() for _ in range(3)]] == [(a, b"1"), (b, b"2"), (b, b"3")]


@pytest.mark.parametrize("which", ["zero", "above_maximum"])
async def test_client_alias_out_of_range(raw5: Any, uid: str, which: str) -> None:
    pub = await raw5(f"p{uid}")
    tam = int(pub.connack.prop(TOPIC_ALIAS_MAX, 0))
    alias = 0 if which == "zero" else tam + 1
    await pub.send(wire.publish(f"ta/{uid}", b"x", qos=1, pid=1, version=5,
                                properties=wire.props((TOPIC_ALIAS, alias))))
    assert await pub.disconnect_reason() == TOPIC_ALIAS_INVALID


async def test_client_alias_unknown(raw5: Any, uid: str) -> None:
    pub = await raw5(f"p{uid}")
    await pub.send(wire.publish("", b"x", qos=0, version=5, properties=wire.props((TOPIC_ALIAS, 1))))
    assert await pub.disconnect_reason() in (0x82, TOPIC_ALIAS_INVALID)


async def test_client_alias_not_carried_to_next_connection(raw5: Any, uid: str) -> None:
    pub = await raw5(f"p{uid}")
    await pub.publish(f"ta/{uid}", b"x", qos=1, props=wire.props((TOPIC_ALIAS, 1)))
    await pub.bye()
    again = await raw5(f"p{uid}")  # [MQTT-3.3.2-7]
    await again.send(wire.publish("", b"y", qos=0, version=5, properties=wire.props((TOPIC_ALIAS, 1))))
    assert await again.disconnect_reason() in (0x82, TOPIC_ALIAS_INVALID)


@pytest.mark.parametrize("persistent", [False, True], ids=["transient", "persistent"])
async def test_server_assigns_aliases_when_allowed(raw5: Any, uid: str, persistent: bool) -> None:
    t1, t2, t3 = f"sa/{uid}/1", f"sa/{uid}/2", f"sa/{uid}/3"
    cprops = [(TOPIC_ALIAS_MAX, 2)] + ([(SESSION_EXPIRY, 60)] if persistent else [])
    sub = await raw5(f"s{uid}", props=wire.props(*cprops))
    await sub.subscribe((f"sa/{uid}/+", sub_options(1)))
    pub = await raw5(f"p{uid}")
    for t, body in ((t1, b"a"), (t1, b"b"), (t2, b"c"), (t3, b"d"), (t2, b"e"), (t3, b"f")):
        await pub.publish(t, body, qos=1)
    got = [await sub.get() for _ in range(6)]
    assert [m.payload for m in got] == [b"a", b"b", b"c", b"d", b"e", b"f"]
    first, second = got[0], got[1]
    alias1 = first.prop(TOPIC_ALIAS)
    assert first.topic == t1 and alias1 is not None and 1 <= int(alias1) <= 2  # [MQTT-3.3.2-11]
    assert second.topic == "" and second.prop(TOPIC_ALIAS) == alias1  # [MQTT-3.3.2-12]
    assert got[2].topic == t2 and got[2].prop(TOPIC_ALIAS) not in (None, alias1)
    assert got[4].topic == "" and got[4].prop(TOPIC_ALIAS) == got[2].prop(TOPIC_ALIAS)
    # the client allows 2 aliases: t3 must never use an alias above 2; without one it carries its name
    for m in (got[3], got[5]):
        alias = m.prop(TOPIC_ALIAS)
        assert alias is None or 1 <= int(alias) <= 2
        assert m.topic == t3 or (m.topic == "" and alias is not None)


async def test_no_server_aliases_without_client_maximum(raw5: Any, uid: str) -> None:
    topic = f"sa/{uid}"
    sub = await raw5(f"s{uid}")  # no Topic Alias Maximum: 0 [MQTT-3.3.2-10]
    await sub.subscribe((topic, sub_options(0)))
    pub = await raw5(f"p{uid}")
    for body in (b"1", b"2", b"3"):
        await pub.publish(topic, body, qos=1)
    for body in (b"1", b"2", b"3"):
        m = await sub.get()
        assert (m.topic, m.payload, TOPIC_ALIAS in m.props) == (topic, body, False)


async def test_server_aliases_restart_on_reconnect(raw5: Any, uid: str) -> None:
    topic = f"sa/{uid}"
    cid = f"s{uid}"
    pub = await raw5(f"p{uid}")
    for _ in range(2):
        sub = await raw5(cid, props=wire.props((TOPIC_ALIAS_MAX, 4), (SESSION_EXPIRY, 60)), clean=False)
        await sub.subscribe((topic, sub_options(1)))
        await pub.publish(topic, b"x", qos=1)
        m = await sub.get()
        assert m.topic == topic and m.prop(TOPIC_ALIAS) is not None  # a new connection: name again
        await sub.bye()
