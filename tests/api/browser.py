"""A real headless Chromium for page tests: ``dump_dom(url)`` and a minimal DevTools-protocol ``Page``.

``chromium_path()`` finds Debian's ``chromium`` (``scripts/test.sh`` installs it);
tests skip with the reason when it is missing. ``dump_dom`` runs
``chromium --headless --dump-dom`` (the DOM after the page's scripts ran, with
a virtual-time budget for them). ``open_page`` starts Chromium with
``--remote-debugging-port=0`` in a private profile, reads the DevTools
WebSocket URL from its stderr, and drives one tab over the DevTools protocol
with the ``websockets`` client: navigate and wait for the load event,
evaluate JavaScript (promises awaited). Invariants: every Chromium started
here is killed when its context ends; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

WAIT = 30.0
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-extensions", "--disable-sync", "--mute-audio")


def chromium_path() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)


def dump_dom(url: str, *, budget_ms: int = 15000) -> str:
    """The serialized DOM of ``url`` once its scripts ran (Chromium's ``--dump-dom``)."""
    exe = chromium_path()
    assert exe is not None
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        out = subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                              "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


class Page:
    """One tab over the DevTools protocol (flattened session on the browser connection)."""

    def __init__(self, ws: ClientConnection, session: str) -> None:
        self.ws = ws
        self.session = session
        self._ids = itertools.count(1000)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def attach(cls, ws: ClientConnection) -> Page:
        target = await _call(ws, 1, "Target.createTarget", {"url": "about:blank"})
        attached = await _call(ws, 2, "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = cls(ws, attached["sessionId"])
        page._reader = asyncio.get_running_loop().create_task(page._read())
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        return page

    async def _read(self) -> None:
        async for message in self.ws:
            msg = json.loads(message)
            fut = self._pending.pop(msg.get("id", -1), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
            elif "method" in msg and msg.get("sessionId") == self.session:
                self._events.put_nowait(msg)

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        msg_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        await self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {},
                                       "sessionId": self.session}))
        reply = await asyncio.wait_for(fut, WAIT)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply["result"]
        return result

    async def goto(self, url: str) -> None:
        while not self._events.empty():
            self._events.get_nowait()
        await self.send("Page.navigate", {"url": url})
        async with asyncio.timeout(WAIT):
            while (await self._events.get())["method"] != "Page.loadEventFired":
                pass

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (a promise is awaited); a thrown error fails the test."""
        result = await self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                      "returnByValue": True})
        if "exceptionDetails" in result:
            raise AssertionError(f"JavaScript failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, condition: str, timeout_ms: int = 15000) -> Any:
        """Evaluate ``condition`` in the page until it is truthy (checked in the page every 50 ms)."""
        return await self.evaluate(
            "new Promise((resolve, reject) => { const t0 = Date.now(); (function check() {"
            f" let v; try {{ v = ({condition}); }} catch (e) {{ v = undefined; }}"
            f" if (v) resolve(v); else if (Date.now() - t0 > {timeout_ms}) reject(new Error('timed out: ' + "
            f"{json.dumps(condition)})); else setTimeout(check, 50); }})(); }})")


async def _call(ws: ClientConnection, msg_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
    async with asyncio.timeout(WAIT):
        while True:
            msg = json.loads(await ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg["result"]
                return result


@contextlib.asynccontextmanager
async def open_page() -> AsyncIterator[Page]:
    """A fresh headless Chromium (private profile) and one tab in it."""
    exe = chromium_path()
    assert exe is not None
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        proc = await asyncio.create_subprocess_exec(
            exe, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        drain: asyncio.Task[None] | None = None
        try:
            assert proc.stderr is not None
            url = None
            async with asyncio.timeout(WAIT):
                while url is None:
                    line = await proc.stderr.readline()
                    if not line:
                        raise RuntimeError("chromium exited before opening its DevTools port")
                    m = re.search(rb"DevTools listening on (ws://\S+)", line)
                    url = m.group(1).decode() if m else None
            drain = asyncio.get_running_loop().create_task(_drain(proc.stderr))
            async with connect(url, max_size=None, open_timeout=WAIT) as ws:
                page = await Page.attach(ws)
                try:
                    yield page
                finally:
                    if page._reader is not None:
                        page._reader.cancel()
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            if drain is not None:
                drain.cancel()


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass
