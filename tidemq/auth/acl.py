"""ACL rules: parse once, substitute ``%u``/``%c`` per identity, decide publish/subscribe/read with no regex.

A rule is ``{"permission": "allow"|"deny", "action": "publish"|"subscribe"|"all",
"topics": [...], "qos": [...]?, "retain": bool?}``; the first rule whose action,
topic pattern (MQTT wildcards), QoS and retain flag all match decides; when
no rule matches the answer is deny, unless the list is empty (then allow).
``%u`` (user id) and ``%c`` (client id) are substituted inside a level after
the pattern is split into levels, so a substituted value is always literal
text: an id containing ``+``, ``#`` or ``/`` can never widen a rule.

Subscriptions are checked on the real filter (``$share/<group>/`` stripped)
and may be *narrowed* (issue 15): walking the subscribe rules in order, a
rule with a pattern that covers every topic the filter can match decides
(allow: granted, deny: refused); a rule whose patterns merely overlap the
filter is kept, in order, as an entry of the grant's ``ReadFilter``. So
``deny secret/#`` then ``allow #`` grants ``#`` with the read filter "not
``secret/#``", and refuses ``secret/#`` and ``secret/a``. A message is then
delivered through that subscription only if the first kept entry matching its
topic is an allow, or none matches. For every topic ``t`` the filter can
match, ``grant.read_filter.allows(t) == Acl.can_read(t, qos)``: narrowing is
exactly a per-message read check (mosquitto's), evaluated once per filter.

The ``$`` rule of MQTT holds: a pattern starting with a wildcard never
matches a topic starting with ``$``. Pure code: no I/O.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
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
Entry = tuple[bool, Pattern]  # (allow, pattern) of a ReadFilter


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


def compile_literal(pattern: str) -> Pattern:
    """Split a pattern into levels with ``+``/``#`` as wildcards and no substitution (``%u`` stays text)."""
    return tuple(ONE if level == "+" else MULTI if level == "#" else level for level in pattern.split("/"))


def pattern_text(pattern: Pattern) -> str:
    """The MQTT text of a compiled pattern (``%u``/``%c`` already substituted)."""
    return "/".join("+" if level == ONE else "#" if level == MULTI else level for level in pattern)


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


class ReadFilter:
    """Which topics a narrowed subscription delivers: ordered ``(allow, pattern)`` entries.

    The first entry whose pattern matches the topic decides; when none
    matches the answer is ``default`` (True; False only for ``DENY_ALL``).
    Only meaningful for topics the subscription's own filter matches: the
    entries are the rules that overlap that filter. ``allows`` splits the
    topic once and keeps the verdict in a bounded dict (oldest entry evicted
    at ``cache_size``; 0 disables it); ``allows_levels`` is the uncached form
    for a caller that already holds the split topic. Two filters with equal
    entries compare and hash equal, so a provider may share one instance (and
    its cache) among all the subscriptions it narrows the same way.
    """

    __slots__ = ("_cache", "cache_size", "default", "entries")

    def __init__(self, entries: Iterable[Entry], *, default: bool = True, cache_size: int = 1024) -> None:
        self.entries: tuple[Entry, ...] = tuple(entries)
        self.default = default
        self.cache_size = cache_size
        self._cache: dict[str, bool] = {}

    @classmethod
    def denying(cls, patterns: Iterable[str]) -> ReadFilter:
        """A filter refusing the topics of ``patterns`` (literal MQTT patterns); raises ValueError on a bad one."""
        entries = []
        for text in patterns:
            if not isinstance(text, str) or not text:
                raise ValueError(f"a deny pattern must be a non-empty string, got {text!r}")
            _check_pattern(text)
            entries.append((False, compile_literal(text)))
        return cls(entries)

    def allows(self, topic: str) -> bool:
        cache = self._cache
        verdict = cache.get(topic)
        if verdict is not None:
            return verdict
        verdict = self.allows_levels(topic.split("/"))
        if self.cache_size > 0:
            if len(cache) >= self.cache_size:
                del cache[next(iter(cache))]
            cache[topic] = verdict
        return verdict

    def allows_levels(self, levels: Sequence[str]) -> bool:
        for allow, pattern in self.entries:
            if matches(pattern, levels):
                return allow
        return self.default

    @property
    def deny_patterns(self) -> tuple[str, ...]:
        """The deny patterns as MQTT text (for logs and the admin API)."""
        return tuple(pattern_text(p) for allow, p in self.entries if not allow)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReadFilter):
            return NotImplemented
        return self.entries == other.entries and self.default == other.default

    def __hash__(self) -> int:
        return hash((self.entries, self.default))

    def __repr__(self) -> str:
        shown = ", ".join(("+" if allow else "-") + pattern_text(p) for allow, p in self.entries)
        return f"ReadFilter([{shown}], default={self.default})"


DENY_ALL = ReadFilter((), default=False, cache_size=0)


@dataclass(frozen=True, slots=True)
class SubscribeGrant:
    """The answer to a SUBSCRIBE: refused, granted, or granted with the topics ``deny`` refuses filtered out.

    ``bool(grant)`` is True only for an *unconditional* grant, so a caller
    written before narrowing existed (``if not await check_subscribe(...)``)
    refuses a narrowed grant: it fails closed, exactly as before issue 15.
    New callers read ``granted`` and keep ``read_filter``.
    """

    granted: bool
    deny: ReadFilter | None = None

    def __post_init__(self) -> None:
        if self.deny is not None and not self.granted:
            raise ValueError("a refused subscription carries no read filter")

    def __bool__(self) -> bool:
        return self.granted and self.deny is None

    @property
    def read_filter(self) -> ReadFilter | None:
        """What a connection keeps for the filter: None (deliver all), the narrowing, or ``DENY_ALL`` if refused."""
        return self.deny if self.granted else DENY_ALL


GRANTED = SubscribeGrant(True)
REFUSED = SubscribeGrant(False)


def real_filter_levels(topic_filter: str) -> list[str]:
    """The levels of the filter without its ``$share/<group>/`` prefix; raises ValueError on a bad share form."""
    return topics.parse_shared(topic_filter)[2].split("/")


def narrow(topic_filter: str, deny: Iterable[str]) -> SubscribeGrant:
    """Granted, but not these: what a webhook or custom provider answers to narrow a subscription.

    ``deny`` holds literal MQTT patterns (no ``%u``/``%c``). A pattern that
    covers the whole filter refuses it; patterns that share no topic with the
    filter are dropped, so when none is left the grant is plain. Raises
    ValueError on a bad pattern or shared-subscription form.
    """
    levels = real_filter_levels(topic_filter)
    kept: list[Entry] = []
    for allow, pattern in ReadFilter.denying(deny).entries:
        if covers(pattern, levels):
            return REFUSED
        if overlaps(pattern, levels):
            kept.append((allow, pattern))
    return SubscribeGrant(True, ReadFilter(kept)) if kept else GRANTED


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
        """True only for an unconditional grant (the pre-narrowing answer); see ``grant_subscribe``."""
        return bool(self.grant_subscribe(topic_filter, qos))

    def grant_subscribe(self, topic_filter: str, qos: int,
                        make_filter: Callable[[tuple[Entry, ...]], ReadFilter] = ReadFilter) -> SubscribeGrant:
        """The narrowing walk of the module docstring; ``make_filter`` builds (or shares) the ReadFilter."""
        if not self.rules:
            return GRANTED
        try:
            levels = real_filter_levels(topic_filter)
        except topics.TopicError:
            return REFUSED
        kept: list[Entry] = []
        for r in self.rules:
            if not r.actions & SUBSCRIBE:
                continue
            if r.qos is not None and qos not in r.qos:
                continue
            if any(covers(p, levels) for p in r.patterns):
                if not r.allow:
                    return REFUSED
                while kept and kept[-1][0]:  # allows after the last deny change nothing
                    kept.pop()
                return SubscribeGrant(True, make_filter(tuple(kept))) if kept else GRANTED
            kept.extend((r.allow, p) for p in r.patterns if overlaps(p, levels))
        return REFUSED

    def can_read(self, topic: str, qos: int | None = None) -> bool:
        """May a message on ``topic`` be delivered to this identity (mosquitto's read check)?

        The first subscribe rule matching the topic decides, default deny if
        rules exist. ``qos`` is the QoS of the subscription it is delivered
        through; None ignores the rules' ``qos`` lists.
        """
        if not self.rules:
            return True
        levels = topic.split("/")
        for r in self.rules:
            if not r.actions & SUBSCRIBE:
                continue
            if qos is not None and r.qos is not None and qos not in r.qos:
                continue
            if any(matches(p, levels) for p in r.patterns):
                return r.allow
        return False
