"""Minimal asyncio MQTT 3.1.1 / 5.0 client built for load generation, not for correctness testing.

Its one job is to push and count packets as cheaply as Python allows so that the load generator is never the
bottleneck of a benchmark: packets are hand-built byte strings (a QoS 0 publish of a constant payload is built
once and written ``n`` times in one ``write``), the receive path is one ``asyncio.Protocol.data_received`` loop
over a ``bytearray`` that only decodes what a scenario asks for, and QoS 1 acknowledgements for a whole read
are written in one call. It depends on nothing from ``tidemq`` (a codec bug in the broker cannot hide itself
behind a shared codec). Invariants: a connection never has more than ``window`` unacknowledged QoS 1
publishes in flight when published through :func:`publish_qos1`; packet identifiers cycle through
1..65535 per connection; the receive buffer never holds more than one incomplete packet after a read.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from typing import cast

PUBACK_FMT = struct.Struct("!BBH")
U16 = struct.Struct("!H")

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBACK, PINGRESP, DISCONNECT = 9, 13, 14
_ACK_FOR_QOS = (0, 0x40, 0x50)  # what a subscriber answers a PUBLISH of QoS 1 / 2 with (PUBACK / PUBREC)


class MqttError(Exception):
    """A refused CONNECT/SUBSCRIBE, a protocol surprise or a lost connection."""


def varint(n: int) -> bytes:
    """Encode an MQTT variable byte integer (remaining length, property length)."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def mqtt_str(s: str | bytes) -> bytes:
    """Length-prefixed UTF-8 string."""
    b = s.encode() if isinstance(s, str) else s
    return U16.pack(len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + varint(len(body)) + body


def build_connect(
    client_id: str, *, version: int = 4, clean: bool = True, keepalive: int = 120, session_expiry: int = 0,
    username: str | None = None, password: str | None = None,
) -> bytes:
    """CONNECT for MQTT 3.1.1 (version 4) or 5.0 (version 5); v5 asks for the largest receive maximum."""
    flags = (0x02 if clean else 0x00) | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = mqtt_str("MQTT") + bytes((version, flags)) + U16.pack(keepalive)
    if version == 5:
        props = b"\x21" + U16.pack(65535)  # receive maximum
        if session_expiry:
            props += b"\x11" + struct.pack("!I", session_expiry)
        body += varint(len(props)) + props
    body += mqtt_str(client_id)
    if username is not None:
        body += mqtt_str(username)
    if password is not None:
        body += mqtt_str(password)
    return _packet(0x10, body)


def build_subscribe(pid: int, filters: list[str], qos: int, *, version: int = 4) -> bytes:
    body = U16.pack(pid) + (b"\x00" if version == 5 else b"")
    for f in filters:
        body += mqtt_str(f) + bytes((qos,))
    return _packet(0x82, body)


def publish_prefix(topic: str, qos: int, *, version: int = 4) -> tuple[int, bytes]:
    """Return (first byte, encoded topic) so callers can build many publishes on one topic cheaply."""
    return 0x30 | (qos << 1), mqtt_str(topic)


def build_publish(topic: str, payload: bytes, qos: int = 0, pid: int = 0, *, version: int = 4) -> bytes:
    first, t = publish_prefix(topic, qos, version=version)
    body = t + (U16.pack(pid) if qos else b"") + (b"\x00" if version == 5 else b"") + payload
    return _packet(first, body)


DISCONNECT_PKT = b"\xe0\x00"

# MQTT 5 CONNACK properties of fixed size (id -> bytes); the others are strings, binary or string pairs.
_PROP_SIZE = {0x11: 4, 0x21: 2, 0x24: 1, 0x25: 1, 0x27: 4, 0x22: 2, 0x28: 1, 0x29: 1, 0x2A: 1, 0x13: 2}


class MqttConn(asyncio.Protocol):
    """One client connection. Counters are plain attributes so scenarios can poll them cheaply.

    ``on_publish(payload, qos)`` (if set) is called for each received PUBLISH; when ``want_payload`` is
    false the payload argument is ``None`` and only ``received`` is counted (the fast path).
    """

    def __init__(self, version: int = 4) -> None:
        self.version = version
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.received = 0
        self.received_bytes = 0
        self.first_rx = 0.0
        self.last_rx = 0.0
        self.acked = 0
        self.refused_pids: list[int] = []  # packet ids of PUBACKs with a failure reason (MQTT 5, >= 0x80)
        self.inflight = 0
        self.next_pid = 1
        self.want_payload = False
        self.receive_max = 65535  # the broker's Receive Maximum (MQTT 5 CONNACK), caps QoS 1 windows
        self.disconnect_reason: int | None = None
        self.on_publish: Callable[[bytes | None, int], None] | None = None
        loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[int] = loop.create_future()
        self.suback: asyncio.Future[bytes] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._writable = asyncio.Event()
        self._writable.set()
        self._ack_event = asyncio.Event()

    # ---- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self.transport.set_write_buffer_limits(high=512 * 1024)

    def connection_lost(self, exc: Exception | None) -> None:
        err = MqttError(f"connection lost: {exc or 'closed by peer'}")
        for fut in (self.connack, self.suback):
            if not fut.done():
                fut.set_exception(err)
                fut.exception()  # mark retrieved: a lost storm client must not log noise
        if not self.closed.done():
            self.closed.set_result(None)
        self._writable.set()
        self._ack_event.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        n = len(buf)
        pos = 0
        acks: list[bytes] = []
        v5 = self.version == 5
        received = 0
        while n - pos >= 2:
            b0 = buf[pos]
            # remaining length (variable byte integer, at most 4 bytes)
            p = pos + 1
            rl = 0
            shift = 0
            while True:
                if p >= n:
                    rl = -1
                    break
                b = buf[p]
                p += 1
                rl |= (b & 0x7F) << shift
                if not b & 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise MqttError("malformed remaining length from broker")
            if rl < 0:
                break
            end = p + rl
            if end > n:
                break
            ptype = b0 >> 4
            if ptype == PUBLISH:
                received += 1
                qos = (b0 >> 1) & 3
                if qos:
                    q = p + 2 + ((buf[p] << 8) | buf[p + 1])
                    acks.append(PUBACK_FMT.pack(_ACK_FOR_QOS[qos], 2, (buf[q] << 8) | buf[q + 1]))
                cb = self.on_publish
                if cb is not None:
                    if self.want_payload:
                        q = p + 2 + ((buf[p] << 8) | buf[p + 1]) + (2 if qos else 0)
                        if v5:
                            plen = 0
                            shift = 0
                            while True:
                                b = buf[q]
                                q += 1
                                plen |= (b & 0x7F) << shift
                                if not b & 0x80:
                                    break
                                shift += 7
                            q += plen
                        cb(bytes(buf[q:end]), qos)
                    else:
                        cb(None, qos)
            elif ptype == PUBACK or ptype == PUBCOMP:  # the end of a QoS 1 / QoS 2 flow we published
                self.acked += 1
                if rl > 2 and buf[p + 2] >= 0x80:
                    self.refused_pids.append((buf[p] << 8) | buf[p + 1])
                self.inflight -= 1
                self._ack_event.set()
            elif ptype == PUBREC:  # QoS 2 publisher: release it (a v5 failure code ends the flow here)
                if rl > 2 and buf[p + 2] >= 0x80:
                    self.acked += 1
                    self.refused_pids.append((buf[p] << 8) | buf[p + 1])
                    self.inflight -= 1
                    self._ack_event.set()
                else:
                    acks.append(PUBACK_FMT.pack(0x62, 2, (buf[p] << 8) | buf[p + 1]))
            elif ptype == PUBREL:  # QoS 2 subscriber: complete it
                acks.append(PUBACK_FMT.pack(0x70, 2, (buf[p] << 8) | buf[p + 1]))
            elif ptype == CONNACK:
                if not self.connack.done():
                    if v5 and rl > 2:
                        self._connack_props(bytes(buf[p + 2 : end]))
                    self.connack.set_result(buf[p + 1] if rl >= 2 else 255)
            elif ptype == SUBACK:
                if not self.suback.done():
                    q = p + 2
                    if v5:
                        plen = 0
                        shift = 0
                        while True:
                            b = buf[q]
                            q += 1
                            plen |= (b & 0x7F) << shift
                            if not b & 0x80:
                                break
                            shift += 7
                        q += plen
                    self.suback.set_result(bytes(buf[q:end]))
            elif ptype == DISCONNECT:
                self.disconnect_reason = buf[p] if rl else 0
                if self.transport is not None:
                    self.transport.close()
            # PINGRESP and anything else: ignored
            pos = end
        if pos:
            del buf[:pos]
        if received:
            now = time.perf_counter()
            if not self.received:
                self.first_rx = now
            self.last_rx = now
            self.received += received
        if acks and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(acks))

    def _connack_props(self, data: bytes) -> None:
        """Walk MQTT 5 CONNACK properties (``data`` starts at the property length); keep Receive Maximum."""
        q, plen, shift = 0, 0, 0
        while True:
            b = data[q]
            q += 1
            plen |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
        end = q + plen
        while q < end:
            pid = data[q]
            q += 1
            if pid == 0x21:
                self.receive_max = U16.unpack_from(data, q)[0]
            if pid in _PROP_SIZE:
                q += _PROP_SIZE[pid]
            elif pid == 0x26:  # user property: two strings
                for _ in range(2):
                    q += 2 + U16.unpack_from(data, q)[0]
            else:  # UTF-8 string or binary data
                q += 2 + U16.unpack_from(data, q)[0]

    def close_reason(self) -> str:
        if self.disconnect_reason is not None:
            return f"broker sent DISCONNECT reason {self.disconnect_reason:#04x}"
        return "connection closed"

    # ---- client API -------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise MqttError(self.close_reason())
        self.transport.write(data)

    async def drain(self) -> None:
        """Yield to the loop, and wait while the transport's write buffer is above its high mark."""
        if self._writable.is_set():
            await asyncio.sleep(0)
        else:
            await self._writable.wait()
        if self.closed.done():
            raise MqttError(f"{self.close_reason()} while publishing")

    def alloc_pid(self) -> int:
        pid = self.next_pid
        self.next_pid = 1 if pid == 65535 else pid + 1
        return pid

    async def subscribe(self, filters: list[str], qos: int, within: float = 10.0) -> bytes:
        loop = asyncio.get_running_loop()
        self.suback = loop.create_future()
        self.write(build_subscribe(self.alloc_pid(), filters, qos, version=self.version))
        codes = await asyncio.wait_for(self.suback, within)
        if any(c >= 0x80 for c in codes):
            raise MqttError(f"SUBSCRIBE refused: {codes.hex()}")
        return codes

    async def wait_ack(self, within: float) -> None:
        """Wait (at most ``within`` seconds) for the next PUBACK."""
        self._ack_event.clear()
        try:
            await asyncio.wait_for(self._ack_event.wait(), within)
        except TimeoutError:
            return

    async def disconnect(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(DISCONNECT_PKT)
            self.transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), 5.0)
        except TimeoutError:
            if self.transport is not None:
                self.transport.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def connect(
    host: str,
    port: int,
    client_id: str,
    *,
    version: int = 4,
    clean: bool = True,
    keepalive: int = 120,
    session_expiry: int = 0,
    within: float = 10.0,
    on_publish: Callable[[bytes | None, int], None] | None = None,
    want_payload: bool = False,
    username: str | None = None,
    password: str | None = None,
) -> MqttConn:
    """Open a TCP connection, send CONNECT and wait for a successful CONNACK.

    ``on_publish``/``want_payload`` are installed before CONNECT is sent, so messages a broker sends right
    after CONNACK (a resumed session's queue) are seen too.
    """
    loop = asyncio.get_running_loop()

    def factory() -> MqttConn:
        c = MqttConn(version)
        c.on_publish = on_publish
        c.want_payload = want_payload
        return c

    _, conn = await asyncio.wait_for(loop.create_connection(factory, host, port), within)
    conn.write(
        build_connect(client_id, version=version, clean=clean, keepalive=keepalive, session_expiry=session_expiry,
                      username=username, password=password)
    )
    try:
        rc = await asyncio.wait_for(conn.connack, within)
    except BaseException:
        conn.abort()
        raise
    if rc != 0:
        conn.abort()
        raise MqttError(f"CONNACK refused {client_id!r}: code {rc:#x}")
    return conn


async def publish_qos0(
    conn: MqttConn, topic: str, payload: bytes, count: int, deadline: float, batch: int = 200
) -> int:
    """Pipeline ``count`` identical QoS 0 publishes (stops at ``deadline``, perf_counter); returns sent."""
    pkt = build_publish(topic, payload, 0, version=conn.version)
    sent = 0
    while sent < count and time.perf_counter() < deadline:
        k = min(batch, count - sent)
        conn.write(pkt * k)
        sent += k
        await conn.drain()
    return sent


async def publish_qos1(
    conn: MqttConn,
    topic: str,
    make_payload: Callable[[int], bytes],
    count: int,
    window: int,
    deadline: float,
    ack_grace: float = 5.0,
    batch: int = 64,
    qos: int = 1,
) -> int:
    """Publish ``count`` QoS 1 (or, with ``qos=2``, QoS 2) messages keeping at most ``window`` flows
    unfinished (QoS 1: until PUBACK; QoS 2: until PUBCOMP, the PUBREL going out from the read loop); returns
    sent.

    ``make_payload(seq)`` is called just before each packet is built (so a timestamp in it is fresh).
    After the last publish it waits up to ``ack_grace`` seconds for the remaining acknowledgements.
    """
    first, t = publish_prefix(topic, qos, version=conn.version)
    props = b"\x00" if conn.version == 5 else b""
    window = min(window, conn.receive_max)
    sent = 0
    while sent < count and time.perf_counter() < deadline:
        room = window - conn.inflight
        if room <= 0:
            await conn.wait_ack(max(0.0, deadline - time.perf_counter()))
            if conn.closed.done():
                raise MqttError(f"{conn.close_reason()} while publishing")
            continue
        k = min(room, count - sent, batch)
        parts = []
        for i in range(k):
            body = t + U16.pack(conn.alloc_pid()) + props + make_payload(sent + i)
            parts.append(bytes((first,)) + varint(len(body)) + body)
        conn.inflight += k
        conn.write(b"".join(parts))
        sent += k
        await conn.drain()
    end = time.perf_counter() + ack_grace
    while conn.inflight > 0 and time.perf_counter() < end and not conn.closed.done():
        await conn.wait_ack(end - time.perf_counter())
    return sent
