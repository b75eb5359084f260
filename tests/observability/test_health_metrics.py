"""``/metrics`` on the worker's health port (``workers/health.py``), served from a real socket: the
exposition and its content type, 405 for other methods, 404 without metrics, 503 when rendering fails."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest


class _Broker:
    stopping = False
    lease_renewed_at = time.monotonic()
    redis = None


def _boom() -> bytes:
    raise RuntimeError("collector failed")


@pytest.mark.parametrize(("render", "method", "status", "starts"), [
    (lambda: b"# HELP x_total y\n", "GET", 200, "# HELP x_total"),
    (lambda: b"", "POST", 405, "method not allowed"),
    (None, "GET", 404, "not found"),
    (_boom, "GET", 503, "metrics unavailable (RuntimeError)"),
], ids=["ok", "post", "off", "failing"])
async def test_metrics_endpoint(render: Callable[[], bytes] | None, method: str, status: int, starts: str) -> None:
    from tidemq.worker.health import start_health

    server = await start_health(_Broker(), "127.0.0.1", 0, metrics=render)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            r = await http.request(method, f"http://127.0.0.1:{port}/metrics")
        assert r.status_code == status and r.text.startswith(starts), r.text
        if status == 200:
            assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    finally:
        server.close()
        await server.wait_closed()
