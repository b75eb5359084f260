"""The OpenAPI 3.0 document of the admin API, generated from ``app.spec`` (the one source of truth).

Every endpoint lists its headers (canonical ``snake_case`` names; the server
also accepts ``-`` for ``_`` and any case), its raw body where it takes one,
and every response with its ``req_id`` header. The JSON schemas of the
structured responses live here.
"""

from __future__ import annotations

from typing import Any

import orjson

from .spec import ENDPOINTS, INT64_MAX, INT64_MIN, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, UINT32_MAX, Header

_NULLABLE_INT = {"type": "integer", "format": "int64", "nullable": True}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Subscription": {
        "type": "object",
        "required": ["topicFilter", "qos", "noLocal", "retainAsPublished", "retainHandling"],
        "properties": {
            "topicFilter": {"type": "string"},
            "qos": {"type": "integer", "enum": [0, 1, 2]},
            "noLocal": {"type": "boolean"},
            "retainAsPublished": {"type": "boolean"},
            "retainHandling": {"type": "integer", "enum": [0, 1, 2]},
        },
    },
    "Session": {
        "type": "object",
        "required": ["tenantId", "type", "metadata", "online", "connectedAt", "expirySeconds", "subscriptions",
                     "inbox"],
        "properties": {
            "tenantId": {"type": "string"},
            "type": {"type": "string", "enum": ["MQTT"]},
            "metadata": {
                "type": "object",
                "required": ["ver", "userId", "clientId", "channelId", "address", "broker", "sessionType"],
                "properties": {
                    "ver": {"type": "string", "enum": ["3", "4", "5"],
                            "description": "MQTT protocol level: 3 = 3.1, 4 = 3.1.1, 5 = 5.0"},
                    "userId": {"type": "string"},
                    "clientId": {"type": "string"},
                    "channelId": {"type": "string", "description": "The connection (epoch) that owns the session"},
                    "address": {"type": "string", "description": "Client address of the last connection"},
                    "broker": {"type": "string", "description": "Owner worker id; empty when offline"},
                    "sessionType": {"type": "string", "enum": ["t", "p"],
                                    "description": "t = transient, p = persistent"},
                },
            },
            "online": {"type": "boolean"},
            "connectedAt": {"type": "integer", "format": "int64", "description": "Last CONNECT, ms since epoch"},
            "disconnectedAt": {**_NULLABLE_INT, "description": "Last disconnect, ms since epoch; null when online"},
            "expirySeconds": {"type": "integer", "format": "int64"},
            "clientType": {"type": "string"},
            "subscriptions": {"type": "array", "items": {"$ref": "#/components/schemas/Subscription"}},
            "inbox": {
                "type": "object",
                "required": ["queued", "inflight"],
                "properties": {
                    "queued": {"type": "integer", "description": "Inbox messages not yet sent"},
                    "inflight": {"type": "integer", "description": "Sent, not yet acknowledged"},
                },
            },
        },
    },
    "SessionSummary": {
        "type": "object",
        "required": ["clientId", "userId", "online", "sessionType"],
        "properties": {
            "clientId": {"type": "string"},
            "userId": {"type": "string"},
            "online": {"type": "boolean"},
            "broker": {"type": "string"},
            "sessionType": {"type": "string", "enum": ["t", "p"]},
            "ver": {"type": "string"},
            "connectedAt": {"type": "integer", "format": "int64"},
            "disconnectedAt": _NULLABLE_INT,
            "expirySeconds": {"type": "integer", "format": "int64"},
        },
    },
    "SessionPage": {
        "type": "object",
        "required": ["sessions", "cursor"],
        "properties": {
            "sessions": {"type": "array", "items": {"$ref": "#/components/schemas/SessionSummary"}},
            "cursor": {"type": "string", "nullable": True,
                       "description": "Pass as the `cursor` header for the next page; null on the last page"},
        },
    },
    "Retained": {
        "type": "object",
        "required": ["topic", "payloadBytes"],
        "properties": {
            "topic": {"type": "string"},
            "qos": {"type": "integer", "nullable": True},
            "payloadBytes": {"type": "integer"},
            "createdAt": _NULLABLE_INT,
            "expiresAt": _NULLABLE_INT,
            "clientType": {"type": "string", "nullable": True},
        },
    },
    "RetainedPage": {
        "type": "object",
        "required": ["retained", "cursor"],
        "properties": {
            "retained": {"type": "array", "items": {"$ref": "#/components/schemas/Retained"}},
            "cursor": {"type": "string", "nullable": True,
                       "description": "Pass as the `cursor` header for the next page; null on the last page. "
                                      "A topic may appear on two pages (Redis HSCAN)."},
        },
    },
    "Cleared": {"type": "object", "required": ["cleared"], "properties": {"cleared": {"type": "integer"}}},
    "Expired": {"type": "object", "required": ["expired"], "properties": {"expired": {"type": "integer"}}},
    "Killed": {"type": "object", "required": ["killed"],
               "properties": {"killed": {"type": "integer", "minimum": 1}}},
    "OpenAPI": {"type": "object"},
}


def header_schema(h: Header) -> dict[str, Any]:
    kind = h.kind
    if kind == "int64":
        return {"type": "integer", "format": "int64", "minimum": INT64_MIN, "maximum": INT64_MAX}
    if kind == "qos":
        return {"type": "integer", "enum": [0, 1, 2]}
    if kind == "expiry_pos":
        return {"type": "integer", "format": "int64", "minimum": 1, "maximum": UINT32_MAX}
    if kind == "expiry_nonneg":
        return {"type": "integer", "format": "int64", "minimum": 0, "maximum": UINT32_MAX}
    if kind == "limit":
        return {"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MAX, "default": LIST_LIMIT_DEFAULT}
    if kind == "scan_cursor":
        return {"type": "string", "pattern": "^[0-9]+$", "default": "0"}
    return {"type": "string", "minLength": 1} if h.required else {"type": "string"}


def build() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    req_id_header = {"req_id": {"description": "The request's req_id, or the one generated for it",
                                "schema": {"type": "integer", "format": "int64"}}}
    for ep in ENDPOINTS:
        params: list[dict[str, Any]] = [
            {"name": h.name, "in": "header", "required": h.required, "description": h.description,
             "schema": header_schema(h)}
            for h in ep.headers
        ]
        description = ep.summary
        if ep.client_meta:
            description += (" Any number of `client_meta_<key>` headers describe the caller; they travel with "
                            "the request to events and logs (`<key>` as sent).")
        responses: dict[str, Any] = {}
        for r in ep.responses:
            if r.media == "application/json":
                content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{r.schema}"}}}
            else:
                schema: dict[str, Any] = {"type": "string"}
                if r.status == 200 and r.examples and ep.tag in ("pub", "retain", "sub", "ops"):
                    schema["enum"] = list(r.examples)
                content = {"text/plain": {"schema": schema}}
            responses[str(r.status)] = {"description": r.description, "headers": req_id_header, "content": content}
        op: dict[str, Any] = {
            "operationId": ep.name,
            "summary": ep.summary,
            "description": description,
            "tags": [ep.tag],
            "parameters": params,
            "responses": responses,
        }
        if ep.body:
            op["requestBody"] = {"required": False, "description": ep.body,
                                 "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                     "format": "binary"}}}}
        op["security"] = [] if ep.open else [{"bearer": []}, {}]
        paths.setdefault(ep.path, {})[ep.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "TideMQ admin API",
            "version": "1.0.0",
            "description": "BifroMQ-compatible admin API. Every parameter is an HTTP header, matched "
                           "case-insensitively with `-` and `_` alike. `req_id` is echoed on every response. "
                           "Client errors are 400 with a one-line plain-text body naming the header and the rule; "
                           "503 means Redis is unreachable or too slow. When TIDEMQ_API_TOKEN is set, every "
                           "endpoint but /healthz, /readyz and /metrics needs `Authorization: Bearer <token>`.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "TIDEMQ_API_TOKEN, when set"}},
        },
    }


def document() -> bytes:
    return orjson.dumps(build(), option=orjson.OPT_INDENT_2)
