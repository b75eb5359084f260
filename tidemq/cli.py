"""The ``tidemq`` command: ``worker``, ``api`` and ``standalone``.

Flags override the environment (``TIDEMQ_*``, see ``.env.example``), which
overrides the defaults in ``tidemq.config.Settings``. SIGTERM and SIGINT stop
the process gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from . import logs
from .config import Settings

log = logging.getLogger("tidemq")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tidemq", description="TideMQ MQTT broker")
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (
        ("worker", "MQTT worker on Redis"),
        ("api", "admin HTTP API node on Redis"),
        ("standalone", "MQTT + admin API in one process on an embedded in-memory store"),
    ):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--host", help="listen address (TIDEMQ_HOST, default 0.0.0.0)")
        sp.add_argument("--mqtt-port", type=int, help="MQTT TCP port (TIDEMQ_MQTT_PORT, default 1883)")
        sp.add_argument("--api-port", type=int, help="admin API port (TIDEMQ_API_PORT, default 8091)")
        sp.add_argument("--redis-url", help="redis://host:port/db or redis+cluster://host:port (TIDEMQ_REDIS_URL)")
        sp.add_argument("--worker-id", help="worker id (TIDEMQ_WORKER_ID, default random)")
        sp.add_argument("--log-level", help="DEBUG, INFO, WARNING (TIDEMQ_LOG_LEVEL)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    overrides: dict[str, Any] = {
        "host": args.host, "mqtt_port": args.mqtt_port, "api_port": args.api_port,
        "redis_url": args.redis_url, "worker_id": args.worker_id, "log_level": args.log_level,
    }
    if args.command == "standalone" and not args.redis_url:
        overrides["redis_url"] = "memory://"
    try:
        settings = Settings.from_env(**overrides)
    except ValueError as exc:
        sys.exit(f"tidemq: {exc}")
    logs.setup(settings.log_level, settings.log_json)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    try:
        asyncio.run(_run(args.command, settings))
    except KeyboardInterrupt:
        pass


async def _run(command: str, settings: Settings) -> None:
    from .store.connection import close_redis, open_redis

    if command == "standalone":
        log.info("standalone mode: embedded in-memory store (fakeredis), no Redis server needed; "
                 "all state is lost when the process exits")
    redis = await open_redis(settings.redis_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    broker = api = None
    try:
        if command in ("worker", "standalone"):
            from workers.broker import Broker

            broker = Broker(settings, redis)
            await broker.start(settings.host, settings.mqtt_port)
        if command in ("api", "standalone"):
            try:
                from app.server import start_api
            except ImportError:
                if command == "api":
                    raise
                log.warning("admin API not available in this build")
            else:
                api = await start_api(settings, redis)
        await stop.wait()
        log.info("stopping")
    finally:
        if broker is not None:
            await broker.stop()
        if api is not None:
            await api.stop()
        await close_redis(redis)


if __name__ == "__main__":
    main()
