"""The chaos checker's clients and its accounting: who published what, what was acknowledged, who got what.

Publishers (paho, MQTT 5 and 3.1.1, QoS 1 and 2, persistent sessions so that paho resends in-flight
messages after a reconnect and the broker can tell a QoS 2 resend from a new message) publish
numbered messages ``<publisher>:<seq>`` on their own topic at a steady rate, keeping a bounded
number unacknowledged. Subscribers (persistent and clean, both protocol versions) subscribe to
every publisher's topic at QoS 2 and record every delivery. Every client connects through the
test's load balancer, so a client whose worker died reconnects to a live one; paho reconnects the
same client object, which keeps its half-finished QoS 2 flows as MQTT requires.

Accounting (``account``), per subscriber and publisher:

- acknowledged: PUBACK (QoS 1) / PUBCOMP (QoS 2) with a success code (< 0x80); 0x97 and other
  failures are "refused", never owed;
- a persistent subscriber is owed every acknowledged message (it subscribed before publishing
  started); a clean subscriber only those published after its SUBACK on a connection that then
  stayed up ``TRANSIENT_MARGIN`` seconds past the acknowledgement (a clean session legitimately
  misses what was published while it was away);
- lost = owed and never delivered; duplicates = extra deliveries (allowed at QoS 1, a violation at
  QoS 2); out of order = an acknowledged message first delivered after a later one of the same
  publisher; phantom = a delivery of something never published.

Every wait is bounded and event-driven: callbacks on paho's threads wake the test's loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

TRANSIENT_MARGIN = 3.0  # s a clean subscriber's connection must outlive an ack for the message to be owed
WINDOW = 20  # unacknowledged messages per publisher before it waits (under the server Receive Maximum)
SESSION_EXPIRY = 600


class Wakeup:
    """Lets paho threads wake coroutines on the test's loop waiting for a predicate."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()

    def poke(self) -> None:
        self.loop.call_soon_threadsafe(self.event.set)

    async def until(self, pred: Any, within: float) -> bool:
        deadline = self.loop.time() + within
        while not pred():
            left = deadline - self.loop.time()
            if left <= 0:
                return False
            self.event.clear()
            try:
                await asyncio.wait_for(self.event.wait(), min(left, 1.0))
            except TimeoutError:
                pass
        return True


class _Client(mqtt.Client):
    """paho ignores PUBREC reason codes (it sends PUBREL and reports PUBCOMP's): record the refusals."""

    pubrec_refused: set[int]

    def _handle_pubrec(self) -> MQTTErrorCode:
        pkt = self._in_packet["packet"]
        if len(pkt) > 2 and pkt[2] >= 0x80:
            self.pubrec_refused.add((pkt[0] << 8) | pkt[1])
        return super()._handle_pubrec()


def _client(client_id: str, protocol: str, persistent: bool) -> _Client:
    v5 = protocol == "v5"
    c = _Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                    clean_session=None if v5 else not persistent,
                    protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, reconnect_on_failure=True)
    c.max_inflight_messages_set(WINDOW)
    c.max_queued_messages_set(0)
    c.reconnect_delay_set(1, 2)
    c.pubrec_refused = set()
    return c


def _connect(c: mqtt.Client, port: int, protocol: str, persistent: bool) -> None:
    if protocol == "v5":
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY if persistent else 0
        c.connect_async("127.0.0.1", port, keepalive=30, clean_start=not persistent, properties=props)
    else:
        c.connect_async("127.0.0.1", port, keepalive=30)
    c.loop_start()


@dataclass
class Publisher:
    name: str
    protocol: str
    qos: int
    topic: str
    wake: Wakeup
    sent_at: list[float] = field(default_factory=list)  # index = seq
    mid_seq: dict[int, int] = field(default_factory=dict)
    acks: list[tuple[int, int, float]] = field(default_factory=list)  # (mid, reason, time), paho's thread
    connects: int = 0

    def start(self, port: int) -> None:
        self.client = _client(self.name, self.protocol, True)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        _connect(self.client, port, self.protocol, True)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connects += 1
        self.wake.poke()

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        self.acks.append((mid, int(rc.value) if rc is not None else 0, time.monotonic()))
        self.wake.poke()

    @property
    def unacked(self) -> int:
        return len(self.sent_at) - len(self.acks)

    async def run(self, stop: asyncio.Event, rate: float) -> None:
        """Publish the next number every 1/rate s while fewer than WINDOW are unacknowledged."""
        while not stop.is_set():
            if self.unacked < WINDOW:
                seq = len(self.sent_at)
                self.sent_at.append(time.monotonic())
                info = self.client.publish(self.topic, f"{self.name}:{seq}".encode(), qos=self.qos)
                # NO_CONN: paho keeps the message and sends it once reconnected
                assert info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN), info.rc
                self.mid_seq[info.mid] = seq
            try:
                await asyncio.wait_for(stop.wait(), 1.0 / rate)
            except TimeoutError:
                pass

    def outcome(self) -> tuple[dict[int, float], int]:
        """``({seq: ack time} of the acknowledged, number refused)`` (first ack of a packet id wins)."""
        ok: dict[int, float] = {}
        refused = 0
        seen: set[int] = set()
        for mid, reason, t in list(self.acks):
            if mid in seen or mid not in self.mid_seq:
                continue
            seen.add(mid)
            if reason < 0x80 and mid not in self.client.pubrec_refused:
                ok[self.mid_seq[mid]] = t
            else:
                refused += 1
        return ok, refused

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Subscriber:
    name: str
    protocol: str
    persistent: bool
    topic_filter: str
    wake: Wakeup
    got: list[tuple[str, int, int]] = field(default_factory=list)  # (publisher, seq, qos), paho's thread
    windows: list[list[float]] = field(default_factory=list)  # [suback time, disconnect time or inf]
    connects: int = 0
    sessions_lost: int = 0  # reconnects of a persistent session that found no session
    subscribed: threading.Event = field(default_factory=threading.Event)

    def start(self, port: int) -> None:
        self.client = _client(self.name, self.protocol, self.persistent)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        _connect(self.client, port, self.protocol, self.persistent)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            return
        self.connects += 1
        present = bool(flags.session_present)
        if self.persistent and present:
            return
        if self.persistent and self.connects > 1:
            self.sessions_lost += 1
        opt: Any = SubscribeOptions(qos=2) if self.protocol == "v5" else 2
        client.subscribe([(self.topic_filter, opt)])

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        self.windows.append([time.monotonic(), float("inf")])
        self.subscribed.set()
        self.wake.poke()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if self.windows and self.windows[-1][1] == float("inf"):
            self.windows[-1][1] = time.monotonic()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        pub, _, seq = msg.payload.decode().partition(":")
        self.got.append((pub, int(seq), msg.qos))
        self.wake.poke()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Tally:
    fault: str
    published: int = 0
    acknowledged: int = 0
    refused: int = 0
    delivered: int = 0
    duplicates: int = 0  # extra deliveries, all QoS
    qos2_duplicates: int = 0
    stuck: int = 0  # owed to persistent sessions, delivered only once their connection was cut
    lost: int = 0  # owed to persistent sessions, never delivered (even after a session resume)
    lost_transient: int = 0  # owed to clean sessions (connected throughout), never delivered
    out_of_order: int = 0
    phantom: int = 0
    sessions_lost: int = 0
    details: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"[chaos] {self.fault:<12} published {self.published}  acknowledged {self.acknowledged}  "
                f"refused {self.refused}  delivered {self.delivered}  duplicates {self.duplicates} "
                f"(qos2 {self.qos2_duplicates})  stuck {self.stuck}  lost {self.lost}  "
                f"lost-transient {self.lost_transient}  "
                f"out-of-order {self.out_of_order}  phantom {self.phantom}  sessions-lost {self.sessions_lost}")


def owed(sub: Subscriber, pub: Publisher, ok: dict[int, float]) -> set[int]:
    if sub.persistent:
        return set(ok)
    wins = list(sub.windows)
    return {seq for seq, t_ack in ok.items()
            if any(w0 <= pub.sent_at[seq] and t_ack + TRANSIENT_MARGIN <= w1 for w0, w1 in wins)}


def missing(subs: list[Subscriber], pubs: list[Publisher]) -> int:
    """Acknowledged messages persistent subscribers are still owed (the drain waits for 0)."""
    n = 0
    for pub in pubs:
        ok, _ = pub.outcome()
        for sub in subs:
            if sub.persistent:
                have = {seq for p, seq, _q in list(sub.got) if p == pub.name}
                n += len(set(ok) - have)
    return n


def account(fault: str, pubs: list[Publisher], subs: list[Subscriber]) -> Tally:
    t = Tally(fault)
    by_name = {p.name: p for p in pubs}
    outcomes = {p.name: p.outcome() for p in pubs}
    t.published = sum(len(p.sent_at) for p in pubs)
    t.acknowledged = sum(len(ok) for ok, _r in outcomes.values())
    t.refused = sum(r for _ok, r in outcomes.values())
    for sub in subs:
        got = list(sub.got)
        t.delivered += len(got)
        t.sessions_lost += sub.sessions_lost
        for pname, seq, _q in got:
            p = by_name.get(pname)
            if p is None or seq >= len(p.sent_at):
                t.phantom += 1
        for pub in pubs:
            ok, _r = outcomes[pub.name]
            mine = [seq for pname, seq, _q in got if pname == pub.name]
            counts = Counter(mine)
            extra = sum(n - 1 for n in counts.values())
            t.duplicates += extra
            if pub.qos == 2:
                t.qos2_duplicates += extra
                if extra:
                    dup = sorted(seq for seq, n in counts.items() if n > 1)
                    t.details.append(f"{sub.name} got {extra} QoS 2 duplicates of {pub.name}, e.g. {dup[:8]}")
            lost = sorted(owed(sub, pub, ok) - set(counts))
            if sub.persistent:
                t.lost += len(lost)
            else:
                t.lost_transient += len(lost)
            if lost:
                t.details.append(f"{sub.name} missed {len(lost)} of {pub.name} (qos {pub.qos}), e.g. {lost[:8]}")
            top, seen = -1, set()
            for seq in mine:
                if seq in seen or seq not in ok:
                    continue
                seen.add(seq)
                if seq < top:
                    t.out_of_order += 1
                    if len(t.details) < 40:
                        t.details.append(f"{sub.name}: {pub.name}:{seq} after {pub.name}:{top}")
                top = max(top, seq)
    return t
