"""Store failures as the rest of TideMQ sees them, so no layer above the store imports redis.

``store_unavailable(exc)`` says whether an exception means "the store is
unreachable or too slow right now" (a timeout, a refused or dropped
connection, a cluster that is down or read-only, a node still loading) and
returns a one-line reason for it, or ``None`` for everything else (a bug, a
bad request). The HTTP API answers the first kind with 503.
"""

from __future__ import annotations

from redis import exceptions as rx

# a reply from Redis that means "unavailable right now", not "you or I made a mistake"
TRANSIENT_REPLIES = ("OOM", "LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "BUSY", "READONLY")

StoreError = rx.RedisError  # the base of every error the store client raises


def store_unavailable(exc: BaseException) -> str | None:
    """The reason when ``exc`` means the store is unreachable or too slow, else None."""
    if isinstance(exc, TimeoutError | rx.TimeoutError):
        return "store timeout: Redis did not answer in time"
    if isinstance(exc, rx.ConnectionError | rx.ClusterDownError | rx.ClusterError | rx.ReadOnlyError):
        return f"store unavailable: {_one_line(exc) or type(exc).__name__}"
    if isinstance(exc, rx.ResponseError) and str(exc).upper().startswith(TRANSIENT_REPLIES):
        return f"store unavailable: {_one_line(exc)}"
    if isinstance(exc, OSError):
        return f"store unavailable: {_one_line(exc) or type(exc).__name__}"
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
