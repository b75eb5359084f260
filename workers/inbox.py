"""Persistent-session delivery: reading inboxes and acknowledging entries.

A persistent session's messages live in its Redis stream (the inbox). The
``InboxCursor`` of an online session reads entries after the last one it
sent, as far as the client's receive maximum allows, and sends them with a
packet id derived from the entry's sequence number — so a resumed session
re-sends an unacknowledged message with its original packet id [MQTT-4.4.0-1]
and DUP set when it had been sent before. PUBACK/PUBCOMP delete the entry;
PUBREC moves it to the session's PUBREL set.

Both directions are batched per event-loop turn across all sessions of the
worker: ``InboxReader`` makes one pipelined XRANGE round trip for every
cursor that wants data, ``InboxOps`` one pipeline for every ack.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tidemq.message import unpack
from tidemq.store import inbox as inbox_store
from tidemq.store.models import InboxOp

if TYPE_CHECKING:
    from .broker import Broker
    from .connection import MQTTConnection

log = logging.getLogger("tidemq.inbox")

READ_BATCH = 256


def seq_to_pid(seq: int) -> int:
    return (seq - 1) % 65535 + 1


class InboxCursor:
    def __init__(self, conn: MQTTConnection, *, sent: int) -> None:
        self.conn = conn
        self.read_after = 0
        self.sent = sent
        self.reading = False
        self.want = False
        self.stopped = False
        conn.machine.defer_pubrel = True  # PUBREL only once the PUBREC is in Redis (see on_pubrec)

    def wake(self) -> None:
        """New entries may exist (notify, ack freed the window, or resume)."""
        if self.stopped:
            return
        self.want = True
        if not self.reading:
            self._request()

    def _request(self) -> None:
        free = self.conn.machine.window_free
        if free <= 0:
            return  # an ack will wake us
        if self.conn._backed_up():
            return  # a slow consumer: the inbox holds the rest; resume_writing wakes us
        self.want = False
        self.reading = True
        self.conn.broker.inbox_reader.request(self, min(READ_BATCH, max(free, 16)))

    def stop(self) -> None:
        self.stopped = True

    def on_entries(self, entries: list[Any], asked: int) -> None:
        self.reading = False
        if self.stopped:
            return
        conn = self.conn
        ops = conn.broker.inbox_ops
        t, c = conn.tenant, conn.client_id
        now_ms = int(time.time() * 1000)
        top = self.sent
        blocked = False
        for e in entries:
            if conn._backed_up():  # stop filling the socket buffer of a slow consumer
                blocked = True
                break
            seq = e.seq
            msg = unpack(e.blob)
            if msg.expire_at_ms and msg.expire_at_ms <= now_ms:
                ops.ack(t, c, seq)
                self.read_after = seq
                continue
            retain = e.retain
            if e.qos == 0:
                conn._send(msg, 0, retain, tuple(e.sub_ids), now_ms)
                ops.ack(t, c, seq)
                self.read_after = seq
                continue
            pid = conn._send(msg, e.qos, retain, tuple(e.sub_ids), now_ms, packet_id=seq_to_pid(seq),
                             dup=seq <= self.sent, tag=("inbox", seq))
            if pid is None:
                if conn.machine.last_drop_reason == "too_large":
                    ops.ack(t, c, seq)
                    self.read_after = seq
                    continue
                blocked = True
                break
            self.read_after = seq
            top = max(top, seq)
        if top > self.sent:
            self.sent = top
            ops.mark_sent(t, c, top)
        conn.flush_soon()
        if not blocked and (len(entries) >= asked or self.want):
            self._request()
        elif blocked:
            self.want = True

    def on_puback(self, pid: int, tag: Any) -> None:
        self.conn.broker.inbox_ops.ack(self.conn.tenant, self.conn.client_id, tag[1])
        self._after_ack()

    def on_pubrec(self, pid: int, tag: Any, reason_code: int) -> None:
        ops = self.conn.broker.inbox_ops
        if reason_code >= 0x80:
            ops.ack(self.conn.tenant, self.conn.client_id, tag[1])
            self._after_ack()
        else:
            # the PUBREL goes out only after "rec" is written: were we to die in between, a resume
            # would resend a PUBLISH the client already completed, and it would deliver it twice
            ops.rec(self.conn.tenant, self.conn.client_id, tag[1], pid, then=lambda: self._release(pid))

    def _release(self, pid: int) -> None:
        self.conn.machine.release(pid)
        self.conn.flush_soon()

    def on_pubcomp(self, pid: int, tag: Any) -> None:
        self.conn.broker.inbox_ops.comp(self.conn.tenant, self.conn.client_id, pid)
        self._after_ack()

    def _after_ack(self) -> None:
        if self.want and not self.reading and not self.stopped:
            self._request()


class InboxReader:
    """One pipelined XRANGE round trip per loop turn for every waiting cursor."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._wanted: list[tuple[InboxCursor, int]] = []
        self._task: asyncio.Task[None] | None = None

    def request(self, cursor: InboxCursor, count: int) -> None:
        self._wanted.append((cursor, count))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._wanted:
            batch, self._wanted = self._wanted, []
            items = [(cur.conn.tenant, cur.conn.client_id, cur.read_after, n) for cur, n in batch]
            try:
                results = await inbox_store.inbox_read_many(self.broker.redis, items)
            except Exception as exc:  # store trouble: retry these cursors shortly
                log.error("inbox read failed: %s", exc)
                await asyncio.sleep(0.5)
                for cur, _n in batch:
                    cur.reading = False
                    cur.wake()
                continue
            for (cur, n), entries in zip(batch, results, strict=True):
                try:
                    cur.on_entries(entries, n)
                except Exception:  # one bad entry must not stall the others
                    log.exception("inbox delivery failed for %s/%s", cur.conn.tenant, cur.conn.client_id)


class InboxOps:
    """Acks and QoS 2 bookkeeping, one pipeline per loop turn for the whole worker."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._ops: list[InboxOp] = []
        self._after: list[Callable[[], None]] = []  # run once the batch holding their op is written
        self._task: asyncio.Task[None] | None = None

    def _add(self, op: InboxOp, then: Callable[[], None] | None = None) -> None:
        self._ops.append(op)
        if then is not None:
            self._after.append(then)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def ack(self, t: str, c: str, seq: int) -> None:
        self._add(InboxOp("ack", t, c, seq=seq))

    def rec(self, t: str, c: str, seq: int, pid: int, then: Callable[[], None] | None = None) -> None:
        self._add(InboxOp("rec", t, c, seq=seq, pid=pid), then)

    def comp(self, t: str, c: str, pid: int) -> None:
        self._add(InboxOp("comp", t, c, pid=pid))

    def mark_sent(self, t: str, c: str, seq: int) -> None:
        self._add(InboxOp("sent", t, c, seq=seq))

    def q2add(self, t: str, c: str, pid: int, then: Callable[[], None] | None = None) -> None:
        self._add(InboxOp("q2add", t, c, pid=pid), then)

    def q2del(self, t: str, c: str, pid: int, then: Callable[[], None] | None = None) -> None:
        self._add(InboxOp("q2del", t, c, pid=pid), then)

    async def _run(self) -> None:
        while self._ops:
            batch, self._ops = self._ops, []
            after, self._after = self._after, []
            try:
                await inbox_store.inbox_apply_many(self.broker.redis, batch)
            except Exception as exc:  # not written: no PUBREL; a resume resends the PUBLISH (DUP)
                log.error("inbox ops failed (%d): %s", len(batch), exc)
                continue
            for fn in after:
                try:
                    fn()
                except Exception:
                    log.exception("inbox op completion failed")

    async def flush_now(self) -> None:
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
