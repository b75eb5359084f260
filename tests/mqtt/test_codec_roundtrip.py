"""Round-trip and byte-split property tests for the codec, every packet type and version."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidemq.mqtt.codec import Decoder, encode, packet_size

from .codec_strategies import client_packets, connects, packets

LEVELS = [3, 4, 5]
FAST = settings(max_examples=100, deadline=None)


def decode_all(data: bytes, decoder: Decoder) -> list:
    decoder.feed(data)
    out = []
    while (p := decoder.next_packet()) is not None:
        out.append(p)
    return out


@pytest.mark.parametrize("level", LEVELS)
@FAST
@given(data=st.data())
def test_roundtrip_every_packet(level: int, data: st.DataObject) -> None:
    packet = data.draw(packets(level))
    wire = encode(packet, level)
    assert packet_size(packet, level) == len(wire)
    decoder = Decoder(protocol_level=level, server_side=False)
    assert decode_all(wire, decoder) == [packet]
    assert decoder.buffered == 0


@pytest.mark.parametrize("level", LEVELS)
@FAST
@given(data=st.data())
def test_roundtrip_connect(level: int, data: st.DataObject) -> None:
    connect = data.draw(connects(level))
    decoder = Decoder()
    assert decode_all(encode(connect, level), decoder) == [connect]
    assert decoder.protocol_level == level


@pytest.mark.parametrize("level", LEVELS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_byte_split_stream(level: int, data: st.DataObject) -> None:
    """A CONNECT then many packets, fed in random chunks, come out unchanged and in order."""
    sent = [data.draw(connects(level)), *data.draw(st.lists(client_packets(level), max_size=12))]
    wire = b"".join(encode(p, level) for p in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    decoder = Decoder()
    received = []
    start = 0
    for cut in [*cuts, len(wire)]:
        received += decode_all(wire[start:cut], decoder)
        start = cut
    assert received == sent
    assert decoder.buffered == 0


@pytest.mark.parametrize("level", LEVELS)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_byte_at_a_time(level: int, data: st.DataObject) -> None:
    sent = data.draw(st.lists(packets(level), min_size=1, max_size=4))
    wire = b"".join(encode(p, level) for p in sent)
    decoder = Decoder(protocol_level=level, server_side=False)
    received = []
    for i in range(len(wire)):
        received += decode_all(wire[i : i + 1], decoder)
    assert received == sent
