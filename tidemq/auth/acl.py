"""ACL rules: parse once, substitute ``%u``/``%c`` per identity, decide publish/subscribe with no regex.

A rule is ``{"permission": "allow"|"deny", "action": "publish"|"subscribe"|"all",
"topics": [...], "qos": [...]?, "retain": bool?}``; the first rule whose action,
topic pattern (MQTT wildcards), QoS and retain flag all match decides; when
no rule matches the answer is deny, unless the list is empty (then allow).
``%u`` (user id) and ``%c`` (client id) are substituted inside a level after
the pattern is split into levels, so a substituted value is always literal
text: an id containing ``+``, ``#`` or ``/`` can never widen a rule.
Subscriptions are checked on the real filter (``$share/<group>/`` stripped):
an allow rule applies only if its pattern covers every topic the filter can
match; a deny rule applies if the filter can match any topic the pattern
denies, so ``deny secret/#`` then ``allow #`` refuses a subscription to ``#``.
The ``$`` rule of MQTT holds: a pattern starting with a wildcard never
matches a topic starting with ``$``. Pure code: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..mqtt import topics

PUBLISH = 1
SUBSCRIBE = 2
ALL = PUBLISH | SUBSCRIBE

# compiled wildcard levels: U+0000 cannot appear in a topic [MQTT-4.7.3-2], so these never equal a literal level
ONE = "\x00+"
MULTI = "\x00#"

_ACTIONS = {"publish": PUBLISH, "pub": PUBLISH, "subscribe": SUBSCRIBE, "sub": SUBSCRIBE,
            "all": ALL, "both": ALL, "pubsub": ALL}

Pattern = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rule:
    """One parsed rule; ``topics`` still hold ``%u``/``%c`` placeholders."""

    allow: bool
    actions: int
    topics: tuple[str, ...]
    qos: frozenset[int] | None = None
    retain: bool | None = None

    @property
    def has_placeholders(self) -> bool:
        return any("%u" in t or "%c" in t for t in self.topics)


def parse_rule(obj: Mapping[str, Any]) -> Rule:
    """A ``Rule`` from its JSON/TOML form; raises ValueError naming what is wrong."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"a rule must be a table/object, got {obj!r}")
    unknown = set(obj) - {"permission", "action", "topics", "topic", "qos", "retain", "comment"}
    if unknown:
        raise ValueError(f"unknown rule keys {sorted(unknown)}")
    permission = str(obj.get("permission", "")).lower()
    if permission not in ("allow", "deny"):
        raise ValueError(f"permission must be allow or deny, got {obj.get('permission')!r}")
    action = _ACTIONS.get(str(obj.get("action", "all")).lower())
    if action is None:
        raise ValueError(f"action must be publish, subscribe or all, got {obj.get('action')!r}")
    raw_topics = obj.get("topics", obj.get("topic"))
    if isinstance(raw_topics, str):
        raw_topics = [raw_topics]
    if not raw_topics or not all(isinstance(t, str) and t for t in raw_topics):
        raise ValueError("a rule needs topics: a non-empty list of topic patterns")
    for t in raw_topics:
        _check_pattern(t)
    qos = obj.get("qos")
    qos_set: frozenset[int] | None = None
    if qos is not None:
        qos_list = [qos] if isinstance(qos, int) else list(qos)
        if not qos_list or any(not isinstance(q, int) or isinstance(q, bool) or q not in (0, 1, 2)
                               for q in qos_list):
            raise ValueError(f"qos must be a list of 0, 1, 2, got {qos!r}")
        qos_set = frozenset(qos_list)
    retain = obj.get("retain")
    if retain is not None and not isinstance(retain, bool):
        raise ValueError(f"retain must be true or false, got {retain!r}")
    return Rule(permission == "allow", action, tuple(raw_topics), qos_set, retain)


def parse_rules(items: Iterable[Any] | None) -> tuple[Rule, ...]:
    if items is None:
        return ()
    if isinstance(items, Mapping | str):
        raise ValueError("acl must be a list of rules")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(parse_rule(item))
        except ValueError as exc:
            raise ValueError(f"rule {i}: {exc}") from None
    return tuple(out)


def _check_pattern(pattern: str) -> None:
    levels = pattern.split("/")
    for i, level in enumerate(levels):
        if level == "#" and i != len(levels) - 1:
            raise ValueError(f"{pattern!r}: '#' must be the last level")
        if level not in ("+", "#") and ("+" in level or "#" in level):
            raise ValueError(f"{pattern!r}: wildcards must be whole levels")
    if "\x00" in pattern:
        raise ValueError(f"{pattern!r}: NUL character")


def compile_pattern(template: str, user: str, client: str) -> Pattern:
    """Split into levels, turn whole ``+``/``#`` levels into wildcards, substitute ``%u``/``%c`` as literals."""
    out = []
    for level in template.split("/"):
        if level == "+":
            out.append(ONE)
        elif level == "#":
            out.append(MULTI)
        elif "%" in level:
            out.append(level.replace("%u", user).replace("%c", client))
        else:
            out.append(level)
    return tuple(out)


def matches(pattern: Pattern, topic: Sequence[str]) -> bool:
    """Pattern vs topic-name levels (``#`` matches its parent level too)."""
    if topic and topic[0][:1] == "$" and pattern and pattern[0] in (ONE, MULTI):
        return False
    n = len(topic)
    for i, p in enumerate(pattern):
        if p == MULTI:
            return True
        if i >= n or (p != ONE and p != topic[i]):
            return False
    return len(pattern) == n


def covers(pattern: Pattern, flt: Sequence[str]) -> bool:
    """True if every topic the filter levels ``flt`` can match is matched by ``pattern``."""
    if flt and pattern and pattern[0] in (ONE, MULTI) and flt[0][:1] == "$":
        return False
    n = len(flt)
    for i, p in enumerate(pattern):
        if p == MULTI:
            return True
        if i >= n:
            return False
        f = flt[i]
        if f == "#":
            return False
        if p == ONE:
            continue
        if f == "+" or f != p:
            return False
    return len(pattern) == n


def overlaps(pattern: Pattern, flt: Sequence[str]) -> bool:
    """True if some topic is matched both by ``pattern`` and by the filter levels ``flt``."""
    if pattern and flt:
        p0, f0 = pattern[0], flt[0]
        if p0 in (ONE, MULTI) and f0 not in ("+", "#") and f0[:1] == "$":
            return False
        if f0 in ("+", "#") and p0 not in (ONE, MULTI) and p0[:1] == "$":
            return False
    lp, lf = len(pattern), len(flt)
    i = 0
    while True:
        p = pattern[i] if i < lp else None
        f = flt[i] if i < lf else None
        if p == MULTI or f == "#":
            return True
        if p is None or f is None:
            return p is None and f is None
        if p != ONE and f != "+" and p != f:
            return False
        i += 1


@dataclass(frozen=True, slots=True)
class CompiledRule:
    allow: bool
    actions: int
    patterns: tuple[Pattern, ...]
    qos: frozenset[int] | None
    retain: bool | None


class Acl:
    """The rules of one identity with ``%u``/``%c`` substituted; first match wins, default deny if any rule."""

    __slots__ = ("rules",)

    def __init__(self, rules: Sequence[Rule], user: str, client: str) -> None:
        self.rules = tuple(
            CompiledRule(r.allow, r.actions, tuple(compile_pattern(t, user, client) for t in r.topics),
                         r.qos, r.retain)
            for r in rules)

    def can_publish(self, topic: str, qos: int, retain: bool) -> bool:
        if not self.rules:
            return True
        levels = topic.split("/")
        for r in self.rules:
            if not r.actions & PUBLISH:
                continue
            if r.qos is not None and qos not in r.qos:
                continue
            if r.retain is not None and r.retain != retain:
                continue
            if any(matches(p, levels) for p in r.patterns):
                return r.allow
        return False

    def can_subscribe(self, topic_filter: str, qos: int) -> bool:
        if not self.rules:
            return True
        try:
            real = topics.parse_shared(topic_filter)[2]
        except topics.TopicError:
            return False
        levels = real.split("/")
        for r in self.rules:
            if not r.actions & SUBSCRIBE:
                continue
            if r.qos is not None and qos not in r.qos:
                continue
            if r.allow:
                if any(covers(p, levels) for p in r.patterns):
                    return True
            elif any(overlaps(p, levels) for p in r.patterns):
                return False
        return False
