"""MQTT topic names, topic filters, shared-subscription forms and matching (MQTT 5 section 4.7/4.8).

Pure functions, no I/O. ``validate_topic_name`` / ``validate_topic_filter`` raise a
``TopicError`` naming the rule broken (a spec statement id such as ``MQTT-4.7.1-1`` or a
tenant limit such as ``MaxTopicLevels``) and return ``None`` for a valid input. Lengths
are UTF-8 byte lengths, measured after encoding; levels are the ``/``-separated parts and
empty levels are real levels (``"a//b"`` has three, ``"/a"`` two). Shared filters are
``$share/<group>/<filter>`` (MQTT 5) and BifroMQ's ordered ``$oshare/<group>/<filter>``;
the tenant limits apply to the real filter, the 65535-byte cap to the whole string.
``topic_matches`` compares a non-shared filter with a topic name using ``str.split`` only
(no regex), honouring the ``$`` rule [MQTT-4.7.2-1] and ``#`` matching its parent level.
"""

from __future__ import annotations

from .errors import MQTTError
from .reason_codes import RC

__all__ = [
    "MAX_STRING_BYTES",
    "OSHARE_PREFIX",
    "SHARE_PREFIX",
    "TopicError",
    "has_wildcard",
    "parse_shared",
    "topic_matches",
    "validate_topic_filter",
    "validate_topic_name",
]

MAX_STRING_BYTES = 65535
SHARE_PREFIX = "$share/"
OSHARE_PREFIX = "$oshare/"

# rule ids of checks that are not spec statements (tenant limits named like BifroMQ's settings)
RULE_MAX_LENGTH = "MaxTopicLength"
RULE_MAX_LEVELS = "MaxTopicLevels"
RULE_MAX_LEVEL_LENGTH = "MaxTopicLevelLength"
RULE_SHARED_DISABLED = "SharedSubscriptionAvailable"
RULE_SHARED_PREFIX_NAME = "TopicNameSharedPrefix"


class TopicError(MQTTError, ValueError):
    """An invalid topic name or filter: ``rule`` names the broken rule, ``message`` is one line.

    It is also an ``MQTTError`` whose ``reason_code`` is Topic Name invalid (0x90), Topic
    Filter invalid (0x8F) or Shared Subscriptions not supported (0x9E).
    """

    def __init__(self, message: str, rule: str, reason_code: int = RC.TOPIC_FILTER_INVALID) -> None:
        super().__init__(message, rule=rule, reason_code=reason_code)


def _byte_length(s: str, what: str, code: int) -> int:
    if s.isascii():
        return len(s)
    try:
        return len(s.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates cannot be well-formed UTF-8
        raise TopicError(f"{what} must be well-formed UTF-8", "MQTT-1.5.4-1", code) from None


def _check_limits(
    s: str,
    what: str,
    code: int,
    max_levels: int | None,
    max_length: int | None,
    max_level_length: int | None,
) -> None:
    """Length caps and level limits of ``s`` (a name or a real filter)."""
    n = _byte_length(s, what, code)
    if n > MAX_STRING_BYTES:
        raise TopicError(f"{what} longer than {MAX_STRING_BYTES} bytes", "MQTT-1.5.4", code)
    if max_length is not None and n > max_length:
        raise TopicError(f"{what} longer than {max_length} bytes", RULE_MAX_LENGTH, code)
    if max_levels is not None and s.count("/") + 1 > max_levels:
        raise TopicError(f"{what} has more than {max_levels} levels", RULE_MAX_LEVELS, code)
    if max_level_length is not None and n > max_level_length:
        ascii_ = n == len(s)
        for level in s.split("/"):
            size = len(level) if ascii_ else len(level.encode("utf-8"))
            if size > max_level_length:
                raise TopicError(
                    f"{what} has a level longer than {max_level_length} bytes", RULE_MAX_LEVEL_LENGTH, code
                )


def validate_topic_name(
    topic: str,
    *,
    max_levels: int | None = None,
    max_length: int | None = None,
    max_level_length: int | None = None,
) -> None:
    """Raise ``TopicError`` unless ``topic`` is a valid topic name for PUBLISH (or a will).

    Rules: non-empty [MQTT-4.7.3-1]; no ``+`` or ``#`` [MQTT-3.3.2-2]; no U+0000
    [MQTT-1.5.4-2]; well-formed UTF-8 [MQTT-1.5.4-1]; at most 65535 bytes; not a shared
    subscription form (``$share/``, ``$oshare/``: nothing could subscribe to it, BifroMQ
    rejects it too); and the optional tenant limits in UTF-8 bytes / levels.
    """
    key = (topic, max_levels, max_length, max_level_length)
    if key in _VALID_NAMES:
        return
    code = RC.TOPIC_NAME_INVALID
    if not topic:
        raise TopicError("topic must not be empty", "MQTT-4.7.3-1", code)
    if "+" in topic or "#" in topic:
        raise TopicError("topic must not contain wildcards", "MQTT-3.3.2-2", code)
    if "\x00" in topic:
        raise TopicError("topic must not contain U+0000", "MQTT-1.5.4-2", code)
    if topic[0] == "$" and (topic.startswith(SHARE_PREFIX) or topic.startswith(OSHARE_PREFIX)):
        raise TopicError("topic must not start with $share/ or $oshare/", RULE_SHARED_PREFIX_NAME, code)
    _check_limits(topic, "topic", code, max_levels, max_length, max_level_length)
    if len(_VALID_NAMES) >= _VALID_NAMES_MAX:
        _VALID_NAMES.clear()
    _VALID_NAMES[key] = None


# topic names found valid under given limits: a publisher repeats its topics, so most checks are one lookup
# (bounded: cleared when full; only valid names are kept, so an invalid one is checked, and refused, each time)
_VALID_NAMES: dict[tuple[str, int | None, int | None, int | None], None] = {}
_VALID_NAMES_MAX = 4096


def parse_shared(topic_filter: str) -> tuple[str | None, str | None, str]:
    """Split a filter into ``(kind, group, real_filter)``; kind is ``"share"``, ``"oshare"`` or None.

    A non-shared filter gives ``(None, None, topic_filter)``. A ``$share/`` or ``$oshare/``
    prefix without a following ``/<filter>`` raises ``TopicError`` [MQTT-4.8.2-2]; the
    group and the real filter are otherwise not validated here (``validate_topic_filter``
    does that).
    """
    if not topic_filter or topic_filter[0] != "$":
        return None, None, topic_filter
    if topic_filter.startswith(SHARE_PREFIX):
        kind, start = "share", len(SHARE_PREFIX)
    elif topic_filter.startswith(OSHARE_PREFIX):
        kind, start = "oshare", len(OSHARE_PREFIX)
    else:
        return None, None, topic_filter
    slash = topic_filter.find("/", start)
    if slash < 0:
        raise TopicError("shared subscription needs $share/<group>/<filter>", "MQTT-4.8.2-2")
    return kind, topic_filter[start:slash], topic_filter[slash + 1 :]


def _check_filter_levels(f: str) -> None:
    """``#`` only last and alone in its level, ``+`` alone in its level."""
    if "#" in f:
        i = f.find("#")
        if i != len(f) - 1 or (i > 0 and f[i - 1] != "/"):
            raise TopicError("'#' must be the last level and alone in it", "MQTT-4.7.1-1")
    if "+" in f:
        for level in f.split("/"):
            if "+" in level and level != "+":
                raise TopicError("'+' must occupy a whole level", "MQTT-4.7.1-2")


def validate_topic_filter(
    topic_filter: str,
    *,
    max_levels: int | None = None,
    max_length: int | None = None,
    max_level_length: int | None = None,
    allow_shared: bool = True,
) -> None:
    """Raise ``TopicError`` unless ``topic_filter`` is a valid SUBSCRIBE/UNSUBSCRIBE filter.

    Rules: non-empty [MQTT-4.7.3-1]; ``#`` last and alone in its level [MQTT-4.7.1-1];
    ``+`` alone in its level [MQTT-4.7.1-2]; no U+0000 [MQTT-1.5.4-2]; well-formed UTF-8;
    at most 65535 bytes. Shared forms ``$share/<group>/<filter>`` and
    ``$oshare/<group>/<filter>``: the group is non-empty without ``/ + #`` [MQTT-4.8.2-1],
    followed by ``/`` and a non-empty valid filter [MQTT-4.8.2-2]; with ``allow_shared``
    false they are refused (reason code 0x9E). Tenant limits apply to the real filter.
    """
    code = RC.TOPIC_FILTER_INVALID
    if not topic_filter:
        raise TopicError("topic filter must not be empty", "MQTT-4.7.3-1", code)
    if "\x00" in topic_filter:
        raise TopicError("topic filter must not contain U+0000", "MQTT-1.5.4-2", code)
    kind, group, real = parse_shared(topic_filter)
    if kind is not None:
        if not allow_shared:
            raise TopicError(
                "shared subscriptions are not supported", RULE_SHARED_DISABLED, RC.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED
            )
        if not group or "+" in group or "#" in group:
            raise TopicError("share name must be non-empty without '+' or '#'", "MQTT-4.8.2-1", code)
        if not real:
            raise TopicError("shared subscription needs a non-empty topic filter", "MQTT-4.8.2-2", code)
        if _byte_length(topic_filter, "topic filter", code) > MAX_STRING_BYTES:
            raise TopicError(f"topic filter longer than {MAX_STRING_BYTES} bytes", "MQTT-1.5.4", code)
    _check_filter_levels(real)
    _check_limits(real, "topic filter", code, max_levels, max_length, max_level_length)


def has_wildcard(topic_filter: str) -> bool:
    """True if the filter contains ``+`` or ``#`` (a valid filter has them only as whole levels)."""
    return "+" in topic_filter or "#" in topic_filter


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True if the non-shared ``topic_filter`` matches the topic name ``topic``.

    ``#`` matches its parent level too (``a/#`` matches ``a``); a topic starting with ``$``
    is not matched by a filter whose first level is ``+`` or ``#`` [MQTT-4.7.2-1]; empty
    levels are real levels. Both arguments are assumed valid.
    """
    if "+" not in topic_filter and "#" not in topic_filter:
        return topic_filter == topic
    if topic[:1] == "$" and topic_filter[0] in "+#":
        return False
    if topic_filter == "#":
        return True
    flevels = topic_filter.split("/")
    tlevels = topic.split("/")
    n = len(tlevels)
    i = 0
    for level in flevels:
        if level == "#":
            return True
        if i >= n or (level != "+" and level != tlevels[i]):
            return False
        i += 1
    return i == n
