"""A TCP proxy of the test's own, on the test's event loop: it forwards, stalls and cuts.

``Proxy(pick)`` listens on a free loopback port; every accepted connection is forwarded to the
address ``pick()`` returns at that moment (a fixed Redis, or a random live worker: a load
balancer that sends a reconnecting client elsewhere). ``stall()`` stops moving bytes in both
directions (connections stay open, data waits in the kernel buffers) until ``resume()``;
``cut()`` closes every connection at once, as a network failure would. Nothing is ever dropped
from the middle of a stream: a connection either carries every byte in order or is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

Address = tuple[str, int]


class Proxy:
    def __init__(self, pick: Callable[[], Address | None], name: str = "proxy") -> None:
        self.pick = pick
        self.name = name
        self.port = 0
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.accepted = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def stall(self) -> None:
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    def cut(self) -> int:
        """Close every open connection (both sides); returns how many."""
        pairs = list(self._pairs)
        for a, b in pairs:
            a.close()
            b.close()
        self._pairs.clear()
        self.cuts += 1
        return len(pairs)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        target = self.pick()
        if target is None:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*target), 5.0)
        except (OSError, TimeoutError):
            writer.close()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pump(src, dst, pair))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    break
                await self.flowing.wait()
                if dst.is_closing():
                    break
                dst.write(data)
                await dst.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            # one side ended: end both (a half-open pair would hide the failure from the other side)
            self._pairs.discard(pair)
            for w in pair:
                w.close()
