"""Horizontal scale on one machine: TideMQ with 1 worker, 2 workers, or ``--processes 2``, on one Redis.

Usage (from the repository root)::

    python bench/multiworker.py --scale small --layout 1w --layout 2w --layout 2p --scenario fan-in --scenario p2p

Layouts: ``1w`` one worker process; ``2w`` two worker processes on their own ports, the scenario's clients
spread round-robin over them (``p2p``: publisher i and subscriber i always on different workers, so every
message crosses workers through Redis); ``2p`` ``tidemq worker --processes 2`` on one port (the kernel spreads
connections, SO_REUSEPORT). ``offline-queue`` (one persistent subscriber, its inbox) uses the first port
only: it measures the Redis cost of the inbox path, not scale. ``3c`` is a 3-master Redis Cluster on this
machine with three workers (clients spread round-robin, one tenant): it shows how one tenant's sessions and
traffic spread over the masters, with the commands and keys each master carries (``INFO commandstats`` and
``DBSIZE`` of each; goal 25-45 % each). For each (scenario, layout) a fresh redis-server (or cluster) and
fresh workers are started.

Besides the scenario's own metrics it reports the Redis cost: ``CONFIG RESETSTAT`` right before the scenario,
``INFO commandstats`` right after, and the calls divided by the messages delivered. Commands run inside Lua
scripts are counted by Redis under their own names as well as the ``evalsha`` that ran them, so ``cmds/msg``
counts both (it is the work Redis did); ``evalsha/msg`` counts script calls, and the top commands are listed.
Invariants: only 127.0.0.1 is used; every process started here is stopped; every scenario is time-bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brokers import HOST, REPO, Broker, BrokerError, _spawn, _stop, _wait_port, free_port, source_overlay
from run import _bounded, _raise_nofile, _run_async, _scenario_budget
from scenarios import SCALES, SCENARIOS, ScenarioResult

LAYOUTS = {"1w": (1, False), "2w": (2, False), "2p": (2, True), "3c": (3, False)}
CLUSTER = {"3c": 3}  # layouts on a Redis Cluster: number of masters
DEFAULT_SCENARIOS = ["fan-in", "p2p", "fan-out-qos1", "offline-queue"]
# scenarios whose clients can use several ports
SPREAD = {"fan-in", "p2p", "fan-out-qos0", "fan-out-qos1", "p2p-persistent-qos1", "p2p-persistent-qos2"}


def _redis_cmd(port: int, *args: str) -> str:
    """One command over a raw socket (inline protocol); returns the reply text."""
    with socket.create_connection((HOST, port), timeout=5) as s:
        s.sendall((" ".join(args) + "\r\n").encode())
        data = b""
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            data += chunk
            if data[:1] == b"$":
                head, _, rest = data.partition(b"\r\n")
                if len(rest) >= int(head[1:]) + 2:
                    break
            elif data.endswith(b"\r\n"):
                break
    return data.decode(errors="replace")


def redis_cpu(port: int) -> float:
    """CPU seconds (user + sys) the redis-server on ``port`` used so far (``INFO cpu``)."""
    total = 0.0
    for line in _redis_cmd(port, "INFO", "cpu").splitlines():
        if line.startswith(("used_cpu_user:", "used_cpu_sys:")):
            total += float(line.split(":", 1)[1])
    return total


def commandstats(port: int) -> dict[str, int]:
    """``INFO commandstats`` as {command: calls}."""
    out: dict[str, int] = {}
    for line in _redis_cmd(port, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line[len("cmdstat_"):].partition(":")
            fields = dict(kv.split("=", 1) for kv in rest.split(","))
            out[name] = int(fields["calls"])
    return out


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 < 65536:
            with contextlib.suppress(OSError), socket.socket() as s:
                s.bind((HOST, port + 10000))
                return port


def _start_redis(tmp: Path, procs: list[Any], broker: Broker, masters: int) -> tuple[list[int], str]:
    """One redis-server, or ``masters`` of them made a cluster: (ports, store URL)."""
    ports = [_free_cluster_port() if masters else free_port() for _ in range(max(masters, 1))]
    for port in ports:
        rlog = tmp / f"redis-{port}.log"
        cmd = ["redis-server", "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
               "--dir", str(tmp)]
        if masters:
            cmd += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"]
        rproc = _spawn(cmd, rlog, tmp)
        procs.append(rproc)
        broker.logs.append(rlog)
        _wait_port(port, rproc, rlog, "redis-server")
    if not masters:
        return ports, f"redis://{HOST}:{ports[0]}/0"
    import subprocess

    subprocess.run(["redis-cli", "--cluster", "create", *(f"{HOST}:{p}" for p in ports), "--cluster-replicas", "0",
                    "--cluster-yes"], check=True, capture_output=True, timeout=60)
    deadline = time.monotonic() + 30
    def settled(port: int) -> bool:  # every node knows every node and sees all slots served
        info = _redis_cmd(port, "CLUSTER", "INFO")
        return ("cluster_state:ok" in info and f"cluster_known_nodes:{len(ports)}" in info
                and "cluster_slots_ok:16384" in info)

    while not all(settled(p) for p in ports):
        if time.monotonic() > deadline:
            raise BrokerError("the Redis Cluster did not come up")
        time.sleep(0.1)
    return ports, f"redis+cluster://{HOST}:{ports[0]}"


@contextlib.contextmanager
def start_layout(
    layout: str, max_queued: int, keep_logs: Path | None = None
) -> Iterator[tuple[Broker, list[int], list[int]]]:
    """Redis and the layout's workers on free ports: yields (broker for CPU, mqtt ports, redis ports)."""
    n, one_port = LAYOUTS[layout]
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-mw-{layout}-"))
    procs: list[Any] = []
    broker = Broker(f"tidemq-{layout}", HOST, 0)
    try:
        rports, url = _start_redis(tmp, procs, broker, CLUSTER.get(layout, 0))
        rport = rports[0]
        env = {**source_overlay(REPO, tmp / "src"), "TIDEMQ_INBOX_SIZE": str(max_queued)}  # this checkout's code
        base = [sys.executable, "-m", "tidemq.cli", "worker", "--host", HOST, "--log-level", "WARNING",
                "--redis-url", url]
        ports = [free_port()] if one_port else [free_port() for _ in range(n)]
        cmds = ([[*base, "--mqtt-port", str(ports[0]), "--processes", str(n)]] if one_port
                else [[*base, "--mqtt-port", str(p)] for p in ports])
        for i, cmd in enumerate(cmds):
            log = tmp / f"worker{i}.log"
            procs.insert(i, _spawn(cmd, log, tmp, env))
            broker.logs.insert(i, log)
        for i, p in enumerate(ports):
            _wait_port(p, procs[i], broker.logs[i], "worker")
        if one_port:  # both children listening: both registered their lease
            deadline = time.monotonic() + 20
            while _redis_cmd(rport, "ZCARD", "tidemq:workers").strip() != f":{n}":
                if time.monotonic() > deadline:
                    raise BrokerError("the worker processes did not all start")
                time.sleep(0.05)
        broker.port, broker.procs = ports[0], procs
        yield broker, ports, rports
    finally:
        for p in procs:
            _stop(p)
        if keep_logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for log in broker.logs:
                if log.exists():
                    (keep_logs / log.name).write_bytes(log.read_bytes())


def run_one(name: str, layout: str, args: argparse.Namespace, run_id: str) -> dict[str, Any]:
    scale = SCALES[args.scale]
    rec: dict[str, Any] = {"scenario": name, "layout": layout}
    logs = Path(args.logs) / f"{name}-{layout}" if args.logs else None
    try:
        with start_layout(layout, max(20_000, scale.offline_messages + 1_000), logs) as (broker, ports, rports):
            target: int | list[int] = ports if len(ports) > 1 and name in SPREAD else ports[0]
            for rport in rports:
                _redis_cmd(rport, "CONFIG", "RESETSTAT")
            rcpu0 = [redis_cpu(rport) for rport in rports]
            cpu0, w0 = broker.cpu_seconds(), time.perf_counter()
            try:
                res = _run_async(_bounded(SCENARIOS[name](HOST, target, scale, args.mqtt_version, run_id),  # type: ignore[arg-type]
                                          _scenario_budget(scale)))
            except Exception as exc:
                res = ScenarioResult(name, error=f"{type(exc).__name__}: {exc}")
            wall = time.perf_counter() - w0
            per_master = [commandstats(rport) for rport in rports]
            rcpu = [redis_cpu(rport) - c0 for rport, c0 in zip(rports, rcpu0, strict=True)]
            stats: dict[str, int] = {}
            for one in per_master:
                for cmd, calls in one.items():
                    stats[cmd] = stats.get(cmd, 0) + calls
            if len(rports) > 1:  # how one tenant spread over the masters: share of the commands and keys
                calls = [sum(one.values()) for one in per_master]
                keys_n = [int(_redis_cmd(p, "DBSIZE").strip().lstrip(":") or 0) for p in rports]
                rec["masters"] = {"commands_pct": [round(100 * c / max(sum(calls), 1), 1) for c in calls],
                                  "keys": keys_n,
                                  "keys_pct": [round(100 * k / max(sum(keys_n), 1), 1) for k in keys_n]}
            rec["cpu_pct"] = round(100 * (broker.cpu_seconds() - cpu0) / wall, 1)
            broker.check_alive()
    except BrokerError as exc:
        res, stats, rcpu = ScenarioResult(name, error=str(exc)), {}, []
    delivered = max(res.received, 1)
    total = sum(stats.values())
    rec["redis"] = {
        "calls": total,
        "cpu_us_per_msg": round(1e6 * sum(rcpu) / delivered, 2) if stats else None,
        "cmds_per_msg": round(total / delivered, 3),
        "evalsha_per_msg": round(stats.get("evalsha", 0) / delivered, 3),
        "top": dict(sorted(stats.items(), key=lambda kv: -kv[1])[:8]),
    }
    rec["result"] = asdict(res)
    return rec


def render(records: list[dict[str, Any]]) -> str:
    head = ["scenario", "layout", "rate (msg/s)", "p50 ms", "lost", "CPU %", "redis cmds/msg", "evalsha/msg"]
    rows = []
    for r in records:
        res = r["result"]
        metrics = {m["name"]: m["value"] for m in res["metrics"]}
        rate = next((v for k, v in metrics.items() if "/s" in k), float("nan"))
        p50 = metrics.get("latency p50", float("nan"))
        rows.append([r["scenario"], r["layout"], "ERROR" if res["error"] else f"{rate:,.0f}",
                     "-" if p50 != p50 else f"{p50:.1f}", str(res["lost"]), str(r.get("cpu_pct", "-")),
                     f"{r['redis']['cmds_per_msg']:.3f}", f"{r['redis']['evalsha_per_msg']:.3f}"])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.append("")
    for r in records:
        lines.append(f"{r['scenario']} @ {r['layout']}: redis CPU {r['redis'].get('cpu_us_per_msg')} us/msg, "
                     f"top redis commands {r['redis']['top']}")
        if "masters" in r:
            m = r["masters"]
            lines.append(f"  per master: commands {m['commands_pct']} %, keys {m['keys']} ({m['keys_pct']} %)")
        if r["result"]["error"]:
            lines.append(f"  error: {r['result']['error']}")
        lines += [f"  note: {n}" for n in r["result"]["notes"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layout", action="append", choices=list(LAYOUTS), help="default: 1w, 2w, 2p (3c: cluster)")
    ap.add_argument("--scenario", action="append",
                    choices=[s for s in SCENARIOS if s in SPREAD or s in ("offline-queue", "connect-storm")],
                    help=f"default: {', '.join(DEFAULT_SCENARIOS)}")
    ap.add_argument("--scale", choices=list(SCALES), default="small")
    ap.add_argument("--mqtt-version", type=int, choices=[4, 5], default=4)
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--logs", metavar="DIR")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop what we started
    _raise_nofile()
    run_id = os.urandom(3).hex()
    records = []
    for sc in args.scenario or DEFAULT_SCENARIOS:
        for layout in args.layout or [name for name in LAYOUTS if name not in CLUSTER]:
            print(f"{sc} @ {layout} ...", file=sys.stderr, flush=True)
            records.append(run_one(sc, layout, args, run_id))
    print(render(records))
    if args.json:
        Path(args.json).write_text(json.dumps({"scale": args.scale, "cpus": os.cpu_count(), "results": records},
                                              indent=2, default=str) + "\n")
    return 1 if all(r["result"]["error"] for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
