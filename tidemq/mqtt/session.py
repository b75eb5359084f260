"""Per-connection MQTT state machine (sans-IO, server side).

One ``ServerConnection`` per network connection. The transport feeds it bytes
(``receive_data``) and writes whatever ``data_to_send`` returns; the machine
answers on its own what needs no outside decision (PINGRESP, PUBCOMP, duplicate
QoS 2 PUBRECs, protocol errors) and turns everything else into ``Event``
objects for the worker, which replies through the ``accept``/``ack_*``/
``send_publish`` methods once the store has done its part.

Invariants: packet identifiers are per connection (never process-wide); the
outbound in-flight window never exceeds the client's receive maximum; inbound
QoS 1/2 publishes above our receive maximum are a protocol error (0x93);
every protocol error is raised as an ``MQTTError`` from the codec or here and
turned into DISCONNECT (v5) + close in exactly one place (``_fail``). The
clock is passed in by the caller (``now`` in seconds, monotonic).

The machine owns its state: the worker never writes ``state``; it reports what
happened outside the protocol (``connection_lost``, ``connect_timed_out``) and
the machine moves. Which client packets each state admits is one table
(``ADMITTED``, h11's event-triggered transitions): a packet a state does not
admit is a protocol error raised in ``_handle``. Packets a client sends after
CONNECT but before our CONNACK are held (bounded by the pre-authentication
packet cap) and handed over by ``accept`` [MQTT-3.1.4-5]; a refused CONNECT
discards them unprocessed. Until the client is accepted the decoder refuses,
at the fixed header and before buffering a body, any packet larger than
``Limits.preauth_max_packet_size``.

``receive_data`` handles PUBLISH and PUBACK of a connected MQTT 3 client in an
inline loop (the per-message hot path); it yields exactly the events and
output ``_handle`` would (``tests/mqtt/test_fast_paths.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from . import codec
from .errors import MQTTError, PacketTooLarge, ProtocolViolation
from .events import (
    AuthReceived,
    ConnectionFailed,
    ConnectReceived,
    DisconnectReceived,
    Event,
    PubackReceived,
    PubcompReceived,
    PublishReceived,
    PubrecReceived,
    PubrelReceived,
    PubrelUnknown,
    SubscribeReceived,
    UnsubscribeReceived,
)
from .packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)
from .reason_codes import RC, v5_to_v3_connack

__all__ = [  # the events are re-exported: the worker reads them as ``session.X``
    "AuthReceived", "ConnectReceived", "ConnectionFailed", "DisconnectReceived", "Event", "Limits",
    "PubackReceived", "PubcompReceived", "PublishReceived", "PubrecReceived", "PubrelReceived", "PubrelUnknown",
    "ServerConnection", "State", "SubscribeReceived", "UnsubscribeReceived",
]


class State(Enum):
    AWAIT_CONNECT = "await_connect"
    CONNECTING = "connecting"  # CONNECT received, waiting for the worker's decision
    CONNECTED = "connected"
    CLOSED = "closed"


# the members as module constants: the per-packet paths compare against these (no class attribute lookup)
_CONNECTING = State.CONNECTING
_CONNECTED = State.CONNECTED
_CLOSED = State.CLOSED


_AFTER_CONNECT: frozenset[type[Packet]] = frozenset(
    {Publish, Puback, Pubrec, Pubrel, Pubcomp, Subscribe, Unsubscribe, Pingreq, Disconnect, Auth})

# what a client may send in each state; anything else is a protocol error (one place: ``_handle``)
ADMITTED: dict[State, frozenset[type[Packet]]] = {
    State.AWAIT_CONNECT: frozenset({Connect}),
    State.CONNECTING: _AFTER_CONNECT,  # held until accept(); AUTH continues an enhanced authentication
    State.CONNECTED: _AFTER_CONNECT,
    State.CLOSED: frozenset(),
}
_RULE_NOT_ADMITTED: dict[State, tuple[str, str]] = {
    State.AWAIT_CONNECT: ("first packet must be CONNECT", "MQTT-3.1.0-1"),
    State.CONNECTING: ("second CONNECT", "MQTT-3.1.0-2"),
    State.CONNECTED: ("second CONNECT", "MQTT-3.1.0-2"),
}
HELD_MAX_PACKETS = 64  # packets a client may send between CONNECT and our CONNACK


@dataclass(slots=True)
class _Inflight:
    tag: Any
    qos: int
    released: bool = False  # QoS 2: PUBREC seen, PUBREL sent


@dataclass(slots=True)
class Limits:
    max_packet_size: int = 268435460  # what we accept from the client
    receive_maximum: int = 65535  # how many inbound QoS 1/2 we allow in flight
    topic_alias_maximum: int = 0  # aliases the client may use towards us
    server_keep_alive: int = 0  # 0: accept the client's value
    min_keep_alive: int = 0
    preauth_max_packet_size: int = 65536  # any packet before the client is accepted (CONNECT included)


@dataclass(slots=True)
class ServerConnection:
    limits: Limits = field(default_factory=Limits)
    state: State = State.AWAIT_CONNECT
    protocol_level: int = 0
    keep_alive: int = 0
    requested_keep_alive: int = 0
    last_received: float = 0.0
    # negotiated from the client's CONNECT (v5 properties)
    client_receive_maximum: int = 65535
    client_max_packet_size: int = 268435460
    client_topic_alias_maximum: int = 0
    request_problem_information: bool = True
    connect_session_expiry: int = 0  # v5 CONNECT's session expiry interval (for the DISCONNECT rule)
    _decoder: codec.Decoder = field(init=False)
    _out: list[bytes] = field(default_factory=list)  # encoded packets not yet handed to the transport
    _inflight_out: dict[int, _Inflight] = field(default_factory=dict)
    _next_pid: int = 1
    # dicts used as sets (an empty dict is 64 bytes, an empty set 216: idle connections are the many)
    _qos2_in: dict[int, None] = field(default_factory=dict)  # inbound QoS 2 ids awaiting PUBREL
    _inbound_pending: dict[int, None] = field(default_factory=dict)  # inbound QoS 1/2 not yet acked by us
    # topic aliases (MQTT 5), created by the first one used
    _aliases_in: dict[int, str] | None = None
    _aliases_out: dict[str, int] | None = None
    bytes_in: int = 0
    last_drop_reason: str = ""
    # persistent sessions: PUBREL waits for ``release`` (the worker made the PUBREC durable first), so a
    # crash can never resend a PUBLISH the client has already completed (QoS 2 exactly once)
    defer_pubrel: bool = False
    # persistent sessions: PUBCOMP waits for ``complete`` (the worker removed the inbound QoS 2 id
    # from the stored session first), so a crash cannot leave the id "in use" after the client's flow ended
    defer_pubcomp: bool = False
    _held: list[Packet] | None = None  # sent after CONNECT, before our CONNACK (created by the first)
    _held_bytes: int = 0

    def __post_init__(self) -> None:
        self._decoder = codec.Decoder(
            max_packet_size=min(self.limits.preauth_max_packet_size, self.limits.max_packet_size))

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    # ------------------------------------------------------------ input

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes from the network; returns the events they produce, in order."""
        state = self.state  # a local, so the check below does not narrow self.state for the loop
        if state is State.CLOSED:
            return []
        self.last_received = now
        self.bytes_in += len(data)
        decoder = self._decoder
        decoder.feed(data)
        events: list[Event] = []
        handle = self._handle
        next_packet = decoder.next_packet
        try:
            if state is _CONNECTED and self.protocol_level != 5:
                # the hot loop of an MQTT 3 connection: PUBLISH and PUBACK inline (what ``_handle`` and
                # ``_on_publish`` do for them: an MQTT 3 PUBLISH has a non-empty topic and no properties)
                pending = self._inbound_pending
                inflight = self._inflight_out
                while True:
                    packet = next_packet()
                    if packet is None:
                        return events
                    if type(packet) is Publish:
                        pid = packet.packet_id
                        if pid is None:
                            events.append(PublishReceived(packet))
                        elif packet.qos == 1:
                            if pid not in pending:  # else a resend while we still route the first copy
                                pending[pid] = None
                                events.append(PublishReceived(packet))
                        else:
                            self._on_publish(packet, events)
                    elif type(packet) is Puback:
                        ack = packet.packet_id
                        entry = inflight.get(ack)
                        if entry is not None and entry.qos == 1:  # else unknown: ignored [MQTT-4.3.2]
                            del inflight[ack]
                            events.append(PubackReceived(ack, entry.tag))
                    else:
                        handle(packet, events)
                        if self.state is _CLOSED:  # a packet may close the connection
                            return events
            while self.state is not _CLOSED:  # a packet may close the connection
                packet = next_packet()
                if packet is None:
                    break
                handle(packet, events)
        except MQTTError as exc:
            events.append(self._fail(exc))
        return events

    def _handle(self, p: Packet, events: list[Event]) -> None:
        state = self.state
        if type(p) not in ADMITTED[state]:
            if isinstance(p, (Connack, Suback, Unsuback, Pingresp)):  # server-to-client only
                raise ProtocolViolation(f"unexpected packet from client: {type(p).__name__}", rule="MQTT-2.1.2")
            what, rule = _RULE_NOT_ADMITTED.get(state, ("packet after close", "MQTT-4.8"))
            raise ProtocolViolation(what, rule=rule)
        if state is _CONNECTING and not isinstance(p, Auth):
            self._hold(p)
            return
        if type(p) is Publish:  # the common case first
            self._on_publish(p, events)
            return
        if isinstance(p, Connect):
            self.protocol_level = p.protocol_level
            self._decoder.protocol_level = p.protocol_level
            self.state = State.CONNECTING
            self._negotiate(p)
            events.append(ConnectReceived(p))
            return
        if isinstance(p, Publish):
            self._on_publish(p, events)
        elif isinstance(p, Puback):
            entry = self._take_inflight(p.packet_id, 1)
            if entry is not None:
                events.append(PubackReceived(p.packet_id, entry.tag))
        elif isinstance(p, Pubrec):
            entry = self._inflight_out.get(p.packet_id)
            if entry is None or entry.qos != 2:
                if self.protocol_level == 5:
                    self._send(Pubrel(p.packet_id, RC.PACKET_IDENTIFIER_NOT_FOUND))
                return
            if p.reason_code >= 0x80:  # v5: the receiver refused; the flow ends here [MQTT-4.3.3]
                del self._inflight_out[p.packet_id]
                events.append(PubrecReceived(p.packet_id, entry.tag, p.reason_code))
                return
            entry.released = True
            if not self.defer_pubrel:
                self._send(Pubrel(p.packet_id))
            events.append(PubrecReceived(p.packet_id, entry.tag, p.reason_code))
        elif isinstance(p, Pubcomp):
            entry = self._inflight_out.get(p.packet_id)
            if entry is not None and entry.qos == 2:
                del self._inflight_out[p.packet_id]
                events.append(PubcompReceived(p.packet_id, entry.tag))
        elif isinstance(p, Pubrel):
            if p.packet_id in self._qos2_in:
                del self._qos2_in[p.packet_id]
                if not self.defer_pubcomp:
                    self._send(Pubcomp(p.packet_id))
                events.append(PubrelReceived(p.packet_id))
            else:
                rc = RC.PACKET_IDENTIFIER_NOT_FOUND if self.protocol_level == 5 else 0
                self._send(Pubcomp(p.packet_id, rc))
                events.append(PubrelUnknown(p.packet_id))
        elif isinstance(p, Subscribe):
            events.append(SubscribeReceived(p))
        elif isinstance(p, Unsubscribe):
            events.append(UnsubscribeReceived(p))
        elif isinstance(p, Pingreq):
            self._send(Pingresp())
        elif isinstance(p, Disconnect):
            expiry = p.properties.get("session_expiry_interval")
            if expiry and self.protocol_level == 5 and not self.connect_session_expiry:
                raise ProtocolViolation("session expiry set at DISCONNECT after 0", rule="MQTT-3.14.2-2")
            events.append(DisconnectReceived(p.reason_code, expiry, p.reason_code == RC.DISCONNECT_WITH_WILL))
            self.state = State.CLOSED
        elif isinstance(p, Auth):
            if self.protocol_level != 5:
                raise ProtocolViolation("AUTH is MQTT 5 only", rule="MQTT-3.15")
            events.append(AuthReceived(p))

    def _hold(self, p: Packet) -> None:
        """A packet sent before our CONNACK: kept for ``accept`` [MQTT-3.1.4-5], within the pre-auth cap."""
        size = len(p.payload) if isinstance(p, Publish) else 0
        self._held_bytes += size
        held = self._held
        if held is None:
            held = self._held = []
        if len(held) >= HELD_MAX_PACKETS or self._held_bytes > self.limits.preauth_max_packet_size:
            raise PacketTooLarge("too much data before CONNACK", rule="MQTT-3.1.4-5",
                                 reason_code=RC.QUOTA_EXCEEDED)
        held.append(p)

    def _take_inflight(self, packet_id: int, qos: int) -> _Inflight | None:
        entry = self._inflight_out.get(packet_id)
        if entry is None or entry.qos != qos:
            return None  # unknown id: ignore (a late ack after a resend) [MQTT-4.3.2]
        del self._inflight_out[packet_id]
        return entry

    def _negotiate(self, p: Connect) -> None:
        props = p.properties
        self.client_receive_maximum = props.get("receive_maximum", 65535)
        self.client_max_packet_size = props.get("maximum_packet_size", 268435460)
        self.client_topic_alias_maximum = props.get("topic_alias_maximum", 0)
        self.request_problem_information = bool(props.get("request_problem_information", 1))
        self.connect_session_expiry = props.get("session_expiry_interval", 0)
        ka = self.requested_keep_alive = p.keep_alive
        if self.limits.server_keep_alive and self.protocol_level == 5:
            ka = self.limits.server_keep_alive
        elif ka and ka < self.limits.min_keep_alive and self.protocol_level == 5:
            ka = self.limits.min_keep_alive
        self.keep_alive = ka

    def _on_publish(self, p: Publish, events: list[Event]) -> None:
        alias = p.properties.get("topic_alias")
        if alias is not None:
            if alias == 0 or alias > self.limits.topic_alias_maximum:
                raise ProtocolViolation(
                    "topic alias out of range", rule="MQTT-3.3.2-9", reason_code=RC.TOPIC_ALIAS_INVALID
                )
            if self._aliases_in is None:
                self._aliases_in = {}
            if p.topic:
                self._aliases_in[alias] = p.topic
            else:
                known = self._aliases_in.get(alias)
                if known is None:
                    raise ProtocolViolation(
                        "unknown topic alias", rule="MQTT-3.3.4-1", reason_code=RC.TOPIC_ALIAS_INVALID
                    )
                p.topic = known
            p.properties = {k: v for k, v in p.properties.items() if k != "topic_alias"}
        elif not p.topic:
            raise ProtocolViolation("empty topic without alias", rule="MQTT-3.3.2-1")
        if p.qos == 2 and p.packet_id in self._qos2_in:
            # a resend of a message we already own: answer, never route twice [MQTT-4.3.3-9]
            if p.packet_id not in self._inbound_pending:
                self._send(Pubrec(p.packet_id))
            return
        pid = p.packet_id
        if pid is not None:  # QoS 1 or 2: the decoder reads a packet id exactly when qos > 0
            if pid in self._inbound_pending:
                if p.qos == 1:  # resend while we still route the first copy: the ack will come
                    return
            if self.protocol_level == 5:
                # QoS 2 flows count until PUBCOMP, not just until our PUBREC [MQTT-3.3.4-8]
                pending = self._inbound_pending
                in_flight = len(pending)
                if self._qos2_in:
                    in_flight += sum(1 for k in self._qos2_in if k not in pending)
                if in_flight >= self.limits.receive_maximum:
                    raise ProtocolViolation(
                        "receive maximum exceeded", rule="MQTT-3.3.4-8", reason_code=RC.RECEIVE_MAXIMUM_EXCEEDED
                    )
            self._inbound_pending[pid] = None
            if p.qos == 2:
                self._qos2_in[pid] = None
        events.append(PublishReceived(p))

    # ------------------------------------------------------------ output

    def data_to_send(self) -> bytes:
        """Everything queued for the network since the last call."""
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out = []
        return out

    def take_output(self) -> list[bytes]:
        """Like ``data_to_send``, as the encoded packets themselves (for one ``transport.writelines``:
        no copy into one buffer); an empty list when nothing is queued."""
        out = self._out
        if out:
            self._out = []
        return out

    def _send(self, packet: Packet) -> None:
        self._out.append(codec.encode(packet, self.protocol_level or 4))

    def accept(self, *, session_present: bool, properties: dict[str, Any] | None = None) -> list[Event]:
        """Answer CONNECT with success [MQTT-3.2.2-2]; returns the events of the packets the client
        sent after its CONNECT, which are processed only now [MQTT-3.1.4-5]."""
        if self.state is not State.CONNECTING:
            raise RuntimeError("accept() without a pending CONNECT")
        props = dict(properties or {})
        if self.protocol_level == 5:
            props.setdefault("receive_maximum", self.limits.receive_maximum)
            if self.limits.topic_alias_maximum:
                props.setdefault("topic_alias_maximum", self.limits.topic_alias_maximum)
            if self.limits.max_packet_size < 268435460:
                props.setdefault("maximum_packet_size", self.limits.max_packet_size)
            if self.keep_alive != self.requested_keep_alive:
                props.setdefault("server_keep_alive", self.keep_alive)  # [MQTT-3.2.2-22]
        else:
            props = {}
        self._send(Connack(session_present=session_present if self.protocol_level >= 4 else False,
                           reason_code=0, properties=props))
        self.state = State.CONNECTED
        self._decoder.max_packet_size = self.limits.max_packet_size
        held, self._held = self._held or [], None
        self._held_bytes = 0
        events: list[Event] = []
        for p in held:
            if self.state is State.CLOSED:
                break
            try:
                self._handle(p, events)
            except MQTTError as exc:
                events.append(self._fail(exc))
        return events

    def refuse(self, reason_code: int, reason_string: str | None = None,
               properties: dict[str, Any] | None = None) -> None:
        """Answer CONNECT with a failure and close [MQTT-3.2.2-6] (``properties``: MQTT 5 only, e.g. the
        Server Reference of a redirect)."""
        if self.protocol_level == 5:
            props = dict(properties or {})
            if reason_string and self.request_problem_information:
                props["reason_string"] = reason_string
            self._send(Connack(False, reason_code, props))
        else:
            self._send(Connack(False, v5_to_v3_connack(reason_code)))
        self._held = None  # never processed: the CONNECT was refused [MQTT-3.1.4-5]
        self.state = State.CLOSED

    def set_limits(self, limits: Limits) -> None:
        """Per-tenant limits, known once the client is authenticated (before ``accept``)."""
        self.limits = limits
        ka = self.requested_keep_alive
        if limits.server_keep_alive and self.protocol_level == 5:
            ka = limits.server_keep_alive
        elif ka and ka < limits.min_keep_alive and self.protocol_level == 5:
            ka = limits.min_keep_alive
        self.keep_alive = ka

    def send_auth(self, reason_code: int, properties: dict[str, Any]) -> None:
        """An AUTH packet of an enhanced authentication exchange (MQTT 5 only) [MQTT-4.12]."""
        self._send(Auth(reason_code, properties))

    def restore_session(self, *, qos2_incoming: list[int] | None = None) -> None:
        """Resume a stored session: inbound QoS 2 ids that were routed but not yet released."""
        if qos2_incoming:
            self._qos2_in.update(dict.fromkeys(qos2_incoming))

    def ack_publish(self, packet_id: int, qos: int, reason_code: int = 0) -> None:
        """The worker routed an inbound QoS 1/2 message: PUBACK or PUBREC it."""
        self._inbound_pending.pop(packet_id, None)
        if self.state is _CLOSED:
            return
        if self.protocol_level != 5:
            reason_code = 0
        if qos == 1:
            self._out.append(codec.encode_ack(0x40, packet_id, reason_code, self.protocol_level))
        elif qos == 2:
            if reason_code >= 0x80:
                self._qos2_in.pop(packet_id, None)
            self._out.append(codec.encode_ack(0x50, packet_id, reason_code, self.protocol_level))

    def ack_subscribe(self, packet_id: int, codes: list[int]) -> None:
        if self.protocol_level != 5:
            codes = [c if c <= 2 else 0x80 for c in codes]
        self._send(Suback(packet_id, codes))

    def ack_unsubscribe(self, packet_id: int, codes: list[int]) -> None:
        self._send(Unsuback(packet_id, codes if self.protocol_level == 5 else []))

    @property
    def inflight_count(self) -> int:
        return len(self._inflight_out)

    @property
    def window_free(self) -> int:
        """How many more QoS 1/2 messages may be sent now (receive maximum of the client)."""
        return max(0, self.client_receive_maximum - len(self._inflight_out))

    def pid_in_use(self, packet_id: int) -> bool:
        return packet_id in self._inflight_out

    def _allocate_pid(self) -> int:
        pid = self._next_pid  # the common case: the next id is free
        if pid not in self._inflight_out:
            self._next_pid = pid + 1 if pid < 65535 else 1
            return pid
        for _ in range(65535):
            pid = self._next_pid
            self._next_pid = pid + 1 if pid < 65535 else 1
            if pid not in self._inflight_out:
                return pid
        raise RuntimeError("no free packet identifier")

    def send_publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int,
        retain: bool = False,
        dup: bool = False,
        properties: dict[str, Any] | None = None,
        packet_id: int | None = None,
        tag: Any = None,
    ) -> int | None:
        """Queue an outbound PUBLISH. Returns its packet id (0 for QoS 0), or None when it
        cannot be sent now (window full) or must be dropped (too large for the client:
        ``None`` and ``last_drop_reason == "too_large"``)."""
        self.last_drop_reason = ""
        if self.state is not _CONNECTED:
            return None
        if qos == 0 and self.protocol_level != 5:  # the common case: no window, no properties, no alias
            data = codec.encode_publish(topic, payload, 0, retain, False, None, None, self.protocol_level)
            if len(data) > self.client_max_packet_size:
                self.last_drop_reason = "too_large"
                return None
            self._out.append(data)
            return 0
        if qos > 0:
            inflight = self._inflight_out
            if packet_id is None:
                if len(inflight) >= self.client_receive_maximum:
                    return None
                packet_id = self._allocate_pid()
            elif packet_id in inflight:
                return None
            elif len(inflight) >= self.client_receive_maximum and not dup:
                return None
        else:
            packet_id = None
        new_alias = 0
        wire_topic = topic
        props: dict[str, Any] | None = None  # MQTT 3: none
        if self.protocol_level == 5:
            props = properties or {}
            if self.client_topic_alias_maximum:
                # server-assigned topic aliases: the first send of a topic carries topic + alias,
                # later ones an empty topic [MQTT-3.3.2-12]; aliases are never reassigned
                if self._aliases_out is None:
                    self._aliases_out = {}
                alias = self._aliases_out.get(topic)
                if alias is not None:
                    props = {**props, "topic_alias": alias}
                    wire_topic = ""
                elif len(self._aliases_out) < self.client_topic_alias_maximum:
                    new_alias = len(self._aliases_out) + 1
                    props = {**props, "topic_alias": new_alias}
        data = codec.encode_publish(wire_topic, payload, qos, retain, dup and qos > 0, packet_id, props,
                                    self.protocol_level)
        if len(data) > self.client_max_packet_size:  # [MQTT-3.1.2-25]: drop, as if sent
            self.last_drop_reason = "too_large"
            return None
        if new_alias and self._aliases_out is not None:
            self._aliases_out[topic] = new_alias
        self._out.append(data)
        if packet_id is not None:
            self._inflight_out[packet_id] = _Inflight(tag, qos)
        return packet_id or 0

    def resend_publish(self, packet_id: int, tag: Any, topic: str, payload: bytes, *, qos: int, retain: bool,
                       properties: dict[str, Any] | None = None) -> bool:
        """Send an unacknowledged outbound PUBLISH again: same packet id, DUP set, the full topic (no alias).

        The worker decides when (an in-session resend, MQTT 3.1/3.1.1 only: MQTT 5 forbids it
        [MQTT-4.4.0-1]). False, and nothing sent, when the flow of ``packet_id`` is no longer ``tag``'s
        (acknowledged, past PUBREC, or the id now carries another message) or the connection is not up."""
        entry = self._inflight_out.get(packet_id)
        if self.state is not _CONNECTED or entry is None or entry.tag is not tag or entry.released:
            return False
        props = (properties or {}) if self.protocol_level == 5 else {}
        self._out.append(codec.encode_publish(topic, payload, qos, retain, True, packet_id, props,
                                              self.protocol_level))
        return True

    def abandon(self, packet_id: int, tag: Any) -> bool:
        """Give up the outbound flow of ``packet_id`` if it is still ``tag``'s and not past PUBREC: its window
        slot is free again and a late acknowledgement of it is ignored (an unknown id)."""
        entry = self._inflight_out.get(packet_id)
        if entry is None or entry.tag is not tag or entry.released:
            return False
        del self._inflight_out[packet_id]
        return True

    def release(self, packet_id: int) -> None:
        """Send the deferred PUBREL of a QoS 2 flow whose PUBREC is now durable (``defer_pubrel``)."""
        entry = self._inflight_out.get(packet_id)
        if self.state is State.CONNECTED and entry is not None and entry.qos == 2 and entry.released:
            self._send(Pubrel(packet_id))

    def complete(self, packet_id: int) -> None:
        """Send the deferred PUBCOMP of an inbound QoS 2 flow (``defer_pubcomp``)."""
        if self.state is State.CONNECTED:
            self._send(Pubcomp(packet_id))

    def send_pubrel(self, packet_id: int, tag: Any = None) -> None:
        """Resume a QoS 2 flow whose PUBREC was received before a reconnect [MQTT-4.4.0-1]."""
        self._inflight_out[packet_id] = _Inflight(tag, 2, released=True)
        self._send(Pubrel(packet_id))

    def pending_releases(self) -> list[int]:
        return [pid for pid, e in self._inflight_out.items() if e.released]

    def disconnect(self, reason_code: int = 0, reason_string: str | None = None,
                   properties: dict[str, Any] | None = None) -> None:
        """Server-initiated close: v5 gets a DISCONNECT with the reason [MQTT-3.14]."""
        if self.state is State.CLOSED:
            return
        if self.protocol_level == 5 and self.state is State.CONNECTED:
            props = dict(properties or {})
            if reason_string:
                props["reason_string"] = reason_string
            self._send(Disconnect(reason_code, props))
        self.state = State.CLOSED

    def connection_lost(self) -> None:
        """The transport is gone: nothing more is sent or received."""
        self._held = None
        self.state = State.CLOSED

    def connect_timed_out(self, now: float, timeout: float, opened: float) -> bool:
        """True (and closed, silently) when no CONNECT arrived within ``timeout`` seconds of ``opened``."""
        if self.state is State.AWAIT_CONNECT and now - opened > timeout:
            self.state = State.CLOSED
            return True
        return False

    def keepalive_expired(self, now: float) -> bool:
        """True once 1.5 x keep alive passed without a packet [MQTT-3.1.2-24]."""
        return (
            self.state is State.CONNECTED
            and self.keep_alive > 0
            and now - self.last_received > self.keep_alive * 1.5
        )

    def _fail(self, exc: MQTTError) -> ConnectionFailed:
        """The one place a protocol error becomes a (v5) DISCONNECT and a close."""
        if self.state is State.CONNECTED and self.protocol_level == 5 and exc.reason_code >= 0x80:
            self._send(Disconnect(exc.reason_code))
        elif exc.reason_code == RC.UNSUPPORTED_PROTOCOL_VERSION and self.state is not State.CONNECTED:
            level = self.protocol_level or 4
            self.protocol_level = level
            self._send(Connack(False, 0x01 if level < 5 else RC.UNSUPPORTED_PROTOCOL_VERSION))
        self.state = State.CLOSED
        return ConnectionFailed(exc)
