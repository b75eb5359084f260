"""Run the MQTT benchmark scenarios against mosquitto and TideMQ in one run and print a comparison table.

Usage (from the repository root)::

    python bench/run.py --broker mosquitto --broker tidemq --scenario all --scale small --json out.json

For every scenario, each broker is started fresh on free loopback ports (TideMQ worker mode also gets its own
redis-server), the scenario runs against it, and everything is stopped before the next one, so a scenario
never inherits another's backlog and both brokers are measured under the same machine conditions.
Invariants: nothing but 127.0.0.1 is touched; every scenario is bounded in count and time; a failing broker or
scenario is reported as an error row, never aborts the remaining ones; all processes started are stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brokers import REPO, BrokerError, describe_source, start_broker
from scenarios import (
    ALIASES,
    BROKER_PROBE,
    QUEUE_LIMITS,
    RECEIVE_CAP,
    SCALES,
    SCENARIOS,
    Metric,
    Scale,
    ScenarioResult,
)

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional
    uvloop = None  # type: ignore[assignment]

BROKER_ORDER = ["mosquitto", "tidemq"]


def _run_async(coro: Coroutine[Any, Any, ScenarioResult]) -> ScenarioResult:
    if uvloop is not None:
        return uvloop.run(coro)
    return asyncio.run(coro)


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))


def _scenario_budget(s: Scale) -> float:
    """Hard wall-clock cap for one scenario run against one broker (normally never reached)."""
    return s.pub_time + (RECEIVE_CAP + 3) * s.grace + 30.0


async def _bounded(coro: Coroutine[Any, Any, ScenarioResult], budget: float) -> ScenarioResult:
    return await asyncio.wait_for(coro, budget)


def run_one(name: str, broker_kind: str, args: argparse.Namespace, scale: Scale, run_id: str) -> dict[str, Any]:
    """Start ``broker_kind``, run scenario ``name`` against it, stop it; return a JSON-able record."""
    fn = SCENARIOS[name]
    rec: dict[str, Any] = {"scenario": name, "broker": broker_kind}
    logs = Path(args.logs) / f"{name}-{broker_kind}" if args.logs else None
    try:
        with start_broker(
            broker_kind,
            tidemq_mode=args.tidemq_mode,
            max_queued=(QUEUE_LIMITS[name](scale) if name in QUEUE_LIMITS
                        else max(20_000, scale.offline_messages + 1_000)),
            extra_args=args.tidemq_arg if broker_kind == "tidemq" else None,
            keep_logs=logs,
            tidemq_src=args.tidemq_src,
        ) as broker:
            (b0, r0), lg0, w0 = broker.cpu_split(), time.process_time(), time.perf_counter()
            token = BROKER_PROBE.set(broker)
            try:
                res = _run_async(
                    _bounded(fn(broker.host, broker.port, scale, args.mqtt_version, run_id), _scenario_budget(scale))
                )
            except Exception as exc:
                res = ScenarioResult(name, error=f"{type(exc).__name__}: {exc}")
            finally:
                BROKER_PROBE.reset(token)
            wall = time.perf_counter() - w0
            b1, r1 = broker.cpu_split()
            cpu_s = (b1 - b0) + (r1 - r0)
            rec["cpu"] = {
                "wall_s": round(wall, 3),
                "broker_pct": round(100 * cpu_s / wall, 1),  # broker + redis (as before)
                "process_pct": round(100 * (b1 - b0) / wall, 1),  # the broker process alone
                "redis_pct": round(100 * (r1 - r0) / wall, 1),
                "loadgen_pct": round(100 * (time.process_time() - lg0) / wall, 1),
            }
            if res.received and cpu_s > 0 and not res.error:
                what = "connects" if "storm" in name else "deliveries"
                res.metrics.append(Metric(f"{what} per CPU-s (broker+redis)", res.received / cpu_s, "1/CPU-s"))
            try:
                broker.check_alive()
            except BrokerError as exc:
                res.error = (res.error + "; " if res.error else "") + str(exc)
    except BrokerError as exc:
        res = ScenarioResult(name, error=str(exc))
    rec["result"] = asdict(res)
    return rec


def _fmt(v: float) -> str:
    if v != v:  # NaN
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _lost_cell(recs: list[dict[str, Any] | None]) -> str:
    parts = []
    for r in recs:
        if r is None:
            parts.append("-")
            continue
        res = r["result"]
        cell = "err" if res["error"] else str(res["lost"])
        if res["duplicated"]:
            cell += f" (+{res['duplicated']} dup)"
        parts.append(cell)
    return " / ".join(parts)


def render(records: list[dict[str, Any]], brokers: list[str], scenarios: list[str]) -> str:
    """Comparison table: scenario, metric, one column per broker, ratio (tidemq/mosquitto), lost."""
    by = {(r["scenario"], r["broker"]): r for r in records}
    ratio = "mosquitto" in brokers and "tidemq" in brokers
    header = ["scenario", "metric", *brokers] + (["ratio t/m"] if ratio else []) + ["lost (" + "/".join(brokers) + ")"]
    rows: list[list[str]] = []
    for sc in scenarios:
        recs = [by.get((sc, b)) for b in brokers]
        names: list[tuple[str, str, bool]] = []
        for r in recs:
            if r is not None:
                for m in r["result"]["metrics"]:
                    key = (m["name"], m["unit"], m["higher_is_better"])
                    if key not in names:
                        names.append(key)
        if not names:
            names = [("(no result)", "", True)]
        for i, (mname, unit, hib) in enumerate(names):
            label = f"{mname} [{unit}]" + ("" if hib else " (lower=better)") if unit else mname
            vals: dict[str, float | None] = {}
            cells = []
            for b, r in zip(brokers, recs, strict=True):
                v = None
                if r is not None:
                    v = next((m["value"] for m in r["result"]["metrics"] if m["name"] == mname), None)
                vals[b] = v
                cells.append(
                    "ERROR" if r is not None and r["result"]["error"] and v is None else ("-" if v is None else _fmt(v))
                )
            row = [sc if i == 0 else "", label, *cells]
            if ratio:
                m_, t_ = vals["mosquitto"], vals["tidemq"]
                row.append(f"{t_ / m_:.2f}" if m_ and t_ is not None and m_ == m_ and t_ == t_ else "-")
            row.append(_lost_cell(recs) if i == 0 else "")
            rows.append(row)
    widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    cpu_rows = []
    for sc in scenarios:
        cells = []
        for b in brokers:
            r = by.get((sc, b))
            cpu = r.get("cpu") if r else None
            if cpu:
                split = f" ({cpu['process_pct']:.0f}+{cpu['redis_pct']:.0f})" if cpu.get("redis_pct") else ""
                cells.append(f"{cpu['broker_pct']:.0f}%{split} / {cpu['loadgen_pct']:.0f}%")
            else:
                cells.append("-")
        cpu_rows.append(f"  {sc:<30} " + "  ".join(f"{b}: {c:<20}" for b, c in zip(brokers, cells, strict=True)))
    out += ["", "CPU, % of one core (broker incl. redis (broker process + redis) / load generator):", *cpu_rows]
    notes = []
    for r in records:
        res = r["result"]
        for n in ([res["error"]] if res["error"] else []) + res["notes"]:
            notes.append(f"  {r['scenario']} @ {r['broker']}: {n}")
    if notes:
        out += ["", "Notes:", *notes]
    return "\n".join(out)


def _no_nan(v: Any) -> Any:
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, dict):
        return {k: _no_nan(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_no_nan(x) for x in v]
    return v


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--broker",
        action="append",
        choices=BROKER_ORDER,
        help="broker to benchmark (repeatable; default: mosquitto and tidemq)",
    )
    ap.add_argument(
        "--scenario", action="append", choices=[*SCENARIOS, *ALIASES], help="scenario to run (repeatable; default: all)"
    )
    ap.add_argument("--scale", choices=list(SCALES), default="small")
    ap.add_argument("--tidemq-mode", choices=["worker", "standalone"], default="worker")
    ap.add_argument(
        "--tidemq-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument passed to the TideMQ CLI (repeatable)",
    )
    ap.add_argument(
        "--tidemq-src",
        type=Path,
        default=REPO,
        metavar="DIR",
        help="checkout whose TideMQ code is benchmarked (default: the one this script is in)",
    )
    ap.add_argument("--mqtt-version", type=int, choices=[4, 5], default=4, help="4 = MQTT 3.1.1, 5 = MQTT 5.0")
    ap.add_argument("--json", metavar="PATH", help="also write all results as JSON")
    ap.add_argument(
        "--strict", action="store_true", help="exit 1 if any scenario failed or lost a message (for CI smoke runs)"
    )
    ap.add_argument("--logs", metavar="DIR", help="keep each broker's log under DIR/<scenario>-<broker>/")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    brokers = [b for b in BROKER_ORDER if b in (args.broker or BROKER_ORDER)]
    scenarios: list[str] = []
    for s in args.scenario or ["all"]:
        for name in ALIASES.get(s, [s]):
            if name not in scenarios:
                scenarios.append(name)
    scale = SCALES[args.scale]
    _raise_nofile()
    run_id = os.urandom(3).hex()
    src = describe_source(args.tidemq_src) if "tidemq" in brokers else "-"
    if "tidemq" in brokers:
        print(f"TideMQ code: {src}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    records = []
    for sc in scenarios:
        for b in brokers:
            print(f"[{time.perf_counter() - t0:6.1f}s] {sc} @ {b} ...", file=sys.stderr, flush=True)
            rec = run_one(sc, b, args, scale, run_id)
            err = rec["result"]["error"]
            if err:
                print(f"          error: {err.splitlines()[0]}", file=sys.stderr, flush=True)
            records.append(rec)
    total = time.perf_counter() - t0
    print(render(records, brokers, scenarios))
    print(
        f"\nscale={args.scale} mqtt={'5.0' if args.mqtt_version == 5 else '3.1.1'} "
        f"tidemq-mode={args.tidemq_mode} loop={'uvloop' if uvloop else 'asyncio'} total={total:.0f}s"
        f"\ntidemq code: {src}"
    )
    if args.json:
        doc = {
            "scale": args.scale,
            "config": asdict(scale),
            "mqtt_version": args.mqtt_version,
            "tidemq_mode": args.tidemq_mode,
            "tidemq_src": src,
            "loop": "uvloop" if uvloop else "asyncio",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "total_s": round(total, 1),
            "results": records,
        }
        Path(args.json).write_text(json.dumps(_no_nan(doc), indent=2, allow_nan=False, default=str) + "\n")
    if args.strict:
        bad = any(r["result"]["error"] or r["result"]["lost"] for r in records)
    else:
        bad = all(r["result"]["error"] for r in records)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
