"""Narrowed subscriptions (issue 15): which filters are granted, refused or narrowed, and what a narrowing delivers."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from tidemq.auth.acl import (
    DENY_ALL,
    GRANTED,
    REFUSED,
    Acl,
    ReadFilter,
    SubscribeGrant,
    compile_literal,
    covers,
    matches,
    narrow,
    overlaps,
    parse_rules,
)


def sub(permission: str, *topics: str, **extra: Any) -> dict[str, Any]:
    return {"permission": permission, "action": "subscribe", "topics": list(topics), **extra}


def acl(*rules: dict[str, Any], user: str = "alice", client: str = "dev1") -> Acl:
    return Acl(parse_rules(rules), user, client)


def delivered(grant: SubscribeGrant, *topics: str) -> list[str]:
    assert grant.granted
    return [t for t in topics if grant.deny is None or grant.deny.allows(t)]


SENSORS = acl(sub("deny", "sensors/secret/#"), sub("allow", "sensors/#"))


def test_the_issue_example() -> None:
    g = SENSORS.grant_subscribe("sensors/#", 1)
    assert g.granted and g.deny is not None and g.deny.deny_patterns == ("sensors/secret/#",)
    assert delivered(g, "sensors/a", "sensors/secret", "sensors/secret/b", "sensors/secretive") == [
        "sensors/a", "sensors/secretive"]
    assert SENSORS.grant_subscribe("sensors/secret/#", 1) == REFUSED  # wholly inside the deny rule
    assert SENSORS.grant_subscribe("sensors/secret/b", 1) == REFUSED
    assert SENSORS.grant_subscribe("sensors/public/#", 1) == GRANTED  # overlaps no deny: nothing carried
    assert SENSORS.grant_subscribe("sensors/+", 1).deny is not None  # sensors/secret is both
    assert SENSORS.grant_subscribe("other/#", 1) == REFUSED  # no allow covers it
    # $share/<group>/ is stripped before the check
    shared = SENSORS.grant_subscribe("$share/g/sensors/#", 0)
    assert shared.deny is not None and shared.deny.deny_patterns == ("sensors/secret/#",)


def test_the_paho_rule_set() -> None:
    a = acl(sub("deny", "test/nosubscribe"), {"permission": "allow", "action": "all", "topics": ["#"]})
    for flt in ("#", "+/+", "test/#"):
        g = a.grant_subscribe(flt, 2)
        assert g.granted and not g and delivered(g, "test/nosubscribe", "test/x") == ["test/x"]
    assert a.grant_subscribe("TopicA/#", 2) == GRANTED
    assert a.grant_subscribe("test/nosubscribe", 0) == REFUSED


def test_bool_of_a_grant_fails_closed_for_old_callers() -> None:
    assert GRANTED and not REFUSED
    narrowed = SENSORS.grant_subscribe("sensors/#", 0)
    assert narrowed.granted and not narrowed  # a caller unaware of narrowing refuses it
    assert not SENSORS.can_subscribe("sensors/#", 0) and SENSORS.can_subscribe("sensors/public/#", 0)
    assert GRANTED.read_filter is None and REFUSED.read_filter is DENY_ALL
    assert narrowed.read_filter is narrowed.deny
    with pytest.raises(ValueError):
        SubscribeGrant(False, ReadFilter(()))


def test_dollar_topics() -> None:
    a = acl(sub("deny", "$SYS/secret/#"), sub("deny", "#"), sub("allow", "$SYS/#"))
    # deny # covers neither $SYS/# nor any $ filter; the $SYS deny overlaps it
    g = a.grant_subscribe("$SYS/#", 0)
    assert delivered(g, "$SYS/broker/load", "$SYS/secret/key") == ["$SYS/broker/load"]
    assert a.grant_subscribe("#", 0) == REFUSED
    b = acl(sub("deny", "$SYS/#"), sub("allow", "#"))
    assert b.grant_subscribe("#", 0) == GRANTED  # # can never match $SYS topics: no narrowing needed
    assert b.grant_subscribe("+/broker", 0) == GRANTED
    assert b.grant_subscribe("$SYS/x", 0) == REFUSED
    c = acl(sub("deny", "+/secret"), sub("allow", "#"), sub("allow", "$SYS/#"))
    assert c.grant_subscribe("$SYS/#", 0) == GRANTED  # a wildcard-first deny cannot reach $SYS/secret
    assert delivered(c.grant_subscribe("#", 0), "a/secret", "a/open") == ["a/open"]


def test_plus_levels() -> None:
    a = acl(sub("deny", "a/+/secret"), sub("allow", "a/#"))
    g = a.grant_subscribe("a/#", 0)
    assert delivered(g, "a/x/secret", "a/y/secret", "a/x/public", "a/x/secret/more", "a/secret") == [
        "a/x/public", "a/x/secret/more", "a/secret"]
    assert delivered(a.grant_subscribe("a/b/+", 0), "a/b/secret", "a/b/c") == ["a/b/c"]
    assert a.grant_subscribe("a/b/secret", 0) == REFUSED
    assert a.grant_subscribe("a/+/secret", 0) == REFUSED  # the filter equals the deny pattern
    assert a.grant_subscribe("a/b", 0) == GRANTED  # different depth: no overlap
    assert a.grant_subscribe("a/+/+/+/#", 0) == GRANTED  # four levels or more: never a/x/secret
    assert a.grant_subscribe("a/+/+/#", 0).deny is not None  # '#' matches its parent: a/x/secret too


@pytest.mark.parametrize(("deny", "flt", "expected"), [
    ("a/#", "#", "narrowed"), ("a/#", "+", "narrowed"), ("a/#", "+/+", "narrowed"), ("a/#", "a", "refused"),
    ("a/#", "a/+/c", "refused"), ("a/#", "ab/#", "plain"), ("a/b/c/#", "a/#", "narrowed"),
    ("a/b/c/#", "a/b", "plain"), ("a/b/c/#", "a/b/+", "narrowed"), ("a/b/c/#", "a/b/c", "refused"),
    ("#", "x/#", "refused"), ("x/#", "x/#", "refused"), ("x/+", "x/+", "refused"), ("x/+", "x/#", "narrowed"),
])
def test_hash_at_various_depths(deny: str, flt: str, expected: str) -> None:
    g = acl(sub("deny", deny), sub("allow", "#")).grant_subscribe(flt, 0)
    got = "refused" if not g.granted else "plain" if g.deny is None else "narrowed"
    assert got == expected


def test_placeholders_are_compiled_for_the_identity() -> None:
    rules = (sub("deny", "users/%u/private/#", "devices/%c/keys"), sub("allow", "users/#", "devices/#"))
    g = acl(*rules).grant_subscribe("users/#", 0)
    assert g.deny is not None and g.deny.deny_patterns == ("users/alice/private/#",)
    assert delivered(g, "users/alice/private/x", "users/bob/private/x") == ["users/bob/private/x"]
    assert acl(*rules).grant_subscribe("users/alice/private/#", 0) == REFUSED
    assert acl(*rules).grant_subscribe("users/bob/private/#", 0) == GRANTED
    dev = acl(*rules).grant_subscribe("devices/+/keys", 0)
    assert delivered(dev, "devices/dev1/keys", "devices/dev2/keys") == ["devices/dev2/keys"]
    # an id holding wildcards is a literal level: it narrows exactly one (impossible) topic level
    odd = acl(*rules, user="+").grant_subscribe("users/#", 0)
    assert delivered(odd, "users/bob/private/x") == ["users/bob/private/x"]
    assert acl(*rules, user="#").grant_subscribe("users/bob/private/#", 0) == GRANTED


def test_deny_broader_than_allow() -> None:
    a = acl(sub("deny", "sensors/#"), sub("allow", "sensors/public/#"))
    assert a.grant_subscribe("sensors/public/#", 0) == REFUSED  # first match: the broader deny
    assert a.grant_subscribe("sensors/#", 0) == REFUSED
    b = acl(sub("allow", "sensors/public/#"), sub("deny", "sensors/#"), sub("allow", "#"))
    assert b.grant_subscribe("sensors/public/#", 0) == GRANTED
    assert b.grant_subscribe("sensors/#", 0) == REFUSED
    g = b.grant_subscribe("#", 0)  # the earlier allow is an exception inside the deny
    assert delivered(g, "sensors/public/a", "sensors/a", "weather") == ["sensors/public/a", "weather"]
    assert g.deny is not None and g.deny.deny_patterns == ("sensors/#",) and g.deny.entries[0][0] is True


def test_allows_after_the_last_deny_are_dropped() -> None:
    g = acl(sub("deny", "a/#"), sub("allow", "b/#"), sub("allow", "#")).grant_subscribe("#", 0)
    assert g.deny is not None and len(g.deny.entries) == 1
    assert acl(sub("allow", "b/#"), sub("allow", "#")).grant_subscribe("#", 0) == GRANTED


def test_qos_restricted_rules_apply_at_their_qos() -> None:
    a = acl(sub("deny", "s/#", qos=[2]), sub("allow", "#"))
    assert a.grant_subscribe("#", 1) == GRANTED
    assert delivered(a.grant_subscribe("#", 2), "s/x", "t") == ["t"]
    assert a.can_read("s/x", 1) and not a.can_read("s/x", 2) and not a.can_read("s/x")


def test_publish_rules_do_not_narrow() -> None:
    a = acl({"permission": "deny", "action": "publish", "topics": ["s/#"]}, sub("allow", "#"))
    assert a.grant_subscribe("#", 0) == GRANTED
    assert Acl((), "u", "c").grant_subscribe("#", 0) == GRANTED and Acl((), "u", "c").can_read("$SYS/x")


def test_read_filter_cache_is_bounded_and_shared_by_equal_filters() -> None:
    rf = ReadFilter([(False, compile_literal("s/#"))], cache_size=3)
    assert [rf.allows(t) for t in ("s/a", "t/a", "s/b", "t/b", "s/a")] == [False, True, False, True, False]
    assert len(rf._cache) == 3
    assert rf == ReadFilter.denying(["s/#"]) and hash(rf) == hash(ReadFilter.denying(["s/#"]))
    assert rf != DENY_ALL and not DENY_ALL.allows("anything") and not DENY_ALL.allows("$SYS/x")
    uncached = ReadFilter.denying(["s/#"])
    uncached.cache_size = 0
    assert not uncached.allows("s/a") and not uncached._cache
    assert repr(rf) == "ReadFilter([-s/#], default=True)"


def test_narrow_for_webhook_and_custom_providers() -> None:
    g = narrow("sensors/#", ["sensors/secret/#", "other/#"])
    assert g.deny is not None and g.deny.deny_patterns == ("sensors/secret/#",)  # other/# cannot match: dropped
    assert narrow("sensors/#", []) == GRANTED and narrow("sensors/#", ["other/#"]) == GRANTED
    assert narrow("sensors/secret/a", ["sensors/secret/#"]) == REFUSED
    assert narrow("$share/g/sensors/#", ["sensors/+"]).deny == ReadFilter.denying(["sensors/+"])
    assert narrow("users/#", ["users/%u"]).deny == ReadFilter.denying(["users/%u"])  # literal: no substitution
    for bad in (["a/#/b"], ["a+"], [""], [3], ["a\x00"]):
        with pytest.raises(ValueError):
            narrow("#", bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        narrow("$share/nogroup", [])


LEVELS = ["a", "b", "$S", ""]
PATTERNS = ["#", "+", "a", "a/#", "a/+", "+/b", "a/b", "$S/#", "$S/+", "+/+/#", "a/b/#", "b/#", "/#", "+/"]


def test_narrowing_agrees_with_the_per_message_read_check() -> None:
    """For random rule sets and every topic a granted filter matches: read_filter.allows(t) == can_read(t)."""
    rnd = random.Random(15)
    topics = ["/".join(p) for n in (1, 2, 3) for p in itertools.product(LEVELS, repeat=n)]
    filters = [*PATTERNS, "a/+/b", "+/#", "$S/a"]
    checked = 0
    for _ in range(300):
        rules = [sub(rnd.choice(("allow", "deny")), *rnd.sample(PATTERNS, rnd.randint(1, 2)))
                 for _ in range(rnd.randint(1, 5))]
        a = acl(*rules)
        for flt in filters:
            g = a.grant_subscribe(flt, 0)
            f = compile_literal(flt)
            inside = [t for t in topics if matches(f, t.split("/"))]
            if not g.granted:
                continue
            for t in inside:
                assert (g.deny is None or g.deny.allows(t)) == a.can_read(t, 0), (rules, flt, t)
                checked += 1
    assert checked > 1000


@pytest.mark.parametrize(("pattern", "flt", "cov", "ovl"), [
    ("$S/#", "$S/#", True, True), ("#", "$S/#", False, False), ("+/#", "$S/a", False, False),
    ("$S/+", "+/a", False, False), ("a/#", "a", True, True), ("a", "a/#", False, True),
    ("+/+", "+/+", True, True), ("+", "+/+", False, False), ("a/+/c/#", "a/b/+/d", False, True),
    ("a/+/c/#", "a/b/c/+", True, True),
    ("a//b", "a/+/b", False, True), ("a/+/b", "a//b", True, True),
])
def test_covers_and_overlaps_edges(pattern: str, flt: str, cov: bool, ovl: bool) -> None:
    p, f = compile_literal(pattern), flt.split("/")
    assert covers(p, f) is cov and overlaps(p, f) is ovl
