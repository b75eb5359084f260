"""The end of a connection: the client's DISCONNECT, the server's close, and the session's end.

``on_disconnect`` records what the client's DISCONNECT says (a normal close
suppresses the will; v5 0x04 keeps it; v5 may change the session expiry,
but not from 0 [MQTT-3.14.2-2]). ``close_transport`` closes a socket so the
client can read what was sent last (a DISCONNECT with a reason, a refusing
CONNACK): half-close first, then a close after a short drain, instead of a
reset that throws the reason away. ``end_session`` runs once the transport is
gone: it releases the connection slot, hands the will to ``workers/wills.py``
(now, or stored with a fire-at time when delayed; while the worker drains only
for tenants whose ``NoLWTWhenServerShuttingDown`` is false), writes this session's
pending acknowledgements, then marks the session offline (or ends it) with our
epoch — so a takeover is never undone. A failing ``session_disconnect`` is
retried; if it still fails the reaper index entry stays, and a reaper ends the
session should this worker die.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from tidemq.mqtt import session as sm
from tidemq.mqtt.reason_codes import RC
from tidemq.store import sessions as sess_store

from .wills import delay_ms

if TYPE_CHECKING:
    from .connection import MQTTConnection

log = logging.getLogger("tidemq.conn")

CLOSE_DRAIN = 0.5  # seconds a half-closed socket may drain before it is closed
DISCONNECT_RETRIES = (0.1, 0.5, 1.0, 2.0, 4.0)  # back-off of a failing session_disconnect


def on_disconnect(conn: MQTTConnection, ev: sm.DisconnectReceived) -> None:
    conn.close_reason = f"client disconnect 0x{ev.reason_code:02x}"
    session = conn.session
    if session is None:
        return
    session.publish_will = ev.publish_will
    if ev.session_expiry is not None and conn.machine.protocol_level == 5:
        if session.expiry == 0 and ev.session_expiry > 0:  # [MQTT-3.14.2-2]
            conn.close(RC.PROTOCOL_ERROR, "session expiry set at DISCONNECT after 0")
            session.publish_will = True
        else:
            session.expiry = min(ev.session_expiry, conn.services.settings.max_session_expiry)


def close_transport(transport: asyncio.Transport, had_data: bool) -> None:
    """Close so the peer reads our last packet: EOF after the write, then close once drained."""
    if not had_data or not transport.can_write_eof():
        transport.close()
        return
    with contextlib.suppress(Exception):
        transport.write_eof()
    asyncio.get_running_loop().call_later(CLOSE_DRAIN, transport.close)


async def end_session(conn: MQTTConnection) -> None:
    svc = conn.services
    if conn.connect_task is not None and not conn.connect_task.done():
        with contextlib.suppress(Exception):
            await asyncio.shield(conn.connect_task)
    session = conn.session
    if conn.counted and session is not None:
        conn.counted = False
        svc.admission.release(session.tenant)
    if not conn.registered or session is None:
        return
    last_here = svc.registry.unregister(session.key, conn)
    reason = conn.close_reason or "closed"
    log.info("disconnect tenant=%s user=%s client=%s reason=%s", session.tenant, session.user, session.client_id,
             reason, extra={"event": "disconnect", "tenant": session.tenant, "user": session.user,
                            "client": session.client_id, "reason": reason})
    will_at = 0
    will = session.will
    if will is not None and session.publish_will and not (
            svc.lifecycle.stopping and svc.tenants.cached(session.tenant).no_lwt_when_server_shutting_down):
        wait = delay_ms(will, persistent=session.persistent, session_expiry=session.expiry)
        if wait:  # kept in the offline record; this worker's timer or any sweep fires it
            will_at = svc.clock.wall_ms() + wait
        else:
            session.will = None
            await svc.wills.publish(session.tenant, session.name, will)
    if conn.inbox is not None:
        conn.inbox.stop()
    if session.persistent:  # this session's acks are written before it is marked offline
        await svc.inbox_ops.flush_now()
    # no newer connection of this session on this worker: leave the reaper index in the same trip
    untrack = svc.worker_id if last_here else ""
    for attempt, pause in enumerate((0.0, *DISCONNECT_RETRIES)):
        if pause:
            await asyncio.sleep(pause)
        try:
            ended = await sess_store.session_disconnect(
                svc.redis, session.tenant, session.name, session.epoch, now_ms=svc.clock.wall_ms(),
                expiry=session.expiry, will_at=will_at, untrack_worker=untrack, calls=svc.store_calls)
        except Exception as exc:
            log.warning("session_disconnect failed for %s/%s (attempt %d): %s", session.tenant, session.client_id,
                        attempt + 1, exc)
            continue
        if ended == "offline":
            if will_at:
                svc.wills.schedule(session.tenant, session.name, will_at)
            if session.expiry:
                svc.expiry.schedule(session.tenant, svc.clock.wall_ms() + session.expiry * 1000)
        return
    log.error("session_disconnect gave up for %s/%s: the reaper ends it if this worker dies", session.tenant,
              session.client_id)
