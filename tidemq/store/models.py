"""Small value types the store returns, and the one encoding of subscription options.

Subscription options are stored as a compact ASCII string, the same in the
``subs`` hash and inside route values: ``"qos,nl,rap,rh,sid"`` (five decimal
integers; ``nl``/``rap`` are 0/1, ``sid`` 0 means no subscription identifier),
e.g. ``"1,0,0,0,0"``. It is readable with redis-cli and trivially parsed in Lua.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class NoSession(Exception):
    """The session does not exist (or, with an epoch given, is owned by another connection)."""


class SubscriptionLimit(Exception):
    """The new topic filters would take the session past its filter limit (nothing was written)."""


def text(value: Any) -> str:
    """A reply value as text (replies are bytes: the clients run with ``decode_responses=False``)."""
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class SubOpts:
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0
    subscription_id: int | None = None

    def encode(self) -> str:
        return (f"{self.qos},{int(self.no_local)},{int(self.retain_as_published)},"
                f"{self.retain_handling},{self.subscription_id or 0}")

    @classmethod
    def decode(cls, raw: bytes | str) -> SubOpts:
        if isinstance(raw, bytes):
            raw = raw.decode()
        q, nl, rap, rh, sid = raw.split(",")
        return cls(int(q), nl == "1", rap == "1", int(rh), int(sid) or None)


@dataclass(slots=True)
class ConnectResult:
    present: bool  # a session was resumed (MQTT 5 session present / 3.1.1 SP flag)
    epoch: int  # this connection's epoch: pass it to session_disconnect / subscribe
    prev_worker: str  # owner before this connect ("" when offline or new): signal a takeover to it
    prev_epoch: int  # epoch of that owner connection (0 when none)
    subscriptions: dict[str, SubOpts] = field(default_factory=dict)
    rel_ids: list[int] = field(default_factory=list)  # outbound QoS 2 ids awaiting PUBCOMP
    q2in_ids: list[int] = field(default_factory=list)  # inbound QoS 2 ids awaiting PUBREL
    sent: int = 0  # highest inbox seq ever sent: entries <= sent are redelivered with DUP
    gen: str = ""  # the session's generation (its routes carry it): pass it to unsubscribe


@dataclass(frozen=True, slots=True)
class ExpiredSession:
    client_id: str
    worker: str  # "" when the session was offline, else its owner worker (signal it)
    epoch: int = 0  # the owning connection's epoch (the signal closes that connection only)


@dataclass(slots=True, frozen=True)
class InboxTarget:
    """One persistent session a message is queued for (encoded into the stream only in ``store/inbox.py``)."""

    client_id: str
    qos: int
    sub_ids: tuple[int, ...] = ()
    retain: bool = False  # deliver with RETAIN set (retain-as-published, or a retained replay)
    gen: str = ""  # the generation of the session the route was written for ("" = any: not from a route)


@dataclass(slots=True)
class InboxAppend:
    """One message for the inboxes of several sessions of one tenant."""

    tenant: str
    blob: bytes
    targets: list[InboxTarget]
    limit: int
    drop_oldest: bool
    # (publisher client id, QoS 2 packet id): recorded in the publisher's session first (q2_begin); the
    # appends carry its token, so an inbox that has the message already does not get it twice
    dedupe: tuple[str, int] | None = None


@dataclass(slots=True)
class AppendResult:
    owners: set[str]  # online owner workers of inboxes that got the message (notify them)
    dropped: int  # messages dropped by the inbox limit (the new one, or the oldest QoS 0 entry)
    missing: int  # targets without a session
    queued: int = 0  # targets whose inbox got the message
    # one (client id, reason) per drop; reason in DROP_REASONS ("inbox_full": a QoS 1/2 message not queued)
    drops: list[tuple[str, str]] = field(default_factory=list)
    # the publisher's QoS 2 packet id was already recorded, nothing appended: 1 = its clean-session deliveries
    # were confirmed too, 2 = they were not (the caller sends them again); 0 = a new message
    duplicate: int = 0

    @property
    def refused(self) -> int:
        """Targets that did not get the new message because their inbox was full."""
        return sum(1 for _c, reason in self.drops if reason != "qos0_oldest")


# what inbox_append reports per dropped target, by its reason number
DROP_REASONS = {1: "inbox_full", 2: "qos0_inbox_full", 3: "qos0_oldest"}


@dataclass(frozen=True, slots=True)
class InboxEntry:
    seq: int
    qos: int
    sub_ids: tuple[int, ...]
    blob: bytes
    retain: bool = False  # deliver with RETAIN set (retain-as-published or a retained replay)


INBOX_OP_KINDS = frozenset({"ack", "rec", "comp", "sent", "q2add", "q2del"})


@dataclass(frozen=True, slots=True)
class InboxOp:
    """A delivery-state change: ack (XDEL seq), rec (XDEL seq + SADD rel pid), comp (SREM rel pid),
    sent (sess.sent = max(sent, seq)), q2add / q2del (SADD / SREM q2in pid; q2del also "d<pid>"),
    q2done (SADD q2in "d<pid>": an inbound QoS 2 message's clean-session deliveries are out)."""

    kind: str
    tenant: str
    client_id: str
    seq: int = 0
    pid: int = 0
