"""Publish properties reach subscribers unchanged (MQTT 5 3.3.2.3, 4.10 request/response), with paho-mqtt.

Response topic, binary correlation data, user properties (repeated keys, order
kept [MQTT-3.3.2-18]), payload format indicator and content type travel with
the message [MQTT-3.3.2-4, -20] on every path: a clean-session subscriber
(direct delivery), a persistent one (through the inbox, online and offline)
and a retained replay.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from paho.mqtt.client import MQTTMessage

from tests.interop.clients import sentinel_barrier
from tests.mqtt5.conftest import Paho5, props

CORRELATION = b"\x00\x01\xfe\xff binary \x80"
USER = [("k", "1"), ("a", "x"), ("k", "2"), ("k", "1"), ("ünï", "çødé")]


def _rich() -> object:
    return props(ResponseTopic="reply/here", CorrelationData=CORRELATION, UserProperty=list(USER),
                 PayloadFormatIndicator=1, ContentType="text/plain; charset=utf-8")


def _check(m: MQTTMessage) -> None:
    p = m.properties
    assert p.ResponseTopic == "reply/here"
    assert p.CorrelationData == CORRELATION
    assert list(p.UserProperty) == USER
    assert p.PayloadFormatIndicator == 1
    assert p.ContentType == "text/plain; charset=utf-8"


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_properties_to_clean_session(paho5: Callable[..., Paho5], uid: str, qos: int) -> None:
    topic = f"pp/{uid}"
    sub = paho5()
    sub.connect()
    sub.sub(topic, qos)
    pub = paho5()
    pub.connect()
    pub.pub(topic, "héllo".encode(), qos=qos, properties=_rich())
    m = sub.get()
    assert m.payload == "héllo".encode() and m.qos == qos
    _check(m)


@pytest.mark.parametrize("offline", [False, True], ids=["online", "offline"])
def test_properties_through_inbox(paho5: Callable[..., Paho5], uid: str, offline: bool) -> None:
    topic, cid = f"pp/{uid}", f"s{uid}"
    sub = paho5(cid, clean=False, session_expiry=300)
    sub.connect()
    sub.sub(topic, 1)
    if offline:
        sub.disconnect()
    pub = paho5()
    pub.connect()
    pub.pub(topic, b"p", qos=1, properties=_rich())
    if offline:
        sub = paho5(cid, clean=False, session_expiry=300)
        assert sub.connect().session_present
    _check(sub.get())


def test_properties_of_retained_message(paho5: Callable[..., Paho5], uid: str) -> None:
    topic = f"pp/{uid}"
    pub = paho5()
    pub.connect()
    pub.pub(topic, b"r", qos=1, retain=True, properties=_rich())
    sub = paho5()
    sub.connect()
    sub.sub(topic, 1)
    m = sub.get()
    assert m.retain and m.payload == b"r"
    _check(m)
    pub.pub(topic, b"", qos=1, retain=True)


def test_request_response(paho5: Callable[..., Paho5], uid: str) -> None:
    req_topic, resp_topic = f"svc/{uid}/req", f"svc/{uid}/resp"
    responder = paho5()
    responder.connect()
    responder.sub(req_topic, 1)
    requester = paho5()
    requester.connect()
    requester.sub(resp_topic, 1)
    for n in range(3):
        corr = bytes([n, 0, 255]) + b"id"
        requester.pub(req_topic, f"q{n}".encode(), qos=1,
                      properties=props(ResponseTopic=resp_topic, CorrelationData=corr))
        req = responder.get()
        assert req.properties.ResponseTopic == resp_topic and req.properties.CorrelationData == corr
        responder.pub(req.properties.ResponseTopic, b"a" + req.payload, qos=1,
                      properties=props(CorrelationData=req.properties.CorrelationData))
        resp = requester.get()
        assert (resp.topic, resp.payload, resp.properties.CorrelationData) == (resp_topic, f"aq{n}".encode(), corr)
    assert sentinel_barrier(requester, responder, req_topic) == []
