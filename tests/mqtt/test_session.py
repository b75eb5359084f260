"""The sans-IO server connection state machine, driven with encoded client packets."""

from __future__ import annotations

import pytest

from tidemq.mqtt import codec
from tidemq.mqtt import session as sm
from tidemq.mqtt.packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
)
from tidemq.mqtt.reason_codes import RC


def packets_out(conn: sm.ServerConnection, level: int) -> list:
    dec = codec.Decoder(protocol_level=level, server_side=False)
    dec.feed(conn.data_to_send())
    out = []
    while (p := dec.next_packet()) is not None:
        out.append(p)
    return out


def connected(level: int = 5, **connect_kw) -> sm.ServerConnection:
    conn = sm.ServerConnection(limits=sm.Limits(receive_maximum=4, topic_alias_maximum=5))
    evs = conn.receive_data(codec.encode(Connect("c1", protocol_level=level, **connect_kw), level), 0.0)
    assert isinstance(evs[0], sm.ConnectReceived)
    conn.accept(session_present=False)
    (connack,) = packets_out(conn, level)
    assert isinstance(connack, Connack) and connack.reason_code == 0
    return conn


def feed(conn: sm.ServerConnection, *pkts, now: float = 1.0) -> list:
    data = b"".join(codec.encode(p, conn.protocol_level) for p in pkts)
    return conn.receive_data(data, now)


def test_first_packet_must_be_connect():
    conn = sm.ServerConnection()
    evs = conn.receive_data(bytes([0xC0, 0x00]), 0.0)
    assert isinstance(evs[-1], sm.ConnectionFailed)
    assert evs[-1].error.rule == "MQTT-3.1.0-1"
    assert conn.state is sm.State.CLOSED


def test_second_connect_is_protocol_error_v5_gets_disconnect():
    conn = connected(5)
    evs = feed(conn, Connect("c1", protocol_level=5))
    assert isinstance(evs[-1], sm.ConnectionFailed)
    (disc,) = packets_out(conn, 5)
    assert isinstance(disc, Disconnect) and disc.reason_code == RC.PROTOCOL_ERROR


def test_ping_answered_without_event():
    conn = connected(4)
    assert feed(conn, Pingreq()) == []
    assert isinstance(packets_out(conn, 4)[0], Pingresp)


def test_qos1_inbound_waits_for_worker_ack():
    conn = connected(4)
    (ev,) = feed(conn, Publish("a/b", b"x", qos=1, packet_id=7))
    assert isinstance(ev, sm.PublishReceived)
    assert packets_out(conn, 4) == []  # no PUBACK before routing
    conn.ack_publish(7, 1)
    (ack,) = packets_out(conn, 4)
    assert isinstance(ack, Puback) and ack.packet_id == 7


def test_qos2_inbound_duplicate_not_routed_twice():
    conn = connected(5)
    (ev,) = feed(conn, Publish("a", b"1", qos=2, packet_id=9))
    conn.ack_publish(9, 2)
    assert isinstance(packets_out(conn, 5)[0], Pubrec)
    assert feed(conn, Publish("a", b"1", qos=2, packet_id=9, dup=True)) == []
    assert isinstance(packets_out(conn, 5)[0], Pubrec)
    (rel,) = feed(conn, Pubrel(9))
    assert isinstance(rel, sm.PubrelReceived)
    assert isinstance(packets_out(conn, 5)[0], Pubcomp)
    # after release the id is free: a new message with it is routed again
    (ev,) = feed(conn, Publish("a", b"2", qos=2, packet_id=9))
    assert isinstance(ev, sm.PublishReceived)


def test_receive_maximum_exceeded_v5():
    conn = connected(5)
    evs = feed(conn, *[Publish("a", b"", qos=1, packet_id=i) for i in range(1, 6)])
    assert isinstance(evs[-1], sm.ConnectionFailed)
    assert evs[-1].error.reason_code == RC.RECEIVE_MAXIMUM_EXCEEDED


def test_topic_alias_from_client():
    conn = connected(5)
    (e1,) = feed(conn, Publish("long/topic", b"1", properties={"topic_alias": 2}))
    (e2,) = feed(conn, Publish("", b"2", properties={"topic_alias": 2}))
    assert e1.packet.topic == e2.packet.topic == "long/topic"
    assert "topic_alias" not in e2.packet.properties
    evs = feed(conn, Publish("", b"3", properties={"topic_alias": 3}))
    assert isinstance(evs[-1], sm.ConnectionFailed)
    assert evs[-1].error.reason_code == RC.TOPIC_ALIAS_INVALID


def test_topic_alias_above_maximum():
    conn = connected(5)
    evs = feed(conn, Publish("t", b"", properties={"topic_alias": 6}))
    assert evs[-1].error.reason_code == RC.TOPIC_ALIAS_INVALID


def test_outbound_window_and_packet_ids():
    conn = connected(5, properties={"receive_maximum": 2})
    assert conn.send_publish("t", b"1", qos=1) == 1
    assert conn.send_publish("t", b"2", qos=2) == 2
    assert conn.send_publish("t", b"3", qos=1) is None  # window full
    assert conn.send_publish("t", b"0", qos=0) == 0  # QoS 0 is not windowed
    out = packets_out(conn, 5)
    assert [p.packet_id for p in out] == [1, 2, None]
    (ack,) = feed(conn, Puback(1))
    assert isinstance(ack, sm.PubackReceived)
    (rec,) = feed(conn, Pubrec(2))
    assert isinstance(rec, sm.PubrecReceived)
    assert isinstance(packets_out(conn, 5)[0], Pubrel)
    (comp,) = feed(conn, Pubcomp(2))
    assert isinstance(comp, sm.PubcompReceived)
    assert conn.window_free == 2


def test_too_large_for_client_is_dropped():
    conn = connected(5, properties={"maximum_packet_size": 64})
    assert conn.send_publish("t", b"x" * 100, qos=1) is None
    assert conn.last_drop_reason == "too_large"
    assert packets_out(conn, 5) == []
    assert conn.window_free == 65535


def test_resume_with_dup_and_explicit_packet_id():
    conn = connected(4)
    assert conn.send_publish("t", b"1", qos=1, packet_id=500, dup=True, tag=("inbox", 500)) == 500
    (p,) = packets_out(conn, 4)
    assert p.dup and p.packet_id == 500
    (ack,) = feed(conn, Puback(500))
    assert ack.tag == ("inbox", 500)


def test_keepalive_one_and_a_half():
    conn = connected(4, keep_alive=10)
    assert not conn.keepalive_expired(14.9)
    assert conn.keepalive_expired(15.1)


def test_server_keep_alive_announced():
    conn = sm.ServerConnection(limits=sm.Limits(server_keep_alive=30))
    conn.receive_data(codec.encode(Connect("c", protocol_level=5, keep_alive=600), 5), 0.0)
    conn.accept(session_present=False)
    (ack,) = packets_out(conn, 5)
    assert ack.properties["server_keep_alive"] == 30
    assert conn.keep_alive == 30


def test_refuse_v3_maps_code():
    conn = sm.ServerConnection()
    conn.receive_data(codec.encode(Connect("c", protocol_level=4), 4), 0.0)
    conn.refuse(RC.NOT_AUTHORIZED)
    (ack,) = packets_out(conn, 4)
    assert ack.reason_code == 0x05
    assert conn.state is sm.State.CLOSED


def test_disconnect_with_will_flag_and_expiry():
    conn = connected(5, properties={"session_expiry_interval": 5})
    (ev,) = feed(conn, Disconnect(RC.DISCONNECT_WITH_WILL, {"session_expiry_interval": 9}))
    assert ev.publish_will and ev.session_expiry == 9


def test_subscribe_event_and_v3_suback_codes():
    conn = connected(4)
    (ev,) = feed(conn, Subscribe(3, [Subscription("a/#", 1)]))
    assert isinstance(ev, sm.SubscribeReceived)
    conn.ack_subscribe(3, [1, RC.NOT_AUTHORIZED])
    (sa,) = packets_out(conn, 4)
    assert isinstance(sa, Suback) and sa.reason_codes == [1, 0x80]


def test_auth_packet_in_v5_is_an_event():
    conn = connected(5)
    (ev,) = feed(conn, Auth(RC.REAUTHENTICATE, {"authentication_method": "x"}))
    assert isinstance(ev, sm.AuthReceived)


def test_unsupported_protocol_level_v3_connack():
    conn = sm.ServerConnection()
    # CONNECT with protocol level 7
    body = b"\x00\x04MQTT\x07\x02\x00\x3c\x00\x01c"
    evs = conn.receive_data(bytes([0x10, len(body)]) + body, 0.0)
    assert isinstance(evs[-1], sm.ConnectionFailed)
    assert conn.data_to_send() == b"\x20\x02\x00\x01"


@pytest.mark.parametrize("level", [3, 4, 5])
def test_connect_roundtrip_levels(level):
    conn = connected(level)
    assert conn.protocol_level == level


def test_server_assigned_topic_alias():
    conn = connected(5, properties={"topic_alias_maximum": 1})
    conn.send_publish("a/long/topic", b"1", qos=0)
    conn.send_publish("a/long/topic", b"2", qos=0)
    conn.send_publish("other", b"3", qos=0)  # no alias left: sent in full
    p1, p2, p3 = packets_out(conn, 5)
    assert (p1.topic, p1.properties["topic_alias"]) == ("a/long/topic", 1)
    assert (p2.topic, p2.properties["topic_alias"]) == ("", 1)
    assert p3.topic == "other" and "topic_alias" not in p3.properties


def test_no_alias_when_client_allows_none():
    conn = connected(5)
    conn.send_publish("t", b"1", qos=0)
    conn.send_publish("t", b"2", qos=0)
    assert all("topic_alias" not in p.properties and p.topic == "t" for p in packets_out(conn, 5))


def test_deferred_pubcomp_waits_for_complete():
    conn = connected(5)
    conn.defer_pubcomp = True
    feed(conn, Publish("a", b"1", qos=2, packet_id=4))
    conn.ack_publish(4, 2)
    assert isinstance(packets_out(conn, 5)[0], Pubrec)
    (rel,) = feed(conn, Pubrel(4))
    assert isinstance(rel, sm.PubrelReceived)
    assert packets_out(conn, 5) == []  # not before the worker made the release durable
    conn.complete(4)
    (comp,) = packets_out(conn, 5)
    assert isinstance(comp, Pubcomp) and comp.packet_id == 4
