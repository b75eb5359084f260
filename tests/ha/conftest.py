"""A Sentinel-managed Redis of the test's own: a primary, replicas and three ``redis-sentinel`` processes.

``sentinel_deployment(replicas=1)`` (a factory: each test says how many replicas it needs) starts, on
free ports in the test's temporary directory:

- a primary and ``replicas`` replicas (``redis-server``, persistence off, diskless sync without delay
  so a resync after the failover takes milliseconds, not the default 5 s);
- three ``redis-sentinel`` processes monitoring it as ``tidemq`` with quorum 2,
  ``down-after-milliseconds`` 1000 and ``failover-timeout`` 5000,

and returns once every Sentinel sees the other two and every replica, and every replica's link is up.
``url`` is the ``redis+sentinel://`` URL of the deployment. ``failed_over(old)`` waits (polling with a
deadline: Sentinel has no event a test could await) until every Sentinel names a new primary and that
primary has a replica online again (so ``WAIT 1`` can succeed). Every process is stopped by the fixture,
killed ones included.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.fixtures.redis_servers import _start_node, _stop, _wait, free_port

MASTER = "tidemq"
QUORUM = 2
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
READY_TIMEOUT = 30.0
FAILOVER_WAIT = 40.0
_ATTEMPTS = 5
DATA_NODE_ARGS = ("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0")


def _binary(name: str) -> str:
    path = shutil.which(name) or next((p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}")
                                       if Path(p).exists()), None)
    if path is None:
        pytest.fail(f"`{name}` is not installed: apt-get install redis-sentinel (scripts/test.sh does)")
    return path


@dataclass
class Node:
    port: int
    proc: subprocess.Popen[bytes]

    def client(self, **kw: object) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2, decode_responses=True,
                           **kw)  # type: ignore[arg-type]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@dataclass
class SentinelDeployment:
    workdir: Path
    primary: Node
    replicas: list[Node]
    sentinels: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER}/0"

    def nodes(self) -> list[Node]:
        return [self.primary, *self.replicas]

    def _ask(self, node: Node, *cmd: str) -> object:
        c = node.client()
        try:
            return c.execute_command(*cmd)  # type: ignore[no-untyped-call]
        except redis.RedisError:
            return None
        finally:
            c.close()

    def named_primaries(self) -> set[int | None]:
        """The primary port each Sentinel names now (None: no answer)."""
        ports: set[int | None] = set()
        for s in self.sentinels:
            addr = self._ask(s, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
            ports.add(int(addr[1]) if isinstance(addr, list) and len(addr) == 2 else None)
        return ports

    def replication(self, port: int) -> dict[str, object]:
        node = next(n for n in self.nodes() if n.port == port)
        info = self._ask(node, "INFO", "replication")
        return {str(k): v for k, v in info.items()} if isinstance(info, dict) else {}

    def replicas_online(self, port: int) -> int:
        """Replicas whose link to the node at ``port`` is up (0 when that node is not a primary)."""
        info = self.replication(port)
        if info.get("role") != "master":
            return 0
        return sum(1 for k, v in info.items()
                   if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online")

    def ready(self) -> bool:
        if self.replicas_online(self.primary.port) < len(self.replicas):
            return False
        for s in self.sentinels:
            state = self._ask(s, "SENTINEL", "MASTER", MASTER)
            if not isinstance(state, dict):
                return False
            if (int(state.get("num-other-sentinels", 0)) < len(self.sentinels) - 1
                    or int(state.get("num-slaves", 0)) < len(self.replicas) or state.get("flags") != "master"):
                return False
        return True

    def failover(self) -> None:
        """``SENTINEL FAILOVER``: promote a replica now; the old primary is made a replica of it."""
        c = self.sentinels[0].client()
        try:
            c.execute_command("SENTINEL", "FAILOVER", MASTER)  # type: ignore[no-untyped-call]
        finally:
            c.close()

    def failed_over(self, old: int, *, replicas: int = 1, timeout: float = FAILOVER_WAIT) -> int:
        """Wait until every Sentinel names one new primary with ``replicas`` replicas online; its port."""
        found: list[int] = []

        def done() -> bool:
            named = self.named_primaries()
            if len(named) != 1:
                return False
            port = next(iter(named))
            if port is None or port == old or self.replicas_online(port) < replicas:
                return False
            found[:] = [port]
            return True

        if not _wait(done, timeout):
            raise AssertionError(f"no failover from :{old} within {timeout:.0f}s: sentinels name "
                                 f"{self.named_primaries()}; logs in {self.workdir}")
        return found[0]

    def stop(self) -> None:
        for node in [*self.sentinels, *self.replicas, self.primary]:
            _stop(node.proc)


def _start_sentinel(binary: str, workdir: Path, primary: int) -> Node:
    last = ""
    for _ in range(_ATTEMPTS):
        port = free_port()
        d = workdir / f"sentinel-{port}"
        d.mkdir(parents=True, exist_ok=True)
        conf = d / "sentinel.conf"  # Sentinel rewrites it: one writable file per process
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {d}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {primary} {QUORUM}\n"
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER} 1\n")
        with open(d / "sentinel.log", "wb") as log:
            proc = subprocess.Popen([binary, str(conf)], cwd=d, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        node = Node(port, proc)

        def pong(n: Node = node) -> bool:
            c = n.client()
            try:
                return bool(c.ping())
            except redis.RedisError:
                return False
            finally:
                c.close()

        if _wait(pong, 10.0, proc):
            return node
        _stop(proc)
        last = (d / "sentinel.log").read_text(errors="replace")[-2000:]
    pytest.fail(f"redis-sentinel did not start after {_ATTEMPTS} attempts:\n{last}")


@pytest.fixture
def sentinel_deployment(tmp_path: Path) -> Iterator[Callable[..., SentinelDeployment]]:
    started: list[SentinelDeployment] = []
    loose: list[subprocess.Popen[bytes]] = []

    def make(replicas: int = 1) -> SentinelDeployment:
        server, sentinel = _binary("redis-server"), _binary("redis-sentinel")
        workdir = tmp_path / f"ha{len(started)}"
        port, proc = _start_node(server, workdir, *DATA_NODE_ARGS)
        loose.append(proc)
        dep = SentinelDeployment(workdir, Node(port, proc), [])
        for _ in range(replicas):
            rport, rproc = _start_node(server, workdir, *DATA_NODE_ARGS, "--replicaof", "127.0.0.1", str(port))
            loose.append(rproc)
            dep.replicas.append(Node(rport, rproc))
        for _ in range(3):
            node = _start_sentinel(sentinel, workdir, port)
            loose.append(node.proc)
            dep.sentinels.append(node)
        started.append(dep)
        if not _wait(dep.ready, READY_TIMEOUT):
            pytest.fail(f"the Sentinel deployment was not ready in {READY_TIMEOUT:.0f}s (logs in {workdir})")
        return dep

    try:
        yield make
    finally:
        for dep in started:
            dep.stop()
        for proc in loose:
            _stop(proc)

