"""The admin API contract as data: every endpoint, its headers and its responses, in one table.

The same table drives header validation (``app.headers``) and the served OpenAPI
document (``app.openapi``), so the two cannot drift; ``docs/api.md`` is checked
against it by a test. Header names are canonical here (lower case, ``_``);
requests may spell them in any case and with ``-`` for ``_``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT32_MAX = 2**32 - 1
LIST_LIMIT_MAX = 1000
LIST_LIMIT_DEFAULT = 100


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    kind: str  # string | int64 | qos | expiry_pos | expiry_nonneg | limit | cursor | scan_cursor
    required: bool
    description: str


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    description: str
    media: str = "text/plain"  # text/plain | application/json
    schema: str = ""  # name of a JSON schema in app.openapi.SCHEMAS, for application/json
    examples: tuple[str, ...] = ()  # plain-text bodies


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    method: str
    path: str
    summary: str
    headers: tuple[Header, ...] = ()
    responses: tuple[Response, ...] = ()
    body: str = ""  # "" (none) or a description of the raw body
    client_meta: bool = False  # accepts client_meta_* headers
    open: bool = False  # no bearer token needed (health and readiness)
    tag: str = ""


REQ_ID = Header("req_id", "int64", False,
                "Request id, a signed 64-bit decimal integer; echoed in the `req_id` response header "
                "(generated when absent or not such an integer, as BifroMQ does).")
TENANT = Header("tenant_id", "string", True, "Tenant the request acts on.")
TOPIC = Header("topic", "string", True, "MQTT topic name: no `+`/`#`, not `$share/` or `$oshare/`, "
                                        "within the tenant's length and level limits.")
QOS = Header("qos", "qos", True, "Publish QoS: 0, 1 or 2 (subscribers get min(pub, sub) QoS).")
CLIENT_TYPE = Header("client_type", "string", True, "Kind of caller (free text), carried to events and logs.")
PUB_EXPIRY = Header("expiry_seconds", "expiry_pos", False,
                    "MQTT 5 message expiry in seconds, 1..4294967295; absent means never.")
USER = Header("user_id", "string", True, "User that owns the session.")
CLIENT = Header("client_id", "string", True, "MQTT client id of the session.")
FILTER = Header("topic_filter", "string", True,
                "MQTT topic filter; `$share/<group>/<filter>` and `$oshare/<group>/<filter>` are accepted.")
SUB_QOS = Header("sub_qos", "qos", True, "Subscription QoS: 0, 1 or 2.")
LIMIT = Header("limit", "limit", False, f"Page size, 1..{LIST_LIMIT_MAX} (default {LIST_LIMIT_DEFAULT}).")

COMMON = (REQ_ID, TENANT)

R400 = Response(400, "A header is missing or invalid: one line naming the header and the rule.",
                examples=("missing header: tenant_id",))
R401_TOKEN = Response(401, "Missing or wrong `Authorization: Bearer <token>` (when TIDEMQ_API_TOKEN is set).")
R403 = Response(403, "The bearer token is scoped to other tenants (TIDEMQ_API_TOKEN_FILE): one line naming the "
                     "tenant.", examples=("token not allowed for tenant acme",))
R503 = Response(503, "Redis is unreachable or did not answer in time; nothing was changed by this request "
                     "beyond what the text says.")
STD = (R400, R401_TOKEN, R403, R503)

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "pub", "POST", "/pub", "Publish a message to the tenant's subscribers, as a client of the tenant would.",
        (*COMMON, TOPIC, QOS, CLIENT_TYPE, PUB_EXPIRY),
        (Response(200, "`OK`: at least one subscriber matched; `NO_MATCH`: none did.", examples=("OK", "NO_MATCH")),
         R400, R401_TOKEN, R403, Response(413, "Body larger than the tenant's max payload."), R503),
        body="The message payload, raw bytes (may be empty).", client_meta=True, tag="pub",
    ),
    Endpoint(
        "retain", "POST", "/retain", "Store (or, with an empty body, clear) the retained message of a topic.",
        (*COMMON, TOPIC, QOS, CLIENT_TYPE, PUB_EXPIRY),
        (Response(200, "`RETAINED` or `CLEARED`.", examples=("RETAINED", "CLEARED")),
         Response(400, "Bad header or topic, or `EXCEED_LIMIT`: the tenant holds its maximum number of "
                       "retained topics.", examples=("EXCEED_LIMIT", "missing header: topic")),
         Response(401, "Retained messages are disabled for the tenant, or a missing/wrong bearer token."), R403,
         Response(413, "Body larger than the tenant's max payload."), R503),
        body="The retained payload, raw bytes; empty clears the topic.", client_meta=True, tag="retain",
    ),
    Endpoint(
        "retain_list", "GET", "/retain", "A page of the tenant's retained topics.",
        (*COMMON, Header("cursor", "scan_cursor", False, "Cursor from the previous page (default 0 = start)."),
         LIMIT),
        (Response(200, "A page; `cursor` is null on the last page.", "application/json", "RetainedPage"), *STD),
        tag="retain",
    ),
    Endpoint(
        "retain_clean", "DELETE", "/retain", "Tenant-wide retained clean-up.",
        (*COMMON, Header("expiry_seconds", "expiry_nonneg", False,
                         "0 removes every retained message; N > 0 removes those older than N seconds; absent "
                         "removes those whose message expiry has passed.")),
        (Response(200, "How many retained topics were removed.", "application/json", "Cleared"), *STD),
        tag="retain",
    ),
    Endpoint(
        "session_get", "GET", "/session", "One session, online or persisted.",
        (*COMMON, USER, CLIENT),
        (Response(200, "The session.", "application/json", "Session"), R400, R401_TOKEN, R403,
         Response(404, "No such session (online or persisted) for that user."), R503),
        tag="session",
    ),
    Endpoint(
        "session_expire", "DELETE", "/session", "Expire the tenant's sessions.",
        (*COMMON, Header("expiry_seconds", "expiry_nonneg", False,
                         "Absent: remove offline persistent sessions past their own expiry; N > 0: remove "
                         "sessions offline for at least N seconds; 0: remove every session of the tenant, "
                         "online ones included (they are disconnected).")),
        (Response(200, "How many sessions were removed.", "application/json", "Expired"), *STD),
        tag="session",
    ),
    Endpoint(
        "sessions", "GET", "/sessions", "A page of the tenant's sessions in client-id order.",
        (*COMMON, Header("cursor", "cursor", False, "Client id after which the page starts (from the previous "
                                                    "page)."), LIMIT),
        (Response(200, "A page; `cursor` is null on the last page.", "application/json", "SessionPage"), *STD),
        tag="session",
    ),
    Endpoint(
        "kill", "DELETE", "/kill", "Disconnect connections: the tenant's, one user's, or one client's.",
        (*COMMON, CLIENT_TYPE,
         Header("user_id", "string", False, "Narrow to this user's connections."),
         Header("client_id", "string", False, "Narrow to this one connection (needs user_id)."),
         Header("server_redirect", "string", False, "`no` (default), `move` or `temp_use`: MQTT 5 clients get "
                                                    "DISCONNECT 0x9D (server moved) or 0x9C (use another server)."),
         Header("server_reference", "string", False, "Server Reference sent with a redirect (at most 65535 "
                                                     "bytes of UTF-8).")),
        (Response(200, "How many online sessions were told to disconnect (>= 1). MQTT 5 clients get "
                       "DISCONNECT 0x98, or 0x9C / 0x9D when redirected.", "application/json", "Killed"),
         Response(400, "Bad header, client_id without user_id, a server_redirect other than no/move/temp_use, "
                       "or a server_reference over 65535 bytes.",
                  examples=("client_id requires user_id", "server_redirect must be no, move or temp_use")),
         R401_TOKEN, R403, Response(404, "No online connection matched."), R503),
        client_meta=True, tag="kill",
    ),
    Endpoint(
        "sub", "PUT", "/sub", "Add a subscription to a session (online or offline persistent).",
        (*COMMON, USER, CLIENT, FILTER, SUB_QOS),
        (Response(200, "`OK` (added) or `EXISTS` (it was there; its QoS is updated).", examples=("OK", "EXISTS")),
         R400, Response(401, "Denied by the auth provider for the session's identity, or a missing/wrong bearer "
                             "token."), R403,
         Response(404, "No such session for that user."), R503),
        tag="sub",
    ),
    Endpoint(
        "unsub", "DELETE", "/unsub", "Remove a subscription from a session.",
        (*COMMON, USER, CLIENT, FILTER),
        (Response(200, "`OK` (removed) or `NO_SUB` (there was none).", examples=("OK", "NO_SUB")),
         R400, Response(401, "Denied by the auth provider, or a missing/wrong bearer token."), R403,
         Response(404, "No such session for that user."), R503),
        tag="sub",
    ),
    Endpoint("healthz", "GET", "/healthz", "Liveness: the process answers.", (REQ_ID,),
             (Response(200, "`ok`", examples=("ok",)),), open=True, tag="ops"),
    Endpoint("readyz", "GET", "/readyz", "Readiness: Redis reachable and the Lua scripts loaded.", (REQ_ID,),
             (Response(200, "`ready`", examples=("ready",)),
              Response(503, "Not ready, with the reason.")), open=True, tag="ops"),
    Endpoint("metrics", "GET", "/metrics", "Prometheus metrics of this API process and the live workers.",
             (REQ_ID,),
             (Response(200, "Prometheus text exposition format 0.0.4."), R401_TOKEN,
              Response(403, "The bearer token is scoped to some tenants; metrics need a token for every tenant.")),
             tag="ops"),
    Endpoint("openapi", "GET", "/openapi.json", "This OpenAPI document.", (REQ_ID,),
             (Response(200, "OpenAPI 3.0 document.", "application/json", "OpenAPI"), R401_TOKEN),
             tag="ops"),
)

BY_NAME: dict[str, Endpoint] = {e.name: e for e in ENDPOINTS}
OPEN_PATHS = frozenset(e.path for e in ENDPOINTS if e.open)
KNOWN_PATHS = frozenset(e.path for e in ENDPOINTS)
# every header name the API reads (canonical spelling): each may appear once per request
KNOWN_HEADERS = frozenset({h.name for e in ENDPOINTS for h in e.headers} | {"authorization"})


@dataclass(slots=True)
class Params:
    """Validated request parameters: canonical header name -> typed value (absent optional = missing)."""

    values: dict[str, object] = field(default_factory=dict)
    client_meta: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> object:
        return self.values[name]

    def get(self, name: str, default: object = None) -> object:
        return self.values.get(name, default)
