"""State-machine events added by the worker redesign: held packets, the pre-auth cap, timeouts."""

from __future__ import annotations

from tidemq.mqtt import codec
from tidemq.mqtt import session as sm
from tidemq.mqtt.packets import Connect, Publish, Subscribe, Subscription


def _connect(level: int = 4) -> bytes:
    return codec.encode(Connect(protocol_level=level, client_id="c1", clean_start=True, keep_alive=30), level)


def test_publish_behind_connect_is_held_until_accept() -> None:
    m = sm.ServerConnection()
    data = _connect() + codec.encode(Publish("a/b", b"x", 1, False, False, 7, {}), 4)
    events = m.receive_data(data, 0.0)
    assert [type(e) for e in events] == [sm.ConnectReceived]  # the PUBLISH is not processed yet
    held = m.accept(session_present=False)
    assert [type(e) for e in held] == [sm.PublishReceived]
    assert isinstance(held[0], sm.PublishReceived) and held[0].packet.packet_id == 7


def test_refused_connect_discards_held_packets() -> None:
    m = sm.ServerConnection()
    sub = Subscribe(1, [Subscription("a/#", 1)], {})
    m.receive_data(_connect() + codec.encode(sub, 4), 0.0)
    m.refuse(0x87)
    assert m.closed
    assert m.receive_data(codec.encode(sub, 4), 0.0) == []


def test_oversized_packet_before_connack_fails_at_the_fixed_header() -> None:
    m = sm.ServerConnection(limits=sm.Limits(preauth_max_packet_size=1024))
    # only the fixed header of a 200 KiB CONNECT: refused before any body is buffered
    header = bytes([0x10]) + bytes([0x80 | (200_000 & 0x7F), 0x80 | ((200_000 >> 7) & 0x7F), 200_000 >> 14])
    events = m.receive_data(header, 0.0)
    assert len(events) == 1 and isinstance(events[0], sm.ConnectionFailed)
    assert m.closed


def test_cap_lifts_to_max_packet_size_after_accept() -> None:
    m = sm.ServerConnection(limits=sm.Limits(preauth_max_packet_size=1024, max_packet_size=1 << 20))
    m.receive_data(_connect(), 0.0)
    m.accept(session_present=False)
    events = m.receive_data(codec.encode(Publish("a", b"x" * 4096, 0, False, False, None, {}), 4), 0.0)
    assert [type(e) for e in events] == [sm.PublishReceived]


def test_too_much_held_data_closes() -> None:
    m = sm.ServerConnection(limits=sm.Limits(preauth_max_packet_size=2048))
    pub = codec.encode(Publish("a", b"x" * 1000, 0, False, False, None, {}), 4)
    events = m.receive_data(_connect() + pub * 3, 0.0)
    assert isinstance(events[-1], sm.ConnectionFailed)


def test_connect_timeout_and_connection_lost_are_events_not_state_writes() -> None:
    m = sm.ServerConnection()
    assert not m.connect_timed_out(5.0, 10.0, opened=0.0)
    assert m.connect_timed_out(10.5, 10.0, opened=0.0) and m.closed
    m2 = sm.ServerConnection()
    m2.receive_data(_connect(), 0.0)
    assert not m2.connect_timed_out(100.0, 10.0, opened=0.0)  # CONNECT arrived: no timeout
    m2.connection_lost()
    assert m2.closed


def test_admitted_table_rejects_packets_out_of_state() -> None:
    m = sm.ServerConnection()
    events = m.receive_data(codec.encode(Publish("a", b"", 0, False, False, None, {}), 4), 0.0)
    assert isinstance(events[0], sm.ConnectionFailed)
