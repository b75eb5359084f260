"""InboxOps: per-inbox acks and per-session change triples, one write per loop turn, retried in order on
failure, completions only after the write (the store is replaced by a recorder; no Redis needed)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tidemq.worker import inbox as worker_inbox
from tidemq.worker.inbox import InboxOps

T = "t"


class Recorder:
    """Stands in for ``inbox_apply_many``: records each call, fails the first ``fail`` ones."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.calls: list[tuple[dict[Any, list[Any]], dict[Any, list[Any]]]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, _r: Any, ops: Any, acks: Any = None, marks: Any = None) -> None:
        assert not ops
        await self.gate.wait()
        self.calls.append(({k: list(v) for k, v in (acks or {}).items()},
                           {k: list(v) for k, v in (marks or {}).items()}))
        if self.fail:
            self.fail -= 1
            raise ConnectionError("store down")


async def test_one_write_per_turn_with_acks_per_inbox_and_triples_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder()
    monkeypatch.setattr(worker_inbox.inbox_store, "inbox_apply_many", rec)
    ops = InboxOps(None)
    done: list[str] = []
    ops.ack_seq((T, "a"), 1)
    ops.rec(T, "a", 2, 2, then=lambda: done.append("rel 2"))
    ops.ack(T, "b", 7)
    ops.comp(T, "a", 9)
    ops.ack_seq((T, "a"), 3)
    ops.mark_sent(T, "a", 3)
    ops.mark_sent(T, "a", 4)  # raises the "sent" just queued: one triple
    ops.mark_sent(T, "a", 2)
    ops.q2done(T, "p", 11, then=lambda: done.append("pubrec 11"))
    ops.q2del(T, "p", 10)
    assert ops.busy and done == []
    await ops.flush_now()
    assert rec.calls == [({(T, "a"): [1, 3], (T, "b"): [7]},
                          {(T, "a"): [b"rec", 2, 2, b"comp", 0, 9, b"sent", 4, 0],
                           (T, "p"): [b"q2done", 0, 11, b"q2del", 0, 10]})]
    assert done == ["rel 2", "pubrec 11"] and not ops.busy


async def test_a_failed_write_is_retried_first_and_completions_wait_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_inbox, "RETRY_MIN", 0.001)
    rec = Recorder(fail=1)
    monkeypatch.setattr(worker_inbox.inbox_store, "inbox_apply_many", rec)
    ops = InboxOps(None)
    done: list[int] = []
    rec.gate.clear()
    ops.rec(T, "a", 1, 1, then=lambda: done.append(1))
    ops.ack_seq((T, "a"), 5)
    await asyncio.sleep(0)  # the first write is under way (held at the gate)
    ops.rec(T, "a", 2, 2, then=lambda: done.append(2))  # queued while it fails
    ops.ack_seq((T, "a"), 6)
    ops.ack_seq((T, "b"), 1)
    rec.gate.set()
    await ops.flush_now()
    assert rec.calls[0] == ({(T, "a"): [5]}, {(T, "a"): [b"rec", 1, 1]})
    # the failed batch goes again ahead of what was queued since, in one write
    assert rec.calls[1:] == [({(T, "a"): [5, 6], (T, "b"): [1]}, {(T, "a"): [b"rec", 1, 1, b"rec", 2, 2]})]
    assert done == [1, 2]
