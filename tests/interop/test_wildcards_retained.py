"""Topic wildcards ('+', '#', '$' topics) and retained messages (set, deliver, replace, clear) with paho."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.interop.clients import Paho, sentinel_barrier, uid


@pytest.mark.parametrize("protocol", ["v311", "v5"])
def test_single_and_multi_level_wildcards(paho: Callable[..., Paho], protocol: str) -> None:
    u = uid()
    base, end = f"w/{u}", f"end/{u}"
    topics = [f"{base}/a/x", f"{base}/b/x", f"{base}/a/y", f"{base}/a/x/deep", base, f"{base}/a"]
    filters = {
        f"{base}/+/x": {f"{base}/a/x", f"{base}/b/x"},
        f"{base}/#": set(topics),  # '#' also matches the parent level [MQTT-4.7.1-2]
        f"{base}/a/#": {f"{base}/a/x", f"{base}/a/y", f"{base}/a/x/deep", f"{base}/a"},
        f"{base}/+": {f"{base}/a"},
        f"{base}/+/+/deep": {f"{base}/a/x/deep"},
    }
    subs = {}
    for flt in filters:
        c = paho(protocol=protocol)
        c.connect()
        c.subscribe([(flt, 1), (end, 1)])
        subs[flt] = c
    pub = paho(protocol=protocol)
    pub.connect()
    for t in topics:
        pub.publish(t, t.encode(), qos=1)
    for flt, expected in filters.items():
        got = sentinel_barrier(pub, subs[flt], end)  # the sentinel follows every PUBACKed data message
        got = [m for m in got if m.topic != end]  # earlier filters' sentinels
        assert sorted(m.topic for m in got) == sorted(expected), flt


def test_dollar_topics_not_matched_by_wildcards(paho: Callable[..., Paho]) -> None:
    u = uid()
    everything = paho(protocol="v5")
    everything.connect()
    everything.subscribe([("#", 0), ("+/+", 0)])  # [MQTT-4.7.2-1]
    dollar = paho(protocol="v5")
    dollar.connect()
    dollar.subscribe(f"$test{u}/#", 0)
    pub = paho(protocol="v5")
    pub.connect()
    pub.publish(f"$test{u}/x", b"dollar", qos=1)
    assert dollar.get().payload == b"dollar"  # the '$' message was routed...
    token = f"end-{u}".encode()
    pub.publish(f"plain{u}/end", token, qos=1)
    seen = []
    while (m := everything.get()).payload != token or m.topic != f"plain{u}/end":
        seen.append(m.topic)
    assert not [t for t in seen if t.startswith(f"$test{u}")]  # ...but not to '#' or '+/+'


@pytest.mark.parametrize("protocol", ["v311", "v5"])
def test_retained_set_replace_clear(paho: Callable[..., Paho], protocol: str) -> None:
    topic = f"ret/{uid()}"
    pub = paho(protocol=protocol)
    pub.connect()
    pub.publish(topic, b"first", qos=1, retain=True)

    s1 = paho(protocol=protocol)
    s1.connect()
    s1.subscribe(topic, 1)
    m = s1.get()
    assert (m.payload, m.retain) == (b"first", True)  # [MQTT-3.3.1-6] sent on subscribe with RETAIN set

    pub.publish(topic, b"second", qos=1, retain=True)  # replaces [MQTT-3.3.1-5]
    live = s1.get()
    assert (live.payload, live.retain) == (b"second", False)  # live delivery clears RETAIN [MQTT-3.3.1-9]

    s2 = paho(protocol=protocol)
    s2.connect()
    s2.subscribe(topic, 1)
    m = s2.get()
    assert (m.payload, m.retain) == (b"second", True)
    s2.disconnect()

    pub.publish(topic, b"", qos=1, retain=True)  # clears [MQTT-3.3.1-10]
    assert s1.get().payload == b""  # the empty retained message is delivered live as usual

    s3 = paho(protocol=protocol)
    s3.connect()
    s3.subscribe(topic, 1)
    first = sentinel_barrier(pub, s3, topic)
    assert first == [], [(m.topic, m.payload) for m in first]  # nothing retained any more


def test_retained_matched_by_wildcard_subscription(paho: Callable[..., Paho]) -> None:
    base = f"rw/{uid()}"
    pub = paho(protocol="v311")
    pub.connect()
    for t in ("a/1", "a/2", "b/1"):
        pub.publish(f"{base}/{t}", t.encode(), qos=1, retain=True)
    sub = paho(protocol="v311")
    sub.connect()
    sub.subscribe(f"{base}/a/+", 1)
    got = sorted((m.topic, m.payload, m.retain) for m in sub.get_many(2))
    assert got == [(f"{base}/a/1", b"a/1", True), (f"{base}/a/2", b"a/2", True)]
    assert sentinel_barrier(pub, sub, f"{base}/a/end") == []
    for t in ("a/1", "a/2", "b/1"):
        pub.publish(f"{base}/{t}", b"", qos=1, retain=True)
