"""Hypothesis strategies that generate valid MQTT packets for a protocol level.

Used by the codec round-trip, byte-split and fuzz tests. Generated packets
are exactly what the decoder would return (decoded field values, properties
drawn from the property table with legal values), so ``decode(encode(p)) ==
p`` must hold.
"""

from __future__ import annotations

from hypothesis import strategies as st

from tidemq.mqtt.codec_decode import REASON_CODES
from tidemq.mqtt.packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    PacketType,
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
    Unsuback,
    Unsubscribe,
    Will,
)
from tidemq.mqtt.properties import PROPERTIES, WILL, Kind, Wire

P = PacketType

# UTF-8 text the spec allows: no U+0000, no surrogates (Python's "Cs" category)
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
topic = text.filter(bool)
blob = st.binary(max_size=40)
pid = st.integers(1, 0xFFFF)
qos = st.integers(0, 2)

_WIRE = {
    Wire.BYTE: st.integers(0, 0xFF),
    Wire.U16: st.integers(0, 0xFFFF),
    Wire.U32: st.integers(0, 0xFFFF_FFFF),
    Wire.VARINT: st.integers(0, 268_435_455),
    Wire.UTF8: text,
    Wire.BINARY: blob,
    Wire.PAIR: st.tuples(text, text),
}


def properties(kind: Kind) -> st.SearchStrategy[dict]:
    """Any legal property dict for ``kind`` (values within the table's ranges)."""
    optional = {}
    for spec in PROPERTIES.values():
        if kind not in spec.allowed:
            continue
        value = st.integers(*spec.valid) if spec.valid else _WIRE[spec.wire]
        if spec.multi:
            max_size = 3 if kind in spec.repeatable_in else 1
            value = st.lists(value, min_size=1, max_size=max_size)
        optional[spec.name] = value
    strat = st.fixed_dictionaries({}, optional=optional)
    if kind == P.CONNECT:
        strat = strat.filter(lambda d: "authentication_data" not in d or "authentication_method" in d)
    return strat


def _props(kind: Kind, level: int) -> st.SearchStrategy[dict]:
    return properties(kind) if level == 5 else st.just({})


def _code(ptype: PacketType, level: int) -> st.SearchStrategy[int]:
    return st.sampled_from(sorted(REASON_CODES[ptype])) if level == 5 else st.just(0)


@st.composite
def connects(draw: st.DrawFn, level: int) -> Connect:
    will = None
    if draw(st.booleans()):
        will = Will(draw(topic), draw(blob), draw(qos), draw(st.booleans()), draw(_props(WILL, level)))
    username = draw(st.none() | text)
    password = draw(st.none() | blob)
    if level < 5 and username is None:
        password = None
    return Connect(
        client_id=draw(text),
        protocol_level=level,
        clean_start=draw(st.booleans()),
        keep_alive=draw(st.integers(0, 0xFFFF)),
        username=username,
        password=password,
        will=will,
        properties=draw(_props(P.CONNECT, level)),
        protocol_name="MQIsdp" if level == 3 else "MQTT",
    )


@st.composite
def publishes(draw: st.DrawFn, level: int) -> Publish:
    q = draw(qos)
    props = draw(_props(P.PUBLISH, level))
    name = draw(text if "topic_alias" in props else topic)
    return Publish(name, draw(blob), q, draw(st.booleans()), bool(q) and draw(st.booleans()),
                   draw(pid) if q else None, props)


@st.composite
def subscriptions(draw: st.DrawFn, level: int) -> Subscription:
    if level < 5:
        return Subscription(draw(topic), draw(qos))
    return Subscription(draw(topic), draw(qos), draw(st.booleans()), draw(st.booleans()),
                        draw(st.integers(0, 2)))


def packets(level: int) -> st.SearchStrategy:
    """Any packet except CONNECT, valid for ``level``."""
    v5 = level == 5

    def ack(cls: type, ptype: PacketType) -> st.SearchStrategy:
        return st.builds(cls, pid, _code(ptype, level), _props(ptype, level))

    connack_code = _code(P.CONNACK, level) if v5 else st.integers(0, 5)
    suback_codes = st.sampled_from(sorted(REASON_CODES[P.SUBACK])) if v5 else st.sampled_from([0, 1, 2, 0x80])
    choices = [
        st.builds(Connack, st.booleans() if level >= 4 else st.just(False), connack_code,
                  _props(P.CONNACK, level)),
        publishes(level),
        ack(Puback, P.PUBACK),
        ack(Pubrec, P.PUBREC),
        ack(Pubrel, P.PUBREL),
        ack(Pubcomp, P.PUBCOMP),
        st.builds(Subscribe, pid, st.lists(subscriptions(level), min_size=1, max_size=4),
                  _props(P.SUBSCRIBE, level)),
        st.builds(Suback, pid, st.lists(suback_codes, min_size=1, max_size=4), _props(P.SUBACK, level)),
        st.builds(Unsubscribe, pid, st.lists(topic, min_size=1, max_size=4), _props(P.UNSUBSCRIBE, level)),
        st.builds(Unsuback, pid,
                  st.lists(_code(P.UNSUBACK, level), min_size=1, max_size=4) if v5 else st.just([]),
                  _props(P.UNSUBACK, level)),
        st.just(Pingreq()),
        st.just(Pingresp()),
        st.builds(Disconnect, _code(P.DISCONNECT, level), _props(P.DISCONNECT, level)),
    ]
    if v5:
        choices.append(st.builds(Auth, _code(P.AUTH, level), properties(P.AUTH)))
    return st.one_of(choices)


def client_packets(level: int) -> st.SearchStrategy:
    """Packets a server-side decoder accepts (no subscription identifier in PUBLISH)."""
    return packets(level).filter(
        lambda p: not (isinstance(p, Publish) and "subscription_identifier" in p.properties)
    )
