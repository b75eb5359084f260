"""Logging setup: JSON lines when stderr is not a terminal, readable text otherwise.

Payloads are never logged; connection lines carry tenant, user, client id and reason.
Client-supplied text (client ids, usernames, topics...) reaches log messages as
``%s`` arguments: the text format escapes every control character of the
message (``\\n`` -> ``\\\\n``, ESC -> ``\\\\x1b``...), so one record is always one
line and a client id cannot forge another line or drive a terminal; JSON
escapes them by itself. ``redact_url`` is how a URL that may carry credentials
(the auth webhook's) is written to a log: no userinfo, no query, no fragment.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import orjson

# structured fields a log call may pass with ``extra=``; they become top-level JSON keys
FIELDS = ("event", "tenant", "user", "client", "reason", "code", "ver", "persistent", "present", "address",
          "client_type", "client_meta")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# C0 controls, DEL, C1 controls, and the Unicode line/paragraph separators
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(m: re.Match[str]) -> str:
    c = m.group()
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def escape(text: str) -> str:
    """``text`` with every control character written as a backslash escape (one line, no terminal codes)."""
    return _CONTROL.sub(_escape_char, text)


def redact_url(url: str) -> str:
    """``url`` without credentials, query string or fragment: ``https://u:p@h/p?k=v`` -> ``https://h/p?…``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    query = "…" if parts.query else ""
    return escape(urlunsplit((parts.scheme, netloc, parts.path, query, "")))


class TextFormatter(logging.Formatter):
    """The readable format, with the message escaped (see module doc); tracebacks follow as usual."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                doc[name] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def setup(level: str = "INFO", json_mode: str = "auto") -> None:
    use_json = json_mode == "true" or (json_mode == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("sanic.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
