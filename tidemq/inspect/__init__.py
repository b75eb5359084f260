"""``tidemq inspect``: read-only views of the broker state in Redis, for operators (docs/redis-keys.md).

This module only declares the command line and dispatches; ``views`` reads (through ``tidemq.store``
read functions only: HGETALL, XRANGE, HSCAN, ZRANGE, PTTL; never a script, never a write) and builds
plain JSON-able dicts, ``render`` turns them into text. Invariants: nothing here writes to Redis; every
time is shown as ISO-8601 UTC next to the raw milliseconds; ``--json`` prints exactly the dicts the text
is made from. Works on ``redis://`` (single node) and ``redis+cluster://`` alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

COMMANDS = ("session", "inbox", "routes", "retained", "settings", "workers")


def add_parser(sub: Any) -> None:
    """Register ``inspect`` and its sub-commands on the ``tidemq`` sub-parsers ``sub``."""
    p = sub.add_parser("inspect", help="read-only views of the state in Redis (sessions, inboxes, routes, ...)")
    p.add_argument("--redis-url", help="redis://host:port/db or redis+cluster://host:port (TIDEMQ_REDIS_URL)")
    p.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of text")
    what = p.add_subparsers(dest="what", required=True)
    # --json after the view's name too (SUPPRESS: the view's parser never resets the flag given before it)
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")

    def view(name: str, help_: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = what.add_parser(name, parents=[json_flag], help=help_)
        return parser

    s = view("session", "a session record: online? on which worker? subscriptions, QoS 2 state")
    s.add_argument("tenant")
    s.add_argument("client", help="the session: <user>/<client id> (its name in Redis)")
    s = view("inbox", "decoded entries of a persistent session's inbox")
    s.add_argument("tenant")
    s.add_argument("client", help="the session: <user>/<client id> (its name in Redis)")
    s.add_argument("--after", type=int, default=0, help="entries with a seq above this (default 0: from the start)")
    s.add_argument("--count", type=int, default=20, help="at most this many entries (default 20)")
    s = view("routes", "a tenant's routes, or who receives a publish to TOPIC")
    s.add_argument("tenant")
    s.add_argument("topic", nargs="?", help="a topic name: show the sessions a publish to it reaches")
    s.add_argument("--publisher", default="", help="the publishing client id (applies no-local)")
    s = view("retained", "retained messages of a tenant (all, or matched by FILTER)")
    s.add_argument("tenant")
    s.add_argument("filter", nargs="?", help="a topic filter (+ and # allowed); default: every topic")
    s.add_argument("--limit", type=int, default=100, help="at most this many messages (default 100)")
    s = view("settings", "a tenant's effective settings and which are overridden in Redis")
    s.add_argument("tenant")
    view("workers", "workers: lease, heartbeat age, counters")


def run(args: argparse.Namespace) -> int:
    """Run one ``inspect`` command; returns the exit status (0 found, 1 not found, 2 store error)."""
    from tidemq.config import Settings

    try:
        settings = Settings.from_env(redis_url=args.redis_url)
    except ValueError as exc:
        print(f"tidemq inspect: {exc}", file=sys.stderr)
        return 2
    try:
        found, data = asyncio.run(_gather(args, settings))
    except (OSError, ValueError) as exc:  # connection refused, bad URL
        print(f"tidemq inspect: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a store error (redis.exceptions.*): one line, no traceback
        print(f"tidemq inspect: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        from . import render

        print(render.text(args.what, data))
    return 0 if found else 1


async def _gather(args: argparse.Namespace, settings: Any) -> tuple[bool, dict[str, Any]]:
    from tidemq.store.connection import close_redis, open_redis

    from . import views

    r = await open_redis(settings.redis_url)
    try:
        return await views.gather(r, args, settings)
    finally:
        await close_redis(r)
