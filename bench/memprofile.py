"""Where a worker's memory per idle connection goes: tracemalloc in an in-process worker, clients in a child.

Usage (from the repository root)::

    python bench/memprofile.py --clients 2000 [--persistent] [--top 25]

A redis-server is started on a free port (``bench/brokers.py``), the worker (``tidemq.worker.broker.Broker``)
runs in this process under ``tracemalloc``, and a child process (``bench/mqttload.py``) opens ``--clients``
connections (clean session 0 with ``--persistent``) and keeps them idle. Two snapshots, before and once all
are connected, are compared by allocating line: bytes per connection per line, plus the RSS delta per
connection. Invariants: only 127.0.0.1; the child and redis-server are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's tidemq (not the installed one)

from brokers import HOST, PAGE_SIZE, free_port

BENCH = str(Path(__file__).resolve().parent)
CHILD = """
import asyncio, sys
sys.path.insert(0, {bench!r})
from mqttload import connect
async def main():
    sem = asyncio.Semaphore(100)
    conns = []
    async def one(i):
        async with sem:
            conns.append(await connect({host!r}, {port}, f"mem-{{i}}", clean={clean}, within=30))
    await asyncio.gather(*(one(i) for i in range({n})))
    print("ready", len(conns), flush=True)
    sys.stdin.readline()
asyncio.run(main())
"""


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_SIZE


async def run(n: int, persistent: bool, top: int) -> None:
    from tidemq.worker.broker import Broker

    import tidemq
    from tidemq.config import Settings
    from tidemq.store.connection import close_redis, open_redis

    with _redis() as redis_url:
        settings = Settings.from_env(redis_url=redis_url, host=HOST, mqtt_port=0, log_level="WARNING")
        redis = await open_redis(settings.redis_url)
        broker = Broker(settings, redis)
        port = await broker.start(HOST, 0)
        print(f"tidemq from {os.path.dirname(os.path.dirname(tidemq.__file__))}", flush=True)
        try:
            gc.collect()
            tracemalloc.start(8)
            rss0 = _rss()
            snap0 = tracemalloc.take_snapshot()
            code = CHILD.format(bench=BENCH, host=HOST, port=port,
                                clean=not persistent, n=n)
            child = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdin=subprocess.PIPE,
                                                         stdout=subprocess.PIPE)
            assert child.stdout is not None and child.stdin is not None
            line = await asyncio.wait_for(child.stdout.readline(), 300)
            await asyncio.sleep(1.0)
            gc.collect()
            snap1 = tracemalloc.take_snapshot()
            rss1 = _rss()
            got = int(line.split()[1])
            traced = sum(s.size_diff for s in snap1.compare_to(snap0, "filename"))
            print(f"{got} idle {'persistent' if persistent else 'clean'} connections: RSS +{(rss1 - rss0) / got:.0f} "
                  f"B/conn (RSS includes tracemalloc's own bookkeeping), traced Python allocations "
                  f"+{traced / got:.0f} B/conn")
            for stat in snap1.compare_to(snap0, "lineno")[:top]:
                frame = stat.traceback[0]
                where = "/".join(Path(frame.filename).parts[-2:])
                print(f"  {stat.size_diff / got:8.1f} B/conn  {stat.count_diff / got:5.2f} blocks/conn  "
                      f"{where}:{frame.lineno}")
            child.stdin.write(b"\n")
            await child.stdin.drain()
            await child.wait()
        finally:
            await broker.stop(grace=1.0)
            await close_redis(redis)


class _redis:
    """A private redis-server on a free port for the in-process worker."""

    def __enter__(self) -> str:
        self.tmp = tempfile.mkdtemp(prefix="memprof-")
        self.port = free_port()
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", HOST, "--save", "",
                                      "--appendonly", "no", "--dir", self.tmp], stdout=subprocess.DEVNULL)
        import socket
        import time
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex((HOST, self.port)) == 0:
                    break
            time.sleep(0.05)
        return f"redis://{HOST}:{self.port}/0"

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--persistent", action="store_true")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    os.environ.setdefault("TIDEMQ_ALLOW_INSECURE", "0")
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(args.clients, args.persistent, args.top))
    else:  # as the worker runs (tidemq.cli installs uvloop)
        uvloop.run(run(args.clients, args.persistent, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
