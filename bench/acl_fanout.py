"""Fan-out through a worker with and without narrowed subscriptions (issue 15), over real sockets.

Starts redis-server and one TideMQ worker with the static-file provider. Users of tenant ``bench``:

- ``plain``: ``allow all #`` (its ``sensors/#`` subscription overlaps no deny rule: carries nothing);
- ``narrow``: ``deny subscribe sensors/secret/#`` then ``allow all #`` (its ``sensors/#`` subscription is
  granted narrowed: every delivery to it is read-checked against ``sensors/secret/#``);
- ``pub``: ``allow all #``, the one publisher.

Each run starts a fresh worker and Redis, connects ``--subscribers`` subscribers to ``sensors/#`` (QoS 0) and
pipelines ``--messages`` QoS 0 PUBLISHes cycling over ``--topics`` distinct topics
``sensors/site<k>/dev<i>/temp``, one in ``--secret-every`` of them ``sensors/secret/<i>`` instead. Layouts:

- ``plain``: every subscriber is ``plain``;
- ``narrowed``: every subscriber is ``narrow`` (all of them pay the read check; they receive no secret topic);
- ``mixed``: one ``narrow`` subscriber, the others ``plain`` (what a single narrowed subscription costs the rest).

Reported per run: *published msgs/s* (messages published / first publish -> last delivery: the same stream for
every layout, so this is the figure to compare), deliveries/s summed over subscribers, and lost (expected minus
received: a ``narrow`` subscriber expects only the non-secret messages). Layouts alternate within each repeat
so machine drift hits them alike; the ratio narrowed/plain and mixed/plain is over the medians of the runs
that lost nothing (a run whose wait for deliveries timed out is shown, not counted).

Usage: ``python bench/acl_fanout.py [--subscribers 50] [--messages 10000] [--repeat 3] [--json out.json]``
from the repository root. Invariants: only loopback is touched; every process started is stopped; every run
is time-bounded (``--pub-time``; then ``--idle`` seconds without progress once deliveries began, or ``--grace``
seconds, end the wait for deliveries).
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brokers import REPO, describe_source, start_broker
from mqttload import MqttConn, build_publish, connect

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional
    uvloop = None  # type: ignore[assignment]

PASSWORD = "bench-pw"
LAYOUTS = ("plain", "narrowed", "mixed")


def auth_document() -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from tidemq.auth.passwd import hash_password

    h = hash_password(PASSWORD, iterations=1000)  # connects are not what this measures
    allow_all = {"permission": "allow", "action": "all", "topics": ["#"]}
    deny_secret = {"permission": "deny", "action": "subscribe", "topics": ["sensors/secret/#"]}
    return {
        "default_tenant": "bench",
        "tenants": {"bench": {"users": {
            "pub": {"password": h, "acl": [allow_all]},
            "plain": {"password": h, "acl": [allow_all]},
            "narrow": {"password": h, "acl": [deny_secret, allow_all]},
        }}},
    }


def topic_cycle(n: int, secret_every: int) -> list[str]:
    return [f"sensors/secret/{i}" if secret_every and i % secret_every == 0 else f"sensors/site{i % 7}/dev{i}/temp"
            for i in range(n)]


@dataclass
class RunResult:
    layout: str
    published: int = 0
    delivered: int = 0
    expected: int = 0
    lost: int = 0
    elapsed: float = 0.0
    published_per_s: float = 0.0
    deliveries_per_s: float = 0.0
    broker_cpu_pct: float = 0.0
    error: str | None = None


async def one_run(host: str, port: int, layout: str, args: argparse.Namespace) -> RunResult:
    res = RunResult(layout)
    n = args.subscribers
    users = {"plain": ["plain"] * n, "narrowed": ["narrow"] * n, "mixed": ["narrow"] + ["plain"] * (n - 1)}[layout]
    subs: list[MqttConn] = list(await asyncio.gather(
        *(connect(host, port, f"sub-{i}", username=u, password=PASSWORD) for i, u in enumerate(users))))
    pub = await connect(host, port, "pub", username="pub", password=PASSWORD)
    try:
        await asyncio.gather(*(c.subscribe(["sensors/#"], 0) for c in subs))  # a refusal raises MqttError
        topics = topic_cycle(args.topics, args.secret_every)
        packets = [build_publish(t, b"x" * args.payload, 0) for t in topics]
        secret = [t.startswith("sensors/secret/") for t in topics]
        t0 = time.perf_counter()
        deadline = t0 + args.pub_time
        sent = 0
        while sent < args.messages and time.perf_counter() < deadline:
            k = min(200, args.messages - sent)
            pub.write(b"".join(packets[(sent + j) % len(packets)] for j in range(k)))
            sent += k
            await pub.drain()
        n_secret = sum(secret[j % len(secret)] for j in range(sent))
        want = [sent - n_secret if u == "narrow" else sent for u in users]
        res.published, res.expected = sent, sum(want)
        pub_end = last_change = time.perf_counter()
        last = 0
        while True:  # until all arrived, --idle s without progress once deliveries began, or --grace s
            got = sum(c.received for c in subs)
            now = time.perf_counter()
            if got >= res.expected or (got and now - last_change > args.idle) or now - pub_end > args.grace:
                break
            if got != last:
                last, last_change = got, now
            await asyncio.sleep(0.02)
        res.delivered = sum(c.received for c in subs)
        res.lost = sum(max(0, w - c.received) for w, c in zip(want, subs, strict=True))
        res.elapsed = max(c.last_rx for c in subs) - t0
        res.published_per_s = sent / res.elapsed if res.elapsed > 0 else 0.0
        res.deliveries_per_s = res.delivered / res.elapsed if res.elapsed > 0 else 0.0
    finally:
        await asyncio.gather(*(c.disconnect() for c in [pub, *subs]), return_exceptions=True)
    return res


def run_layout(layout: str, args: argparse.Namespace, auth_file: Path) -> RunResult:
    env = {"TIDEMQ_AUTH_PROVIDER": "file", "TIDEMQ_AUTH_FILE": str(auth_file)}
    try:
        with start_broker("tidemq", tidemq_src=args.tidemq_src, env_extra=env) as broker:
            c0, w0 = broker.cpu_seconds(), time.perf_counter()
            coro = one_run(broker.host, broker.port, layout, args)
            res = uvloop.run(coro) if uvloop is not None else asyncio.run(coro)
            res.broker_cpu_pct = 100 * (broker.cpu_seconds() - c0) / (time.perf_counter() - w0)
            broker.check_alive()
            return res
    except Exception as exc:  # one failed run is reported, the others still run
        return RunResult(layout, error=f"{type(exc).__name__}: {exc}")


def render(runs: list[RunResult], layouts: list[str]) -> str:
    out = ["| layout | published msgs/s (each run) | median | deliveries/s (median) | lost | broker CPU % |",
           "| --- | --- | ---: | ---: | --- | --- |"]
    med: dict[str, float] = {}
    for lay in layouts:
        rs = [r for r in runs if r.layout == lay and r.error is None]
        ok = [r for r in rs if not r.lost]  # a run that timed out waiting is shown, not counted
        if not ok:
            out.append(f"| {lay} | ERROR or lost in every run | - | - | - | - |")
            continue
        med[lay] = statistics.median(r.published_per_s for r in ok)
        out.append(
            f"| {lay} | {' / '.join(f'{r.published_per_s:,.0f}' for r in rs)} | {med[lay]:,.0f} | "
            f"{statistics.median(r.deliveries_per_s for r in ok):,.0f} | {' / '.join(str(r.lost) for r in rs)} | "
            f"{' / '.join(f'{r.broker_cpu_pct:.0f}' for r in rs)} |")
    if "plain" in med:
        for lay in ("narrowed", "mixed"):
            if lay in med:
                out.append(f"\n{lay} / plain (published msgs/s, medians): {med[lay] / med['plain']:.2f}")
    for r in runs:
        if r.error:
            out.append(f"  error in {r.layout}: {r.error}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layout", action="append", choices=LAYOUTS)
    ap.add_argument("--subscribers", type=int, default=50)
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--topics", type=int, default=100, help="distinct topics published (default 100)")
    ap.add_argument("--secret-every", type=int, default=10, help="1 topic in N is sensors/secret/... (0: none)")
    ap.add_argument("--payload", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pub-time", type=float, default=20.0)
    ap.add_argument("--idle", type=float, default=20.0, help="seconds without progress, once deliveries began")
    ap.add_argument("--grace", type=float, default=60.0, help="longest wait for deliveries after publishing")
    ap.add_argument("--tidemq-src", type=Path, default=REPO, metavar="DIR")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    layouts = args.layout or list(LAYOUTS)
    print(f"TideMQ code: {describe_source(args.tidemq_src)}", file=sys.stderr, flush=True)
    runs: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-aclfo-") as tmp:
        auth_file = Path(tmp) / "auth.json"
        auth_file.write_text(json.dumps(auth_document()))
        for i in range(args.repeat):
            for lay in layouts:
                print(f"repeat {i + 1}: {lay} ...", file=sys.stderr, flush=True)
                runs.append(run_layout(lay, args, auth_file))
    print(render(runs, layouts))
    print(f"\n{args.subscribers} subscribers of sensors/#, {args.messages} QoS 0 messages over {args.topics} topics "
          f"(1 in {args.secret_every} secret), {args.payload}-byte payloads, cpus={os.cpu_count()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                               "runs": [asdict(r) for r in runs]}, indent=2) + "\n")
    return 1 if any(r.error or r.lost for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
