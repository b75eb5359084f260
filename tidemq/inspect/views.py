"""The reads behind ``tidemq inspect``: one function per view, each returning a JSON-able dict.

Every Redis access goes through read functions of ``tidemq.store`` (no script is called, nothing is
written; an operator may run this with a read-only Redis user). Times are given twice: ``<name>`` in
wall-clock ms as stored and ``<name>_iso`` as ISO-8601 UTC (None when the stored value means "never").
Message blobs are decoded with ``tidemq.message.unpack``; a blob that does not decode is shown as such
instead of failing the view.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

from tidemq.config import Settings
from tidemq.message import unpack
from tidemq.mqtt.topics import parse_shared, topic_matches
from tidemq.routing.trie import Route, TopicTrie
from tidemq.store import inbox, leases, retained, sessions, subscriptions
from tidemq.store import settings as settings_store
from tidemq.store.models import SubOpts
from tidemq.tenants import SPECS, apply_overrides, defaults_from, lookup

PREVIEW = 48  # characters of payload shown


def iso(ms: int | None) -> str | None:
    """ISO-8601 UTC with milliseconds (``2026-11-30T15:45:31.123Z``); None for None or 0."""
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stamp(out: dict[str, Any], name: str, ms: int | None) -> None:
    out[name] = ms
    out[name + "_iso"] = iso(ms)


def preview(payload: bytes) -> str:
    """The payload as text when it is UTF-8 without control characters, else ``hex:...``; shortened."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    else:
        if text.isprintable():
            return text if len(text) <= PREVIEW else text[:PREVIEW] + "…"
    raw = payload.hex()
    return "hex:" + (raw if len(raw) <= PREVIEW else raw[:PREVIEW] + "…")


def message_view(blob: bytes, now_ms: int) -> dict[str, Any]:
    """The decoded message blob (header fields, payload size and preview)."""
    try:
        msg = unpack(bytes(blob))
    except Exception as exc:  # not a message blob: say so, never crash the view
        return {"error": f"undecodable blob ({exc})", "blob_bytes": len(blob)}
    out: dict[str, Any] = {"topic": msg.topic, "qos": msg.qos, "retain": msg.retain}
    stamp(out, "expire_at", msg.expire_at_ms)
    out["expired"] = msg.expired(now_ms)
    stamp(out, "created", msg.created_ms)
    out["sender"] = msg.sender
    props = dict(msg.properties)
    if "correlation_data" in props:
        props["correlation_data"] = props["correlation_data"].hex()
    out["properties"] = props
    out["payload_bytes"] = len(msg.payload)
    out["payload_preview"] = preview(msg.payload)
    return out


def opts_view(opts: SubOpts) -> dict[str, Any]:
    return {"qos": opts.qos, "no_local": opts.no_local, "retain_as_published": opts.retain_as_published,
            "retain_handling": opts.retain_handling, "subscription_id": opts.subscription_id}


async def session_view(r: Any, t: str, c: str, now_ms: int) -> dict[str, Any]:
    rec = await sessions.session_get(r, t, c)
    out: dict[str, Any] = {"tenant": t, "client": c, "exists": rec is not None}
    if rec is None:
        return out
    extras = await sessions.session_extras(r, t, c)
    worker = rec.get("worker", "")
    alive = {w["worker"]: w["lease_ttl_ms"] > 0 for w in await leases.workers_read(r)}
    out.update({
        "online": bool(worker), "worker": worker, "worker_alive": alive.get(worker, False) if worker else None,
        "epoch": rec.get("epoch", 0), "user": rec.get("user", ""), "protocol_version": rec.get("ver", 0),
        "persistent": rec["persistent"], "expiry_s": rec.get("expiry", 0),
    })
    stamp(out, "connected_at", rec.get("connected_at", 0))
    stamp(out, "disconnected_at", rec.get("disconnected_at", 0))
    stamp(out, "expire_at", extras["expire_at"])
    out.update({
        "address": rec.get("address", ""), "client_type": rec.get("client_type", ""),
        "inbox_len": rec["inbox_len"], "seq": rec.get("seq", 0), "sent": rec.get("sent", 0),
        "subscriptions": {f: opts_view(o) for f, o in sorted(rec["subscriptions"].items())},
        "qos2_out_awaiting_pubcomp": sorted(int(x) for x in extras["rel"]),
        "qos2_in_awaiting_pubrel": sorted(int(x) for x in extras["q2in"] if not x.startswith("d")),
        "qos2_in_clean_copies_out": sorted(int(x[1:]) for x in extras["q2in"] if x.startswith("d")),
    })
    will = rec.get("will")
    out["will"] = None
    if will:
        out["will"] = {"delay_s": rec.get("will_delay", 0), **message_view(will, now_ms)}
        stamp(out["will"], "fire_at", extras["will_at"])
    return out


async def inbox_view(r: Any, t: str, c: str, after: int, count: int, now_ms: int) -> dict[str, Any]:
    rec = await sessions.session_get(r, t, c)
    sent = rec.get("sent", 0) if rec else 0
    entries = await inbox.inbox_read(r, t, c, after_seq=after, count=max(0, count))
    out: dict[str, Any] = {"tenant": t, "client": c, "exists": rec is not None,
                           "inbox_len": rec["inbox_len"] if rec else 0,
                           "seq": rec.get("seq", 0) if rec else 0, "sent": sent, "entries": []}
    for e in entries:
        item: dict[str, Any] = {"seq": e.seq, "qos": e.qos, "retain": e.retain, "sub_ids": list(e.sub_ids),
                                "sent": e.seq <= sent}
        item["message"] = message_view(e.blob, now_ms)
        out["entries"].append(item)
    return out


def route_view(rt: Route) -> dict[str, Any]:
    return {"client": rt.client_id, "filter": rt.topic_filter, "qos": rt.qos, "no_local": rt.no_local,
            "retain_as_published": rt.retain_as_published, "retain_handling": rt.retain_handling,
            "sub_ids": list(rt.subscription_ids), "worker": rt.worker, "persistent": rt.persistent}


async def routes_view(r: Any, t: str, topic: str | None, publisher: str) -> dict[str, Any]:
    version, routes = await subscriptions.load_routes(r, t)
    routes.sort(key=lambda x: (x.topic_filter, x.client_id))
    out: dict[str, Any] = {"tenant": t, "version": version, "count": len(routes)}
    if topic is None:
        out["routes"] = [route_view(x) for x in routes]
        return out
    trie = TopicTrie(routes)
    out["topic"] = topic
    out["publisher"] = publisher
    direct: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    for rt in trie.match(topic, publisher=publisher):
        kind, group, real = parse_shared(rt.topic_filter)
        if kind is None:
            direct.append(route_view(rt))
        else:
            members = sorted(trie.group_members(kind, group or "", real))
            groups.append({"filter": rt.topic_filter, "kind": kind, "group": group, "members": members,
                           "pick": "round robin" if kind == "share" else "sticky by publisher"})
    out["receivers"] = sorted(direct, key=lambda x: x["client"])
    out["shared_groups"] = sorted(groups, key=lambda x: x["filter"])
    return out


async def retained_view(r: Any, t: str, topic_filter: str | None, limit: int, now_ms: int) -> dict[str, Any]:
    """Retained messages (HSCAN of the tenant's hash, matched here: read-only even when the index is missing)."""
    total = await retained.retain_count(r, t)
    found: list[tuple[str, bytes]] = []
    complete = True
    if topic_filter is not None and retained.lex_range(topic_filter) is None:
        blob = await retained.retain_get(r, t, topic_filter)
        found = [(topic_filter, blob)] if blob else []
    else:
        cursor = 0
        while True:
            cursor, items = await retained.retain_list(r, t, cursor, limit=500)
            found.extend((k, v) for k, v in items if topic_filter is None or topic_matches(topic_filter, k))
            if not cursor:
                break
    found.sort()
    if len(found) > limit:
        found, complete = found[: max(0, limit)], False
    out: dict[str, Any] = {"tenant": t, "filter": topic_filter, "total_topics": total, "complete": complete,
                           "messages": [{"topic": k, **message_view(v, now_ms)} for k, v in found]}
    return out


async def settings_view(r: Any, t: str, process: Settings) -> dict[str, Any]:
    raw = await settings_store.settings_read(r, t)
    defaults = defaults_from(process)
    effective, errors = apply_overrides(defaults, raw)
    overridden: set[str] = set()
    for key in raw:
        name = key.decode("utf-8", "replace")
        spec = lookup(name)
        if spec is not None and name not in errors and spec.name not in errors:
            overridden.add(spec.name)
    rows = []
    for name, spec in SPECS.items():
        rows.append({"name": name, "value": getattr(effective, spec.field),
                     "default": getattr(defaults, spec.field),
                     "source": "redis" if name in overridden else "default", "doc": spec.doc})
    hash_fields = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in raw.items()}
    return {"tenant": t, "key": settings_store.settings_key(t), "hash": hash_fields, "ignored": errors,
            "settings": rows}


async def workers_view(r: Any, now_ms: int) -> dict[str, Any]:
    rows = []
    for w in await leases.workers_read(r):
        row: dict[str, Any] = {"worker": w["worker"], "alive": w["lease_ttl_ms"] > 0}
        stamp(row, "heartbeat", w["heartbeat"])
        row["heartbeat_age_s"] = round((now_ms - w["heartbeat"]) / 1000, 1)
        row["lease_ttl_ms"] = w["lease_ttl_ms"]
        row["stats"] = dict(sorted(w["stats"].items()))
        rows.append(row)
    return {"workers": rows}


async def gather(r: Any, args: argparse.Namespace, process: Settings) -> tuple[bool, dict[str, Any]]:
    """Run the view ``args.what`` names: ``(found, data)``; found is False for a missing session / inbox."""
    now_ms = int(time.time() * 1000)
    what = args.what
    if what == "session":
        data = await session_view(r, args.tenant, args.client, now_ms)
        return data["exists"], data
    if what == "inbox":
        data = await inbox_view(r, args.tenant, args.client, args.after, args.count, now_ms)
        return data["exists"], data
    if what == "routes":
        return True, await routes_view(r, args.tenant, args.topic, args.publisher)
    if what == "retained":
        return True, await retained_view(r, args.tenant, args.filter, args.limit, now_ms)
    if what == "settings":
        return True, await settings_view(r, args.tenant, process)
    if what == "workers":
        return True, await workers_view(r, now_ms)
    raise ValueError(f"unknown view {what!r}")

