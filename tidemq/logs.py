"""Logging setup: JSON lines when stderr is not a terminal, readable text otherwise.

Payloads are never logged; connection lines carry tenant, user, client id and reason.
"""

from __future__ import annotations

import logging
import sys
import time

import orjson

# structured fields a log call may pass with ``extra=``; they become top-level JSON keys
FIELDS = ("event", "tenant", "user", "client", "reason", "code", "ver", "persistent", "present", "address",
          "client_type", "client_meta")


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
        return orjson.dumps(doc).decode()


def setup(level: str = "INFO", json_mode: str = "auto") -> None:
    use_json = json_mode == "true" or (json_mode == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    if use_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("sanic.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
