"""The Redis data plane: every durable read and write of TideMQ goes through this package.

Key names come from ``keys`` only; every multi-key change is one Lua script
from ``lua/`` (``scripts``), on keys sharing the tenant's hash tag, so the
same code runs on a single node, a Redis Cluster and the embedded fakeredis
store. Modules per concern: ``sessions`` (records, expiry, tenants),
``subscriptions`` (subs and routes), ``inbox``, ``retained``, ``signals``.
"""

from tidemq.store.connection import close_redis, is_cluster, open_redis
from tidemq.store.inbox import inbox_append_many, inbox_apply_many, inbox_len, inbox_read, inbox_read_many
from tidemq.store.models import (
    AppendResult,
    ConnectResult,
    ExpiredSession,
    InboxAppend,
    InboxEntry,
    InboxOp,
    InboxTarget,
    NoSession,
    SubOpts,
)
from tidemq.store.retained import retain_clear, retain_count, retain_get, retain_list, retain_match, retain_set
from tidemq.store.scripts import Batch, load_all
from tidemq.store.sessions import (
    session_connect,
    session_disconnect,
    session_get,
    session_owner,
    sessions_count,
    sessions_expire,
    sessions_page,
    tenants_add,
    tenants_list,
)
from tidemq.store.signals import SignalListener, listen, publish_signal, publish_signals_many
from tidemq.store.subscriptions import load_routes, route_versions, subscribe, unsubscribe

__all__ = [
    "AppendResult",
    "Batch",
    "ConnectResult",
    "ExpiredSession",
    "InboxAppend",
    "InboxEntry",
    "InboxOp",
    "InboxTarget",
    "NoSession",
    "SignalListener",
    "SubOpts",
    "close_redis",
    "inbox_append_many",
    "inbox_apply_many",
    "inbox_len",
    "inbox_read",
    "inbox_read_many",
    "is_cluster",
    "listen",
    "load_all",
    "load_routes",
    "open_redis",
    "publish_signal",
    "publish_signals_many",
    "retain_clear",
    "retain_count",
    "retain_get",
    "retain_list",
    "retain_match",
    "retain_set",
    "route_versions",
    "session_connect",
    "session_disconnect",
    "session_get",
    "session_owner",
    "sessions_count",
    "sessions_expire",
    "sessions_page",
    "subscribe",
    "tenants_add",
    "tenants_list",
    "unsubscribe",
]
