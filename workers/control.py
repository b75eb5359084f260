"""The worker's signal channel: deliveries, inbox notifications, takeovers and kills from other processes.

Other workers and the API publish typed signals (``tidemq/signals.py``) on
``tidemq:w:<worker id>``; ``listen`` reads them, reconnecting after Redis
trouble, and ``apply`` hands each to the registry. A ``Subscribed`` (``PUT /sub``) goes to the
connection's subscribe handler. The worker accepts no
client before the listener is subscribed (``ready``), so a takeover or kill
can never miss a connection of this worker.
"""

from __future__ import annotations

import asyncio
import logging

from tidemq.clock import Clock
from tidemq.message import unpack
from tidemq.signals import Close, Deliver, Notify, Signal, SignalError, Subscribed, Takeover, decode
from tidemq.store import signals as signal_store

from .handle_subscribe import on_api_subscribed
from .registry import Registry
from .services import Lifecycle

log = logging.getLogger("tidemq.worker")

RETRY_AFTER = 1.0  # seconds before a failed listener subscribes again


def apply(sig: Signal, registry: Registry, clock: Clock) -> None:
    if isinstance(sig, Deliver):
        now_ms = clock.wall_ms()
        for d in sig.items:
            msg = unpack(d.blob)
            for tgt in d.targets:
                registry.deliver_local(d.tenant, tgt.client_id, msg, tgt.qos, tgt.subscription_ids,
                                       tgt.retain_as_published, now_ms)
    elif isinstance(sig, Notify):
        for tenant, cids in sig.sessions:
            for cid in cids:
                registry.notify_inbox(tenant, cid)
    elif isinstance(sig, Takeover):
        registry.takeover(sig)
    elif isinstance(sig, Close):
        registry.close_named(sig)
    elif isinstance(sig, Subscribed):  # PUT /sub on a session of this worker: retained replay
        conn = registry.get(sig.tenant, sig.client_id)
        if conn is not None and conn.epoch == sig.epoch:
            on_api_subscribed(conn, sig)


async def listen(redis: object, worker_id: str, registry: Registry, clock: Clock, lifecycle: Lifecycle,
                 ready: asyncio.Event) -> None:
    while not lifecycle.stopping:
        try:
            async for payload in signal_store.listen(redis, worker_id, ready=ready):
                try:
                    apply(decode(payload), registry, clock)
                except SignalError as exc:
                    log.warning("bad signal skipped: %s", exc)
                except Exception:
                    log.exception("signal handling failed")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("signal listener failed, retrying: %s", exc)
            await asyncio.sleep(RETRY_AFTER)
