"""Persistent-session inboxes: batched append, read, and delivery-state changes.

An inbox is a stream ``inbox(t, c)`` with entry ids ``<seq>-0`` where ``seq``
comes from ``HINCRBY sess seq 1``: ids are dense per session, survive
reconnects, and the worker resumes by reading after a sequence number. Each
entry carries ``q`` (qos granted for this subscriber), ``i`` (subscription
ids, comma list) and ``m`` (the message blob, packed once per publish and
passed once per script call whatever the number of targets).

A full inbox (``limit`` entries) never loses a queued QoS 1/2 entry: a new
QoS 1/2 message for it is refused and reported per target; only QoS 0 is
ever dropped (the new one, or with drop-oldest the oldest QoS 0 entry).
Callers learn every drop from ``AppendResult.drops`` (see lua/inbox_append.lua).

Everything here is batched: one pipelined round trip for a whole list (one
script call per tenant for the messages of a flush, one per QoS 2 message
with a packet id; a pipeline spans tenants and, on a cluster, nodes).
Scripts that could recreate keys of a removed session check the session
record first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tidemq.store import keys
from tidemq.store.connection import is_cluster
from tidemq.store.models import DROP_REASONS, AppendResult, InboxAppend, InboxEntry, InboxOp
from tidemq.store.scripts import Batch, get

_APPEND = get("inbox_append")
_MARK = get("inbox_mark")
_BATCH = get("inbox_append_batch")


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def queue_append(batch: Batch, item: InboxAppend) -> int:
    """Queue one append on ``batch`` (to share a round trip with other commands); returns its index."""
    ks: list[str] = []
    args: list[Any] = [item.blob, item.limit, "1" if item.drop_oldest else "0",
                       item.dedupe[1] if item.dedupe else ""]
    for tgt in item.targets:
        ks.append(keys.sess(item.tenant, tgt.client_id))
        ks.append(keys.inbox(item.tenant, tgt.client_id))
        args.append(f"{tgt.qos}r" if tgt.retain else tgt.qos)  # the entry's q field: "1", or "1r" with RETAIN
        args.append(",".join(str(i) for i in tgt.sub_ids))
    if item.dedupe:
        ks.append(keys.sess(item.tenant, item.dedupe[0]))
        ks.append(keys.q2in(item.tenant, item.dedupe[0]))
    return batch.script(_APPEND, ks, args)


def decode_append(item: InboxAppend, res: Sequence[Any]) -> AppendResult:
    """Decode ``inbox_append``'s reply for ``item`` (drops named by the target's client id)."""
    pairs = list(res[3])
    drops = [(item.targets[int(pairs[k]) - 1].client_id, DROP_REASONS[int(pairs[k + 1])])
             for k in range(0, len(pairs) - 1, 2)]
    return AppendResult(owners={_s(w) for w in res[2]}, dropped=len(drops), missing=int(res[0]),
                        queued=int(res[1]), drops=drops, duplicate=int(res[4]) if len(res) > 4 else 0)


class ReplicationTimeout(Exception):
    """The appends are on the primary, but fewer replicas than required confirmed them in time."""


# a batched append call carries at most this many messages / blob bytes (a script blocks Redis while it runs)
BATCH_MESSAGES = 256
BATCH_BYTES = 4 << 20


class _Group:
    """Messages of one tenant (and one limit policy) for one ``inbox_append_batch`` call."""

    __slots__ = ("args", "index", "items", "keys", "size")

    def __init__(self, item: InboxAppend) -> None:
        self.keys: list[str] = []
        self.index: dict[str, int] = {}  # client id -> session index (1-based) in keys
        self.args: list[Any] = [item.limit, "1" if item.drop_oldest else "0"]
        self.items: list[int] = []  # positions in the caller's list, in call order
        self.size = 0

    def add(self, pos: int, item: InboxAppend) -> None:
        self.items.append(pos)
        self.size += len(item.blob)
        self.args += [item.blob, len(item.targets)]
        for tgt in item.targets:
            s = self.index.get(tgt.client_id)
            if s is None:
                s = self.index[tgt.client_id] = len(self.keys) // 2 + 1
                self.keys += [keys.sess(item.tenant, tgt.client_id), keys.inbox(item.tenant, tgt.client_id)]
            self.args += [s, f"{tgt.qos}r" if tgt.retain else tgt.qos, ",".join(str(i) for i in tgt.sub_ids)]


def queue_appends(batch: Batch, items: Sequence[InboxAppend]) -> list[tuple[int, int]]:
    """Queue every append of ``items`` on ``batch``; per item ``(result index, position)``.

    Messages without a QoS 2 packet id go in batches: one ``inbox_append_batch`` call per tenant and
    limit policy (position: the message's place in that call's reply); one with a packet id is its own
    ``inbox_append`` call (position -1), and it closes the tenant's open batch first so every inbox
    receives the messages in the order of ``items``. An item without targets or id: ``(-1, -1)``.
    """
    where: list[tuple[int, int]] = [(-1, -1)] * len(items)
    groups: dict[tuple[str, int, bool], _Group] = {}

    def close(key: tuple[str, int, bool]) -> None:
        group = groups.pop(key)
        at = batch.script(_BATCH, group.keys, group.args)
        for k, pos in enumerate(group.items):
            where[pos] = (at, k)

    for pos, item in enumerate(items):
        key = (item.tenant, item.limit, item.drop_oldest)
        if item.dedupe:
            for open_key in [k for k in groups if k[0] == item.tenant]:
                close(open_key)
            where[pos] = (queue_append(batch, item), -1)
        elif item.targets:
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group(item)
            group.add(pos, item)
            if len(group.items) >= BATCH_MESSAGES or group.size >= BATCH_BYTES:
                close(key)
    for key in list(groups):
        close(key)
    return where


async def inbox_append_many(r: Any, items: Sequence[InboxAppend], *, wait: tuple[int, int] | None = None
                            ) -> list[AppendResult]:
    """Append each message to its targets' inboxes, all in one pipelined round trip.

    ``wait=(replicas, timeout_ms)``: the same pipeline ends with Redis ``WAIT`` (it must run on the
    connection that wrote), and ``ReplicationTimeout`` is raised when fewer replicas confirmed the
    writes: the caller does not acknowledge what a failover could lose. A single node only; a cluster
    pipeline spreads over connections, so ``wait`` is ignored there (docs/reliability.md).
    """
    batch = Batch(r)
    where = queue_appends(batch, items)
    waited, need = -1, 0
    if wait is not None and wait[0] > 0 and not is_cluster(r) and len(batch):
        waited, need = len(batch), wait[0]
        batch.pipe.execute_command("WAIT", need, wait[1])
    results = await batch.execute() if len(batch) else []
    if waited >= 0 and int(results[waited]) < need:
        raise ReplicationTimeout(f"{results[waited]} of {need} replicas confirmed the inbox appends")
    return [AppendResult(set(), 0, 0) if at < 0 else
            decode_append(item, results[at] if k < 0 else results[at][k])
            for item, (at, k) in zip(items, where, strict=True)]


def _entry(entry_id: bytes, fields: dict[bytes, bytes]) -> InboxEntry:
    seq = int(entry_id.split(b"-", 1)[0])
    ids = fields.get(b"i", b"")
    q = fields.get(b"q", b"0")
    return InboxEntry(
        seq=seq,
        qos=int(q[:1]),
        retain=q.endswith(b"r"),
        sub_ids=tuple(int(x) for x in ids.split(b",")) if ids else (),
        blob=fields.get(b"m", b""),
    )


async def inbox_read_many(
    r: Any, items: Sequence[tuple[str, str, int, int]]
) -> list[list[InboxEntry]]:
    """For each ``(t, c, after_seq, count)``: up to ``count`` entries with seq > after_seq, in order."""
    if not items:
        return []
    pipe = r.pipeline(transaction=False)
    for t, c, after, count in items:
        pipe.xrange(keys.inbox(t, c), f"{after + 1}-0", "+", count=count)
    results = await pipe.execute()
    return [[_entry(eid, fields) for eid, fields in res] for res in results]


async def inbox_read(r: Any, t: str, c: str, after_seq: int = 0, count: int = 100) -> list[InboxEntry]:
    return (await inbox_read_many(r, [(t, c, after_seq, count)]))[0]


def queue_op(batch: Batch, op: InboxOp) -> None:
    """Queue one delivery-state change on ``batch``."""
    t, c = op.tenant, op.client_id
    kind = op.kind
    if kind == "ack":
        batch.pipe.xdel(keys.inbox(t, c), f"{op.seq}-0")
    elif kind == "comp":
        batch.pipe.srem(keys.rel(t, c), op.pid)
    elif kind == "q2del":
        batch.pipe.srem(keys.q2in(t, c), op.pid, f"d{op.pid}")
    elif kind in ("rec", "sent", "q2add", "q2done"):
        batch.script(_MARK, [keys.sess(t, c), keys.inbox(t, c), keys.rel(t, c), keys.q2in(t, c)],
                     [kind, op.seq, op.pid])
    else:
        raise ValueError(f"unknown inbox op kind {kind!r}")


async def inbox_apply_many(r: Any, ops: Sequence[InboxOp]) -> None:
    """Apply delivery-state changes (ack, rec, comp, sent, q2add, q2del) in one pipelined round trip."""
    if not ops:
        return
    batch = Batch(r)
    acks: dict[tuple[str, str], list[str]] = {}  # one XDEL per inbox for all of its acks in the batch
    for op in ops:
        if op.kind == "ack":
            acks.setdefault((op.tenant, op.client_id), []).append(f"{op.seq}-0")
        else:
            queue_op(batch, op)
    for (t, c), ids in acks.items():
        batch.pipe.xdel(keys.inbox(t, c), *ids)
    await batch.execute()


async def inbox_len(r: Any, t: str, c: str) -> int:
    return int(await r.xlen(keys.inbox(t, c)))
