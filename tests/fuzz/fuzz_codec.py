"""Fuzz harness for the MQTT codec: arbitrary bytes never escape as anything but MQTTError.

``fuzz_one(data)`` is the target: the first byte picks the decoder (server side
before CONNECT, server side after a CONNECT of level 3/4/5, or client side at
level 3/4/5) and where the input is split into two feeds; the rest is fed to
the decoder, and every packet it returns must re-encode and decode to itself.
Run it standalone with atheris if installed (``python tests/fuzz/fuzz_codec.py
[atheris args]``), otherwise with hypothesis (``python tests/fuzz/fuzz_codec.py
--examples 100000``). ``tests/mqtt/test_codec_fuzz.py`` runs it in the suite.
"""

from __future__ import annotations

import argparse
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidemq.mqtt.codec import Decoder, encode
from tidemq.mqtt.errors import MQTTError
from tidemq.mqtt.packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Puback,
    Publish,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
)

MODES = 7  # 0: server, nothing seen; 1-3: server after CONNECT v3/v4/v5; 4-6: client v3/v4/v5


def _decoder(mode: int) -> Decoder:
    if mode == 0:
        return Decoder()
    if mode <= 3:
        level = mode + 2
        d = Decoder()
        d.feed(encode(Connect("fuzz", level), level))
        assert d.next_packet() is not None
        return d
    return Decoder(protocol_level=mode - 1, server_side=False)


def _check_roundtrip(packet: Packet, level: int) -> None:
    d = Decoder(protocol_level=level, server_side=False)
    d.feed(encode(packet, level))
    again = d.next_packet()
    assert again == packet, (packet, again)
    assert d.buffered == 0


def fuzz_one(data: bytes) -> None:
    """Decode ``data``; only MQTTError may escape, and decoded packets must round-trip."""
    if len(data) < 2:
        return
    mode = data[0] % MODES
    body = data[2:]
    split = data[1] % (len(body) + 1)
    d = _decoder(mode)
    try:
        for chunk in (body[:split], body[split:]):
            d.feed(chunk)
            while True:
                level = d.protocol_level
                packet = d.next_packet()
                if packet is None:
                    break
                _check_roundtrip(packet, packet.protocol_level if isinstance(packet, Connect) else level)
    except MQTTError:
        pass


def seeds() -> list[bytes]:
    """Valid inputs to mutate: (mode byte, split byte, encoded stream)."""
    out = []
    for level in (3, 4, 5):
        v5 = level == 5
        props = {"user_property": [("k", "v")], "message_expiry_interval": 9} if v5 else {}
        stream = [
            Publish("a/b", b"hello", 1, packet_id=1, properties=props),
            Publish("a/b", b"", 2, True, True, 2),
            Puback(1, 0x10 if v5 else 0),
            Pubrel(2),
            Subscribe(3, [Subscription("a/+", 1), Subscription("#", 2)]),
            Suback(3, [0, 1]),
            Unsubscribe(4, ["a/+"]),
            Unsuback(4, [0x11] if v5 else []),
            Connack(level >= 4, 0, {"maximum_qos": 1} if v5 else {}),
            Pingreq(),
            Disconnect(0x04 if v5 else 0),
        ]
        if v5:
            stream.append(Auth(0x18, {"authentication_method": "m"}))
        wire = b"".join(encode(p, level) for p in stream)
        out.append(bytes((level + 1, 7)) + wire)  # server mode after CONNECT
        out.append(bytes((level + 2, 3)) + wire)  # client mode
        connect = Connect("c", level, False, 10, "u", b"p", Will("w", b"x", 1, True,
                          {"will_delay_interval": 5} if v5 else {}),
                          {"session_expiry_interval": 60} if v5 else {})
        out.append(bytes((0, 5)) + encode(connect, level) + wire)
    return out


def main() -> None:
    try:
        import atheris  # type: ignore[import-not-found]
    except ImportError:
        atheris = None
    if atheris is not None:
        atheris.Setup(sys.argv, fuzz_one)
        atheris.Fuzz()
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=20_000)
    args = parser.parse_args()

    @settings(max_examples=args.examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=512) | st.sampled_from(seeds()).flatmap(mutations))
    def run(data: bytes) -> None:
        fuzz_one(data)

    run()
    print(f"ok: {args.examples} examples")


def mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    """Up to four overwrites, insertions, truncations or bit flips of ``seed``."""
    edits = st.lists(st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255), st.integers(0, 3)),
                     max_size=4)

    def apply(changes: list[tuple[int, int, int]]) -> bytes:
        b = bytearray(seed)
        for pos, value, op in changes:
            pos %= len(b) or 1
            if op == 0:
                b[pos] = value  # overwrite
            elif op == 1:
                b.insert(pos, value)  # insert
            elif op == 2:
                del b[pos:]  # truncate
            else:
                b[pos] ^= 1 << (value % 8)  # bit flip
            if not b:
                b.append(value)
        return bytes(b)

    return edits.map(apply)


if __name__ == "__main__":
    main()
