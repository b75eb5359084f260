"""Persistent-session inboxes: batched append, read, and delivery-state changes.

An inbox is a stream ``inbox(t, c)`` with entry ids ``<seq>-0`` where ``seq``
is the session's sequence (field ``seq``): ids are dense per session, survive
reconnects, and the worker resumes by reading after a sequence number. Each
entry carries ``q`` (qos granted for this subscriber), ``i`` (subscription
ids, comma list) and ``m`` (the message blob, packed once per publish and
passed once per script call whatever the number of targets).

A full inbox (``limit`` entries) never loses a queued QoS 1/2 entry: a new
QoS 1/2 message for it is refused and reported per target; only QoS 0 is
ever dropped (the new one, or with drop-oldest the oldest QoS 0 entry).
Callers learn every drop from ``AppendResult.drops`` (lua/inbox_append_batch.lua).

Everything here is batched: one pipelined round trip for a whole list (one
script call per tenant on a single node, per slot on a cluster, for the
messages of a flush; a pipeline spans tenants and, on a cluster, nodes).
Inbound QoS 2 messages take one more trip first (``q2_begin`` in the
publisher's session), so a resend is appended to no inbox twice. Routes are
verified on use: a target whose session is gone, or is a newer session than
the route was written for, gets nothing. Scripts that could recreate keys of
a removed session check the session record first.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any

from redis.crc import key_slot

from tidemq.store import keys
from tidemq.store.connection import is_cluster
from tidemq.store.models import DROP_REASONS, AppendResult, InboxAppend, InboxEntry, InboxOp
from tidemq.store.models import text as _s
from tidemq.store.scripts import Batch, get

_MARK = get("inbox_mark")
_BATCH = get("inbox_append_batch")
_Q2_BEGIN = get("q2_begin")



class ReplicationTimeout(Exception):
    """The appends are on the primary, but fewer replicas than required confirmed them in time."""


# a batched append call carries at most this many messages / blob bytes (a script blocks Redis while it runs)
BATCH_MESSAGES = 256
BATCH_BYTES = 4 << 20


class _Group:
    """Appends to the inboxes of one slot (a cluster) or one tenant (a single node): one script call."""

    __slots__ = ("args", "index", "keys", "parts", "size", "tenant")

    def __init__(self, tenant: str, limit: int, drop_oldest: bool, now_ms: int) -> None:
        self.tenant = tenant
        self.keys: list[str] = []
        self.index: dict[str, int] = {}  # client id -> session index (1-based) in keys
        self.args: list[Any] = [limit, "1" if drop_oldest else "0", now_ms]
        self.parts: list[tuple[int, list[int]]] = []  # (item position, its target indexes) in call order
        self.size = 0

    def add(self, pos: int, item: InboxAppend, token: str, targets: list[int]) -> None:
        self.parts.append((pos, targets))
        self.size += len(item.blob)
        self.args += [item.blob, token, len(targets)]
        for ti in targets:
            tgt = item.targets[ti]
            s = self.index.get(tgt.client_id)
            if s is None:
                s = self.index[tgt.client_id] = len(self.keys) // 3 + 1
                self.keys += [keys.sess(self.tenant, tgt.client_id), keys.inbox(self.tenant, tgt.client_id),
                              keys.q2seen(self.tenant, tgt.client_id)]
            self.args += [s, f"{tgt.qos}r" if tgt.retain else tgt.qos, ",".join(str(i) for i in tgt.sub_ids),
                          tgt.gen]


def _token() -> str:
    """A token naming one inbound QoS 2 message for its whole exchange (kept by q2_begin, never reused)."""
    return secrets.token_hex(8)


async def q2_begin_many(r: Any, items: Sequence[tuple[str, str, int]]) -> list[tuple[int, str]]:
    """Record each ``(tenant, publisher session, packet id)`` of an inbound QoS 2 PUBLISH before it is routed
    (one pipelined round trip): per item ``(duplicate, token)`` as ``lua/q2_begin.lua`` answers."""
    if not items:
        return []
    batch = Batch(r)
    for t, c, pid in items:
        batch.script(_Q2_BEGIN, [keys.sess(t, c), keys.q2in(t, c)], [pid, _token()])
    return [(int(res[0]), _s(res[1])) for res in await batch.execute()]


async def _q2_begin(r: Any, items: Sequence[InboxAppend]) -> dict[int, tuple[int, str]]:
    """``q2_begin_many`` for the items with a packet id: position -> (duplicate, token)."""
    todo = [(pos, (item.tenant, item.dedupe[0], item.dedupe[1])) for pos, item in enumerate(items) if item.dedupe]
    answers = await q2_begin_many(r, [x for _pos, x in todo])
    return {pos: answer for (pos, _x), answer in zip(todo, answers, strict=True)}


def queue_appends(batch: Batch, items: Sequence[InboxAppend], *, cluster: bool, now_ms: int,
                  q2: dict[int, tuple[int, str]] | None = None) -> list[list[tuple[int, int, list[int]]]]:
    """Queue every append of ``items`` on ``batch``: per item, its ``(result index, position in that
    call's reply, target indexes)`` parts.

    One ``inbox_append_batch`` call per group: the inboxes of one tenant on a single node, of one slot on
    a cluster (per-session hash tags: a message for several sessions is split by slot), at most
    ``BATCH_MESSAGES`` messages or ``BATCH_BYTES`` each; every inbox gets its messages in the order of
    ``items``. ``q2``: ``q2_begin``'s answers (a duplicate 1 appends nothing; the others carry the token).
    """
    q2 = q2 or {}
    parts: list[list[tuple[int, int, list[int]]]] = [[] for _ in items]
    groups: dict[tuple[Any, int, bool], _Group] = {}

    def close(key: tuple[Any, int, bool]) -> None:
        group = groups.pop(key)
        at = batch.script(_BATCH, group.keys, group.args)
        for k, (pos, targets) in enumerate(group.parts):
            parts[pos].append((at, k, targets))

    for pos, item in enumerate(items):
        dup, token = q2.get(pos, (0, ""))
        if dup == 1 or not item.targets:
            continue
        by_key: dict[tuple[Any, int, bool], list[int]] = {}
        for ti, tgt in enumerate(item.targets):
            where = key_slot(keys.sess(item.tenant, tgt.client_id).encode()) if cluster else item.tenant
            by_key.setdefault((where, item.limit, item.drop_oldest), []).append(ti)
        for key, targets in by_key.items():
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group(item.tenant, item.limit, item.drop_oldest, now_ms)
            group.add(pos, item, token, targets)
            if len(group.parts) >= BATCH_MESSAGES or group.size >= BATCH_BYTES:
                close(key)
    for key in list(groups):
        close(key)
    return parts


def decode_appends(item: InboxAppend, replies: Sequence[tuple[Sequence[Any], list[int]]],
                   duplicate: int = 0) -> AppendResult:
    """One item's result from its parts' replies (drops named by the target's client id)."""
    res = AppendResult(set(), 0, 0, duplicate=duplicate)
    for reply, targets in replies:
        res.missing += int(reply[0])
        res.queued += int(reply[1])
        res.owners.update(_s(w) for w in reply[2])
        pairs = list(reply[3])
        res.drops += [(item.targets[targets[int(pairs[k]) - 1]].client_id, DROP_REASONS[int(pairs[k + 1])])
                      for k in range(0, len(pairs) - 1, 2)]
    res.dropped = len(res.drops)
    return res


async def inbox_append_many(r: Any, items: Sequence[InboxAppend], *, wait: tuple[int, int] | None = None,
                            now_ms: int | None = None, q2: dict[int, tuple[int, str]] | None = None
                            ) -> list[AppendResult]:
    """Append each message to its targets' inboxes: one pipelined round trip (two with inbound QoS 2
    messages: their packet ids are recorded in the publishers' sessions first, ``q2_begin``).

    ``wait=(replicas, timeout_ms)``: the same pipeline ends with Redis ``WAIT`` (it must run on the
    connection that wrote), and ``ReplicationTimeout`` is raised when fewer replicas confirmed the
    writes: the caller does not acknowledge what a failover could lose. A single node only; a cluster
    pipeline spreads over connections, so ``wait`` is ignored there (docs/reliability.md).
    """
    cluster = is_cluster(r)
    if q2 is None:  # the caller did not record the packet ids itself (``q2_begin_many``): do it here
        q2 = await _q2_begin(r, items)
    batch = Batch(r)
    parts = queue_appends(batch, items, cluster=cluster, now_ms=int(time.time() * 1000) if now_ms is None else now_ms,
                          q2=q2)
    waited, need = -1, 0
    if wait is not None and wait[0] > 0 and not cluster and len(batch):
        waited, need = len(batch), wait[0]
        batch.pipe.execute_command("WAIT", need, wait[1])
    results = await batch.execute() if len(batch) else []
    if waited >= 0 and int(results[waited]) < need:
        raise ReplicationTimeout(f"{results[waited]} of {need} replicas confirmed the inbox appends")
    return [decode_appends(item, [(results[at][k], targets) for at, k, targets in item_parts],
                           q2.get(pos, (0, ""))[0])
            for pos, (item, item_parts) in enumerate(zip(items, parts, strict=True))]


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
        batch.pipe.hdel(keys.sess(t, c), f"q2t:{op.pid}")
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
