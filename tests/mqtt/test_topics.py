"""Topic name/filter validation (each rule by id), shared forms and topic_matches tables."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidemq.mqtt.errors import MQTTError
from tidemq.mqtt.reason_codes import RC
from tidemq.mqtt.topics import (
    TopicError,
    has_wildcard,
    parse_shared,
    topic_matches,
    validate_topic_filter,
    validate_topic_name,
)

# ---------------------------------------------------------------- topic names


@pytest.mark.parametrize(
    "topic",
    [
        "a",
        "/",
        "a/b/c",
        "/finance",
        "a//b",
        "a/",
        "$SYS/x",
        "sport/tennis/player1",
        "ü/日本",
        " ",
        "$share",
        "$sharex/a",
    ],
)
def test_valid_topic_names(topic: str) -> None:
    validate_topic_name(topic)


@pytest.mark.parametrize(
    ("topic", "rule"),
    [
        ("", "MQTT-4.7.3-1"),
        ("a/+", "MQTT-3.3.2-2"),
        ("a/#", "MQTT-3.3.2-2"),
        ("a+b", "MQTT-3.3.2-2"),
        ("#", "MQTT-3.3.2-2"),
        ("a\x00b", "MQTT-1.5.4-2"),
        ("a\ud800", "MQTT-1.5.4-1"),
        ("x" * 65536, "MQTT-1.5.4"),
        ("ü" * 32768, "MQTT-1.5.4"),  # 65536 bytes, 32768 characters
        ("$share/g/a", "TopicNameSharedPrefix"),
        ("$oshare/g/a", "TopicNameSharedPrefix"),
    ],
)
def test_invalid_topic_names(topic: str, rule: str) -> None:
    with pytest.raises(TopicError) as ei:
        validate_topic_name(topic)
    err = ei.value
    assert err.rule == rule
    assert err.reason_code == RC.TOPIC_NAME_INVALID
    assert isinstance(err, ValueError) and isinstance(err, MQTTError)
    assert "\n" not in str(err) and rule in str(err)


def test_wildcard_message_matches_api_wording() -> None:
    with pytest.raises(TopicError) as ei:
        validate_topic_name("a/+")
    assert ei.value.message == "topic must not contain wildcards"


def test_topic_name_limits() -> None:
    validate_topic_name("a/b/c", max_levels=3, max_length=5, max_level_length=1)
    with pytest.raises(TopicError, match="MaxTopicLevels"):
        validate_topic_name("a/b/c/d", max_levels=3)
    with pytest.raises(TopicError, match="MaxTopicLevels"):
        validate_topic_name("a//", max_levels=2)  # empty levels count
    with pytest.raises(TopicError, match="MaxTopicLength"):
        validate_topic_name("abcdef", max_length=5)
    with pytest.raises(TopicError, match="MaxTopicLength"):
        validate_topic_name("üüü", max_length=5)  # 6 bytes, 3 characters
    with pytest.raises(TopicError, match="MaxTopicLevelLength"):
        validate_topic_name("a/bb/c", max_level_length=1)
    with pytest.raises(TopicError, match="MaxTopicLevelLength"):
        validate_topic_name("a/ü", max_level_length=1)
    validate_topic_name("a/ü", max_level_length=2)


# ---------------------------------------------------------------- topic filters


@pytest.mark.parametrize(
    "flt",
    [
        "#",
        "+",
        "/",
        "+/+",
        "/+",
        "+/",
        "a/#",
        "a/+/b",
        "sport/tennis/player1/#",
        "sport/+/player1",
        "+/tennis/#",
        "a//b",
        "$SYS/#",
        "$share/g/a/b",
        "$share/g/#",
        "$share/g/+/x",
        "$oshare/g/a",
        "$share/g//",
        "$share",
        "$sharegroup/a",
    ],
)
def test_valid_filters(flt: str) -> None:
    validate_topic_filter(flt)


@pytest.mark.parametrize(
    ("flt", "rule"),
    [
        ("", "MQTT-4.7.3-1"),
        ("a#", "MQTT-4.7.1-1"),
        ("a/#/b", "MQTT-4.7.1-1"),
        ("#/", "MQTT-4.7.1-1"),
        ("##", "MQTT-4.7.1-1"),
        ("sport/tennis#", "MQTT-4.7.1-1"),
        ("a/b#", "MQTT-4.7.1-1"),
        ("a+", "MQTT-4.7.1-2"),
        ("sport+", "MQTT-4.7.1-2"),
        ("a/+b/c", "MQTT-4.7.1-2"),
        ("++", "MQTT-4.7.1-2"),
        ("a\x00", "MQTT-1.5.4-2"),
        ("a/\udc80", "MQTT-1.5.4-1"),
        ("x" * 65536, "MQTT-1.5.4"),
        ("$share/g", "MQTT-4.8.2-2"),
        ("$share/g/", "MQTT-4.8.2-2"),
        ("$share/", "MQTT-4.8.2-2"),
        ("$share//a", "MQTT-4.8.2-1"),
        ("$share/g+/a", "MQTT-4.8.2-1"),
        ("$share/g#/a", "MQTT-4.8.2-1"),
        ("$share/+/a", "MQTT-4.8.2-1"),
        ("$oshare//a", "MQTT-4.8.2-1"),
        ("$oshare/g", "MQTT-4.8.2-2"),
        ("$share/g/a#", "MQTT-4.7.1-1"),
        ("$share/g/a+", "MQTT-4.7.1-2"),
        ("$share/g/" + "x" * 65530, "MQTT-1.5.4"),
    ],
)
def test_invalid_filters(flt: str, rule: str) -> None:
    with pytest.raises(TopicError) as ei:
        validate_topic_filter(flt)
    assert ei.value.rule == rule
    assert ei.value.reason_code == RC.TOPIC_FILTER_INVALID


def test_filter_limits_apply_to_real_filter() -> None:
    validate_topic_filter("$share/group/a/b", max_levels=2, max_length=3, max_level_length=1)
    with pytest.raises(TopicError, match="MaxTopicLevels"):
        validate_topic_filter("$share/g/a/b/c", max_levels=2)
    with pytest.raises(TopicError, match="MaxTopicLength"):
        validate_topic_filter("a/b/#", max_length=4)
    with pytest.raises(TopicError, match="MaxTopicLevelLength"):
        validate_topic_filter("+/abc", max_level_length=2)


def test_shared_disabled() -> None:
    validate_topic_filter("a/b", allow_shared=False)
    with pytest.raises(TopicError) as ei:
        validate_topic_filter("$share/g/a", allow_shared=False)
    assert ei.value.reason_code == RC.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED
    with pytest.raises(TopicError):
        validate_topic_filter("$oshare/g/a", allow_shared=False)


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ("a/b", (None, None, "a/b")),
        ("$SYS/#", (None, None, "$SYS/#")),
        ("$share", (None, None, "$share")),
        ("$sharex/g/a", (None, None, "$sharex/g/a")),
        ("$share/g/a/b", ("share", "g", "a/b")),
        ("$share/g/#", ("share", "g", "#")),
        ("$share/g//a", ("share", "g", "/a")),
        ("$oshare/grp/+/x", ("oshare", "grp", "+/x")),
        ("$share/g/", ("share", "g", "")),
        ("$share//a", ("share", "", "a")),
    ],
)
def test_parse_shared(flt: str, expected: tuple[str | None, str | None, str]) -> None:
    assert parse_shared(flt) == expected


def test_parse_shared_without_filter() -> None:
    with pytest.raises(TopicError, match=r"MQTT-4\.8\.2-2"):
        parse_shared("$share/g")


def test_has_wildcard() -> None:
    assert has_wildcard("a/+") and has_wildcard("#") and has_wildcard("$share/g/a/#")
    assert not has_wildcard("a/b") and not has_wildcard("$share/g/a")


# ---------------------------------------------------------------- matching

MATCH_TABLE = [
    # MQTT 5 section 4.7.1.2: multi-level wildcard
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/tennis/player1/#", "sport/tennis/player2", False),
    ("sport/tennis/player1/#", "sport/tennis", False),
    ("sport/#", "sport", True),
    ("#", "sport/tennis", True),
    ("#", "/", True),
    # 4.7.1.3: single-level wildcard
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player2", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+", "sport", True),
    ("+", "/finance", False),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+/tennis/#", "sport/tennis/player1", True),
    ("sport/+/player1", "sport/tennis/player1", True),
    # 4.7.2: topics beginning with $
    ("#", "$SYS", False),
    ("#", "$SYS/broker/uptime", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/#", "$SYS", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("$SYS/+", "$SYS/x", True),
    ("a/#", "a/$x", True),  # '$' only matters in the first level
    ("+/x", "a$/x", True),
    # empty levels are levels
    ("a//b", "a//b", True),
    ("a/+/b", "a//b", True),
    ("a/+", "a/", True),
    ("+", "", True),
    ("/finance", "/finance", True),
    ("/finance", "finance", False),
    ("finance", "/finance", False),
    ("+/+/+", "a//", True),
    ("a/b", "a/b", True),
    ("a/b", "a/b/c", False),
    ("a/b/c", "a/b", False),
    ("a/+/c", "a/b/c/d", False),
    ("a/#", "b", False),
    ("ACCOUNTS", "Accounts", False),
]


@pytest.mark.parametrize(("flt", "topic", "expected"), MATCH_TABLE)
def test_topic_matches_table(flt: str, topic: str, expected: bool) -> None:
    assert topic_matches(flt, topic) is expected


def _reference_match(flt: str, topic: str) -> bool:
    """A recursive textbook matcher, independent of topic_matches' loop."""
    if topic.startswith("$") and flt[:1] in ("+", "#"):
        return False

    def rec(f: list[str], t: list[str]) -> bool:
        if not f:
            return not t
        if f[0] == "#":
            return True
        if not t:
            return False
        return (f[0] == "+" or f[0] == t[0]) and rec(f[1:], t[1:])

    return rec(flt.split("/"), topic.split("/"))


LEVEL = st.sampled_from(["a", "b", "", "$s", "ab"])
FLEVEL = st.sampled_from(["a", "b", "", "$s", "+", "ab"])


@st.composite
def filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(FLEVEL, min_size=1, max_size=5))
    if draw(st.booleans()):
        levels.append("#")
    return "/".join(levels) or "+"


@st.composite
def topics(draw: st.DrawFn) -> str:
    t = "/".join(draw(st.lists(LEVEL, min_size=1, max_size=6)))
    return t or "x"


@given(filters(), topics())
def test_topic_matches_equals_reference(flt: str, topic: str) -> None:
    validate_topic_filter(flt)
    validate_topic_name(topic)
    assert topic_matches(flt, topic) == _reference_match(flt, topic)
