"""``tidemq.store.errors.store_unavailable``: which failures mean "the store is down", in one line."""

from __future__ import annotations

import pytest
from redis import exceptions as rx

from tidemq.store.errors import StoreError, store_unavailable

CASES: list[tuple[BaseException, str | None]] = [
    (TimeoutError(), "store timeout: Redis did not answer in time"),
    (rx.TimeoutError("slow"), "store timeout: Redis did not answer in time"),
    (rx.ConnectionError("Error 111 connecting to\\n localhost:6379.  Connection refused."),
     "store unavailable: Error 111 connecting to\\n localhost:6379. Connection refused."),
    (rx.ConnectionError(), "store unavailable: ConnectionError"),
    (rx.ClusterDownError("CLUSTERDOWN the cluster is down"), "store unavailable: CLUSTERDOWN the cluster is down"),
    (rx.ReadOnlyError("READONLY replica"), "store unavailable: READONLY replica"),
    (rx.ResponseError("LOADING Redis is loading the dataset in memory"),
     "store unavailable: LOADING Redis is loading the dataset in memory"),
    (rx.ResponseError("ERR unknown command BUSY"), None),  # transient words count only at the start
    (rx.ResponseError("WRONGTYPE Operation against a key"), None),
    (ConnectionRefusedError(111, "refused"), "store unavailable: [Errno 111] refused"),
    (ValueError("bad"), None),
    (KeyError("x"), None),
]


@pytest.mark.parametrize(("exc", "reason"), CASES, ids=lambda v: type(v).__name__ if isinstance(v, BaseException)
                         else None)
def test_reason(exc: BaseException, reason: str | None) -> None:
    assert store_unavailable(exc) == reason


def test_reasons_are_one_bounded_line() -> None:
    reason = store_unavailable(rx.ConnectionError("x\n" * 500))
    assert reason is not None and "\n" not in reason and len(reason) <= len("store unavailable: ") + 300


def test_store_error_is_the_client_base() -> None:
    assert issubclass(rx.ResponseError, StoreError) and issubclass(rx.ConnectionError, StoreError)
