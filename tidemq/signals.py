"""Worker signals: what one process tells a worker through its Redis channel, as typed values.

The API and other workers never call a worker directly; they publish one of
these on ``tidemq:w:<worker id>``. This module is the only place their wire
form is built or read; everything else handles the dataclasses:

- ``Deliver`` (``D``): messages for the worker's online transient sessions. A
  batch of records, each an orjson header (tenant and targets) plus the message
  blob as raw bytes (the payload is never JSON-encoded).
- ``Notify`` (``N``): these persistent sessions have new inbox entries.
- ``Takeover`` (``T``): close the connection ``(tenant, client, epoch)`` (0x8E).
- ``Close`` (``K`` kill / ``X`` session removed by the admin API): close the
  connections named by ``(client id, epoch)`` pairs with 0x98 — by epoch, so a
  client that reconnected meanwhile is left alone (the older scope form naming
  a user and/or client is still read). A kill may carry a redirection (the admin
  API's ``server_redirect`` / ``server_reference``): MQTT 5 clients then get
  0x9C (use another server) or 0x9D (server moved) instead, with the Server
  Reference when one is given; signals without one read as before.
- ``Subscribed`` (``S``): the admin API's ``PUT /sub`` added ``topic_filter`` to the
  connection ``(tenant, client, epoch)``: the worker takes it into the connection's
  state and replays the matching retained messages, as for a SUBSCRIBE
  (``existed``: the filter was already subscribed, for Retain Handling 1).

Framing: kind byte, then repeated ``u32 length | bytes`` frames. A payload that
does not parse raises ``SignalError`` (the listener logs and skips it).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import orjson

_LEN = struct.Struct(">I")


REDIRECTS = (0, 0x9C, 0x9D)  # a kill's redirect: none, Use another server, Server moved


class SignalError(ValueError):
    """A signal payload that does not parse."""


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


@dataclass(slots=True)
class Deliver:
    items: list[Delivery]


@dataclass(slots=True)
class Notify:
    sessions: list[tuple[str, list[str]]]  # (tenant, client ids)


@dataclass(slots=True)
class Takeover:
    tenant: str
    client_id: str
    epoch: int


@dataclass(slots=True)
class Close:
    tenant: str
    removed: bool = False  # X (session removed) rather than K (kill)
    targets: list[tuple[str, int]] | None = None  # (client id, epoch); epoch 0 = any
    user: str | None = None  # legacy scope form, when targets is None
    client_id: str | None = None
    redirect: int = 0  # 0: none (0x98); else the DISCONNECT reason, 0x9C or 0x9D
    server_reference: str = ""  # the Server Reference sent with a redirect ("" for none)


@dataclass(slots=True)
class Subscribed:
    tenant: str
    client_id: str
    epoch: int
    topic_filter: str
    qos: int
    existed: bool = False
    retain_handling: int = 0
    retain_as_published: bool = False
    subscription_id: int | None = None


Signal = Deliver | Notify | Takeover | Close | Subscribed


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
        if i + 4 > n:
            raise SignalError("truncated frame length")
        (ln,) = _LEN.unpack_from(data, i)
        i += 4
        if i + ln > n:
            raise SignalError("truncated frame")
        frames.append(data[i : i + ln])
        i += ln
    return frames


def encode_deliveries(items: list[Delivery]) -> bytes:
    """``Deliver(items)`` on the wire (the hot path: no intermediate object)."""
    frames: list[bytes] = []
    for d in items:
        targets = [[t.client_id, t.qos, list(t.subscription_ids), int(t.retain_as_published)] for t in d.targets]
        frames.append(orjson.dumps([d.tenant, targets]))
        frames.append(d.blob)
    return _frames(b"D", frames)


def encode(sig: Signal) -> bytes:
    if isinstance(sig, Deliver):
        return encode_deliveries(sig.items)
    body: dict[str, Any]
    if isinstance(sig, Notify):
        return _frames(b"N", [orjson.dumps({"s": [[t, list(cs)] for t, cs in sig.sessions]})])
    if isinstance(sig, Takeover):
        return _frames(b"T", [orjson.dumps({"t": sig.tenant, "c": sig.client_id, "e": sig.epoch})])
    if isinstance(sig, Subscribed):
        return _frames(b"S", [orjson.dumps({
            "t": sig.tenant, "c": sig.client_id, "e": sig.epoch, "f": sig.topic_filter, "q": sig.qos,
            "x": int(sig.existed), "rh": sig.retain_handling, "rap": int(sig.retain_as_published),
            "sid": sig.subscription_id})])
    body = {"t": sig.tenant}
    if sig.targets is not None:
        body["s"] = [[c, e] for c, e in sig.targets]
    else:
        if sig.user:
            body["u"] = sig.user
        if sig.client_id:
            body["c"] = sig.client_id
    if sig.redirect:
        body["r"] = sig.redirect
        if sig.server_reference:
            body["ref"] = sig.server_reference
    return _frames(b"X" if sig.removed else b"K", [orjson.dumps(body)])


def decode(data: bytes) -> Signal:
    if not data:
        raise SignalError("empty signal")
    kind = chr(data[0])
    frames = _split(data)
    try:
        if kind == "D":
            out = []
            for i in range(0, len(frames) - 1, 2):
                tenant, targets = orjson.loads(frames[i])
                out.append(Delivery(tenant, [DeliverTarget(c, q, tuple(s), bool(r)) for c, q, s, r in targets],
                                    bytes(frames[i + 1])))
            return Deliver(out)
        body = orjson.loads(frames[0]) if frames else {}
        if kind == "N":
            return Notify([(str(t), [str(c) for c in cs]) for t, cs in body["s"]])
        if kind == "T":
            return Takeover(body["t"], body["c"], int(body["e"]))
        if kind == "S":
            sid = body.get("sid")
            return Subscribed(str(body["t"]), str(body["c"]), int(body["e"]), str(body["f"]), int(body["q"]),
                              bool(body.get("x", 0)), int(body.get("rh", 0)), bool(body.get("rap", 0)),
                              None if sid is None else int(sid))
        if kind in ("K", "X"):
            targets = [(str(c), int(e)) for c, e in body["s"]] if "s" in body else None
            redirect = int(body.get("r", 0))
            if redirect not in REDIRECTS:
                raise SignalError(f"bad redirect 0x{redirect:02x}")
            return Close(body["t"], kind == "X", targets, body.get("u"), body.get("c"), redirect,
                         str(body.get("ref", "")))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SignalError(f"bad {kind} signal: {exc}") from exc
    raise SignalError(f"unknown signal kind {kind!r}")


__all__ = ["Close", "Deliver", "DeliverTarget", "Delivery", "Notify", "Signal", "SignalError", "Subscribed",
           "Takeover", "decode", "encode", "encode_deliveries"]
