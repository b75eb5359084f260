"""Start and stop the brokers under test (mosquitto, TideMQ worker + redis-server, TideMQ standalone).

Each broker is started on free loopback ports in a private temporary directory, waited for until its MQTT port
accepts a TCP connection, and stopped (SIGTERM, then SIGKILL after a few seconds) when its context ends, even
on error. Invariants: only 127.0.0.1 is ever bound or connected to; every process started here is stopped by
the context that started it; a broker that dies during start-up raises :class:`BrokerError` with the tail of
its log.

Which TideMQ code runs: the TideMQ child imports ``tidemq`` (and ``tidemq.worker`` / ``tidemq.api``, which the
editable install maps to *its* checkout's ``workers/`` and ``app/``) from the source tree given as
``tidemq_src`` (default: the checkout this file is in), never from whatever checkout happens to be installed:
:func:`source_overlay` builds a directory of symlinks put first on the child's ``PYTHONPATH``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class BrokerError(RuntimeError):
    """A broker (or its redis-server) failed to start or died."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _proc_rss(pid: int) -> int:
    """Resident set size of one process in bytes (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


@dataclass
class Broker:
    """A running broker: where to connect, and the processes (broker first) to account CPU to."""

    name: str
    host: str
    port: int
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by the broker processes, their children and (for TideMQ) redis."""
        total = 0.0
        for p in self.procs:
            for pid in _descendants(p.pid):
                total += _proc_cpu(pid)
        return total

    def cpu_split(self) -> tuple[float, float]:
        """CPU seconds so far of (the broker process and its children, the redis-server beside it)."""
        parts = [sum(_proc_cpu(pid) for pid in _descendants(p.pid)) for p in self.procs]
        return (parts[0] if parts else 0.0), sum(parts[1:])

    def rss_bytes(self) -> int:
        """Resident memory of the broker process and its children (not the redis-server beside it)."""
        return sum(_proc_rss(pid) for pid in _descendants(self.procs[0].pid)) if self.procs else 0

    def check_alive(self) -> None:
        for p, log in zip(self.procs, self.logs, strict=True):
            if p.poll() is not None:
                raise BrokerError(f"{self.name}: process exited with {p.returncode}\n{_tail(log)}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, what: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise BrokerError(f"{what} exited with {proc.returncode} during start-up\n{_tail(log)}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise BrokerError(f"{what} did not open port {port} within {timeout:.0f}s\n{_tail(log)}")


def _spawn(cmd: list[str], log: Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    f = open(log, "wb")
    try:
        return subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True,
            env=env,
        )
    finally:
        f.close()


def _stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what this module started
        proc.wait(timeout)


def source_overlay(src: Path, into: Path) -> dict[str, str]:
    """Environment for a child that must import TideMQ from checkout ``src``.

    ``PYTHONPATH=src`` alone is not enough since ``app/`` and ``workers/`` are installed as ``tidemq.api`` and
    ``tidemq.worker``: the editable install's finder would still resolve those two to the installed checkout.
    So ``into/tidemq`` is a directory of symlinks to ``src/tidemq/*`` plus ``worker -> src/workers``,
    ``api -> src/app``, ``lua -> src/lua``; ``into/workers`` and ``into/app`` serve checkouts from before that
    layout. ``PYTHONPATH=into`` is found before the installed finder and is inherited by spawned processes.
    """
    src = src.resolve()
    pkg = into / "tidemq"
    pkg.mkdir(parents=True)
    for entry in (src / "tidemq").iterdir():
        (pkg / entry.name).symlink_to(entry)
    for name, folder in (("worker", "workers"), ("api", "app"), ("lua", "lua")):
        if (src / folder).is_dir() and not (pkg / name).exists():
            (pkg / name).symlink_to(src / folder)
    for folder in ("workers", "app"):
        if (src / folder).is_dir():
            (into / folder).symlink_to(src / folder)
    path = os.pathsep.join(p for p in (str(into), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def describe_source(src: Path) -> str:
    """Where a TideMQ child started with :func:`source_overlay` of ``src`` imports its code from, and the commit."""
    with tempfile.TemporaryDirectory(prefix="bench-src-") as tmp:
        env = source_overlay(src, Path(tmp))
        code = (
            "import os, tidemq, importlib.util as u\n"
            "w = u.find_spec('tidemq.worker') or u.find_spec('workers')\n"
            "print(os.path.realpath(tidemq.__file__), os.path.realpath(w.origin) if w else '-')"
        )
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp, capture_output=True, text=True)
    rev = subprocess.run(["git", "-C", str(src), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return f"{out.stdout.strip() or out.stderr.strip()[-200:]} @ {rev.stdout.strip() or '?'}"


def _mosquitto(tmp: Path, max_queued: int) -> tuple[list[str], int]:
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"listener {port} {HOST}\n"
        "allow_anonymous true\n"
        f"max_queued_messages {max_queued}\n"
        "persistence false\n"
        "set_tcp_nodelay true\n"
        "log_dest stderr\n"
        "log_type error\n"
        "log_type warning\n"
    )
    return ["mosquitto", "-c", str(conf)], port


@contextlib.contextmanager
def start_broker(
    kind: str,
    *,
    tidemq_mode: str = "worker",
    max_queued: int = 20_000,
    extra_args: list[str] | None = None,
    keep_logs: Path | None = None,
    tidemq_src: Path = REPO,
    env_extra: dict[str, str] | None = None,
) -> Iterator[Broker]:
    """Start ``kind`` ("mosquitto" or "tidemq") on free ports; yield a :class:`Broker`; stop it all.

    TideMQ runs the code of checkout ``tidemq_src`` with ``env_extra`` added to its environment."""
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-"))
    procs: list[subprocess.Popen[bytes]] = []
    broker = Broker(kind, HOST, 0)
    try:
        if kind == "mosquitto":
            if shutil.which("mosquitto") is None:
                raise BrokerError("mosquitto is not on PATH")
            cmd, port = _mosquitto(tmp, max_queued)
        elif kind == "tidemq":
            port = free_port()
            cmd = [
                sys.executable,
                "-m",
                "tidemq.cli",
                tidemq_mode,
                "--host",
                HOST,
                "--mqtt-port",
                str(port),
                "--api-port",
                str(free_port()),
                "--log-level",
                "WARNING",
            ]
            if tidemq_mode == "worker":
                rport = free_port()
                rlog = tmp / "redis.log"
                rproc = _spawn(
                    [
                        "redis-server",
                        "--port",
                        str(rport),
                        "--bind",
                        HOST,
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(tmp),
                    ],
                    rlog,
                    tmp,
                )
                procs.append(rproc)
                broker.logs.append(rlog)
                _wait_port(rport, rproc, rlog, "redis-server")
                cmd += ["--redis-url", f"redis://{HOST}:{rport}/0"]
            elif tidemq_mode != "standalone":
                raise BrokerError(f"unknown TideMQ mode {tidemq_mode!r}")
        else:
            raise BrokerError(f"unknown broker {kind!r}")
        cmd += extra_args or []
        log = tmp / f"{kind}.log"
        # the same offline-queue bound for both brokers: mosquitto's max_queued_messages,
        # TideMQ's per-session inbox size (TIDEMQ_INBOX_SIZE, BifroMQ's default is 1000)
        env = None
        if kind == "tidemq":
            env = {**source_overlay(tidemq_src, tmp / "src"), "TIDEMQ_INBOX_SIZE": str(max_queued), **(env_extra or {})}
        proc = _spawn(cmd, log, tmp, env)
        procs.insert(0, proc)
        broker.logs.insert(0, log)
        broker.port = port
        broker.procs = procs
        _wait_port(port, proc, log, " ".join(cmd))
        yield broker
    finally:
        for p in procs:
            _stop(p)
        if keep_logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for log in broker.logs:
                if log.exists():
                    shutil.copy(log, keep_logs / log.name)
        shutil.rmtree(tmp, ignore_errors=True)
