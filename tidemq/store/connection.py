"""Open and close the store client for a URL.

``redis://host:port/db`` gives a ``redis.asyncio.Redis``;
``redis+cluster://host:port`` a ``redis.asyncio.cluster.RedisCluster`` seeded
from that node; ``redis+sentinel://[[user]:password@]h1:p1,h2:p2/<master>[/db]``
a ``Redis`` whose pool asks the Sentinels for the current primary before every
new connection (``parse_sentinel_url`` documents the query options);
``memory://[name]`` an in-process ``fakeredis`` client on one shared
``FakeServer`` per name and process (Lua through lupa), the zero-setup
standalone store. Every client uses bytes (``decode_responses=False``): blobs
stay binary and the store modules decode what they need.

Failover (Sentinel): the promoting Sentinel kills every client connection of the
demoted primary, a write reaching it anyway fails READONLY and drops the
connection, and redis-py retries a failed command on a new connection, which
the pool opens to the primary the Sentinels name now. Scripts missing on the
new primary are reloaded on NOSCRIPT (``scripts``), and the signal reader goes
on from its last id (``signals``). Whatever failed meanwhile fails like any
Redis outage: refused or retried, never acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from tidemq.store.fastpack import fast_pack

StoreClient = Any  # Redis | RedisCluster | fakeredis.aioredis.FakeRedis

log = logging.getLogger("tidemq.store")

_memory_servers: dict[str, Any] = {}

MAX_CONNECTIONS = 64  # per process on one node (a blocking pool: a caller waits for a free connection)
# per node per process on a cluster. redis-py's cluster node pool does not wait when it is full: it raises
# MaxConnectionsError, which its pipeline treats as a node failure and disconnects the connections other
# coroutines are using (measured: 100 concurrent CONNECTs lost 30-60 of 3,000 with 64; none with 1,024).
# Connections are opened on demand, so this is a ceiling (the pending CONNECTs, TIDEMQ_MAX_PENDING_CONNECTS,
# bound how many are busy at once), well under Redis' maxclients of 10,000 for a few workers per node.
CLUSTER_MAX_CONNECTIONS = 1024
POOL_TIMEOUT = 10.0  # seconds to wait for a free pooled connection
CONNECT_TIMEOUT = 5.0
SENTINEL_PORT = 26379  # a Sentinel address without a port
MASTER_CHECK_INTERVAL = 1.0  # s between background questions "which node is the primary?" per pool
SENTINEL_TIMEOUT = 2.0  # connect/read timeout of one question to one Sentinel (the next is asked then)


def is_cluster(client: Any) -> bool:
    """True for a Redis Cluster client (sharded pub/sub, per-primary SCRIPT LOAD)."""
    return isinstance(client, RedisCluster)


def _memory_server(name: str) -> Any:
    import fakeredis

    server = _memory_servers.get(name)
    if server is None:
        server = _memory_servers[name] = fakeredis.FakeServer(version=(7,))
    return server


@dataclass(frozen=True)
class SentinelURL:
    """The parts of a ``redis+sentinel://`` URL."""

    sentinels: list[tuple[str, int]]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None  # the data nodes' (primary and replicas)
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    socket_timeout: float | None = None  # data-node reads; None: wait (XREAD BLOCK needs > 2 s)
    ssl: bool = False


_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password", "socket_timeout")


def parse_sentinel_url(url: str) -> SentinelURL:
    """Parse ``redis+sentinel://[[username]:password@]host1[:port1][,host2[:port2]...]/<master>[/<db>]``
    ``[?sentinel_password=..&sentinel_username=..&socket_timeout=<seconds>]``.

    ``username``/``password`` are the primary's and replicas' credentials (``requirepass``/ACL), the
    ``sentinel_*`` options those of the Sentinels themselves (``requirepass`` in sentinel.conf);
    ``socket_timeout`` bounds a read from the primary (unset: no bound; when set, above 2 s, the
    signal reader's block time). A Sentinel without a port listens on 26379. ``rediss+sentinel://``
    speaks TLS to the Sentinels and the data nodes. Raises ``ValueError`` with a one-line reason.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("redis+sentinel", "rediss+sentinel"):
        raise ValueError(f"not a sentinel URL: {url!r}")
    creds, _, hosts = parts.netloc.rpartition("@")
    username, _, password = creds.partition(":") if creds else ("", "", "")
    sentinels: list[tuple[str, int]] = []
    for item in hosts.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):  # [ipv6]:port
            host, _, rest = item[1:].partition("]")
            port_s = rest.removeprefix(":")
        else:
            host, _, port_s = item.partition(":")
        if not host:
            raise ValueError(f"sentinel URL has an empty host: {url!r}")
        try:
            port = int(port_s) if port_s else SENTINEL_PORT
        except ValueError:
            raise ValueError(f"sentinel URL has a bad port {port_s!r}: {url!r}") from None
        if not 0 < port < 65536:
            raise ValueError(f"sentinel URL has a bad port {port}: {url!r}")
        sentinels.append((host, port))
    if not sentinels:
        raise ValueError(f"sentinel URL needs at least one sentinel host: {url!r}")
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ValueError(f"sentinel URL needs /<master-name>[/<db>] after the hosts: {url!r}")
    master = unquote(path[0])
    try:
        db = int(path[1]) if len(path) > 1 else 0
    except ValueError:
        raise ValueError(f"sentinel URL has a bad db {path[1]!r}: {url!r}") from None
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = sorted(set(query) - set(_SENTINEL_OPTIONS))
    if unknown:
        raise ValueError(f"sentinel URL has unknown options {unknown} (known: {', '.join(_SENTINEL_OPTIONS)})")
    timeout: float | None = None
    if query.get("socket_timeout"):
        try:
            timeout = float(query["socket_timeout"])
        except ValueError:
            raise ValueError(f"sentinel URL has a bad socket_timeout {query['socket_timeout']!r}") from None
        if timeout <= 0:
            raise ValueError(f"sentinel URL socket_timeout must be positive: {timeout}")
    return SentinelURL(
        sentinels=sentinels, master=master, db=db,
        username=unquote(username) or None, password=unquote(password) or None,
        sentinel_username=query.get("sentinel_username") or None,
        sentinel_password=query.get("sentinel_password") or None,
        socket_timeout=timeout, ssl=scheme == "rediss+sentinel")


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel discovery with the blocking pool's wait for a free connection (as for ``redis://``).

    redis-py asks the Sentinels only when it opens a connection, so a pooled connection to a primary
    demoted by ``SENTINEL FAILOVER`` would be reused until that node is converted to a replica (about
    10 s later), and what was written there meanwhile is lost. Here the pool asks again at most every
    ``MASTER_CHECK_INTERVAL`` seconds, in the background (a slow Sentinel never delays a command):
    on a new address the idle connections are closed at once and the busy ones when released.
    """

    _check_at = 0.0
    _check_task: asyncio.Task[None] | None = None

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if now >= self._check_at and self._check_task is None:
            self._check_at = now + MASTER_CHECK_INTERVAL
            self._check_task = asyncio.get_running_loop().create_task(self._check_master())
        return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]

    async def _check_master(self) -> None:
        try:  # on a new address this closes the idle connections
            await self.get_master_address()  # type: ignore[no-untyped-call]
        except Exception as exc:  # the next connect asks again and reports it
            log.debug("sentinel %s: primary lookup failed: %s", self.service_name, exc)
        finally:
            self._check_task = None

    async def release(self, connection: Any) -> None:
        if self.master_address is not None and (connection.host, connection.port) != self.master_address:
            await connection.disconnect()  # opened to a primary the Sentinels no longer name
        await super().release(connection)

    async def stop_checks(self) -> None:
        task, self._check_task = self._check_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def open_sentinel(url: str) -> Redis:
    """A client of the primary the Sentinels of ``url`` name; it follows a failover by itself."""
    cfg = parse_sentinel_url(url)
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT, "ssl": cfg.ssl,
        "username": cfg.sentinel_username, "password": cfg.sentinel_password, "decode_responses": True}
    sentinel = Sentinel(cfg.sentinels, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    client: Redis = sentinel.master_for(
        cfg.master, connection_pool_class=_BlockingSentinelPool,
        db=cfg.db, username=cfg.username, password=cfg.password, ssl=cfg.ssl,
        decode_responses=False, max_connections=MAX_CONNECTIONS, timeout=POOL_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=cfg.socket_timeout, health_check_interval=30,
        check_connection=True)
    return client


async def open_redis(url: str) -> StoreClient:
    """Connect to the store at ``url`` (the cluster client is initialised before it is returned)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("redis", "rediss", "unix"):
        # a bounded pool that waits for a free connection instead of failing a burst of
        # connects (the default pool raises MaxConnectionsError under a connect storm)
        pool = BlockingConnectionPool.from_url(
            url, decode_responses=False, max_connections=MAX_CONNECTIONS, timeout=POOL_TIMEOUT,
            socket_connect_timeout=CONNECT_TIMEOUT, health_check_interval=30)
        pool.connection_class = fast_pack(pool.connection_class)  # hiredis packs the commands (fastpack.py)
        return Redis(connection_pool=pool)
    if scheme in ("redis+cluster", "rediss+cluster"):
        if not parts.hostname:
            raise ValueError(f"cluster URL needs a host: {url!r}")
        cluster = RedisCluster(
            host=parts.hostname,
            port=parts.port or 6379,
            password=parts.password,
            username=parts.username,
            ssl=scheme == "rediss+cluster",
            decode_responses=False,
            max_connections=CLUSTER_MAX_CONNECTIONS,
            socket_connect_timeout=CONNECT_TIMEOUT,
        )
        await cluster.initialize()
        return cluster
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        return open_sentinel(url)
    if scheme == "memory":
        import fakeredis.aioredis

        name = (parts.netloc + parts.path).strip("/")
        return fakeredis.aioredis.FakeRedis(server=_memory_server(name), decode_responses=False)
    raise ValueError(f"unsupported store URL scheme {scheme!r} (redis://, redis+cluster://, redis+sentinel://, memory://)")


async def close_redis(client: StoreClient) -> None:
    """Close the client and its connection pool (and, for Sentinel, the Sentinel connections)."""
    pool = getattr(client, "connection_pool", None)
    await client.aclose()
    if isinstance(pool, _BlockingSentinelPool):
        await pool.stop_checks()
        await pool.sentinel_manager.aclose()
