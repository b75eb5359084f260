"""MQTT over WebSocket throughput: N publishers -> M subscribers through one TideMQ WebSocket listener.

Compares TideMQ source trees in one run (``--src old=/path --src new=.``), alternating them round by
round so machine noise hits both alike, and reports delivered messages/s and broker CPU microseconds per
delivered message (the broker processes and their Redis). Publishers send QoS 0 PUBLISHes as browsers and
paho do, one WebSocket frame per MQTT packet; every subscriber holds ``bench/#``, so each publish is
delivered ``--subscribers`` times.

The client is ``bench.mqttload.MqttConn`` behind a minimal client-side WebSocket adapter of its own: it masks
with the all-zero key (valid per RFC 6455 and free for the client; the server still runs its unmasking
code) so the load generator stays cheap. Invariants: only 127.0.0.1 is used; every broker started is
stopped (``bench.brokers.start_broker``); a round whose subscribers do not receive everything before
``--timeout`` reports what arrived (the rate stays honest, the ``complete`` column says so).

    python -m bench.ws --src old=/tmp/old-tree --src new=. --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import struct
import sys
import time
from pathlib import Path
from typing import Any

from bench.brokers import HOST, REPO, free_port, start_broker
from bench.mqttload import MqttConn, build_connect, build_publish

_ZERO_MASK = b"\x00\x00\x00\x00"


def client_frame(payload: bytes) -> bytes:
    """One masked (all-zero key) binary frame."""
    n = len(payload)
    if n < 126:
        head = bytes((0x82, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x82, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x82, 0x80 | 127, n)
    return head + _ZERO_MASK + payload


class WsTransport(asyncio.Transport):
    """What ``MqttConn`` writes to: one frame per ``write``; ``write_packets`` frames each packet apart."""

    def __init__(self, sock: asyncio.Transport) -> None:
        super().__init__()
        self.sock = sock

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sock.write(client_frame(bytes(data)))

    def write_packets(self, packets: list[bytes]) -> None:
        self.sock.write(b"".join(client_frame(p) for p in packets))

    def is_closing(self) -> bool:
        return self.sock.is_closing()

    def close(self) -> None:
        self.sock.close()

    def abort(self) -> None:
        self.sock.abort()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.sock.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self.sock.get_write_buffer_size()


class WsClient(asyncio.Protocol):
    """Upgrade, then unframe server frames (never masked) into ``inner.data_received``."""

    def __init__(self, inner: MqttConn) -> None:
        self.inner = inner
        self.buf = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.ws: WsTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock: asyncio.Transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        sock.write((f"GET /mqtt HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                    "Sec-WebSocket-Protocol: mqtt\r\n\r\n").encode())
        self.ws = WsTransport(sock)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(RuntimeError(bytes(buf[:end]).decode(errors="replace")))
                return
            del buf[:end + 4]
            assert self.ws is not None
            self.inner.connection_made(self.ws)
            self.upgraded.set_result(None)
        out = []
        pos, n = 0, len(buf)
        while n - pos >= 2:
            ln = buf[pos + 1] & 0x7F
            hlen = 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln, hlen = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln, hlen = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            if n - pos < hlen + ln:
                break
            if buf[pos] & 0x0F == 0x2 or buf[pos] & 0x0F == 0x0:
                out.append(bytes(buf[pos + hlen:pos + hlen + ln]))
            pos += hlen + ln
        del buf[:pos]
        if out:
            self.inner.data_received(b"".join(out))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("closed during the upgrade"))
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


async def ws_connect(port: int, client_id: str) -> tuple[MqttConn, WsTransport]:
    loop = asyncio.get_running_loop()
    inner = MqttConn(4)
    _, proto = await loop.create_connection(lambda: WsClient(inner), HOST, port)
    await asyncio.wait_for(proto.upgraded, 10)
    assert proto.ws is not None
    proto.ws.write(build_connect(client_id))
    rc = await asyncio.wait_for(inner.connack, 10)
    if rc != 0:
        raise RuntimeError(f"CONNACK {rc:#x} for {client_id}")
    return inner, proto.ws


async def one_round(port: int, pubs: int, subs: int, count: int, payload: int, within: float,
                    cpu: Any) -> dict[str, Any]:
    subscribers = [await ws_connect(port, f"sub-{i}-{time.monotonic_ns()}") for i in range(subs)]
    for conn, _ in subscribers:
        await conn.subscribe(["bench/#"], 0)
    publishers = [await ws_connect(port, f"pub-{i}-{time.monotonic_ns()}") for i in range(pubs)]
    want = pubs * count * subs
    body = os.urandom(payload)

    async def publish(i: int, conn: MqttConn, ws: WsTransport) -> None:
        pkt = build_publish(f"bench/{i}", body, 0)
        sent = 0
        while sent < count:
            k = min(100, count - sent)
            ws.write_packets([pkt] * k)
            sent += k
            await conn.drain()

    cpu0, t0 = cpu(), time.perf_counter()
    await asyncio.gather(*(publish(i, c, w) for i, (c, w) in enumerate(publishers)))
    deadline = t0 + within
    got = 0
    while time.perf_counter() < deadline:
        got = sum(c.received for c, _ in subscribers)
        if got >= want:
            break
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - t0
    used = cpu() - cpu0
    for _c, w in subscribers + publishers:
        w.close()
    return {"delivered": got, "wanted": want, "complete": got >= want, "seconds": round(elapsed, 3),
            "msgs_per_s": round(got / elapsed), "broker_cpu_us_per_msg": round(used / max(got, 1) * 1e6, 2)}


def wait_port(port: int, within: float = 20.0) -> None:
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"WebSocket port {port} never opened")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", action="append", default=[], metavar="NAME=PATH",
                    help="a TideMQ source tree to measure (repeatable; default: this checkout)")
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--subscribers", type=int, default=2)
    ap.add_argument("--messages", type=int, default=5000, help="per publisher")
    ap.add_argument("--payload", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--mode", choices=("worker", "standalone"), default="worker")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args()
    trees = [tuple(s.split("=", 1)) for s in args.src] or [("this", str(REPO))]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in trees}
    for r in range(args.rounds):
        for name, path in trees:
            ws_port = free_port()
            with start_broker("tidemq", tidemq_mode=args.mode, tidemq_src=Path(path),
                              env_extra={"TIDEMQ_WS_PORT": str(ws_port)}) as broker:
                wait_port(ws_port)
                res = asyncio.run(one_round(ws_port, args.publishers, args.subscribers, args.messages,
                                            args.payload, args.timeout, broker.cpu_seconds))
            results[name].append(res)
            print(f"round {r + 1} {name:>8}: {res['msgs_per_s']:>8} msg/s  "
                  f"{res['broker_cpu_us_per_msg']:>7} us CPU/msg  complete={res['complete']}", flush=True)
    summary = {name: {"median_msgs_per_s": statistics.median(x["msgs_per_s"] for x in rs),
                      "median_cpu_us_per_msg": statistics.median(x["broker_cpu_us_per_msg"] for x in rs)}
               for name, rs in results.items()}
    for name, s in summary.items():
        print(f"{name:>8}: median {s['median_msgs_per_s']:.0f} msg/s, {s['median_cpu_us_per_msg']:.2f} us CPU/msg")
    if len(trees) >= 2:
        (a, _), (b, _) = trees[0], trees[1]
        ratio = summary[b]["median_msgs_per_s"] / summary[a]["median_msgs_per_s"]
        print(f"{b}/{a} throughput ratio: {ratio:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "results": results,
                                         "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
