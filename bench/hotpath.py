"""CPU per message of the worker's transient publish path, in one process: no sockets, no Redis server.

A real ``Broker`` (``tidemq.worker.broker``) runs on the embedded store (``memory://``); ``MQTTConnection``s
get fake transports that only collect what is written. ``--publishers`` MQTT 3.1.1 clients publish, each
``--per-round`` messages per round (one ``data_received`` each, as a pipelining client's segment), to
``bench/<publisher>``; one subscriber of ``bench/+`` receives everything (fan-in) and, at QoS 1, acknowledges
every delivery once per round. Each round runs the dispatcher to completion. The figure is process CPU time
(``time.process_time``) per published message over all rounds: the whole path of a message through the
worker (decode, state machine, handler, dispatcher, trie, delivery, encode), without system calls and
without the load generator, so two checkouts compare within a few percent on a busy host.

Usage (from the repository root; ``--src`` benchmarks another checkout)::

    python bench/hotpath.py --qos 0 --qos 1 [--rounds 100] [--src /tmp/base]

Invariants: nothing is started outside this process and nothing is written to disk.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any


class CollectingTransport:
    """What ``MQTTConnection`` needs of an asyncio transport; written bytes are kept for the subscriber."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def writelines(self, chunks: list[bytes]) -> None:
        self.chunks.extend(chunks)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    abort = close

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def run(qos: int, publishers: int, per_round: int, rounds: int) -> tuple[float, int, int]:
    """(CPU seconds, messages published, messages delivered) of one run."""
    from tidemq.worker.broker import Broker
    from tidemq.worker.connection import MQTTConnection

    from tidemq.auth import DevOnlyProvider
    from tidemq.clock import SystemClock
    from tidemq.config import Settings
    from tidemq.mqtt import codec
    from tidemq.mqtt.packets import Connect, Publish, Subscribe, Subscription
    from tidemq.store import scripts as store_scripts
    from tidemq.store.connection import close_redis, open_redis

    settings = Settings(redis_url=f"memory://hotpath-{uuid.uuid4().hex[:8]}")
    redis = await open_redis(settings.redis_url)
    await store_scripts.load_all(redis)
    broker = Broker(settings, redis, auth=DevOnlyProvider(), clock=SystemClock())

    def client(cid: str) -> tuple[MQTTConnection, CollectingTransport]:
        conn = MQTTConnection(broker.services)
        tr = CollectingTransport()
        conn.connection_made(tr)  # type: ignore[arg-type]
        conn.data_received(codec.encode(Connect(protocol_level=4, client_id=cid, clean_start=True, keep_alive=0),
                                        4))
        return conn, tr

    async def settle() -> None:
        for _ in range(20):
            await asyncio.sleep(0.005)

    try:
        sub, sub_tr = client("sub")
        pubs = [client(f"p{i}") for i in range(publishers)]
        await settle()
        sub.data_received(codec.encode(Subscribe(1, [Subscription("bench/+", qos)]), 4))
        await settle()
        sub_tr.chunks.clear()
        segments = [b"".join(codec.encode(Publish(f"bench/p{i}", b"x" * 32, qos, packet_id=k + 1 if qos else None), 4)
                             for k in range(per_round)) for i in range(publishers)]
        delivered = 0
        reader = codec.Decoder(protocol_level=4, server_side=False)
        t0 = time.process_time()
        for _ in range(rounds):
            for (conn, _tr), segment in zip(pubs, segments, strict=True):
                conn.data_received(segment)
            for _ in range(3):
                await asyncio.sleep(0)
            await broker.services.dispatcher.drain()
            await asyncio.sleep(0)
            for chunk in sub_tr.chunks:
                reader.feed(chunk)
            sub_tr.chunks.clear()
            acks = []
            while (p := reader.next_packet()) is not None:
                if isinstance(p, Publish):
                    delivered += 1
                    if p.packet_id is not None:
                        acks.append(codec.encode_ack(0x40, p.packet_id, 0, 4))
            if acks:
                sub.data_received(b"".join(acks))
            for _conn, tr in pubs:
                tr.chunks.clear()
        return time.process_time() - t0, rounds * publishers * per_round, delivered
    finally:
        await close_redis(redis)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qos", type=int, action="append", choices=[0, 1])
    ap.add_argument("--publishers", type=int, default=20)
    ap.add_argument("--per-round", type=int, default=10, help="messages per publisher per round")
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--src", type=Path, default=Path(__file__).resolve().parent.parent,
                    help="the checkout whose tidemq to run (default: this one)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(args.src.resolve()))
    import tidemq

    print(f"tidemq from {Path(tidemq.__file__).parent}")
    for qos in args.qos or [0, 1]:
        cpu, sent, got = asyncio.run(run(qos, args.publishers, args.per_round, args.rounds))
        print(f"QoS {qos}: {cpu / sent * 1e6:.2f} us CPU per message ({sent} published, {got} delivered)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
