"""The webhook's HTTP client: ``httpx.AsyncClient`` set up once, ``post(body) -> (status, body)``.

``HttpClient(url, ...)`` checks the URL (``http``/``https`` with a host), builds
the TLS context (a custom CA bundle instead of the system's, an optional client
certificate for mutual TLS) and the default headers (an ``Authorization``
value, never logged), and keeps one pooled ``httpx.AsyncClient`` (at most
``max_idle`` idle keep-alive connections; httpx drops a pooled connection the
server has closed and opens a fresh one; a request that fails on a reused
connection is sent once more). Invariants: every ``post`` runs under
one overall timeout (``timeout`` seconds) and raises ``TimeoutError`` when it
passes; a response body over ``max_body`` bytes is refused (``HttpError``)
without being read whole; redirects are not followed and proxy or CA settings
from the environment are not used, so the only server ever asked is the one in
the URL. A bad CA, certificate or key file raises ``ValueError`` naming it at
construction.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from urllib.parse import urlsplit

import httpx

from ..logs import redact_url

MAX_BODY = 1024 * 1024

# httpx logs every request line (with the URL's query, which may hold a secret) at INFO
logging.getLogger("httpx").setLevel(logging.WARNING)


class HttpError(Exception):
    """A malformed or oversized HTTP response, or an unusable URL."""


def tls_context(*, ca_file: str = "", cert_file: str = "", key_file: str = "") -> ssl.SSLContext:
    """Verify the server against ``ca_file`` (default: the system CAs); present ``cert_file`` when given."""
    try:
        ctx = ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"webhook CA bundle {ca_file!r} is unusable: {exc}") from None
    if key_file and not cert_file:
        raise ValueError("a webhook client key needs its certificate too")
    if cert_file:
        try:
            ctx.load_cert_chain(cert_file, key_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"webhook client certificate {cert_file!r} / key {key_file!r} is unusable: {exc}") \
                from None
    return ctx


class HttpClient:
    def __init__(self, url: str, *, timeout: float = 2.0, max_idle: int = 8, max_body: int = MAX_BODY,
                 ssl_context: ssl.SSLContext | None = None, authorization: str = "") -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HttpError(f"need an http:// or https:// URL with a host, got {redact_url(url)!r}")
        if "\r" in authorization or "\n" in authorization:
            raise ValueError("the webhook Authorization value must be one line")
        self.url = url
        self.timeout = timeout
        self.max_body = max_body
        headers = {"User-Agent": "tidemq"}
        if authorization:
            headers["Authorization"] = authorization
        self.client = httpx.AsyncClient(
            verify=ssl_context or ssl.create_default_context(), headers=headers, timeout=timeout,
            limits=httpx.Limits(max_keepalive_connections=max_idle), follow_redirects=False, trust_env=False)

    async def post(self, body: bytes, *, content_type: str = "application/json") -> tuple[int, bytes]:
        """POST ``body`` within ``self.timeout`` seconds; returns ``(status, body)``.

        Raises TimeoutError, OSError, HttpError or an ``httpx.HTTPError``.
        """
        try:
            async with asyncio.timeout(self.timeout):
                try:
                    return await self._post(body, content_type)
                except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
                    # a pooled keep-alive connection the server closed as we reused it: one fresh try
                    # (the question is idempotent)
                    return await self._post(body, content_type)
        except httpx.TimeoutException as exc:
            raise TimeoutError(str(exc)) from exc

    async def _post(self, body: bytes, content_type: str) -> tuple[int, bytes]:
        request = self.client.build_request("POST", self.url, content=body, headers={"Content-Type": content_type})
        response = await self.client.send(request, stream=True)
        try:
            length = response.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body:
                raise HttpError(f"response body of {length} bytes refused")
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > self.max_body:
                    raise HttpError("response body too large")
        finally:
            await response.aclose()
        return response.status_code, bytes(data)

    async def close(self) -> None:
        await self.client.aclose()
