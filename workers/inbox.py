"""Batching of inbox I/O across all sessions of the worker: one round trip per loop turn each way.

``InboxReader`` makes one pipelined XRANGE round trip for every ``InboxCursor``
(``workers/deliver.py``) that wants data; ``InboxOps`` one pipeline for every
acknowledgement and QoS 2 bookkeeping step, and runs each step's completion
(e.g. the deferred PUBREL) only once the batch holding it is written. Acks are
the per-message case: a sequence number appended to its inbox's list (one
``XDEL`` per inbox per batch), no object per ack.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tidemq.store import inbox as inbox_store

if TYPE_CHECKING:
    from .deliver import InboxCursor

log = logging.getLogger("tidemq.inbox")

RETRY_AFTER = 0.5  # seconds before cursors whose read failed try again
RETRY_MIN, RETRY_MAX = 0.05, 2.0  # back-off of a failed ack batch (it is retried until written)


class InboxReader:
    """One pipelined XRANGE round trip per loop turn for every waiting cursor."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._wanted: list[tuple[InboxCursor, int]] = []
        self._task: asyncio.Task[None] | None = None

    def request(self, cursor: InboxCursor, count: int) -> None:
        self._wanted.append((cursor, count))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._wanted:
            batch, self._wanted = self._wanted, []
            items = [(cur.tenant, cur.client_id, cur.read_after, n) for cur, n in batch]
            try:
                results = await inbox_store.inbox_read_raw_many(self.redis, items)
            except Exception as exc:  # store trouble: retry these cursors shortly
                log.error("inbox read failed: %s", exc)
                await asyncio.sleep(RETRY_AFTER)
                for cur, _n in batch:
                    cur.reading = False
                    cur.wake()
                continue
            for (cur, n), entries in zip(batch, results, strict=True):
                try:
                    cur.on_entries(entries, n)
                except Exception:  # one bad entry must not stall the others
                    log.exception("inbox delivery failed for %s/%s", cur.tenant, cur.client_id)


class InboxOps:
    """Acks and QoS 2 bookkeeping, one pipeline per loop turn for the whole worker.

    Changes are collected per inbox without an object each: acks as seqs (one ``XDEL`` per inbox), the
    others as ``kind, seq, packet id`` triples in arrival order (one ``inbox_mark`` call per session).
    """

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._marks: dict[tuple[str, str], list[Any]] = {}  # (tenant, session) -> kind, seq, pid, ...
        self._acks: dict[tuple[str, str], list[int]] = {}  # (tenant, session) -> acknowledged seqs
        self._after: list[Callable[[], None]] = []  # run once the batch holding their change is written
        self._task: asyncio.Task[None] | None = None

    def _start(self) -> None:
        task = self._task
        if task is None or task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _mark(self, t: str, c: str, kind: bytes, seq: int, pid: int, then: Callable[[], None] | None) -> None:
        triples = self._marks.get((t, c))
        if triples is None:
            self._marks[(t, c)] = [kind, seq, pid]
        else:
            triples += (kind, seq, pid)
        if then is not None:
            self._after.append(then)
        self._start()

    def ack(self, t: str, c: str, seq: int) -> None:
        self.ack_seq((t, c), seq)

    def ack_seq(self, key: tuple[str, str], seq: int) -> None:
        """Delete entry ``seq`` of inbox ``key`` = (tenant, session) (PUBACK, PUBCOMP, or nothing to send)."""
        seqs = self._acks.get(key)
        if seqs is None:
            self._acks[key] = [seq]
        else:
            seqs.append(seq)
        task = self._task
        if task is None or task.done():
            self._start()

    def rec(self, t: str, c: str, seq: int, pid: int, then: Callable[[], None] | None = None) -> None:
        self._mark(t, c, b"rec", seq, pid, then)

    def comp(self, t: str, c: str, pid: int) -> None:
        self._mark(t, c, b"comp", 0, pid, None)

    def mark_sent(self, t: str, c: str, seq: int) -> None:
        triples = self._marks.get((t, c))
        if triples and triples[-3] == b"sent":  # the session's last change is a "sent" too: raise it instead
            if seq > triples[-2]:
                triples[-2] = seq
            return
        self._mark(t, c, b"sent", seq, 0, None)

    def q2done(self, t: str, c: str, pid: int, then: Callable[[], None] | None = None) -> None:
        """Inbound QoS 2 ``pid`` was routed everywhere (a resend need not be routed again)."""
        self._mark(t, c, b"q2done", 0, pid, then)

    def q2del(self, t: str, c: str, pid: int, then: Callable[[], None] | None = None) -> None:
        self._mark(t, c, b"q2del", 0, pid, then)

    async def _run(self) -> None:
        pause = 0.0
        while self._marks or self._acks:
            marks, self._marks = self._marks, {}
            acks, self._acks = self._acks, {}
            after, self._after = self._after, []
            try:
                await inbox_store.inbox_apply_many(self.redis, (), acks, marks)
            except Exception as exc:
                # never dropped: each change is idempotent (XDEL, SADD/SREM, max of "sent"), so the batch is
                # written again, ahead of anything queued since, and its completions (a deferred PUBREL,
                # a PUBREC waiting for its id to be recorded) run only once it is in Redis
                pause = min(max(pause * 2, RETRY_MIN), RETRY_MAX)
                log.error("inbox ops failed (%d sessions, %d acks), retrying in %.2fs: %s", len(marks),
                          sum(map(len, acks.values())), pause, exc)
                for key, triples in self._marks.items():
                    marks[key] = marks[key] + triples if key in marks else triples
                for key, seqs in self._acks.items():
                    acks[key] = acks[key] + seqs if key in acks else seqs
                self._marks, self._acks = marks, acks
                self._after = after + self._after
                await asyncio.sleep(pause)
                continue
            pause = 0.0
            for fn in after:
                try:
                    fn()
                except Exception:
                    log.exception("inbox op completion failed")

    @property
    def busy(self) -> bool:
        """Whether a batch is being written (``flush_now`` would wait for it)."""
        return self._task is not None and not self._task.done()

    async def flush_now(self) -> None:
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
