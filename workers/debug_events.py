"""``DebugModeEnabled``: verbose per-tenant event lines, for the tenants that switched it on only.

When a tenant's ``DebugModeEnabled`` is true, the worker logs what its clients
do at INFO on the logger ``tidemq.debug`` — the CONNECT as accepted (keep
alive, receive maximum, session expiry, will topic), every PUBLISH received
(topic, QoS, retain, payload size), every SUBSCRIBE and UNSUBSCRIBE with the
codes answered — as structured ``debug_<what>`` events carrying the tenant and
client. Other tenants log nothing here. Payloads, passwords and
authentication data are never logged, only sizes. Callers test
``ts.debug_mode_enabled`` first, so a tenant without debug mode pays one
attribute read.

The same event also goes to the process's event sinks (``tidemq/events.py``) as ``debug_<what>`` with
the line's text in ``detail``, so a webhook or the tenant's Redis event stream sees what the log shows.
"""

from __future__ import annotations

import logging

from tidemq.events import EventBus

log = logging.getLogger("tidemq.debug")

BUS = EventBus()  # replaced by the worker's bus at start (``install``); no sink until then


def install(bus: EventBus) -> None:
    """Route debug events to ``bus`` too (one bus per process: the worker's)."""
    global BUS
    BUS = bus


def event(what: str, tenant: str, client: str, text: str, *args: object) -> None:
    """One debug line: ``debug <what> tenant=... client=... <text % args>``."""
    log.info("debug %s tenant=%s client=%s " + text, what, tenant, client, *args,
             extra={"event": f"debug_{what}", "tenant": tenant, "client": client})
    if BUS.sinks:
        BUS.emit(f"debug_{what}", tenant, client, detail=text % args if args else text)
