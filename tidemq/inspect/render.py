"""Text output of ``tidemq inspect``: the dicts of ``views`` as aligned rows and tables.

Pure formatting (no I/O). Every time is written ``<ISO-8601 UTC> (<raw ms>)`` so what is on screen can be
compared with what ``redis-cli`` shows; a value that means "none" is written ``-``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tidemq.tenants import format_value


def when(ms: int | None, iso: str | None) -> str:
    return f"{iso} ({ms})" if ms and iso else "-"


def yes(flag: bool) -> str:
    return "yes" if flag else "no"


def rows(pairs: Sequence[tuple[str, str]], indent: str = "  ") -> list[str]:
    width = max((len(k) for k, _ in pairs), default=0)
    return [f"{indent}{k.ljust(width)}  {v}" for k, v in pairs]


def table(headers: Sequence[str], body: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
    out = [indent + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for r in body:
        out.append(indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return out


def opts_text(o: dict[str, Any]) -> str:
    parts = [f"qos {o['qos']}"]
    if o.get("no_local"):
        parts.append("no-local")
    if o.get("retain_as_published"):
        parts.append("retain-as-published")
    if o.get("retain_handling"):
        parts.append(f"retain-handling {o['retain_handling']}")
    sid = o.get("subscription_id")
    ids = o.get("sub_ids")
    if sid:
        parts.append(f"sub id {sid}")
    elif ids:
        parts.append("sub ids " + ",".join(str(i) for i in ids))
    return ", ".join(parts)


def message_text(m: dict[str, Any]) -> str:
    if "error" in m:
        return f"<{m['error']}>"
    exp = f", expires {when(m['expire_at'], m['expire_at_iso'])}" if m["expire_at"] else ""
    gone = " EXPIRED" if m["expired"] else ""
    return f"{m['topic']} qos {m['qos']}{exp}{gone}: ({m['payload_bytes']} B) {m['payload_preview']!r}"


def session(d: dict[str, Any]) -> list[str]:
    head = f"session {d['tenant']} / {d['client']}"
    if not d["exists"]:
        return [f"{head}: no such session"]
    if d["online"]:
        online = f"yes: worker {d['worker']} ({'lease alive' if d['worker_alive'] else 'LEASE GONE'}), " \
                 f"epoch {d['epoch']}"
    else:
        online = f"no (last epoch {d['epoch']})"
    persistent = f"yes, session expiry {d['expiry_s']} s" if d["persistent"] else "no (ends with its connection)"
    pairs = [
        ("online", online),
        ("user", d["user"] or "-"),
        ("protocol", f"MQTT version {d['protocol_version']}"),
        ("persistent", persistent),
        ("connected_at", when(d["connected_at"], d["connected_at_iso"])),
        ("disconnected_at", when(d["disconnected_at"], d["disconnected_at_iso"])),
        ("expire_at", when(d["expire_at"], d["expire_at_iso"])),
        ("address", d["address"] or "-"),
        ("inbox", f"{d['inbox_len']} entries; last seq {d['seq']}, sent up to seq {d['sent']}"),
    ]
    subs = d["subscriptions"]
    if not subs:
        pairs.append(("subscriptions", "-"))
    for i, (flt, o) in enumerate(subs.items()):
        pairs.append(("subscriptions" if i == 0 else "", f"{flt}  ({opts_text(o)})"))
    ids = ",".join(str(x) for x in d["qos2_out_awaiting_pubcomp"]) or "-"
    pairs.append(("qos2 out", f"awaiting PUBCOMP: {ids}"))
    ids = ",".join(str(x) for x in d["qos2_in_awaiting_pubrel"]) or "-"
    pairs.append(("qos2 in", f"awaiting PUBREL: {ids}"))
    will = d["will"]
    if will is None:
        pairs.append(("will", "-"))
    else:
        fire = f", fires at {when(will['fire_at'], will['fire_at_iso'])}" if will["fire_at"] else ""
        pairs.append(("will", f"{message_text(will)}; delay {will['delay_s']} s{fire}"))
    return [head, *rows(pairs)]


def inbox(d: dict[str, Any]) -> list[str]:
    head = f"inbox {d['tenant']} / {d['client']}"
    if not d["exists"]:
        return [f"{head}: no such session"]
    lines = [f"{head}: {d['inbox_len']} entries, last seq {d['seq']}, sent up to seq {d['sent']}"]
    body = []
    for e in d["entries"]:
        m = e["message"]
        flags = ",".join(f for f, on in (("retain", e["retain"]), ("sent", e["sent"])) if on) or "-"
        ids = ",".join(str(i) for i in e["sub_ids"]) or "-"
        if "error" in m:
            body.append([str(e["seq"]), str(e["qos"]), flags, ids, "-", "?", f"<{m['error']}>"])
            continue
        exp = when(m["expire_at"], m["expire_at_iso"]) + (" EXPIRED" if m["expired"] else "")
        body.append([str(e["seq"]), str(e["qos"]), flags, ids, exp, m["topic"],
                     f"({m['payload_bytes']} B) {m['payload_preview']!r}"])
    if body:
        lines += table(["seq", "qos", "flags", "sub ids", "expires", "topic", "payload"], body)
    return lines


def routes(d: dict[str, Any]) -> list[str]:
    if "topic" not in d:
        lines = [f"routes of tenant {d['tenant']}: version {d['version']}, {d['count']} routes"]
        body = [[x["client"], x["filter"], opts_text(x), x["worker"] or "-", yes(x["persistent"])]
                for x in d["routes"]]
        if body:
            lines += table(["client", "filter", "options", "worker", "persistent"], body)
        return lines
    who = f" by {d['publisher']}" if d["publisher"] else ""
    lines = [f"a publish to {d['topic']}{who} in tenant {d['tenant']} (route version {d['version']}) reaches "
             f"{len(d['receivers'])} sessions and {len(d['shared_groups'])} shared groups"]
    body = [[x["client"], x["filter"], opts_text(x),
             "inbox (persistent)" if x["persistent"] else f"worker {x['worker']}"] for x in d["receivers"]]
    if body:
        lines += table(["client", "via filter", "options", "delivered to"], body)
    for g in d["shared_groups"]:
        lines.append(f"  shared {g['filter']}: one of {', '.join(g['members'])} ({g['pick']})")
    return lines


def retained(d: dict[str, Any]) -> list[str]:
    scope = f"matching {d['filter']}" if d["filter"] is not None else "all topics"
    more = "" if d["complete"] else " (more not shown: raise --limit)"
    lines = [f"retained in tenant {d['tenant']} ({scope}): {len(d['messages'])} of {d['total_topics']} "
             f"retained topics{more}"]
    body = []
    for m in d["messages"]:
        if "error" in m:
            body.append([m["topic"], "?", "-", f"<{m['error']}>"])
            continue
        exp = when(m["expire_at"], m["expire_at_iso"]) + (" EXPIRED" if m["expired"] else "")
        body.append([m["topic"], str(m["qos"]), exp, f"({m['payload_bytes']} B) {m['payload_preview']!r}"])
    if body:
        lines += table(["topic", "qos", "expires", "payload"], body)
    return lines


def settings(d: dict[str, Any]) -> list[str]:
    n = sum(1 for s in d["settings"] if s["source"] == "redis")
    lines = [f"settings of tenant {d['tenant']} ({d['key']}): {n} overridden"]
    body = [[s["name"], format_value(s["value"]), s["source"],
             "" if s["source"] == "default" else f"default {format_value(s['default'])}"] for s in d["settings"]]
    lines += table(["name", "value", "source", ""], body)
    for name, why in sorted(d["ignored"].items()):
        lines.append(f"  ignored in the hash: {name}: {why}")
    return lines


def workers(d: dict[str, Any]) -> list[str]:
    lines = [f"{len(d['workers'])} workers"]
    body = [[w["worker"], "yes" if w["alive"] else "NO (lease gone)", when(w["heartbeat"], w["heartbeat_iso"]),
             f"{w['heartbeat_age_s']} s", str(w["lease_ttl_ms"]) if w["alive"] else "-"] for w in d["workers"]]
    if body:
        lines += table(["worker", "alive", "heartbeat", "age", "lease ttl ms"], body)
    for w in d["workers"]:
        if w["stats"]:
            lines.append(f"  {w['worker']} stats: " + " ".join(f"{k}={v}" for k, v in w["stats"].items()))
    return lines


VIEWS = {"session": session, "inbox": inbox, "routes": routes, "retained": retained, "settings": settings,
         "workers": workers}


def text(what: str, data: dict[str, Any]) -> str:
    """The text form of view ``what``."""
    return "\n".join(VIEWS[what](data))
