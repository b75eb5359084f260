"""Open and close the store client for a URL.

``redis://host:port/db`` gives a ``redis.asyncio.Redis``;
``redis+cluster://host:port`` a ``redis.asyncio.cluster.RedisCluster`` seeded
from that node; ``memory://[name]`` an in-process ``fakeredis`` client on one
shared ``FakeServer`` per name and process (Lua through lupa), the zero-setup
standalone store. Every client uses bytes (``decode_responses=False``): blobs
stay binary and the store modules decode what they need.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster

StoreClient = Any  # Redis | RedisCluster | fakeredis.aioredis.FakeRedis

_memory_servers: dict[str, Any] = {}

MAX_CONNECTIONS = 64  # per process (per node for a cluster); the hot path pipelines, so few are busy
POOL_TIMEOUT = 10.0  # seconds to wait for a free pooled connection
CONNECT_TIMEOUT = 5.0


def is_cluster(client: Any) -> bool:
    """True for a Redis Cluster client (sharded pub/sub, per-primary SCRIPT LOAD)."""
    return isinstance(client, RedisCluster)


def _memory_server(name: str) -> Any:
    import fakeredis

    server = _memory_servers.get(name)
    if server is None:
        server = _memory_servers[name] = fakeredis.FakeServer(version=(7,))
    return server


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
            max_connections=MAX_CONNECTIONS,
            socket_connect_timeout=CONNECT_TIMEOUT,
        )
        await cluster.initialize()
        return cluster
    if scheme == "memory":
        import fakeredis.aioredis

        name = (parts.netloc + parts.path).strip("/")
        return fakeredis.aioredis.FakeRedis(server=_memory_server(name), decode_responses=False)
    raise ValueError(f"unsupported store URL scheme {scheme!r} (redis://, redis+cluster://, memory://)")


async def close_redis(client: StoreClient) -> None:
    """Close the client and its connection pool."""
    await client.aclose()
