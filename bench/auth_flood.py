"""Wrong-password flood (issue 10): what it costs a worker, and what a legitimate client sees during it.

Starts redis-server and one TideMQ worker with the static-file provider (``TIDEMQ_AUTH_PROVIDER=file``, hashes
at the default PBKDF2 iterations, 600,000), then for each variant:

1. idle: a legitimate client connects every ``--probe-interval`` seconds for ``--idle`` seconds;
2. flood: ``--conns`` connections loop "TCP connect, CONNECT with user ``device`` and a wrong password, wait for
   the CONNACK or the close" for ``--flood`` seconds from ``--sources`` distinct loopback addresses
   (127.0.1.x; the legitimate client connects from 127.0.0.1, so the back-off of the flood's addresses never
   touches it), while the legitimate client keeps probing.

The legitimate probes alternate between a *warm* user (its password was verified before: served from the
provider's verified-password cache, no hashing) and a *fresh* user never seen before (one PBKDF2
verification on the worker's bounded pool, the worst case). Each probe's time is TCP connect -> CONNACK;
a probe that gets no CONNACK within ``--probe-timeout`` counts as a timeout.

The worker's CPU is sampled from ``/proc/<pid>/stat`` (utime + stime of the process, all its threads) and
reported in % of one core over each phase. Variants (``--variant``, repeatable): ``nobackoff``
(``TIDEMQ_AUTH_FAIL_THRESHOLD=0``), ``backoff`` (the default threshold 5), ``backoff-many`` (the default
threshold with ``--many`` flood addresses); each gets a fresh worker and Redis. ``--threads`` sets
``TIDEMQ_AUTH_VERIFY_THREADS`` (default: the worker's default, 2).

Usage: ``python bench/auth_flood.py [--flood 10] [--conns 100] [--json out.json]`` from the repository root.
Invariants: only loopback is touched; every process started is stopped; every phase is time-bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brokers import CLK_TCK, REPO, describe_source, start_broker
from mqttload import build_connect

WARM_USER = "warm"
FRESH_USERS = 400  # more than any run probes: every fresh probe is a never-verified user
FLOOD_USER = "device"
PASSWORD = "right-password"

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional
    uvloop = None  # type: ignore[assignment]


def auth_document() -> dict[str, Any]:
    """One tenant: the flood's target user, a warm user and FRESH_USERS fresh ones, all allowed everything."""
    sys.path.insert(0, str(REPO))
    from tidemq.auth.passwd import hash_password  # the checkout's own hashing, default iterations

    h = hash_password(PASSWORD)  # one hash for all: the provider's cache key includes the user name
    users = {name: {"password": h} for name in [FLOOD_USER, WARM_USER, *(f"fresh{i}" for i in range(FRESH_USERS))]}
    return {
        "default_tenant": "bench",
        "tenants": {"bench": {"acl": [{"permission": "allow", "action": "all", "topics": ["#"]}], "users": users}},
    }


async def connect_once(host: str, port: int, src: str, client_id: str, username: str, password: str,
                       within: float) -> int:
    """One CONNECT; the CONNACK return code, -1 if the broker closed without one, -2 on timeout."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(host, port, local_addr=(src, 0))
            writer.write(build_connect(client_id, keepalive=60, username=username, password=password))
            head = await reader.readexactly(4)
            return head[3] if head[0] == 0x20 else -1
    except TimeoutError:
        return -2
    except (OSError, asyncio.IncompleteReadError):
        return -1
    finally:
        if writer is not None:
            writer.transport.abort()


@dataclass
class Probe:
    user: str  # "warm" or "fresh"
    phase: str
    ms: float | None  # None: timeout or refused
    rc: int


@dataclass
class VariantResult:
    variant: str
    env: dict[str, str]
    flood_sources: int
    cpu_idle_pct: float = 0.0
    cpu_flood_pct: float = 0.0
    cpu_flood_samples: list[float] = field(default_factory=list)
    flood_attempts: int = 0
    flood_per_s: float = 0.0
    flood_codes: dict[str, int] = field(default_factory=dict)
    probes: list[Probe] = field(default_factory=list)
    error: str | None = None


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Prober:
    """Starts one legitimate CONNECT every ``interval`` seconds, alternating warm and fresh users."""

    def __init__(self, host: str, port: int, interval: float, timeout: float) -> None:
        self.host, self.port, self.interval, self.timeout = host, port, interval, timeout
        self.fresh = 0
        self.n = 0
        self.tasks: list[asyncio.Task[Probe]] = []

    async def one(self, user: str, phase: str) -> Probe:
        kind = "warm" if user == WARM_USER else "fresh"
        t0 = time.perf_counter()
        rc = await connect_once(self.host, self.port, "127.0.0.1", f"legit-{self.n}", user, PASSWORD, self.timeout)
        ms = (time.perf_counter() - t0) * 1000 if rc == 0 else None
        return Probe(kind, phase, ms, rc)

    async def run(self, phase: str, seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            self.n += 1
            if self.n % 2:
                user = WARM_USER
            else:
                user, self.fresh = f"fresh{self.fresh % FRESH_USERS}", self.fresh + 1
            self.tasks.append(asyncio.create_task(self.one(user, phase)))
            await asyncio.sleep(self.interval)


async def flood(host: str, port: int, sources: list[str], conns: int, until: float, counts: dict[str, int]) -> None:
    async def loop(i: int) -> None:
        src = sources[i % len(sources)]
        n = 0
        while time.perf_counter() < until:
            n += 1
            rc = await connect_once(host, port, src, f"flood-{i}-{n}", FLOOD_USER, f"wrong-{i}-{n}",
                                    max(0.1, until - time.perf_counter()))
            if rc == -2:
                break  # the flood's own time bound, not an answer
            key = {0: "accepted", 4: "bad password (4)", 5: "not authorized (5)", -1: "closed"}.get(rc, f"rc {rc}")
            counts[key] = counts.get(key, 0) + 1

    await asyncio.gather(*(loop(i) for i in range(conns)))


async def measure(host: str, port: int, pid: int, args: argparse.Namespace, res: VariantResult,
                  sources: list[str]) -> None:
    prober = Prober(host, port, args.probe_interval, args.probe_timeout)
    # warm the warm user (one verification, then cached) before measuring anything
    first = await prober.one(WARM_USER, "setup")
    if first.rc != 0:
        raise RuntimeError(f"the legitimate client is refused (rc {first.rc}) before any flood")
    c0, w0 = proc_cpu(pid), time.perf_counter()
    await prober.run("idle", args.idle)
    await asyncio.gather(*prober.tasks)
    res.cpu_idle_pct = 100 * (proc_cpu(pid) - c0) / (time.perf_counter() - w0)

    counts: dict[str, int] = {}
    c0, w0 = proc_cpu(pid), time.perf_counter()
    until = w0 + args.flood
    flood_task = asyncio.create_task(flood(host, port, sources, args.conns, until, counts))

    async def sample() -> None:
        last_c, last_w = c0, w0
        while time.perf_counter() < until:
            await asyncio.sleep(1.0)
            c, w = proc_cpu(pid), time.perf_counter()
            res.cpu_flood_samples.append(round(100 * (c - last_c) / (w - last_w), 1))
            last_c, last_w = c, w

    await asyncio.gather(prober.run("flood", args.flood), sample())
    res.cpu_flood_pct = 100 * (proc_cpu(pid) - c0) / (time.perf_counter() - w0)
    await flood_task
    res.flood_attempts = sum(counts.values())
    res.flood_per_s = res.flood_attempts / args.flood
    res.flood_codes = counts
    res.probes = list(await asyncio.gather(*prober.tasks))


def run_variant(name: str, args: argparse.Namespace, auth_file: Path) -> VariantResult:
    env = {"TIDEMQ_AUTH_PROVIDER": "file", "TIDEMQ_AUTH_FILE": str(auth_file)}
    if name == "nobackoff":
        env["TIDEMQ_AUTH_FAIL_THRESHOLD"] = "0"
    if args.threads:
        env["TIDEMQ_AUTH_VERIFY_THREADS"] = str(args.threads)
    n_src = args.many if name == "backoff-many" else 1
    sources = [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(n_src)]
    res = VariantResult(name, env, n_src)
    try:
        with start_broker("tidemq", tidemq_src=args.tidemq_src, env_extra=env) as broker:
            coro = measure(broker.host, broker.port, broker.procs[0].pid, args, res, sources)
            _ = uvloop.run(coro) if uvloop is not None else asyncio.run(coro)
            broker.check_alive()
    except Exception as exc:  # reported as the variant's error, the other variants still run
        res.error = f"{type(exc).__name__}: {exc}"
    return res


def _stats(vals: list[float | None]) -> str:
    ok = sorted(v for v in vals if v is not None)
    bad = len(vals) - len(ok)
    if not ok:
        return f"n={len(vals)}: all timed out/refused"
    p50 = statistics.median(ok)
    return f"n={len(vals)} p50 {p50:,.0f} ms, max {ok[-1]:,.0f} ms" + (f", {bad} timed out/refused" if bad else "")


def render(results: list[VariantResult]) -> str:
    out = []
    for r in results:
        out.append(f"== {r.variant} (flood from {r.flood_sources} address{'es' if r.flood_sources > 1 else ''};"
                   f" {' '.join(f'{k}={v}' for k, v in r.env.items() if k != 'TIDEMQ_AUTH_FILE')})")
        if r.error:
            out.append(f"   ERROR {r.error}")
            continue
        out.append(f"   worker CPU: idle {r.cpu_idle_pct:.0f}%, flood {r.cpu_flood_pct:.0f}% of one core "
                   f"(per second: {', '.join(f'{s:.0f}' for s in r.cpu_flood_samples)})")
        out.append(f"   flood: {r.flood_attempts} wrong-password CONNECTs answered ({r.flood_per_s:,.0f}/s): "
                   + ", ".join(f"{k} {v}" for k, v in sorted(r.flood_codes.items())))
        for phase in ("idle", "flood"):
            for kind in ("warm", "fresh"):
                vals = [p.ms for p in r.probes if p.phase == phase and p.user == kind]
                out.append(f"   legit CONNECT {phase:<5} {kind:<5}: {_stats(vals)}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", action="append", choices=["nobackoff", "backoff", "backoff-many"])
    ap.add_argument("--flood", type=float, default=10.0, help="seconds of flood per variant (default 10)")
    ap.add_argument("--idle", type=float, default=3.0, help="seconds of idle probing before the flood (default 3)")
    ap.add_argument("--conns", type=int, default=100, help="concurrent flood connections (default 100)")
    ap.add_argument("--many", type=int, default=200, help="flood addresses in backoff-many (default 200)")
    ap.add_argument("--threads", type=int, default=0, help="TIDEMQ_AUTH_VERIFY_THREADS (default: the worker's)")
    ap.add_argument("--probe-interval", type=float, default=0.5)
    ap.add_argument("--probe-timeout", type=float, default=15.0)
    ap.add_argument("--tidemq-src", type=Path, default=REPO, metavar="DIR")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    print(f"TideMQ code: {describe_source(args.tidemq_src)}", file=sys.stderr, flush=True)
    variants = args.variant or ["nobackoff", "backoff", "backoff-many"]
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as tmp:
        auth_file = Path(tmp) / "auth.json"
        auth_file.write_text(json.dumps(auth_document()))
        results = []
        for v in variants:
            print(f"{v} ...", file=sys.stderr, flush=True)
            results.append(run_variant(v, args, auth_file))
    print(render(results))
    print(f"\nflood {args.flood:.0f} s x {args.conns} connections, probes every {args.probe_interval} s, "
          f"cpus={os.cpu_count()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                               "results": [asdict(r) for r in results]}, indent=2) + "\n")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
