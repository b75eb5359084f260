"""``Coalescer``: the store calls many coroutines make in one event-loop turn, sent as one pipeline.

A CONNECT storm makes hundreds of small, independent calls (``session_connect``,
the tenant step that follows it, ``session_disconnect``); each on its own
pipeline costs a pooled connection, a write system call and a parse of its own.
Calls queued here go out together on one non-transactional pipeline
(``scripts.Batch``: NOSCRIPT reloads included), and each caller gets back the
results of exactly the commands it queued. A pipeline leaves on the loop turn
after its first call when none is in flight; while one is (``MAX_INFLIGHT``),
calls gather for the next, so batches grow with the load (measured in a storm of
2,000 CONNECTs: ~2 calls per pipeline when every turn sent its own, 24-30 with one
in flight, and less worker CPU per CONNECT) and a lone call still leaves at once.

Invariants:

- a call's commands stay together and in the order the call queued them, and
  calls go out in the order they were made; a coroutine that needs one of its
  calls to follow another awaits the first (pipelines may overlap when
  ``max_inflight`` > 1, as separate calls did before). Calls in one pipeline are
  concurrent (none waits for another), so ``merge_tenant`` may merge the index
  changes of one tenant made by several callers into one ``tenant_apply`` at
  the end of the pipeline, applied in the order they were made;
- errors are per call: a command that fails raises in its own caller only
  (the first failing command of that call), never in the others of the pipeline
  (a merged ``tenant_apply`` that fails raises in each caller merged into it);
  a failure of the whole round trip (connection lost) raises in every caller;
- a queued call is sent even if its caller stopped waiting (it cannot be taken
  back once queued, as a pipeline already written could not either).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tidemq.store.indexes import TenantOps
from tidemq.store.scripts import Batch

MAX_CALLS = 256  # calls per pipeline; more queued in one turn go out as several pipelines
MAX_INFLIGHT = 1  # pipelines in flight at once; calls made meanwhile wait for the next one

Queue = Callable[[Batch], object]


class Coalescer:
    """Gathers store calls of one loop turn into one pipelined round trip (see the module doc)."""

    __slots__ = ("_client", "_pending", "_scheduled", "_tasks", "max_inflight")

    def __init__(self, client: Any, *, max_inflight: int = MAX_INFLIGHT) -> None:
        self._client = client
        self._pending: list[tuple[Queue | TenantOps, asyncio.Future[list[Any]]]] = []
        self._tasks: set[asyncio.Task[None]] = set()  # pipelines in flight
        self._scheduled = False
        self.max_inflight = max_inflight

    @property
    def client(self) -> Any:
        return self._client

    def submit(self, queue: Queue | TenantOps) -> asyncio.Future[list[Any]]:
        """Queue a call: ``queue(batch)`` queues its commands on the batch (it raises, if at all, before it
        queues anything). The future gets the results of those commands, in order (or the first one's error).
        A ``TenantOps`` is merged with the other ``TenantOps`` of its tenant in the pipeline (``merge_tenant``)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Any]] = loop.create_future()
        self._pending.append((queue, fut))
        if not self._scheduled and len(self._tasks) < self.max_inflight:
            self._scheduled = True
            loop.call_soon(self._flush)
        return fut

    async def run(self, queue: Queue) -> list[Any]:
        """``submit`` and wait for the results."""
        return await self.submit(queue)

    async def merge_tenant(self, ops: TenantOps) -> None:
        """Apply ``ops`` (a copy is sent) in one ``tenant_apply`` with the other merged changes of its tenant in
        the same pipeline. Only for changes whose answer nobody reads: no ``shared_put`` (its refusal names a
        filter, not its caller) and no use of the routes a ``route_drop`` removed."""
        if ops:
            (reply,) = await self.submit(ops)
            await ops.settle(self._client, reply)

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        pending, self._pending = self._pending[:MAX_CALLS], self._pending[MAX_CALLS:]
        task = asyncio.get_running_loop().create_task(self._execute(pending))
        self._tasks.add(task)
        task.add_done_callback(self._done)
        if self._pending and len(self._tasks) < self.max_inflight:
            self._flush()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._pending and not self._scheduled:  # what came while the pipelines were in flight
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def _execute(self, calls: list[tuple[Queue | TenantOps, asyncio.Future[list[Any]]]]) -> None:
        batch = Batch(self._client)
        spans: list[tuple[int, int, asyncio.Future[list[Any]]]] = []
        merged: dict[str, tuple[TenantOps, list[asyncio.Future[list[Any]]]]] = {}
        for queue, fut in calls:
            if isinstance(queue, TenantOps):
                entry = merged.get(queue.tenant)
                if entry is None:
                    entry = merged[queue.tenant] = (TenantOps(queue.tenant), [])
                entry[0].args += queue.args
                entry[1].append(fut)
                continue
            first = len(batch)
            try:
                queue(batch)  # builds its arguments before it queues anything (see ``submit``)
            except Exception as exc:  # a bad argument: this call fails, the others go out
                if not fut.done():
                    fut.set_exception(exc)
                continue
            spans.append((first, len(batch), fut))
        for ops, futs in merged.values():
            first = len(batch)
            ops.queue(batch)
            spans.extend((first, first + 1, fut) for fut in futs)
        try:
            results = await batch.execute(raise_on_error=False)
        except BaseException as exc:
            for _first, _end, fut in spans:
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception) else ConnectionError("store call cancelled"))
            if not isinstance(exc, Exception):
                raise
            return
        for first, end, fut in spans:
            if fut.done():
                continue
            mine = results[first:end]
            error = next((res for res in mine if isinstance(res, Exception)), None)
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(mine)
