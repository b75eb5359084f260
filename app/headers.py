"""Header parsing for the admin API: names normalised once, values checked against ``app.spec``.

Names are matched case-insensitively with ``-`` and ``_`` alike. A header the
API reads (any name in ``app.spec``, ``authorization``, ``client_meta_*``) that
arrives twice, in the same or in two spellings (``tenant_id`` and
``Tenant-Id``), is a 400: a proxy and the API must never disagree about which
copy counts. ``client_meta_<key>`` headers keep ``<key>`` as sent (lower-cased
by HTTP). Numbers must be plain decimal strings (no sign on
unsigned values, no spaces, no ``_`` as Python's ``int()`` would allow). Every
failure is an ``ApiError(400)`` whose one-line text names the header and rule.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

from .errors import ApiError
from .spec import (
    INT64_MAX,
    INT64_MIN,
    KNOWN_HEADERS,
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    UINT32_MAX,
    Endpoint,
    Header,
    Params,
)

_SIGNED = re.compile(r"-?[0-9]{1,19}")
_UNSIGNED = re.compile(r"[0-9]{1,20}")
META_PREFIX = "client_meta_"


def normalise(name: str) -> str:
    return name.lower().replace("-", "_")


def collect(items: Iterable[tuple[str, str]]) -> tuple[dict[str, str], dict[str, str]]:
    """``(headers by canonical name, client_meta key -> value)``; a known header given twice is a 400."""
    out: dict[str, str] = {}
    meta: dict[str, str] = {}
    for raw_name, value in items:
        name = normalise(raw_name)
        if name.startswith(META_PREFIX) and len(name) > len(META_PREFIX):
            key = raw_name[len(META_PREFIX):].lower()
            if key in meta:
                raise ApiError(400, f"header {name} given more than once")
            meta[key] = value
        elif name in out:
            if name in KNOWN_HEADERS:
                raise ApiError(400, f"header {name} given more than once")
        else:
            out[name] = value
    return out, meta


def new_req_id() -> int:
    return random.getrandbits(63)


def parse_req_id(raw: str | None) -> int | None:
    """The request id, or None when ``raw`` is not a signed 64-bit decimal integer."""
    if raw is None:
        return new_req_id()
    if not _SIGNED.fullmatch(raw):
        return None
    value = int(raw)
    return value if INT64_MIN <= value <= INT64_MAX else None


def _unsigned(h: Header, raw: str, low: int, high: int, rule: str) -> int:
    if not _UNSIGNED.fullmatch(raw):
        raise ApiError(400, f"{h.name} {rule}")
    value = int(raw)
    if not low <= value <= high:
        raise ApiError(400, f"{h.name} {rule}")
    return value


def check_text(name: str, raw: str) -> str:
    """``raw`` unless it is not well-formed UTF-8 (undecodable bytes arrive as surrogates) or holds U+0000."""
    if not raw.isascii():
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, f"{name} must be well-formed UTF-8") from None
    if "\x00" in raw:
        raise ApiError(400, f"{name} must not contain U+0000")
    return raw


def parse_value(h: Header, raw: str) -> object:
    kind = h.kind
    if kind in ("string", "cursor"):
        return check_text(h.name, raw)
    if kind == "qos":
        if raw not in ("0", "1", "2"):
            raise ApiError(400, f"{h.name} must be 0, 1 or 2")
        return int(raw)
    if kind == "expiry_pos":
        return _unsigned(h, raw, 1, UINT32_MAX, f"must be an integer from 1 to {UINT32_MAX}")
    if kind == "expiry_nonneg":
        return _unsigned(h, raw, 0, UINT32_MAX, f"must be an integer from 0 to {UINT32_MAX}")
    if kind == "limit":
        return _unsigned(h, raw, 1, LIST_LIMIT_MAX, f"must be an integer from 1 to {LIST_LIMIT_MAX}")
    if kind == "scan_cursor":
        return _unsigned(h, raw, 0, 2**64 - 1, "must be a cursor returned by the previous page")
    if kind == "int64":
        value = parse_req_id(raw)
        if value is None:
            raise ApiError(400, f"{h.name} must be a signed 64-bit decimal integer")
        return value
    raise AssertionError(f"unknown header kind {kind}")  # pragma: no cover


def parse(ep: Endpoint, headers: dict[str, str], meta: dict[str, str]) -> Params:
    """Validate ``headers`` for ``ep`` in the order the spec lists them (req_id is done by the caller)."""
    p = Params()
    if ep.client_meta:
        p.client_meta = {check_text(META_PREFIX + k, k): check_text(META_PREFIX + k, v) for k, v in meta.items()}
    for h in ep.headers:
        if h.name == "req_id":
            continue
        raw = headers.get(h.name)
        if raw is None or raw == "":
            if h.required:
                raise ApiError(400, f"missing header: {h.name}")
            if h.kind == "limit":
                p.values[h.name] = LIST_LIMIT_DEFAULT
            continue
        p.values[h.name] = parse_value(h, raw)
    return p
