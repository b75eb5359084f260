"""Worker signals: what one process tells a worker through its Redis channel.

The API and other workers never call a worker directly; they publish one of
these on ``tidemq:w:<worker id>``. Kinds:

- ``D`` deliver: messages for the worker's online transient sessions. A batch
  of records, each an orjson header (tenant and targets) plus the message blob
  as raw bytes (the payload is never JSON-encoded).
- ``N`` notify: these persistent sessions have new inbox entries.
- ``T`` takeover: close the connection ``(tenant, client, epoch)`` (0x8E).
- ``K`` kill / ``X`` session removed by the admin API: close the connections
  named by ``{"t": tenant, "s": [[client id, epoch], ...]}`` with 0x98 — by
  epoch, so a client that reconnected meanwhile is left alone (the older
  scope form ``{"t", "u", "c"}`` is still understood).

Framing: kind byte, then repeated ``u32 length | bytes`` frames.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import orjson

_LEN = struct.Struct(">I")


@dataclass(slots=True)
class DeliverTarget:
    client_id: str
    qos: int
    subscription_ids: tuple[int, ...] = ()
    retain_as_published: bool = False


@dataclass(slots=True)
class Delivery:
    tenant: str
    targets: list[DeliverTarget]
    blob: bytes


def _frames(kind: bytes, frames: list[bytes]) -> bytes:
    out = bytearray(kind)
    for f in frames:
        out += _LEN.pack(len(f))
        out += f
    return bytes(out)


def _split(data: bytes) -> list[bytes]:
    frames = []
    i, n = 1, len(data)
    while i < n:
        (ln,) = _LEN.unpack_from(data, i)
        i += 4
        frames.append(data[i : i + ln])
        i += ln
    return frames


def encode_deliveries(items: list[Delivery]) -> bytes:
    frames: list[bytes] = []
    for d in items:
        targets = [[t.client_id, t.qos, list(t.subscription_ids), int(t.retain_as_published)] for t in d.targets]
        hdr = [d.tenant, targets]
        frames.append(orjson.dumps(hdr))
        frames.append(d.blob)
    return _frames(b"D", frames)


def encode_control(kind: str, body: dict[str, Any]) -> bytes:
    """``N``, ``T``, ``K`` or ``X`` with an orjson body."""
    return _frames(kind.encode(), [orjson.dumps(body)])


def decode(data: bytes) -> tuple[str, Any]:
    """Returns (kind, body): body is a list[Delivery] for ``D``, a dict otherwise."""
    kind = chr(data[0])
    frames = _split(data)
    if kind == "D":
        out = []
        for i in range(0, len(frames) - 1, 2):
            tenant, targets = orjson.loads(frames[i])
            out.append(Delivery(tenant, [DeliverTarget(c, q, tuple(s), bool(r)) for c, q, s, r in targets],
                                bytes(frames[i + 1])))
        return kind, out
    return kind, orjson.loads(frames[0]) if frames else {}
