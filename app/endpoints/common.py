"""Small helpers shared by the blueprints: topic checks with the tenant's limits, and clocks."""

from __future__ import annotations

import time

from tidemq.mqtt.topics import TopicError, validate_topic_filter, validate_topic_name
from tidemq.tenants import TenantSettings

from ..errors import ApiError


def now_ms() -> int:
    return int(time.time() * 1000)


def check_topic(ts: TenantSettings, topic: str) -> None:
    try:
        validate_topic_name(topic, max_levels=ts.max_topic_levels, max_length=ts.max_topic_length,
                            max_level_length=ts.max_topic_level_length)
    except TopicError as exc:
        raise ApiError(400, exc.message) from None  # "topic must not contain wildcards"


def check_filter(ts: TenantSettings, topic_filter: str) -> None:
    try:
        validate_topic_filter(topic_filter, max_levels=ts.max_topic_levels, max_length=ts.max_topic_length,
                              max_level_length=ts.max_topic_level_length,
                              allow_shared=ts.shared_subscription_enabled)
    except TopicError as exc:
        raise ApiError(400, "topic_filter: " + exc.message) from None
    if not ts.wildcard_subscription_enabled and ("+" in topic_filter or "#" in topic_filter):
        raise ApiError(400, "topic_filter: wildcard subscriptions are disabled for this tenant")
