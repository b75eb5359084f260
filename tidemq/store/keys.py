"""Every Redis key and channel name TideMQ uses is built here and nowhere else.

Layout: ``tidemq:<kind>:{<escaped tenant>}[:<client id>]``. The hash tag is
the tenant, so every key of one tenant lives in one cluster slot and every
Lua script (which only ever touches one tenant) is single-slot and atomic on
Redis Cluster. The trade-off: one tenant lives on one shard; tenants, not
sessions, are what spreads load across the cluster (docs/redis-keys.md).

Tenant ids are percent-encoded for ``%``, ``{`` and ``}`` so a tenant id can
never end or open a hash tag early (the empty id becomes ``%``: ``{}`` would
not be a hash tag); client ids come after the tag and need no
escaping (anything after the first ``}`` does not affect the slot). The only
untagged key is the global tenant set, which no script touches.
"""

from __future__ import annotations

PREFIX = "tidemq:"

_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D"})


def escape_tenant(tenant: str) -> str:
    """Percent-encode the three characters that could break the ``{tenant}`` hash tag.

    The empty tenant becomes ``%`` (``{}`` is no hash tag at all; a lone ``%``
    is never produced by escaping a non-empty id, so the mapping stays injective).
    """
    return tenant.translate(_ESCAPES) if tenant else "%"


def tag(tenant: str) -> str:
    """The hash tag shared by every key of ``tenant`` (including the braces)."""
    return "{" + escape_tenant(tenant) + "}"


def _tenant_key(kind: str, tenant: str) -> str:
    return f"{PREFIX}{kind}:{tag(tenant)}"


def _client_key(kind: str, tenant: str, client: str) -> str:
    return f"{PREFIX}{kind}:{tag(tenant)}:{client}"


# --- per session -----------------------------------------------------------------------------


def sess(tenant: str, client: str) -> str:
    """Hash: the session record (fields in docs/redis-keys.md)."""
    return _client_key("sess", tenant, client)


def subs(tenant: str, client: str) -> str:
    """Hash: topic filter -> encoded subscription options."""
    return _client_key("subs", tenant, client)


def inbox(tenant: str, client: str) -> str:
    """Stream: the persistent session's inbox, entry ids ``<seq>-0``."""
    return _client_key("inbox", tenant, client)


def rel(tenant: str, client: str) -> str:
    """Set: outbound QoS 2 packet ids released (PUBREC seen) and awaiting PUBCOMP."""
    return _client_key("rel", tenant, client)


def q2in(tenant: str, client: str) -> str:
    """Set: inbound QoS 2 packet ids received and awaiting PUBREL."""
    return _client_key("q2in", tenant, client)


def session_keys(tenant: str, client: str) -> list[str]:
    """The five per-session keys in the order the scripts expect: sess, subs, inbox, rel, q2in."""
    return [sess(tenant, client), subs(tenant, client), inbox(tenant, client), rel(tenant, client),
            q2in(tenant, client)]


# --- per tenant ------------------------------------------------------------------------------


def routes(tenant: str) -> str:
    """Hash: ``client \\0 filter`` -> ``worker \\0 persistent \\0 opts``."""
    return _tenant_key("routes", tenant)


def rver(tenant: str) -> str:
    """String counter: bumped whenever routes(tenant) changes."""
    return _tenant_key("rver", tenant)


def sexp(tenant: str) -> str:
    """Sorted set: offline persistent session client id -> expire-at (ms)."""
    return _tenant_key("sexp", tenant)


def sessidx(tenant: str) -> str:
    """Sorted set (all scores 0, paged by lex): every session client id of the tenant."""
    return _tenant_key("sessidx", tenant)


def epoch(tenant: str) -> str:
    """String counter: source of connection epochs, so an epoch is never reused in a tenant."""
    return _tenant_key("epoch", tenant)


def retain(tenant: str) -> str:
    """Hash: topic -> retained message blob."""
    return _tenant_key("retain", tenant)


def retain_index(tenant: str) -> str:
    """Sorted set (all scores 0, matched by lex range): ``topic \\0 expire-at ms`` per retained topic."""
    return _tenant_key("retidx", tenant)


def tenant_keys(tenant: str) -> list[str]:
    """Every tenant-wide key (not the per-session ones)."""
    return [routes(tenant), rver(tenant), sexp(tenant), sessidx(tenant), epoch(tenant), retain(tenant),
            retain_index(tenant)]


# --- global ----------------------------------------------------------------------------------


def tenants() -> str:
    """Set of every tenant id ever seen (untagged; written outside scripts)."""
    return PREFIX + "tenants"


def worker_channel(worker_id: str) -> str:
    """Pub/sub channel (sharded on a cluster) on which one worker receives its signals."""
    return f"{PREFIX}w:{worker_id}"


def worker_stream(worker_id: str) -> str:
    """Stream of the signals sent to one worker (field ``s``: the signal bytes), read from its last id."""
    return f"{PREFIX}wsig:{{{worker_id}}}"


# --- worker liveness (global, untagged: each touched by single-key commands only) -------------


def lease(worker_id: str) -> str:
    """String with a TTL: the worker is alive while it exists."""
    return f"{PREFIX}lease:{worker_id}"


def workers() -> str:
    """Sorted set: worker id -> last heartbeat (ms); where reapers look for dead workers."""
    return PREFIX + "workers"


def worker_sessions(worker_id: str) -> str:
    """Set of ``tenant \\0 client id`` the worker owns (may hold stale extras; checked on reap)."""
    return f"{PREFIX}wsess:{worker_id}"


def reap_lock(worker_id: str) -> str:
    """String NX lock: one reaper cleans up after a dead worker."""
    return f"{PREFIX}reap:{worker_id}"


def worker_stats(worker_id: str) -> str:
    """Hash with a TTL: the worker's counters (name -> integer), read by the API's /metrics."""
    return f"{PREFIX}wstats:{worker_id}"


# tenant settings -----------------------------------------------------------------------------


def tenant_settings(tenant: str) -> str:
    """Hash: BifroMQ setting name -> value (decimal or ``true``/``false``); operators edit it with redis-cli.

    Tagged by tenant like every other tenant key; read by ``tidemq.tenants.SettingsProvider``.
    """
    return _tenant_key("settings", tenant)


def wills(tenant: str) -> str:
    """Sorted set: client id -> fire-at (ms) of delayed wills waiting in offline session records."""
    return _tenant_key("wills", tenant)
