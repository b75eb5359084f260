"""Signals: every kind survives encode/decode; garbage is a SignalError, never a crash."""

from __future__ import annotations

import pytest

from tidemq import signals as s


@pytest.mark.parametrize("sig", [
    s.Deliver([s.Delivery("t1", [s.DeliverTarget("c1", 1, (3, 4), True), s.DeliverTarget("c2", 0)], b"\x00blob")]),
    s.Deliver([]),
    s.Notify([("t1", ["a", "b"]), ("t2", ["c"])]),
    s.Takeover("t1", "c1", 42),
    s.Close("t1", targets=[("c1", 7), ("c2", 0)]),
    s.Close("t1", removed=True, targets=[("c1", 7)]),
    s.Close("t1", user="u1"),
    s.Close("t1", user="u1", client_id="c9"),
    s.Close("t1", targets=[("c1", 7)], redirect=0x9D, server_reference="mqtt-b.example:1883"),
    s.Close("t1", targets=[("c1", 7)], redirect=0x9C),
    s.Subscribed("t1", "c1", 7, "a/+", 1),
    s.Subscribed("t1", "c1", 7, "a/#", 2, existed=True, retain_handling=1, retain_as_published=True,
                 subscription_id=12),
])
def test_round_trip(sig: s.Signal) -> None:
    assert s.decode(s.encode(sig)) == sig


def test_deliver_payload_stays_binary() -> None:
    blob = bytes(range(256))
    data = s.encode_deliveries([s.Delivery("t", [s.DeliverTarget("c", 2)], blob)])
    assert blob in data  # raw bytes on the wire, never JSON-encoded
    decoded = s.decode(data)
    assert isinstance(decoded, s.Deliver) and decoded.items[0].blob == blob


@pytest.mark.parametrize("data", [
    b"", b"Z\x00\x00\x00\x02{}", b"T\x00\x00\x00\x02{}", b"N\x00\x00\x00\x05[1,2", b"K\xff\xff",
    b'K\x00\x00\x00\x11{"t":"a","r":152}'])  # a kill "redirecting" with 0x98: not a redirect code
def test_garbage_is_a_signal_error(data: bytes) -> None:
    with pytest.raises(s.SignalError):
        s.decode(data)
