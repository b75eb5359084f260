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
from tidemq.store.models import DROP_REASONS, AppendResult, InboxAppend, InboxEntry, InboxOp, InboxTarget
from tidemq.store.models import text as _s
from tidemq.store.scripts import Batch, RawBatch, get

_MARK = get("inbox_mark")
_BATCH = get("inbox_append_batch")
_Q2_BEGIN = get("q2_begin")


# a session's inbox keys (escaping a tenant and client id is not free, and the hot paths name the same
# sessions over and over): (tenant, session) -> (sess, inbox, rel, q2in, q2seen); cleared when it grows large
_KEYS: dict[tuple[str, str], tuple[str, str, str, str, str]] = {}
_KEYS_MAX = 1024  # sessions whose key names are kept (hot ones: a cache, not a copy per idle session)


def session_keys(t: str, c: str) -> tuple[str, str, str, str, str]:
    """``(sess, inbox, rel, q2in, q2seen)`` of session ``c`` of tenant ``t`` (``keys``), cached."""
    k = _KEYS.get((t, c))
    if k is None:
        if len(_KEYS) >= _KEYS_MAX:
            _KEYS.clear()
        k = _KEYS[(t, c)] = (keys.sess(t, c), keys.inbox(t, c), keys.rel(t, c), keys.q2in(t, c), keys.q2seen(t, c))
    return k


class ReplicationTimeout(Exception):
    """The appends are on the primary, but fewer replicas than required confirmed them in time."""


# a batched append call carries at most this many messages / blob bytes (a script blocks Redis while it runs)
BATCH_MESSAGES = 256
BATCH_BYTES = 4 << 20


class _Group:
    """Appends to the inboxes of one slot (a cluster) or one tenant (a single node): one script call.

    A message for the same targets as the message before it in the call passes ``-1`` instead of its
    targets (lua/inbox_append_batch.lua): a run of messages for one subscriber costs three arguments each.
    """

    __slots__ = ("args", "index", "keys", "last", "last_sess", "parts", "size", "tenant")

    def __init__(self, tenant: str, limit: int, drop_oldest: bool, now_ms: int) -> None:
        self.tenant = tenant
        self.keys: list[str] = []
        self.index: dict[str, int] = {}  # client id -> session index (1-based) in keys
        self.args: list[Any] = [limit, "1" if drop_oldest else "0", now_ms]
        # (item position, its target indexes, their session indexes) in call order
        self.parts: list[tuple[int, list[int], tuple[int, ...]]] = []
        self.size = 0
        self.last: list[InboxTarget] | None = None  # the previous message's targets, and their sessions
        self.last_sess: tuple[int, ...] = ()

    def add(self, pos: int, item: InboxAppend, token: str | bytes, targets: list[int]) -> None:
        self.size += len(item.blob)
        tl = item.targets if len(targets) == len(item.targets) else [item.targets[ti] for ti in targets]
        if tl == self.last:
            self.args += [item.blob, token, -1]
            self.parts.append((pos, targets, self.last_sess))
            return
        args = self.args
        args += [item.blob, token, len(tl)]
        sess: list[int] = []
        for tgt in tl:
            s = self.index.get(tgt.client_id)
            if s is None:
                s = self.index[tgt.client_id] = len(self.keys) // 3 + 1
                k = session_keys(self.tenant, tgt.client_id)
                self.keys += [k[0], k[1], k[4]]
            sess.append(s)
            ids = tgt.sub_ids
            args += [s, f"{tgt.qos}r" if tgt.retain else tgt.qos,
                     (",".join(map(str, ids)) if len(ids) != 1 else str(ids[0])) if ids else "", tgt.gen]
        self.last, self.last_sess = tl, tuple(sess)
        self.parts.append((pos, targets, self.last_sess))


def _token() -> str:
    """A token naming one inbound QoS 2 message for its whole exchange (kept by q2_begin, never reused)."""
    return secrets.token_hex(8)


async def q2_begin_many(r: Any, items: Sequence[tuple[str, str, int]]) -> list[tuple[int, str]]:
    """Record each ``(tenant, publisher session, packet id)`` of an inbound QoS 2 PUBLISH before it is routed
    (one pipelined round trip, one script call per publisher session): per item ``(duplicate, token)`` as
    ``lua/q2_begin.lua`` answers, in the order of ``items``."""
    if not items:
        return []
    per: dict[tuple[str, str], list[int]] = {}  # publisher session -> positions of its items, in order
    for pos, (t, c, _pid) in enumerate(items):
        per.setdefault((t, c), []).append(pos)
    batch = RawBatch(r)
    calls: list[tuple[int, list[int]]] = []
    for (t, c), positions in per.items():
        k = session_keys(t, c)
        args: list[Any] = []
        for pos in positions:
            args += [items[pos][2], _token().encode()]  # bytes: a one-off value (scripts.pack_commands)
        calls.append((batch.script(_Q2_BEGIN, [k[0], k[3]], args), positions))
    results = await batch.execute()
    out: list[tuple[int, str]] = [(0, "")] * len(items)
    for at, positions in calls:
        res = results[at]
        for n, pos in enumerate(positions):
            out[pos] = (int(res[2 * n]), _s(res[2 * n + 1]))
    return out


async def _q2_begin(r: Any, items: Sequence[InboxAppend]) -> dict[int, tuple[int, str]]:
    """``q2_begin_many`` for the items with a packet id: position -> (duplicate, token)."""
    todo = [(pos, (item.tenant, item.dedupe[0], item.dedupe[1])) for pos, item in enumerate(items) if item.dedupe]
    answers = await q2_begin_many(r, [x for _pos, x in todo])
    return {pos: answer for (pos, _x), answer in zip(todo, answers, strict=True)}


# where one item's message went in a batch: (result index of its call, its position in that call's reply,
# its target indexes, their session indexes in the call)
Part = tuple[int, int, list[int], tuple[int, ...]]


def queue_appends(batch: Batch | RawBatch, items: Sequence[InboxAppend], *, cluster: bool, now_ms: int,
                  q2: dict[int, tuple[int, str]] | None = None) -> list[list[Part]]:
    """Queue every append of ``items`` on ``batch``: per item, its parts (``Part``).

    One ``inbox_append_batch`` call per group: the inboxes of one tenant on a single node, of one slot on
    a cluster (per-session hash tags: a message for several sessions is split by slot), at most
    ``BATCH_MESSAGES`` messages or ``BATCH_BYTES`` each; every inbox gets its messages in the order of
    ``items``. ``q2``: ``q2_begin``'s answers (a duplicate 1 appends nothing; the others carry the token).
    """
    q2 = q2 or {}
    parts: list[list[Part]] = [[] for _ in items]
    groups: dict[tuple[Any, int, bool], _Group] = {}

    def close(key: tuple[Any, int, bool]) -> None:
        group = groups.pop(key)
        at = batch.script(_BATCH, group.keys, group.args)
        for k, (pos, targets, sess) in enumerate(group.parts, 1):
            parts[pos].append((at, k, targets, sess))

    for pos, item in enumerate(items):
        dup, token = q2.get(pos, (0, "")) if q2 else (0, "")
        if dup == 1 or not item.targets:
            continue
        arg: str | bytes = token.encode() if token else ""  # a one-off value: bytes (scripts.pack_commands)
        if cluster:
            by_key: dict[tuple[Any, int, bool], list[int]] = {}
            for ti, tgt in enumerate(item.targets):
                where = key_slot(session_keys(item.tenant, tgt.client_id)[0].encode())
                by_key.setdefault((where, item.limit, item.drop_oldest), []).append(ti)
            pairs = list(by_key.items())
        else:
            pairs = [((item.tenant, item.limit, item.drop_oldest), list(range(len(item.targets))))]
        for key, targets in pairs:
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group(item.tenant, item.limit, item.drop_oldest, now_ms)
            group.add(pos, item, arg, targets)
            if len(group.parts) >= BATCH_MESSAGES or group.size >= BATCH_BYTES:
                close(key)
    for key in list(groups):
        close(key)
    return parts


def decode_appends(item: InboxAppend, replies: Sequence[tuple[Any, list[int], tuple[int, ...], list[str]]],
                   duplicate: int = 0) -> AppendResult:
    """One item's result from its parts' replies: per part (its reply in the call, its target indexes,
    their session indexes, the call's workers per session). Drops are named by the target's client id."""
    res = AppendResult(set(), 0, 0, duplicate=duplicate)
    for reply, targets, sess, workers in replies:
        if type(reply) is int:  # every target got it: their sessions' owners
            res.queued += reply
            res.owners.update(w for w in (workers[s - 1] for s in sess) if w)
            continue
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
    batch = RawBatch(r)
    parts = queue_appends(batch, items, cluster=cluster, now_ms=int(time.time() * 1000) if now_ms is None else now_ms,
                          q2=q2)
    waited, need = -1, 0
    if wait is not None and wait[0] > 0 and not cluster and len(batch):
        need = wait[0]
        waited = batch.command("WAIT", need, wait[1])
    results = await batch.execute() if len(batch) else []
    if waited >= 0 and int(results[waited]) < need:
        raise ReplicationTimeout(f"{results[waited]} of {need} replicas confirmed the inbox appends")
    workers: dict[int, list[str]] = {}  # result index -> the owner worker per session of that call
    shared: dict[tuple[int, tuple[int, ...]], set[str]] = {}  # the owners of a run of same-target messages
    out: list[AppendResult] = []
    for pos, (item, item_parts) in enumerate(zip(items, parts, strict=True)):
        dup = q2[pos][0] if q2 and pos in q2 else 0
        if len(item_parts) == 1:
            at, k, targets, sess = item_parts[0]
            reply = results[at][k]
            if type(reply) is int:  # the common case: one call, every target got it
                owners = shared.get((at, sess))
                if owners is None:
                    ws = workers.get(at)
                    if ws is None:
                        ws = workers[at] = [_s(w) for w in results[at][0]]
                    owners = shared[(at, sess)] = {w for w in (ws[s - 1] for s in sess) if w}
                out.append(AppendResult(owners, 0, 0, reply, duplicate=dup))
                continue
        replies = []
        for at, k, targets, sess in item_parts:
            ws = workers.get(at)
            if ws is None:
                ws = workers[at] = [_s(w) for w in results[at][0]]
            replies.append((results[at][k], targets, sess, ws))
        out.append(decode_appends(item, replies, dup))
    return out


# one inbox entry as the worker reads it: (seq, qos, retain, subscription ids, message blob)
RawEntry = tuple[int, int, bool, tuple[int, ...], bytes]


def _fields(fields: Any) -> tuple[bytes, bytes, bytes]:
    """``q``, ``i`` and ``m`` of an entry's fields, as a raw reply (a flat list) or a parsed dict."""
    if type(fields) is list and len(fields) == 6 and fields[0] == b"q" and fields[2] == b"i" and fields[4] == b"m":
        return fields[1], fields[3], fields[5]  # the order inbox_append_batch writes them in
    d = fields if isinstance(fields, dict) else dict(zip(fields[::2], fields[1::2], strict=True))
    return d.get(b"q", b"0"), d.get(b"i", b""), d.get(b"m", b"")


def decode_entries(reply: Any) -> list[RawEntry]:
    """An ``XRANGE`` reply of an inbox (raw, or through redis-py's callback) as ``RawEntry`` tuples."""
    out: list[RawEntry] = []
    for entry_id, fields in reply or ():
        q, ids, blob = _fields(fields)
        out.append((int(entry_id[:-2]) if entry_id.endswith(b"-0") else int(entry_id.split(b"-", 1)[0]),
                    q[0] - 48, q.endswith(b"r"),
                    (tuple(map(int, ids.split(b","))) if b"," in ids else (int(ids),)) if ids else (), blob))
    return out


async def inbox_read_raw_many(r: Any, items: Sequence[tuple[str, str, int, int]]) -> list[list[RawEntry]]:
    """For each ``(t, c, after_seq, count)``: up to ``count`` entries with seq > after_seq, in order, as
    ``RawEntry`` tuples (the worker's drain: one pipelined round trip, no object per entry)."""
    if not items:
        return []
    batch = RawBatch(r)
    for t, c, after, count in items:
        batch.command("XRANGE", session_keys(t, c)[1], b"%d-0" % (after + 1), "+", "COUNT", count)
    return [decode_entries(res) for res in await batch.execute()]


async def inbox_read_many(
    r: Any, items: Sequence[tuple[str, str, int, int]]
) -> list[list[InboxEntry]]:
    """For each ``(t, c, after_seq, count)``: up to ``count`` entries with seq > after_seq, in order."""
    return [[InboxEntry(seq=seq, qos=qos, retain=retain, sub_ids=ids, blob=blob)
             for seq, qos, retain, ids, blob in entries]
            for entries in await inbox_read_raw_many(r, items)]


async def inbox_read(r: Any, t: str, c: str, after_seq: int = 0, count: int = 100) -> list[InboxEntry]:
    return (await inbox_read_many(r, [(t, c, after_seq, count)]))[0]


MARK_KINDS = frozenset({"rec", "sent", "q2add", "q2done", "comp", "q2del"})


async def inbox_apply_many(r: Any, ops: Sequence[InboxOp], acks: dict[tuple[str, str], list[int]] | None = None,
                           marks: dict[tuple[str, str], list[Any]] | None = None) -> None:
    """Apply delivery-state changes (ack, rec, comp, sent, q2add, q2done, q2del) in one pipelined round trip.

    Per session one ``inbox_mark`` call with its changes in order: those of ``ops`` (acks aside), then those
    of ``marks`` ((tenant, session) -> flat ``kind, seq, pid`` triples, what the worker collects without an
    object per change); then every ack, of ``ops`` and of ``acks`` ((tenant, session) -> seqs), as one XDEL
    per inbox.
    """
    if not ops and not acks and not marks:
        return
    calls: dict[tuple[str, str], list[Any]] = {}  # session -> its (kind, seq, pid) triples, in order
    merged: dict[tuple[str, str], list[int]] = {}
    for op in ops:
        kind = op.kind
        if kind == "ack":
            merged.setdefault((op.tenant, op.client_id), []).append(op.seq)
        elif kind in MARK_KINDS:
            calls.setdefault((op.tenant, op.client_id), []).extend((kind, op.seq, op.pid))
        else:
            raise ValueError(f"unknown inbox op kind {kind!r}")
    for src, dst in ((marks, calls), (acks, merged)):
        if src:
            for key, items in src.items():
                if key in dst:
                    dst[key] += items
                else:
                    dst[key] = items
    batch = RawBatch(r)
    for (t, c), args in calls.items():
        if args:
            k = session_keys(t, c)
            batch.script(_MARK, [k[0], k[1], k[2], k[3]], args)
    for (t, c), seqs in merged.items():
        if seqs:
            batch.command("XDEL", session_keys(t, c)[1], *seqs)
    await batch.execute()


async def inbox_len(r: Any, t: str, c: str) -> int:
    return int(await r.xlen(keys.inbox(t, c)))
