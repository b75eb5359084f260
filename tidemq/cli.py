"""The ``tidemq`` command: ``worker``, ``api``, ``standalone``, ``inspect`` (read-only) and ``passwd``.

Flags override the environment (``TIDEMQ_*``, see ``.env.example``), which
overrides an ``--env-file``, which overrides the defaults in
``tidemq.config.Settings``. A bad setting exits with status 2 and one line
naming it (``ConfigError``), never a traceback. SIGTERM and SIGINT stop the
process gracefully; SIGHUP reloads without dropping a connection: the
settings are resolved again (the env file re-read), the log level applied,
and a worker re-reads its auth files and TLS files (``Broker.reload``); other
changed settings need a restart (logged). ``tidemq passwd`` edits a
mosquitto-format password file (``user:$7$...`` lines) like ``mosquitto_passwd``.

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
import dataclasses
import gc
import importlib
import logging
import os
import signal
import sys
from importlib import metadata
from typing import Any

from . import inspect as inspect_cmd
from . import logs
from .config import ConfigError, Settings

log = logging.getLogger("tidemq")

RELOADED = ("log_level", "tls_cert", "tls_key", "tls_key_password", "tls_ca")  # settings SIGHUP applies


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tidemq", description="TideMQ MQTT broker")
    p.add_argument("--version", action="version", version=f"tidemq {version()}")
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
        sp.add_argument("--redis-url", help="redis://host:port/db, redis+cluster://host:port or "
                                             "redis+sentinel://s1:port,s2:port/master (TIDEMQ_REDIS_URL)")
        sp.add_argument("--worker-id", help="worker id (TIDEMQ_WORKER_ID, default random)")
        sp.add_argument("--log-level", help="DEBUG, INFO, WARNING (TIDEMQ_LOG_LEVEL)")
        sp.add_argument("--env-file", metavar="PATH",
                        help="NAME=value lines read before the environment (which wins); re-read on SIGHUP")
        if name == "worker":
            sp.add_argument("--processes", type=int, default=1,
                            help="run N worker processes on one port (SO_REUSEPORT), default 1")
    inspect_cmd.add_parser(sub)
    mg = sub.add_parser("migrate", help="move a store written by an older version to this key layout "
                                        "(every TideMQ process stopped; docs/deploy.md, Upgrading)")
    mg.add_argument("--redis-url", help="the store (TIDEMQ_REDIS_URL)")
    mg.add_argument("--env-file", metavar="PATH", help="NAME=value lines read before the environment")
    pw = sub.add_parser("passwd", help="add, update or delete a user of a mosquitto-format password file",
                        description="Like mosquitto_passwd: writes user:$7$... (PBKDF2-SHA512) lines that "
                                    "TideMQ and mosquitto both read.")
    pw.add_argument("-c", dest="create", action="store_true", help="create the file (overwrites it)")
    pw.add_argument("-D", dest="delete", action="store_true", help="delete the user")
    pw.add_argument("--password-stdin", action="store_true", help="read the password from stdin (one line)")
    pw.add_argument("--iterations", type=int, default=None, help="PBKDF2 iterations (default 210000)")
    pw.add_argument("file")
    pw.add_argument("user")
    return p


def version() -> str:
    try:
        return metadata.version("tidemq")
    except metadata.PackageNotFoundError:
        return "unknown"


def _fail(message: str, code: int = 2) -> None:
    print(f"tidemq: {message}", file=sys.stderr)
    sys.exit(code)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "host": args.host, "mqtt_port": args.mqtt_port, "api_port": args.api_port,
        "redis_url": args.redis_url, "worker_id": args.worker_id, "log_level": args.log_level,
        "allow_insecure": args.allow_insecure,
    }
    if args.command == "standalone" and not args.redis_url:
        overrides["redis_url"] = "memory://"
    return overrides


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "inspect":
        sys.exit(inspect_cmd.run(args))
    if args.command == "passwd":
        sys.exit(passwd_command(args))
    if args.command == "migrate":
        sys.exit(migrate_command(args))
    overrides = _overrides(args)
    try:
        settings = Settings.from_env(env_file=args.env_file, **overrides)
    except ConfigError as exc:
        _fail(str(exc))
    exposed = settings.exposure(mqtt=args.command in ("worker", "standalone"),
                                api=args.command in ("api", "standalone"))
    if exposed and not settings.allow_insecure:
        print(f"tidemq: refusing to serve {'; '.join(exposed)}: set TIDEMQ_ALLOW_INSECURE=1 (or "
              "--allow-insecure) to accept that, or bind to 127.0.0.1 (docs/security.md)", file=sys.stderr)
        sys.exit(2)
    try:
        settings.check_files()
    except ConfigError as exc:
        _fail(str(exc))
    if args.command in ("api", "standalone") and settings.api_token_file:
        tokens = _component("tidemq.api.tokens")
        try:
            tokens.load_token_file(settings.api_token_file)
        except tokens.TokenFileError as exc:
            _fail(str(exc))
    logs.setup(settings.log_level, settings.log_json)
    _prepare(settings, exposed)
    if args.command == "worker" and args.processes > 1:
        sys.exit(_run_processes(settings, args.processes, args.env_file, overrides))
    _install_uvloop()
    try:
        asyncio.run(_run(args.command, settings, reuse_port=getattr(args, "reuse_port", False),
                         env_file=args.env_file, overrides=overrides))
    except KeyboardInterrupt:
        pass
    except ConfigError as exc:  # found while starting (an auth or TLS file that cannot be used)
        _fail(str(exc))
    except OSError as exc:  # a port in use, a store out of reach at start
        _fail(f"cannot start: {exc}", 1)


def migrate_command(args: argparse.Namespace) -> int:
    """``tidemq migrate``: move layout-1 sessions to this version's keys; returns the exit status."""
    from .store.connection import close_redis, open_redis
    from .store.migrate import ensure_layout, migrate, needs_migration

    try:
        settings = Settings.from_env(env_file=args.env_file, redis_url=args.redis_url)
    except ConfigError as exc:
        print(f"tidemq migrate: {exc}", file=sys.stderr)
        return 2

    async def run() -> int:
        redis = await open_redis(settings.store_url())
        try:
            if not await needs_migration(redis):
                print("tidemq migrate: nothing to do (the store is in this version's layout)")
                await ensure_layout(redis)  # writes the layout marker
                return 0
            report = await migrate(redis)
            print(f"tidemq migrate: {report.tenants} tenants, {report.sessions} sessions, {report.keys_moved} keys "
                  f"moved, {report.routes_rewritten} routes rewritten, {report.routes_dropped} routes of gone "
                  "sessions dropped")
            return 0
        finally:
            await close_redis(redis)

    try:
        return asyncio.run(run())
    except OSError as exc:
        print(f"tidemq migrate: cannot reach the store: {exc}", file=sys.stderr)
        return 1


def passwd_command(args: argparse.Namespace) -> int:
    """``tidemq passwd``: returns the exit status (0 done, 1 failed, 2 bad usage)."""
    import getpass

    from .auth.mosquitto import write_password_file
    from .auth.passwd import MOSQUITTO_ITERATIONS, hash_mosquitto

    if args.create and args.delete:
        print("tidemq passwd: -c and -D cannot be combined", file=sys.stderr)
        return 2
    if args.file.lower().endswith((".json", ".toml")):
        print("tidemq passwd: edits mosquitto-format password files (user:hash lines); for a JSON/TOML auth file "
              "put a hash from `python -m tidemq.auth.passwd` in it", file=sys.stderr)
        return 2
    if not args.create and not os.path.isfile(args.file):
        print(f"tidemq passwd: {args.file}: no such file (-c creates it)", file=sys.stderr)
        return 1
    encoded = None
    if not args.delete:
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        elif sys.stdin.isatty():
            password = getpass.getpass("Password: ")
            if getpass.getpass("Reenter password: ") != password:
                print("tidemq passwd: passwords do not match", file=sys.stderr)
                return 1
        else:
            print("tidemq passwd: no terminal to prompt on: use --password-stdin", file=sys.stderr)
            return 2
        if not password:
            print("tidemq passwd: empty password", file=sys.stderr)
            return 1
        try:
            encoded = hash_mosquitto(password, iterations=args.iterations or MOSQUITTO_ITERATIONS)
        except ValueError as exc:
            print(f"tidemq passwd: {exc}", file=sys.stderr)
            return 2
    try:
        changed = write_password_file(args.file, args.user, encoded, create=args.create)
    except (OSError, ValueError) as exc:
        print(f"tidemq passwd: {exc}", file=sys.stderr)
        return 1
    if not changed:
        print(f"tidemq passwd: user {args.user!r} not found in {args.file}", file=sys.stderr)
        return 1
    return 0


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


def _child(settings: Settings, env_file: str | None, overrides: dict[str, Any]) -> None:
    logs.setup(settings.log_level, settings.log_json)
    _prepare(settings, [])  # the parent logged the warnings
    _install_uvloop()
    try:
        asyncio.run(_run("worker", settings, reuse_port=True, env_file=env_file,
                         overrides={**overrides, "worker_id": settings.worker_id}))
    except KeyboardInterrupt:
        pass
    except ConfigError as exc:
        _fail(str(exc))


def _run_processes(settings: Settings, n: int, env_file: str | None, overrides: dict[str, Any]) -> int:
    """N worker processes sharing one listening port (SO_REUSEPORT); SIGTERM stops them all, SIGHUP is passed
    on to each."""
    import multiprocessing as mp
    import uuid

    ctx = mp.get_context("spawn")
    procs = []
    for i in range(n):
        wid = (settings.worker_id and f"{settings.worker_id}-{i}") or f"w-{uuid.uuid4().hex[:12]}"
        p = ctx.Process(target=_child, args=(dataclasses.replace(settings, worker_id=wid), env_file, overrides),
                        name=wid)
        p.start()
        procs.append(p)
    log.info("started %d worker processes on port %d", n, settings.mqtt_port)

    def forward(signum: int, _frame: Any) -> None:
        for p in procs:
            if p.is_alive() and p.pid:
                os.kill(p.pid, signal.SIGHUP if signum == signal.SIGHUP else signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward)
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


def _reload(settings: Settings, broker: Any, env_file: str | None, overrides: dict[str, Any]) -> None:
    """SIGHUP (see the module docstring); nothing here may end the process."""
    try:
        new = Settings.from_env(env_file=env_file, **overrides)
    except ConfigError as exc:
        log.error("SIGHUP: settings not re-read, keeping the current ones: %s", exc)
        new = settings
    logging.getLogger().setLevel(new.log_level.upper())
    restart = [f.name for f in dataclasses.fields(Settings) if f.name not in RELOADED
               and getattr(new, f.name) != getattr(settings, f.name)]
    if restart:
        log.warning("SIGHUP: changed settings that need a restart: %s", ", ".join(sorted(restart)))
    done = broker.reload(new) if broker is not None else []
    log.info("SIGHUP: reloaded log level %s%s", new.log_level.upper(), "".join(f", {d}" for d in done))


async def _run(command: str, settings: Settings, *, reuse_port: bool = False, env_file: str | None = None,
               overrides: dict[str, Any] | None = None) -> None:
    from .store.connection import close_redis, open_redis

    if command == "standalone":
        log.info("standalone mode: embedded in-memory store (fakeredis), no Redis server needed; "
                 "all state is lost when the process exits")
    from .store.migrate import MigrationNeeded, ensure_layout

    redis = await open_redis(settings.store_url())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    broker = api = None
    loop.add_signal_handler(signal.SIGHUP, lambda: _reload(settings, broker, env_file, overrides or {}))
    try:
        if command in ("worker", "standalone"):
            broker = _component("tidemq.worker.broker").Broker(settings, redis)  # checks auth files first
        try:  # a store written by an older version is refused until `tidemq migrate` moved it
            await ensure_layout(redis)
        except MigrationNeeded as exc:
            raise ConfigError(str(exc)) from None
        if broker is not None:
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
        tune_gc()
        await stop.wait()
        log.info("stopping")
    finally:
        if broker is not None:
            await broker.stop()
        if api is not None:
            await api.stop()
        await close_redis(redis)


GC_THRESHOLD = 50_000  # allocations between two generation-0 collections (CPython's default: 700)


def tune_gc() -> None:
    """Once the process is up: what start-up built lives as long as the process (frozen out of every
    collection), and generation-0 collections run every 50,000 allocations instead of 700 — a message
    allocates a handful of short-lived containers, so the default ran a collection every few hundred
    messages (~8 % of a worker's CPU under load). Objects are freed by reference counting as before; only
    cycles wait a little longer."""
    gc.set_threshold(GC_THRESHOLD, 20, 100)
    gc.freeze()


if __name__ == "__main__":
    main()
