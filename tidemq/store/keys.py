"""Every Redis key and channel name TideMQ uses is built here and nowhere else.

Layout (docs/redis-keys.md):

- per session: ``tidemq:<kind>:{<escaped tenant>|<escaped client id>}``: the
  hash tag is the session, so the sessions of one tenant spread over every
  slot (and every shard) of a Redis Cluster;
- per tenant: ``tidemq:<kind>:{<escaped tenant>}`` (routes, route version,
  the session index, expiry and will hints, retained messages, settings).

Every Lua script touches the keys of one session or of one tenant, never
both: an operation that changes both (SUBSCRIBE, CONNECT, expiry) writes the
session first and the tenant's indexes second, and the indexes are verified
against the session on use and repaired by the sweeper (the invariant is in
docs/redis-keys.md, "Two slots").

Ids are percent-encoded so they can never end or open a hash tag early:
``%``, ``{`` and ``}`` always, and ``|`` in tenant ids (it separates the
tenant from the client id inside a session's tag); the empty id becomes
``%`` (a lone ``%`` is never the escape of a non-empty id, so the mapping
stays injective). The only untagged keys are global ones no script touches.
"""

from __future__ import annotations

PREFIX = "tidemq:"

_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D"})
_TENANT_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D", "|": "%7C"})


def escape_tenant(tenant: str) -> str:
    """Percent-encode the characters that could break a hash tag (``%{}``) or its ``|`` separator.

    The empty tenant becomes ``%`` (``{}`` is no hash tag at all; a lone ``%``
    is never produced by escaping a non-empty id, so the mapping stays injective).
    """
    if not tenant:
        return "%"
    return tenant.translate(_TENANT_ESCAPES) if "%" in tenant or "{" in tenant or "}" in tenant or "|" in tenant \
        else tenant


def escape_client(client: str) -> str:
    """Percent-encode ``%{}`` of a client id (the last part of a session's tag); "" becomes ``%``."""
    if not client:
        return "%"
    return client.translate(_ESCAPES) if "%" in client or "{" in client or "}" in client else client


def tag(tenant: str) -> str:
    """The hash tag shared by every key of ``tenant`` (including the braces)."""
    return "{" + escape_tenant(tenant) + "}"


def _tenant_key(kind: str, tenant: str) -> str:
    return f"{PREFIX}{kind}:{tag(tenant)}"


_USER_ESCAPES = str.maketrans({"%": "%25", "/": "%2F"})


def session_name(user: str, client: str) -> str:
    """The name of the session of ``user`` with MQTT client id ``client`` in its tenant: ``<user>/<client>``.

    A session belongs to (tenant, user, client id) [BifroMQ: two users of one tenant who use the same
    client id have two independent sessions]; every key, route, index entry and registry entry names
    the session by this string (``%`` and ``/`` in the user are percent-encoded, so it splits back).
    """
    return user.translate(_USER_ESCAPES) + "/" + client


def split_session_name(name: str) -> tuple[str, str]:
    """``(user, client id)`` of a session name; a name without ``/`` (layout 1) is ``("", name)``."""
    user, sep, client = name.partition("/")
    if not sep:
        return "", name
    return user.replace("%2F", "/").replace("%25", "%"), client


def session_tag(tenant: str, client: str) -> str:
    """The hash tag shared by every key of the session ``(tenant, client)`` (including the braces)."""
    return "{" + escape_tenant(tenant) + "|" + escape_client(client) + "}"


def _client_key(kind: str, tenant: str, client: str) -> str:
    return f"{PREFIX}{kind}:{session_tag(tenant, client)}"


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


def q2seen(tenant: str, client: str) -> str:
    """Sorted set: token -> ms of the inbound QoS 2 messages this session's inbox got (exactly once on resend)."""
    return _client_key("q2seen", tenant, client)


def session_keys(tenant: str, client: str) -> list[str]:
    """The per-session keys in the order the scripts expect: sess, subs, inbox, rel, q2in, q2seen."""
    tag = session_tag(tenant, client)  # once, not once per key (a CONNECT and its end each need all six)
    return [f"{PREFIX}{kind}:{tag}" for kind in _SESSION_KINDS]


_SESSION_KINDS = ("sess", "subs", "inbox", "rel", "q2in", "q2seen")  # session_keys' order (the scripts' KEYS)


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


def sessgen(tenant: str) -> str:
    """Hash: client id -> generation of the session the ``sessidx`` entry was written for."""
    return _tenant_key("sessgen", tenant)


def retain(tenant: str) -> str:
    """Hash: topic -> retained message blob."""
    return _tenant_key("retain", tenant)


def retain_index(tenant: str) -> str:
    """Sorted set (all scores 0, matched by lex range): ``topic \\0 expire-at ms`` per retained topic."""
    return _tenant_key("retidx", tenant)


def shared_members(tenant: str) -> str:
    """Hash: shared filter (``$share/<group>/<filter>``, ``$oshare/...``) -> how many routes (members) it has,
    kept by ``tenant_apply`` with every route write; field ``SHARED_BUILT`` marks it as complete."""
    return _tenant_key("shcount", tenant)


SHARED_BUILT = "\0built"  # a field no filter can be: shared_members(t) was counted from the routes


def tenant_connections(tenant: str) -> str:
    """Hash: worker id -> ``<connections held>:<valid until ms>`` (TotalConnections, cluster-wide)."""
    return _tenant_key("conns", tenant)


def tenant_connect_rate(tenant: str) -> str:
    """Hash ``s`` (a Redis-clock second) and ``n`` (CONNECTs admitted in it) (TotalConnectPerSecond)."""
    return _tenant_key("crate", tenant)


def tenant_keys(tenant: str) -> list[str]:
    """Every tenant-wide key (not the per-session ones)."""
    return [routes(tenant), rver(tenant), sexp(tenant), sessidx(tenant), sessgen(tenant), wills(tenant),
            retain(tenant), retain_index(tenant), shared_members(tenant), tenant_connections(tenant),
            tenant_connect_rate(tenant)]


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


# route cache invalidation (single Redis only; docs/redis-keys.md "Route freshness") ----------


def route_channel() -> str:
    """Pub/sub channel of route changes: ``tenant \\0 version \\0 writer``, published by ``tenant_apply``."""
    return PREFIX + "rwatch"


def route_watchers() -> str:
    """Hash: watcher (worker) id -> end of its lease (ms, Redis clock); a route writer waits for the
    acknowledgement of every watcher whose lease runs, or for the lease's end."""
    return PREFIX + "rwatchers"


def route_acks(node_id: str) -> str:
    """Pub/sub channel on which a route writer gets the watchers' acknowledgements."""
    return f"{PREFIX}rwack:{node_id}"
