"""Profile one TideMQ worker under a benchmark scenario with py-spy and print where its time goes.

Usage (from the repository root; ``pip install py-spy``)::

    python bench/profile.py --scenario connect-storm-persistent --scenario p2p --scale small --out prof/

For each scenario a fresh worker (+ its own redis-server) is started exactly as ``bench/run.py`` does,
``py-spy record`` samples the worker process (``--format raw``: one collapsed stack per line) while the
scenario runs, and the summary lists the functions with the most samples, by self time and inclusive, with
the work done (messages delivered or connections made) so the figures read as microseconds per message or
per connect. Invariants: only 127.0.0.1; every process started (broker, redis, py-spy) is stopped; the raw
profile is kept under ``--out`` for flame graphs.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brokers import REPO, start_broker
from run import _raise_nofile, _run_async
from scenarios import BROKER_PROBE, SCALES, SCENARIOS, ScenarioResult


def _short(frame: str) -> str:
    """``func (path/to/tidemq/x.py:12)`` -> ``x.py:func`` (line numbers dropped: functions are summed)."""
    name, _, where = frame.partition(" (")
    path = where.split(":")[0]
    parts = path.split("/")
    tail = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{tail}:{name}"


# self time by what it is for (first match of the leaf frame's short name wins)
GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("MQTT decode (codec, primitives)", ("mqtt/codec.py:Decoder", "codec_decode.py", "mqtt/primitives.py:Reader",
                                        "primitives.py:decode", "primitives.py:read", "mqtt/properties.py:decode",
                                        "mqtt/codec.py:_publish")),
    ("MQTT encode", ("mqtt/codec.py:encode", "codec_encode.py", "primitives.py:encode", "properties.py:encode",
                     "mqtt/codec.py:_topic")),
    ("MQTT state machine", ("mqtt/session.py",)),
    ("topic checks", ("mqtt/topics.py",)),
    ("routing, dispatcher (dispatch.py, publish.py, routing/)", ("workers/dispatch.py", "tidemq/publish.py",
                                                                 "routing/")),
    ("socket writes / loop (C: syscalls)", ("runners.py:Runner.run", "streams.py:StreamWriter.write",
                                            "MQTTConnection.flush")),
    ("store calls (tidemq/store, workers/inbox.py)", ("workers/inbox.py", "store/")),
    ("worker handlers, connection, delivery", ("workers/",)),
    ("redis client (redis-py)", ("asyncio/connection.py", "asyncio/client.py", "_parsers/", "redis/", "retry.py")),
    ("asyncio tasks, futures, timeouts", ("asyncio/",)),
    ("auth, limits, clock, message", ("auth/", "tidemq/limits.py", "tidemq/clock.py", "tidemq/message.py")),
]


def _group(frame: str) -> str:
    for name, keys in GROUPS:
        if any(k in frame for k in keys):
            return name
    return "other (dataclass __init__, stdlib)"


def summarize(raw: Path, work: int, top: int) -> str:
    """Self and inclusive sample counts per function from a py-spy raw (collapsed) profile."""
    self_c: collections.Counter[str] = collections.Counter()
    groups: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack:
            continue
        n = int(count_s)
        frames = [_short(f) for f in stack.split(";") if f and not f.startswith("process ")
                  and not f.startswith("thread ")]
        if not frames:
            continue
        total += n
        if frames[-1].endswith(":run_forever") or "select" in frames[-1] or "poll" in frames[-1]:
            idle += n
        self_c[frames[-1]] += n
        groups[_group(frames[-1])] += n
        for f in set(frames):
            incl[f] += n
    busy = max(1, total - idle)
    out = [f"samples {total}, idle in the loop {idle} ({100 * idle / max(1, total):.0f}%), work {work}"]
    out.append("-- self time by group (% of busy samples)")
    for g, n in groups.most_common():
        out.append(f"  {100 * n / busy:5.1f}%  {g}")
    for title, counter in (("self", self_c), ("inclusive", incl)):
        out.append(f"-- top {top} by {title} samples (% of busy samples)")
        for f, n in counter.most_common(top):
            out.append(f"  {100 * n / busy:5.1f}%  {f}")
    return "\n".join(out)


def profile_one(name: str, scale_name: str, out: Path, version: int, rate: int, top: int) -> str:
    scale = SCALES[scale_name]
    fn = SCENARIOS[name]
    raw = out / f"{name}.raw"
    with start_broker("tidemq", tidemq_src=REPO, max_queued=max(20_000, scale.offline_messages + 1_000)) as broker:
        spy = subprocess.Popen(["py-spy", "record", "--pid", str(broker.procs[0].pid), "--rate", str(rate),
                                "--format", "raw", "--output", str(raw), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)  # py-spy attaches
        token = BROKER_PROBE.set(broker)
        try:
            res = _run_async(fn(broker.host, broker.port, scale, version, os.urandom(3).hex()))
        except Exception as exc:  # a failed scenario still has a profile worth reading
            res = ScenarioResult(name, error=f"{type(exc).__name__}: {exc}")
        finally:
            BROKER_PROBE.reset(token)
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()
    metrics = ", ".join(f"{m.name} {m.value:,.2f}" for m in res.metrics)
    head = f"== {name} ({scale_name}): {metrics}" + (f" ERROR {res.error}" if res.error else "")
    if not raw.exists():
        return head + "\n  (no profile written)"
    return head + "\n" + summarize(raw, res.received, top)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", action="append", choices=list(SCENARIOS), required=True)
    ap.add_argument("--scale", choices=list(SCALES), default="small")
    ap.add_argument("--mqtt-version", type=int, choices=[4, 5], default=4)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", type=Path, default=Path("prof"))
    args = ap.parse_args()
    if shutil.which("py-spy") is None:
        print("py-spy is not on PATH: pip install py-spy", file=sys.stderr)
        return 2
    _raise_nofile()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.scenario:
        text = profile_one(name, args.scale, args.out, args.mqtt_version, args.rate, args.top)
        print(text, flush=True)
        (args.out / f"{name}.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
