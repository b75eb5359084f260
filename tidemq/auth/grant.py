"""Subscription grants as the worker uses them: one place that normalises a provider's answer, and the
per-connection delivery check that carries narrowed subscriptions (issue 15).

A provider's ``check_subscribe(who, filter, qos)`` may answer ``True``,
``False`` or a ``SubscribeGrant`` (granted, refused, or granted with a
``ReadFilter`` taking some topics out). Providers that can answer without
I/O may also offer a synchronous ``subscribe_grant_now`` (same answers) or the
older ``allowed_subscribe`` (a bool), and a ``generation`` (an int that moves
when their rules change, e.g. an auth-file reload) and ``poll()`` (re-read
the rules if their source changed; returns the generation).

The worker's contract:

1. SUBSCRIBE (and the admin API's PUT /sub): ``grant = subscribe_grant_now(provider, who, flt, qos)``; when
   that is None (the provider only answers asynchronously) ``grant = await subscribe_grant(provider, who, flt,
   qos)``. Refuse the filter (0x87 / 0x80) unless ``grant.granted``; otherwise, once the subscription is
   stored, ``conn.reads.set(flt, grant)``.
2. Session resume with stored subscriptions, and whenever ``conn.reads.stale(provider)`` (the provider's
   ``generation`` moved): ``await conn.reads.refresh(provider, who, {filter: qos, ...})``. A filter the new rules
   refuse stays subscribed but delivers nothing until the rules allow it again (mosquitto does the same).
3. UNSUBSCRIBE: ``conn.reads.discard(flt)``.
4. Every delivery (live, queued in the inbox, retained replay): skip the message when
   ``conn.reads.active and not conn.reads.allows(topic)``. ``active`` is a plain attribute, False unless
   some subscription of the connection is narrowed: subscriptions that overlap no deny rule carry nothing
   and cost one attribute test per delivery.
5. Some timer of the worker calls ``poll(provider)`` (about once a second) so a changed auth file is
   reloaded even when no client connects; the next delivery then sees the new generation.

Invariants: a message is delivered if at least one of the connection's subscriptions matching its topic
permits it (a plain one always does); a refused or malformed provider answer is a refusal (fail closed);
nothing here does I/O except awaiting the provider.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..mqtt import topics
from .acl import DENY_ALL, GRANTED, REFUSED, Pattern, ReadFilter, SubscribeGrant, compile_literal, matches
from .base import AuthProvider, Identity, check_verdict

log = logging.getLogger("tidemq.auth")

_warned: set[str] = set()


def as_grant(answer: object, provider: object = None) -> SubscribeGrant:
    """``True``/``False``/``SubscribeGrant`` (or ``Granted``/``Denied``) as a ``SubscribeGrant``; ``Error`` raises
    ``ProviderError``; anything else refuses (logged once per type)."""
    answer = check_verdict(answer)
    if answer is True:
        return GRANTED
    if answer is False:
        return REFUSED
    if isinstance(answer, SubscribeGrant):
        return answer
    what = f"{type(provider).__name__}:{type(answer).__name__}"
    if what not in _warned:
        _warned.add(what)
        log.warning("auth provider %s answered a subscribe check with %r, not a bool or SubscribeGrant: refused",
                    type(provider).__name__, answer)
    return REFUSED


async def subscribe_grant(provider: AuthProvider, who: Identity, topic_filter: str, qos: int) -> SubscribeGrant:
    """The provider's subscribe answer, normalised (await this when ``subscribe_grant_now`` gives None)."""
    return as_grant(await provider.check_subscribe(who, topic_filter, qos), provider)


def subscribe_grant_now(provider: object, who: Identity, topic_filter: str, qos: int) -> SubscribeGrant | None:
    """The synchronous answer of a provider that offers one (``subscribe_grant_now``, else ``allowed_subscribe``),
    normalised; None when it only answers asynchronously."""
    fn: Any = getattr(provider, "subscribe_grant_now", None) or getattr(provider, "allowed_subscribe", None)
    if fn is None:
        return None
    return as_grant(fn(who, topic_filter, qos), provider)


def provider_generation(provider: object) -> int:
    """The provider's rule generation (0 for providers whose rules never change under a subscription)."""
    generation = getattr(provider, "generation", 0)
    return generation if isinstance(generation, int) else 0


def poll(provider: object) -> int:
    """Let the provider re-read changed rules (``provider.poll()`` if it has one); returns its generation."""
    fn: Any = getattr(provider, "poll", None)
    if fn is not None:
        fn()
    return provider_generation(provider)


def _filter_pattern(topic_filter: str) -> Pattern:
    try:
        real = topics.parse_shared(topic_filter)[2]
    except topics.TopicError:
        real = topic_filter
    return compile_literal(real)


class DeliveryFilter:
    """Which messages one connection may be delivered, given how each of its subscriptions was granted.

    Holds the narrowed filters (filter -> its compiled levels and ReadFilter)
    and the names of the plain ones, which are consulted only when every
    narrowed filter matching a topic refuses it. ``active`` is True exactly
    when some filter is narrowed; only then is anything computed, and each
    topic's verdict is kept in a bounded dict (``cache_size``) emptied by
    every change. ``generation`` is the provider generation the grants were
    computed under.
    """

    __slots__ = ("_narrowed", "_plain", "_plain_patterns", "_verdicts", "active", "cache_size", "generation")

    def __init__(self, generation: int = 0, cache_size: int = 256) -> None:
        self._narrowed: dict[str, tuple[Pattern, ReadFilter]] = {}
        self._plain: set[str] = set()
        self._plain_patterns: dict[str, Pattern] = {}
        self._verdicts: dict[str, bool] = {}
        self.active = False
        self.cache_size = cache_size
        self.generation = generation

    def _changed(self) -> None:
        self._verdicts.clear()
        self.active = bool(self._narrowed)

    def set(self, topic_filter: str, grant: SubscribeGrant) -> None:
        """Record how ``topic_filter`` was granted (a refused grant delivers nothing through it)."""
        rf = grant.read_filter
        if rf is None:
            self._narrowed.pop(topic_filter, None)
            self._plain.add(topic_filter)
        else:
            self._plain.discard(topic_filter)
            self._plain_patterns.pop(topic_filter, None)
            self._narrowed[topic_filter] = (_filter_pattern(topic_filter), rf)
        self._changed()

    def discard(self, topic_filter: str) -> None:
        self._narrowed.pop(topic_filter, None)
        self._plain.discard(topic_filter)
        self._plain_patterns.pop(topic_filter, None)
        self._changed()

    def clear(self) -> None:
        self._narrowed.clear()
        self._plain.clear()
        self._plain_patterns.clear()
        self._changed()

    def __bool__(self) -> bool:
        """``active``: some subscription is narrowed (only then can ``allows`` answer False)."""
        return self.active

    @property
    def narrowed(self) -> dict[str, ReadFilter]:
        """The narrowed filters and their read filters (a copy)."""
        return {flt: rf for flt, (_p, rf) in self._narrowed.items()}

    def allows(self, topic: str) -> bool:
        """May a message on ``topic`` be delivered? True unless every subscription matching it refuses it."""
        if not self.active:
            return True
        verdicts = self._verdicts
        verdict = verdicts.get(topic)
        if verdict is None:
            verdict = self._decide(topic)
            if self.cache_size > 0:
                if len(verdicts) >= self.cache_size:
                    del verdicts[next(iter(verdicts))]
                verdicts[topic] = verdict
        return verdict

    def _decide(self, topic: str) -> bool:
        levels = topic.split("/")
        refused = False
        for flt_levels, rf in self._narrowed.values():
            if matches(flt_levels, levels):
                if rf.allows(topic):
                    return True
                refused = True
        if not refused:
            return True  # it came through a plain subscription (or one since removed)
        cache = self._plain_patterns
        for flt in self._plain:
            known = cache.get(flt)
            if known is None:
                known = cache[flt] = _filter_pattern(flt)
            if matches(known, levels):
                return True
        return False

    def stale(self, provider: object) -> bool:
        """True when the provider's rules changed since the grants were computed."""
        return self.generation != provider_generation(provider)

    async def refresh(self, provider: AuthProvider, who: Identity, subscriptions: Mapping[str, int]) -> None:
        """Recompute every grant (``subscriptions``: filter -> requested QoS) under the provider's current rules.

        The new state replaces the old one only when all answers are in, so
        deliveries during a webhook round trip use the previous grants. A
        provider exception propagates and leaves the state (and generation)
        as it was, so the next delivery retries. A ``set``/``discard`` made
        while this awaits is overwritten: run it on the same ordered path as
        SUBSCRIBE/UNSUBSCRIBE, or pass the subscriptions as they are at the end.
        """
        generation = provider_generation(provider)
        fresh = DeliveryFilter(generation)
        for flt, qos in subscriptions.items():
            grant = subscribe_grant_now(provider, who, flt, qos)
            if grant is None:
                grant = await subscribe_grant(provider, who, flt, qos)
            fresh.set(flt, grant)
        self._narrowed, self._plain, self._plain_patterns = fresh._narrowed, fresh._plain, fresh._plain_patterns
        self.generation = generation
        self._changed()


__all__ = [
    "DENY_ALL",
    "GRANTED",
    "REFUSED",
    "DeliveryFilter",
    "ReadFilter",
    "SubscribeGrant",
    "as_grant",
    "poll",
    "provider_generation",
    "subscribe_grant",
    "subscribe_grant_now",
]
