"""A/B regression check: two TideMQ checkouts and mosquitto, interleaved scenario by scenario.

For each repeat and each scenario this runs mosquitto, TideMQ from checkout A, and TideMQ from checkout B
back to back (each on a fresh broker, as ``run.py`` does), so machine drift on a shared host hits all three
alike. It prints, per scenario and metric, each run's ratio to the mosquitto of the same repeat for A and B,
and B/A over the median ratios.

Usage (from the repository root; A is usually an older commit checked out with ``git worktree add``)::

    git worktree add /tmp/old <commit>
    python bench/ab.py --a /tmp/old --b . --scale small --repeat 3 --scenario fan-in --scenario p2p

Invariants: as ``run.py`` (loopback only, bounded, every process stopped); the load generator is this
checkout's for both A and B.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as runmod
from brokers import describe_source
from scenarios import ALIASES, SCALES, SCENARIOS


def metric(rec: dict[str, Any], name: str) -> float | None:
    if rec["result"]["error"]:
        return None
    return next((m["value"] for m in rec["result"]["metrics"] if m["name"] == name), None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", type=Path, required=True, help="checkout A (the baseline)")
    ap.add_argument("--b", type=Path, required=True, help="checkout B (the candidate)")
    ap.add_argument("--scenario", action="append", choices=[*SCENARIOS, *ALIASES])
    ap.add_argument("--scale", choices=list(SCALES), default="small")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    scenarios: list[str] = []
    for s in args.scenario or ["all"]:
        scenarios += [n for n in ALIASES.get(s, [s]) if n not in scenarios]
    base = runmod.parse_args(["--scale", args.scale])
    scale = SCALES[args.scale]
    runmod._raise_nofile()
    srcs = {"A": args.a.resolve(), "B": args.b.resolve()}
    for k, p in srcs.items():
        print(f"{k}: {describe_source(p)}", file=sys.stderr, flush=True)
    recs: list[dict[str, Any]] = []
    for i in range(args.repeat):
        for sc in scenarios:
            for who in ("mosquitto", "A", "B"):
                print(f"repeat {i + 1}: {sc} @ {who} ...", file=sys.stderr, flush=True)
                base.tidemq_src = srcs.get(who, srcs["B"])
                rec = runmod.run_one(sc, "mosquitto" if who == "mosquitto" else "tidemq", base, scale, f"ab{i}{who}")
                rec.update(repeat=i, who=who)
                recs.append(rec)
    lines = ["| scenario | metric | A / mosquitto (each repeat) | B / mosquitto (each repeat) | B/A (medians) "
             "| lost A / B |",
             "| --- | --- | --- | --- | ---: | --- |"]
    for sc in scenarios:
        names = []
        for r in recs:
            if r["scenario"] == sc:
                names += [m["name"] for m in r["result"]["metrics"] if m["name"] not in names]
        for j, name in enumerate(names):
            ratios: dict[str, list[float]] = {"A": [], "B": []}
            for i in range(args.repeat):
                got = {r["who"]: metric(r, name) for r in recs if r["scenario"] == sc and r["repeat"] == i}
                for who in ("A", "B"):
                    m, v = got.get("mosquitto"), got.get(who)
                    if m and v is not None:
                        ratios[who].append(v / m)
            ma = statistics.median(ratios["A"]) if ratios["A"] else float("nan")
            mb = statistics.median(ratios["B"]) if ratios["B"] else float("nan")
            lost = " / ".join(
                str(sum(r["result"]["lost"] for r in recs if r["scenario"] == sc and r["who"] == w)) for w in "AB")
            lines.append(
                f"| {sc if j == 0 else ''} | {name} | {' / '.join(f'{x:.2f}' for x in ratios['A'])} | "
                f"{' / '.join(f'{x:.2f}' for x in ratios['B'])} | {mb / ma:.2f} | {lost if j == 0 else ''} |")
    print("\n".join(lines))
    errs = [f"  {r['scenario']} @ {r['who']} (repeat {r['repeat'] + 1}): {r['result']['error']}"
            for r in recs if r["result"]["error"]]
    if errs:
        print("\nErrors:\n" + "\n".join(errs))
    print(f"\nscale={args.scale}; ratios to mosquitto of the same repeat (for rates above 1 is better; for "
          f"latency/p99 rows lower is better); B/A > 1 means B measured higher")
    if args.json:
        Path(args.json).write_text(json.dumps(runmod._no_nan({"a": str(srcs["A"]), "b": str(srcs["B"]),
                                                              "records": recs}), indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
