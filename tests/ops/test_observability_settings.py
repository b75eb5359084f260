"""The observability settings (tenant metric labels, ``$SYS`` interval, event sinks) are ``Settings`` fields.

A bad value of each ends ``tidemq worker`` with status 2 and one line naming the variable (never a
traceback), as every other setting does; a good value, from the environment, an env file or a
``*_FILE`` secret, reaches the component that uses it. (The live worker of tests/observability is
configured through the same variables: tenant families, a 0.5 s ``$SYS`` interval, log and Redis sinks.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tidemq.worker.broker import Broker
from tidemq.worker.sys_topics import SysPublisher

from tests.fixtures.brokers import free_port
from tests.limits.helpers import redis_url
from tests.ops.test_config_cli import _one_line_error, tidemq
from tidemq.config import ConfigError, Settings, load_env_file
from tidemq.events import LogSink, RedisStreamSink, WebhookSink, bus_from_settings
from tidemq.store.connection import close_redis, open_redis


@pytest.mark.parametrize(("env", "needle"), [
    ({"TIDEMQ_METRICS_TENANT_TOP": "-1"}, "TIDEMQ_METRICS_TENANT_TOP: must not be negative"),
    ({"TIDEMQ_METRICS_TENANT_TOP": "many"}, "TIDEMQ_METRICS_TENANT_TOP: cannot parse"),
    ({"TIDEMQ_SYS_INTERVAL": "0"}, "TIDEMQ_SYS_INTERVAL: must be positive"),
    ({"TIDEMQ_SYS_INTERVAL": "nan"}, "TIDEMQ_SYS_INTERVAL: must be positive"),
    ({"TIDEMQ_SYS_INTERVAL": "soon"}, "TIDEMQ_SYS_INTERVAL: cannot parse"),
    ({"TIDEMQ_EVENT_SINKS": "log,kafka"}, "TIDEMQ_EVENT_SINKS: unknown sink 'kafka'"),
    ({"TIDEMQ_EVENT_SINKS": "webhook"}, "TIDEMQ_EVENT_WEBHOOK_URL"),
    ({"TIDEMQ_EVENT_SINKS": "webhook", "TIDEMQ_EVENT_WEBHOOK_URL": "ftp://x"}, "TIDEMQ_EVENT_WEBHOOK_URL"),
    ({"TIDEMQ_EVENT_WEBHOOK_URL_FILE": "/no/such/secret"}, "TIDEMQ_EVENT_WEBHOOK_URL_FILE"),
    ({"TIDEMQ_EVENT_QUEUE": "0"}, "TIDEMQ_EVENT_QUEUE: must be positive"),
    ({"TIDEMQ_EVENT_STREAM_MAXLEN": "lots"}, "TIDEMQ_EVENT_STREAM_MAXLEN: cannot parse"),
])
def test_bad_value_exits_2_with_one_line(env: dict[str, str], needle: str) -> None:
    _one_line_error(tidemq("worker", env=env), needle)


@pytest.mark.parametrize(("spec", "needle"), [
    ("nowhere.module:Sink", "cannot load 'nowhere.module:Sink'"),
    ("collections:OrderedDict", "does not implement EventSink"),
])
def test_custom_sink_that_cannot_be_built_exits_2(spec: str, needle: str) -> None:
    """Found when the worker builds its bus (before any Redis command: the store here is out of reach)."""
    out = tidemq("worker", "--redis-url", "redis://127.0.0.1:1/0", "--mqtt-port", str(free_port()),
                 env={"TIDEMQ_EVENT_SINKS": spec})
    _one_line_error(out, "TIDEMQ_EVENT_SINKS", needle)


def test_env_file_and_secret_file_forms(tmp_path: Path) -> None:
    secret = tmp_path / "hook"
    secret.write_text("https://hooks.example/T0/secret-token\n")
    env_file = tmp_path / "tidemq.env"
    env_file.write_text("TIDEMQ_EVENT_SINKS=webhook\nTIDEMQ_SYS_INTERVAL=2.5\nTIDEMQ_METRICS_TENANT_TOP=3\n"
                        "TIDEMQ_EVENT_QUEUE=7\nTIDEMQ_EVENT_STREAM_MAXLEN=9\n"
                        f"TIDEMQ_EVENT_WEBHOOK_URL_FILE={secret}\n")
    assert "TIDEMQ_EVENT_SINKS" in load_env_file(str(env_file))  # a known name now, not an env-file error
    settings = Settings.from_env({}, env_file=str(env_file))
    assert (settings.sys_interval, settings.metrics_tenant_top, settings.event_queue,
            settings.event_stream_maxlen) == (2.5, 3, 7, 9)
    (sink,) = bus_from_settings(settings).sinks
    assert isinstance(sink, WebhookSink)
    assert sink.url == "https://hooks.example/T0/secret-token" and sink.queue.maxsize == 7
    with pytest.raises(ConfigError, match="TIDEMQ_EVENT_WEBHOOK_URL and TIDEMQ_EVENT_WEBHOOK_URL_FILE"):
        Settings.from_env({"TIDEMQ_EVENT_WEBHOOK_URL": "https://a", "TIDEMQ_EVENT_WEBHOOK_URL_FILE": str(secret)})


@pytest.fixture
async def broker(redis_server: Any) -> AsyncIterator[Broker]:
    """A worker composed (not started) on the session's real Redis."""
    settings = Settings.from_env({"TIDEMQ_REDIS_URL": redis_url(redis_server),
                                  "TIDEMQ_METRICS_TENANT_TOP": "4", "TIDEMQ_SYS_INTERVAL": "0.25",
                                  "TIDEMQ_EVENT_SINKS": "log, redis", "TIDEMQ_EVENT_QUEUE": "50",
                                  "TIDEMQ_EVENT_STREAM_MAXLEN": "123"})
    redis = await open_redis(settings.redis_url)
    try:
        yield Broker(settings, redis)
    finally:
        await close_redis(redis)


@pytest.mark.redis
async def test_values_reach_the_worker_components(broker: Broker) -> None:
    metrics = broker.services.metrics
    assert metrics.tenant_top == 4
    log_sink, redis_sink = metrics.events.sinks
    assert isinstance(log_sink, LogSink) and isinstance(redis_sink, RedisStreamSink)
    assert redis_sink.maxlen == 123 and redis_sink.queue.maxsize == 50
    assert SysPublisher(broker.redis, broker.services, metrics).interval == 0.25


def test_defaults_configure_nothing_extra() -> None:
    settings = Settings()
    assert bus_from_settings(settings).sinks == []
    assert (settings.metrics_tenant_top, settings.sys_interval, settings.event_queue,
            settings.event_stream_maxlen) == (0, 10.0, 10000, 10000)
