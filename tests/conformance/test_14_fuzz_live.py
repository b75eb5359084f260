"""14 fuzz, live: mutated packet streams over real sockets never hurt anyone but their sender.

A valid session (CONNECT, SUBSCRIBE, PUBLISH at every QoS, PINGREQ, DISCONNECT) is
encoded with the raw builder, then mutated (bytes flipped, inserted, dropped,
truncated, garbage appended) from a seeded random source, and each mutant is sent
on its own connection after a valid CONNECT. Whatever the broker answers, the
bystander must keep exchanging messages and new clients must still connect: a
mutant can only ever close its own connection.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from tests.conformance import wire
from tests.conformance.conftest import Bystander
from tests.fixtures.brokers import Broker

CASES = 60


def _session(version: int, uid: str) -> bytes:
    t = f"fz/{uid}"
    return b"".join([
        wire.subscribe(1, (f"{t}/#", 1), version=version),
        wire.publish(f"{t}/a", b"zero", qos=0, version=version),
        wire.publish(f"{t}/b", b"one", qos=1, pid=2, version=version),
        wire.publish(f"{t}/c", b"two", qos=2, pid=3, version=version),
        wire.pingreq(),
        wire.disconnect(version=version),
    ])


def _mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        i = rng.randrange(len(b)) if b else 0
        if op == 0 and b:
            b[i] ^= 1 << rng.randrange(8)  # flip a bit
        elif op == 1:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))  # insert
        elif op == 2 and b:
            del b[i:i + rng.randint(1, 6)]  # drop
        elif op == 3:
            b = b[: max(1, i)]  # truncate
        else:
            b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))  # trailing garbage
    return bytes(b)


def _log_since(path: Path, offset: int) -> str:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


async def _one(broker: Broker, version: int, uid: str, n: int, payload: bytes) -> None:
    try:
        c = await wire.RawClient.connected(broker.host, broker.port, f"fz{n}{uid}"[:23], version=version)
    except Exception:  # a refused connect is fine here; the bystander decides
        return
    try:
        await c.send(payload)
        for _ in range(20):  # read whatever comes until the broker closes or goes quiet
            await c.read(within=0.2)
    except Exception:  # closed, timed out, or a broken reply: all allowed for a mutant
        pass
    finally:
        await c.close()


@pytest.mark.parametrize("version", [4, 5])
async def test_mutated_sessions_close_only_themselves(broker: Broker, uid: str, version: int,
                                                      bystander: Bystander) -> None:
    rng = random.Random(f"tidemq-{version}")  # seeded: a failure is reproducible
    base = _session(version, uid)
    log = broker.process.log_path if broker.process is not None and broker.is_tidemq else None
    log_start = log.stat().st_size if log is not None else 0
    for batch in range(0, CASES, 10):  # ten mutants at a time, concurrently
        await asyncio.gather(*(_one(broker, version, uid, n, _mutate(base, rng))
                               for n in range(batch, batch + 10)))
        await bystander.check()
    if log is not None:  # bad input is a clear refusal, never an unhandled error in the broker
        text = _log_since(log, log_start)
        assert "Traceback" not in text and "Fatal error" not in text, text[-3000:]
