"""ACL rule matching: topics, filter coverage/overlap, %u/%c substitution, first match wins."""

from __future__ import annotations

import pytest

from tidemq.auth.acl import Acl, compile_pattern, covers, matches, overlaps, parse_rule, parse_rules


def P(pattern: str, user: str = "u", client: str = "c") -> tuple[str, ...]:
    return compile_pattern(pattern, user, client)


@pytest.mark.parametrize(("pattern", "topic", "ok"), [
    ("a/b", "a/b", True), ("a/b", "a/c", False), ("a/+", "a/b", True), ("a/+", "a/b/c", False),
    ("a/#", "a", True), ("a/#", "a/b/c", True), ("#", "x/y", True), ("+/b", "a/b", True),
    ("#", "$SYS/x", False), ("+/x", "$SYS/x", False), ("$SYS/#", "$SYS/x", True),
    ("a//b", "a//b", True), ("a/+/b", "a//b", True), ("a", "a/b", False), ("a/b", "a", False),
])
def test_matches(pattern: str, topic: str, ok: bool) -> None:
    assert matches(P(pattern), topic.split("/")) is ok


@pytest.mark.parametrize(("pattern", "flt", "ok"), [
    ("a/#", "a/+/c", True), ("a/#", "a/#", True), ("a/#", "a", True), ("a/+", "a/#", False),
    ("a/+", "a/+", True), ("a/b", "a/+", False), ("#", "#", True), ("#", "$SYS/#", False),
    ("+/+", "a/b", True), ("a/+/c", "a/b/c", True), ("a/+/c", "a/b/#", False), ("$SYS/#", "$SYS/+", True),
])
def test_covers(pattern: str, flt: str, ok: bool) -> None:
    assert covers(P(pattern), flt.split("/")) is ok


@pytest.mark.parametrize(("pattern", "flt", "ok"), [
    ("secret/#", "#", True), ("secret/#", "+/x", True), ("secret/#", "public/#", False),
    ("a/b", "a/+", True), ("a/b", "+/c", False), ("a/+", "a", False), ("a/#", "a", True),
    ("a", "a/#", True), ("$SYS/#", "#", False), ("#", "$SYS/x", False), ("$SYS/+", "$SYS/#", True),
    ("a/b/c", "a/+/c", True), ("a/b", "a/b/c", False),
])
def test_overlaps(pattern: str, flt: str, ok: bool) -> None:
    assert overlaps(P(pattern), flt.split("/")) is ok


def test_substitution_is_literal() -> None:
    assert P("dev/%c/#", client="abc") == ("dev", "abc", "\x00#")
    assert P("u/%u-in", user="bob") == ("u", "bob-in")
    # an id holding wildcards or separators is one literal level: it never widens the rule
    acl = Acl(parse_rules([{"permission": "allow", "action": "all", "topics": ["users/%u/#"]}]), "+", "c")
    assert acl.can_publish("users/+/x", 0, False)
    assert not acl.can_publish("users/alice/x", 0, False)
    acl = Acl(parse_rules([{"permission": "allow", "action": "all", "topics": ["users/%u/#"]}]), "a/b", "c")
    assert not acl.can_publish("users/a/b/x", 0, False)
    acl = Acl(parse_rules([{"permission": "allow", "action": "subscribe", "topics": ["d/%c"]}]), "u", "#")
    assert not acl.can_subscribe("d/#", 0) and not acl.can_subscribe("d/anything", 0)


RULES = [
    {"permission": "deny", "action": "subscribe", "topics": ["secret/#"]},
    {"permission": "allow", "action": "publish", "topics": ["devices/%c/telemetry"], "qos": [0, 1]},
    {"permission": "allow", "action": "subscribe", "topics": ["devices/%c/cmd/#", "users/%u/#"]},
    {"permission": "deny", "action": "publish", "topics": ["status/#"], "retain": True},
    {"permission": "allow", "action": "all", "topics": ["status/#", "public/#"]},
    {"permission": "allow", "action": "subscribe", "topics": ["#"]},
]


@pytest.mark.parametrize(("action", "topic", "qos", "retain", "ok"), [
    ("pub", "devices/dev1/telemetry", 1, False, True),
    ("pub", "devices/dev1/telemetry", 2, False, False),  # qos not listed, no later rule allows it
    ("pub", "devices/dev2/telemetry", 0, False, False),  # another client's topic
    ("pub", "status/dev1", 0, True, False),  # retained status denied
    ("pub", "status/dev1", 0, False, True),
    ("pub", "public/x/y", 2, True, True),
    ("pub", "other", 0, False, False),  # rules exist: default deny
    ("sub", "devices/dev1/cmd/#", 1, False, True),
    ("sub", "users/alice/inbox", 0, False, True),
    ("sub", "secret/x", 0, False, False),
    ("sub", "#", 0, False, False),  # overlaps the denied secret/#
    ("sub", "+/x", 0, False, False),
    ("sub", "public/#", 0, False, True),
    ("sub", "$share/g/public/#", 0, False, True),  # checked on the real filter
    ("sub", "$share/g/secret/a", 0, False, False),
    ("sub", "$share/bad", 0, False, False),
])
def test_rule_table(action: str, topic: str, qos: int, retain: bool, ok: bool) -> None:
    acl = Acl(parse_rules(RULES), "alice", "dev1")
    got = acl.can_publish(topic, qos, retain) if action == "pub" else acl.can_subscribe(topic, qos)
    assert got is ok


def test_no_rules_allows_everything() -> None:
    acl = Acl((), "u", "c")
    assert acl.can_publish("any/thing", 2, True) and acl.can_subscribe("#", 2)


@pytest.mark.parametrize("bad", [
    {"permission": "maybe", "topics": ["a"]},
    {"permission": "allow", "action": "read", "topics": ["a"]},
    {"permission": "allow", "topics": []},
    {"permission": "allow", "topics": ["a/#/b"]},
    {"permission": "allow", "topics": ["a/b+"]},
    {"permission": "allow", "topics": ["a"], "qos": [3]},
    {"permission": "allow", "topics": ["a"], "retain": "yes"},
    {"permission": "allow", "topics": ["a"], "extra": 1},
    "allow everything",
])
def test_bad_rules_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_rule(bad)  # type: ignore[arg-type]


def test_rule_forms() -> None:
    r = parse_rule({"permission": "ALLOW", "action": "both", "topic": "a/%u", "qos": 1})
    assert r.allow and r.actions == 3 and r.topics == ("a/%u",) and r.qos == frozenset({1})
    assert r.has_placeholders
    with pytest.raises(ValueError, match="rule 1"):
        parse_rules([{"permission": "allow", "topics": ["a"]}, {"permission": "x", "topics": ["a"]}])
