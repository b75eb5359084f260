"""One client connection: the asyncio Protocol and one dispatch on the state machine's events.

``MQTTConnection`` feeds bytes to the sans-IO ``ServerConnection``, hands each
event to the handler that owns it (``HANDLERS``: one module per concern, as
mosquitto's ``read_handle.c``), and writes whatever the machine queued once
per event-loop turn. It holds only what belongs to the socket: the transport,
the machine, the ``ClientSession`` once CONNECT succeeded, the outbound window
(``Outbound``) and, for persistent sessions, the ``InboxCursor``. The machine
owns its state: this class reports transport events to it
(``connection_lost``) and never writes ``machine.state``.

Handlers that await the store run as tasks owned by the connection; one that
fails closes the connection with 0x80 and is logged, never crashing the worker.

Memory: a worker holds one of these per client, most of them idle, so the class
has ``__slots__`` and what only some connections need (the publish gate of an
asynchronous ACL provider, the task set) is created on first use and the task
set dropped again when empty. Timers are not per connection: the worker's one
``TimerWheel`` (``timers.py``) holds the CONNECT timeout and keep alive of all.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, cast

from tidemq.mqtt import session as sm
from tidemq.mqtt.packets import Publish
from tidemq.mqtt.reason_codes import RC

from . import deliver, handle_connect, handle_disconnect, handle_publish, handle_subscribe
from .deliver import InboxCursor, Outbound
from .services import WorkerServices
from .session import ClientSession
from .transport.tls import cert_subject

log = logging.getLogger("tidemq.conn")

WRITE_HIGH_WATER = 4 * 1024 * 1024  # bytes buffered before QoS 0 is dropped for this client
READ_CHUNK = 32 * 1024  # bytes parsed per connection per loop turn (a read may bring 256 KiB)
_AWAIT_CONNECT = sm.State.AWAIT_CONNECT
_CONNECTED = sm.State.CONNECTED
_CLOSED = sm.State.CLOSED


class MQTTConnection(asyncio.Protocol):
    __slots__ = ("_ended", "_flush_scheduled", "_tasks", "_unparsed", "address", "auth_wait", "cert_subject",
                 "close_reason", "closing", "connect_task", "counted", "gate_task", "inbox", "machine", "opened",
                 "outbound", "pending_connect", "pub_gate", "registered", "services", "session", "timer_key",
                 "transport")

    def __init__(self, services: WorkerServices) -> None:
        self.services = services
        self.machine = sm.ServerConnection(limits=services.connection_limits())
        self.transport: asyncio.Transport | None = None
        self.address = ""
        self.cert_subject: str | None = None
        self.opened = services.clock.monotonic()
        self.session: ClientSession | None = None
        self.outbound = Outbound(self, services)
        self.inbox: InboxCursor | None = None
        self.registered = False  # owns its session in the registry
        self.counted = False  # holds a slot of the connection counter (released at the end)
        self.pending_connect = False  # counted against max_pending_connects until CONNECT is decided
        self.closing = False
        self.close_reason = ""
        self.auth_wait: asyncio.Future[Any] | None = None  # the next AUTH of an enhanced authentication
        self.pub_gate: deque[Publish] | None = None  # publishes awaiting an async ACL check, in order
        self.gate_task: asyncio.Task[None] | None = None
        self.connect_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] | None = None  # created by the first spawn, dropped when empty
        self.timer_key: int | None = None  # the timer wheel's bucket this connection sits in (timers.py)
        self._flush_scheduled = False
        self._ended = False
        self._unparsed: memoryview | None = None  # read but not parsed yet (READ_CHUNK at a time; see data_received)

    # ------------------------------------------------------------ identity

    @property
    def tenant(self) -> str:
        return self.session.tenant if self.session is not None else ""

    @property
    def user(self) -> str:
        return self.session.user if self.session is not None else ""

    @property
    def client_id(self) -> str:
        """The session's name in its tenant (``<user>/<client id>``: what the store and the registry use)."""
        return self.session.name if self.session is not None else ""

    @property
    def epoch(self) -> int:
        return self.session.epoch if self.session is not None else 0

    @property
    def persistent(self) -> bool:
        return self.session is not None and self.session.persistent

    @property
    def connected(self) -> bool:
        return self.machine.state is _CONNECTED

    def may_read(self, topic: str) -> bool:
        """The read check of narrowed subscriptions (a deny rule inside a granted wildcard): free for
        connections whose subscriptions overlap no deny rule (``reads.active`` is False)."""
        session = self.session
        reads = session.narrowed if session is not None else None
        return reads is None or reads.allows(topic)

    # ------------------------------------------------------------ transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's and our WebSocket's are duck-typed
        peer = transport.get_extra_info("peername")
        self.address = f"{peer[0]}:{peer[1]}" if peer else ""
        self.cert_subject = cert_subject(transport.get_extra_info("peercert"))  # TLS client certificate
        self.services.registry.opened(self)
        refusal = self.services.admission.pre_auth(self, peer[0] if peer else "")
        if refusal:
            self.close_reason = refusal
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        clock = self.services.clock
        now = clock.monotonic()
        limiter = self.session.limiter if self.session is not None else None
        if limiter is not None:
            pause = limiter.received(now, len(data))
            if pause > 0 and self.transport is not None:  # InBoundBandWidth: slow the reader down
                self.transport.pause_reading()
                asyncio.get_running_loop().call_later(pause, self.resume_reading)
        if self._unparsed is not None:  # behind what is still to parse, in order
            self._unparsed = memoryview(bytes(self._unparsed) + data)
            if self.transport is not None:
                self.transport.pause_reading()
            return
        if len(data) > READ_CHUNK:
            # a big read (a pipelining publisher: up to 256 KiB, thousands of packets) is parsed a chunk per
            # loop turn, reading paused meanwhile: the dispatcher and every other connection get their turn
            # between chunks, and an overloaded dispatcher stops the parsing, not only the reading
            self._unparsed = memoryview(data)[READ_CHUNK:]
            data = data[:READ_CHUNK]
            if self.transport is not None:
                self.transport.pause_reading()
            asyncio.get_running_loop().call_soon(self._parse_more)
        self._parse(data, now)

    def _parse(self, data: bytes, now: float) -> None:
        machine = self.machine
        awaiting = machine.state is _AWAIT_CONNECT
        self.dispatch(machine.receive_data(data, now))
        if awaiting and machine.state is not _AWAIT_CONNECT:
            self.services.registry.timers.schedule(self, now)  # CONNECT came: keep alive from the next tick
        self.flush()

    def _parse_more(self) -> None:
        rest = self._unparsed
        if rest is None:
            return
        if self.transport is None or self.closing or self.transport.is_closing():
            self._unparsed = None
            return
        dispatcher = self.services.dispatcher
        if dispatcher.overloaded:  # go on once the dispatcher drained
            dispatcher.pause_until_drained(self._parse_more)
            return
        chunk = bytes(rest[:READ_CHUNK])
        if len(rest) > READ_CHUNK:
            self._unparsed = rest[READ_CHUNK:]
            asyncio.get_running_loop().call_soon(self._parse_more)
        else:
            self._unparsed = None
            self.transport.resume_reading()
        self._parse(chunk, self.services.clock.monotonic())

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.services.registry.closed(self)
        self.services.admission.connect_done(self)
        self.machine.connection_lost()
        if not self.close_reason:
            self.close_reason = "connection lost" if exc is None else f"connection lost: {exc}"
        self._end_session()

    def _end_session(self) -> None:
        """Once per connection, as soon as it is over (not when a half-closed socket finally goes)."""
        if not self._ended:
            self._ended = True
            self.spawn(handle_disconnect.end_session(self))

    def pause_writing(self) -> None:
        pass  # backed_up() reads the buffer size directly

    def resume_writing(self) -> None:
        if self.outbound.pending:
            self.outbound.drain_pending()  # the QoS 1/2 backlog held back while the socket was backed up
        if self.inbox is not None:
            self.inbox.wake()

    def resume_reading(self) -> None:
        if self._unparsed is not None:  # parsing what was read first goes on by itself; reading resumes after it
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def backed_up(self) -> bool:
        """More than WRITE_HIGH_WATER bytes wait in the transport: a slow consumer; send no more for now."""
        return self.transport is not None and self.transport.get_write_buffer_size() > WRITE_HIGH_WATER

    def flush(self) -> None:
        """Hand everything the machine queued to the transport: one ``writelines`` (one system call for a
        whole turn's packets, and no copy of them into one buffer first)."""
        self._flush_scheduled = False
        machine = self.machine
        chunks = machine.take_output()
        transport = self.transport
        if chunks and transport is not None and not transport.is_closing():
            if len(chunks) == 1:
                transport.write(chunks[0])
                self.outbound.sent_bytes(len(chunks[0]))
            else:
                transport.writelines(chunks)
                self.outbound.sent_bytes(sum(map(len, chunks)))
        if machine.state is _CLOSED and not self.closing:
            self.closing = True
            self._end_session()  # the session ends now; the socket drains our last packet meanwhile
            if transport is not None:
                handle_disconnect.close_transport(transport, bool(chunks))

    def flush_soon(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def close(self, reason_code: int = 0, why: str = "", properties: dict[str, Any] | None = None) -> None:
        """Server-side close (v5 DISCONNECT with ``reason_code`` first)."""
        if why and not self.close_reason:
            self.close_reason = why
        self.machine.disconnect(reason_code, properties=properties)
        self.flush()

    # ------------------------------------------------------------ tasks

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def live_tasks(self) -> list[asyncio.Task[Any]]:
        return [t for t in self._tasks if not t.done()] if self._tasks else []

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        tasks = self._tasks
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                self._tasks = None
        if task is self.connect_task:
            self.connect_task = None  # an idle connection keeps no finished task (nor its coroutine)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("connection task failed for %s/%s: %r", self.tenant, self.client_id, exc, exc_info=exc)
            self.close(RC.UNSPECIFIED_ERROR, "internal error")

    # ------------------------------------------------------------ events

    def dispatch(self, events: list[sm.Event]) -> None:
        for ev in events:
            HANDLERS[type(ev)](self, ev)


def _on_connection_failed(conn: MQTTConnection, ev: sm.Event) -> None:
    assert isinstance(ev, sm.ConnectionFailed)
    conn.close_reason = f"protocol error: {ev.error}"
    log.info("closing %s (%s/%s): %s", conn.address, conn.tenant, conn.client_id, ev.error)


# the one dispatch: which module handles each event of the state machine
HANDLERS: dict[type, Callable[[MQTTConnection, Any], None]] = {
    sm.ConnectReceived: handle_connect.on_connect,
    sm.AuthReceived: handle_connect.on_auth,
    sm.PublishReceived: handle_publish.on_publish,
    sm.PubrelReceived: handle_publish.on_pubrel,
    sm.PubrelUnknown: handle_publish.on_pubrel_unknown,
    sm.PubackReceived: deliver.on_puback,
    sm.PubrecReceived: deliver.on_pubrec,
    sm.PubcompReceived: deliver.on_pubcomp,
    sm.SubscribeReceived: handle_subscribe.on_subscribe,
    sm.UnsubscribeReceived: handle_subscribe.on_unsubscribe,
    sm.DisconnectReceived: handle_disconnect.on_disconnect,
    sm.ConnectionFailed: _on_connection_failed,
}
