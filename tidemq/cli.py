"""The ``tidemq`` command: ``worker``, ``api``, ``standalone`` and ``inspect`` (read-only, ``tidemq.inspect``).

Flags override the environment (``TIDEMQ_*``, see ``.env.example``), which
overrides the defaults in ``tidemq.config.Settings``. SIGTERM and SIGINT stop
the process gracefully.

Safe defaults (docs/security.md): without ``--host`` every listener binds to
127.0.0.1. Listening elsewhere with the ``devonly`` auth provider, or serving
the admin API elsewhere without a token, exits with status 2 and one line
naming ``TIDEMQ_ALLOW_INSECURE`` unless that opt-in (or ``--allow-insecure``)
is given, in which case the process starts with one WARNING line per exposure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
from typing import Any

from . import inspect as inspect_cmd
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
        sp.add_argument("--host", help="listen address (TIDEMQ_HOST, default 127.0.0.1: loopback only)")
        sp.add_argument("--allow-insecure", action="store_const", const=True, default=None,
                        help="start even when listening off loopback without authentication "
                             "(TIDEMQ_ALLOW_INSECURE; development only)")
        sp.add_argument("--mqtt-port", type=int, help="MQTT TCP port (TIDEMQ_MQTT_PORT, default 1883)")
        sp.add_argument("--api-port", type=int, help="admin API port (TIDEMQ_API_PORT, default 8091)")
        sp.add_argument("--redis-url", help="redis://host:port/db or redis+cluster://host:port (TIDEMQ_REDIS_URL)")
        sp.add_argument("--worker-id", help="worker id (TIDEMQ_WORKER_ID, default random)")
        sp.add_argument("--log-level", help="DEBUG, INFO, WARNING (TIDEMQ_LOG_LEVEL)")
        if name == "worker":
            sp.add_argument("--processes", type=int, default=1,
                            help="run N worker processes on one port (SO_REUSEPORT), default 1")
    inspect_cmd.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "inspect":
        sys.exit(inspect_cmd.run(args))
    overrides: dict[str, Any] = {
        "host": args.host, "mqtt_port": args.mqtt_port, "api_port": args.api_port,
        "redis_url": args.redis_url, "worker_id": args.worker_id, "log_level": args.log_level,
        "allow_insecure": args.allow_insecure,
    }
    if args.command == "standalone" and not args.redis_url:
        overrides["redis_url"] = "memory://"
    try:
        settings = Settings.from_env(**overrides)
    except ValueError as exc:
        sys.exit(f"tidemq: {exc}")
    exposed = settings.exposure(mqtt=args.command in ("worker", "standalone"),
                                api=args.command in ("api", "standalone"))
    if exposed and not settings.allow_insecure:
        print(f"tidemq: refusing to serve {'; '.join(exposed)}: set TIDEMQ_ALLOW_INSECURE=1 (or "
              "--allow-insecure) to accept that, or bind to 127.0.0.1 (docs/security.md)", file=sys.stderr)
        sys.exit(2)
    if args.command in ("api", "standalone") and settings.api_token_file:
        tokens = _component("tidemq.api.tokens")
        try:
            tokens.load_token_file(settings.api_token_file)
        except tokens.TokenFileError as exc:
            sys.exit(f"tidemq: {exc}")
    logs.setup(settings.log_level, settings.log_json)
    _prepare(settings, exposed)
    if args.command == "worker" and args.processes > 1:
        sys.exit(_run_processes(settings, args.processes))
    _install_uvloop()
    try:
        asyncio.run(_run(args.command, settings, reuse_port=getattr(args, "reuse_port", False)))
    except KeyboardInterrupt:
        pass


def _prepare(settings: Settings, exposed: list[str]) -> None:
    """Per-process setup after logging: the insecure-exposure warnings and the password verifier."""
    from .auth import passwd

    for what in exposed:
        log.warning("INSECURE (TIDEMQ_ALLOW_INSECURE is set): serving %s", what)
    passwd.configure(threads=settings.auth_verify_threads, fail_threshold=settings.auth_fail_threshold,
                     backoff_max=settings.auth_fail_backoff_max)


def _install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()


def _child(settings: Settings) -> None:
    logs.setup(settings.log_level, settings.log_json)
    _prepare(settings, [])  # the parent logged the warnings
    _install_uvloop()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run("worker", settings, reuse_port=True))


def _run_processes(settings: Settings, n: int) -> int:
    """N worker processes sharing one listening port (SO_REUSEPORT); SIGTERM stops them all."""
    import dataclasses
    import multiprocessing as mp
    import uuid

    ctx = mp.get_context("spawn")
    procs = []
    for i in range(n):
        wid = (settings.worker_id and f"{settings.worker_id}-{i}") or f"w-{uuid.uuid4().hex[:12]}"
        p = ctx.Process(target=_child, args=(dataclasses.replace(settings, worker_id=wid),), name=wid)
        p.start()
        procs.append(p)
    log.info("started %d worker processes on port %d", n, settings.mqtt_port)

    def forward(signum: int, _frame: Any) -> None:
        for p in procs:
            if p.is_alive() and p.pid:
                os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 0
    for p in procs:
        p.join()
        code = code or (p.exitcode or 0)
    return code


def _component(module: str) -> Any:
    """The worker (``tidemq.worker``) or the admin API (``tidemq.api``), imported when the command needs it.

    Both are installed from the repository's ``workers/`` and ``app/`` folders (pyproject ``package-dir``);
    mypy checks those folders as packages of their own, so they are imported by name here, which also keeps
    the API's dependencies out of a worker process.
    """
    return importlib.import_module(module)


async def _run(command: str, settings: Settings, *, reuse_port: bool = False) -> None:
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
            broker = _component("tidemq.worker.broker").Broker(settings, redis)
            await broker.start(settings.host, settings.mqtt_port, reuse_port=reuse_port)
        if command in ("api", "standalone"):
            try:
                start_api = _component("tidemq.api.server").start_api
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
