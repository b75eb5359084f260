"""One typed Settings object, read once from the environment (and CLI flags).

Every field maps to exactly one environment variable ``TIDEMQ_<NAME>``;
``.env.example`` lists them all (a test keeps the two in step) and
docs/configuration.md is generated from both (scripts/gen_config_docs.py).
Values are parsed here and nowhere else, so ``"0123"`` stays a string where a
string is meant.

Sources, strongest first: CLI flags, the process environment, an env file
(``--env-file``: ``NAME=value`` lines; an unknown ``TIDEMQ_`` name in it is an
error, other names are ignored), the defaults. A secret (``SECRETS``) may
instead be given as ``TIDEMQ_<NAME>_FILE``: the file's content, one trailing
newline stripped (Docker/Kubernetes secrets). Every bad value raises
``ConfigError`` (a ValueError) whose one-line text names the setting; the CLI
prints it and exits with status 2.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import quote, urlsplit, urlunsplit

ENV_PREFIX = "TIDEMQ_"
# fields that may come from TIDEMQ_<NAME>_FILE (the admin token's file form is TIDEMQ_API_TOKEN_FILE: its own
# format of "<token> <tenants>" lines, app/tokens.py)
SECRETS = ("redis_password", "tls_key_password", "event_webhook_url")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
EVENT_SINKS = ("log", "webhook", "redis")  # built-in sinks (tidemq/events.py); or package.module:Class


class ConfigError(ValueError):
    """A setting cannot be used; the one-line message names it (``TIDEMQ_<NAME>``)."""


@dataclass(slots=True)
class Settings:
    # network
    host: str = "127.0.0.1"  # loopback only unless set: see docs/security.md
    # listening off loopback with the devonly provider, or serving the admin API off loopback without a
    # token, is refused unless this is set (development only)
    allow_insecure: bool = False
    mqtt_port: int = 1883
    api_port: int = 8091
    # store: redis://host:port/db, redis+cluster://host:port, redis+sentinel://s1:port,s2:port/master[/db],
    # or memory:// (embedded fakeredis)
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password: str = ""  # store password, put into redis_url (secret: TIDEMQ_REDIS_PASSWORD_FILE)
    redis_wait_replicas: int = 0  # >0: persistent deliveries are acked only once this many replicas have them
    redis_wait_timeout_ms: int = 1000  # how long WAIT may take before the publish is refused (not acked)
    # worker identity and liveness
    worker_id: str = ""  # empty: a random id per process
    # protocol limits (defaults; per-tenant settings may lower them)
    max_packet_size: int = 1048576  # largest packet accepted from an authenticated client (MQTT max 268435460)
    preauth_max_packet: int = 65536  # largest packet before CONNACK (CONNECT included), checked at the header
    max_pending_connects: int = 1000  # open connections that have not finished CONNECT, per worker process
    connect_rate_per_ip: float = 0.0  # CONNECT attempts per second per source address before auth (0: off)
    max_inflight: int = 32  # server receive-maximum and default outbound window
    max_session_expiry: int = 86400  # seconds; also the expiry of MQTT 3 persistent sessions
    min_keep_alive: int = 0
    server_keep_alive: int = 0  # 0: accept the client's keep alive
    inbox_size: int = 1000  # SessionInboxSize
    inbox_drop_oldest: bool = True  # QoS0DropOldest-style policy for a full inbox
    max_payload: int = 262144  # MaxUserPayloadBytes
    max_topic_levels: int = 16
    max_topic_length: int = 255
    retain_enabled: bool = True
    # admin API
    api_token: str = ""  # bearer token for every admin endpoint but /healthz and /readyz
    api_token_file: str = ""  # file of "<token> <tenant>..." lines: tokens scoped to tenants (app/tokens.py)
    # operations
    log_level: str = "INFO"
    log_json: str = "auto"  # auto | true | false
    sweep_interval: float = 5.0  # seconds between session-expiry sweeps
    health_port: int = 0  # worker HTTP /healthz and /readyz for probes (0: off; the chart uses 8092)
    drain_grace: float = 10.0  # seconds a stopping worker waits for clients to go and writes to finish
    server_reference: str = ""  # set: MQTT 5 clients are told "use another server" (0x9C) with it at drain
    # observability (docs/observability.md)
    metrics_tenant_top: int = 0  # tidemq_tenant_* metric families for the N busiest tenants (0: off)
    sys_interval: float = 10.0  # seconds between $SYS publications (tenants with SysTopicsEnabled)
    event_sinks: str = ""  # comma list of event sinks: log, webhook, redis, package.module:Class (empty: none)
    event_webhook_url: str = ""  # http(s) URL the webhook sink POSTs to (secret: TIDEMQ_EVENT_WEBHOOK_URL_FILE)
    event_queue: int = 10000  # events a webhook/redis sink queues before it drops (and counts) the rest
    event_stream_maxlen: int = 10000  # approximate cap of each tenant's event stream (redis sink)
    # auth and tenant settings
    auth_provider: str = "devonly"  # devonly | file | webhook
    auth_file: str = ""  # the file provider's JSON/TOML file, or a mosquitto password_file (auth_provider=file)
    auth_acl_file: str = ""  # a mosquitto acl_file, with a mosquitto password file as auth_file
    auth_file_tenant: str = ""  # the tenant of a mosquitto password file's users (empty: DevOnly)
    auth_allow_anonymous: bool = False  # mosquitto's allow_anonymous, with a mosquitto password file
    auth_webhook_url: str = ""  # http(s)://host:port/path the WebhookProvider POSTs to
    auth_webhook_timeout: float = 2.0  # seconds per webhook call; a timeout denies
    auth_webhook_ca: str = ""  # PEM CA bundle the webhook's https certificate must chain to (empty: system CAs)
    auth_webhook_cert: str = ""  # PEM client certificate presented to the webhook (mutual TLS)
    auth_webhook_key: str = ""  # its PEM private key (empty: the key is in auth_webhook_cert)
    auth_webhook_authorization: str = ""  # Authorization header value sent to the webhook, e.g. "Bearer x"
    auth_webhook_authorization_file: str = ""  # file whose first line is that value (a mounted secret)
    auth_cache_ttl: float = 10.0  # seconds an auth decision (webhook) or verified password is cached
    auth_cache_size: int = 10000  # entries per auth decision cache (bounded LRU)
    auth_verify_threads: int = 1  # threads that verify passwords (PBKDF2), per process
    auth_fail_threshold: int = 5  # wrong passwords from one address before it backs off (0: never)
    auth_fail_backoff_max: float = 60.0  # longest back-off of one address, seconds (doubles from 1 s)
    tenant_settings_ttl: float = 5.0  # seconds a tenant's settings hash is cached per process
    settings_provider: str = ""  # "" (the Redis hash) or package.module:Class, built as Class(settings, redis)
    client_balancer: str = ""  # "" (none) or package.module:Class, built as Class(settings): may redirect a CONNECT
    max_connections: int = 0  # connections per worker process (0: unlimited)
    max_connect_rate: float = 0.0  # CONNECTs accepted per second per worker process (0: unlimited)
    # process defaults for BifroMQ's per-connection throttles (tenant hashes override; 0: unlimited)
    msg_pub_per_sec: int = 0  # MsgPubPerSec
    inbound_bandwidth: int = 0  # InBoundBandWidth, bytes/s
    outbound_bandwidth: int = 0  # OutBoundBandWidth, bytes/s
    retain_match_limit: int = 0  # RetainMessageMatchLimit: retained messages per new subscription
    min_session_expiry: int = 0  # MinSessionExpirySeconds (0: BifroMQ's default, 60)
    max_will_bytes: int = 65536  # MaxLastWillBytes
    # listeners (TLS / WebSocket): 0 turns a port off; see docs/transports.md
    tls_port: int = 0  # MQTT over TLS (conventionally 8883)
    tls_cert: str = ""  # PEM certificate chain for the TLS and WSS listeners
    tls_key: str = ""  # PEM private key (empty: in tls_cert)
    tls_key_password: str = ""  # passphrase of an encrypted tls_key (secret: TIDEMQ_TLS_KEY_PASSWORD_FILE)
    tls_ca: str = ""  # PEM CA bundle for client certificates (set: clients may present one)
    tls_require_client_cert: bool = False  # refuse TLS/WSS clients without a certificate signed by tls_ca
    ws_port: int = 0  # MQTT over WebSocket (conventionally 8080)
    ws_path: str = "/mqtt"  # HTTP path of the WebSocket endpoint (WS and WSS)
    wss_port: int = 0  # MQTT over WebSocket over TLS (conventionally 8443)
    ws_allowed_origins: str = ""  # comma list of Origin values a WebSocket upgrade may carry (empty: any)
    ws_require_subprotocol: bool = False  # refuse WebSocket upgrades that offer no MQTT subprotocol (400)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, env_file: str | None = None,
                 **overrides: Any) -> Settings:
        """Build settings from ``env_file``, then ``env`` (default ``os.environ``), then ``overrides`` (not
        None); checked (``check``). Raises ConfigError naming the bad setting."""
        source: dict[str, str] = load_env_file(env_file) if env_file else {}
        source.update(os.environ if env is None else env)
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = ENV_PREFIX + f.name.upper()
            raw = source.get(name)
            if f.name in SECRETS and source.get(name + "_FILE"):
                if raw:
                    raise ConfigError(f"{name} and {name}_FILE are both set: use one")
                raw = _read_secret(name + "_FILE", source[name + "_FILE"])
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, raw, hints[f.name])
        for name, value in overrides.items():
            if value is not None:
                values[name] = value
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise ConfigError naming the first setting whose value cannot work."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"{_env(f.name)}: must not be negative, got {value}")
        for name in ("mqtt_port", "api_port", "health_port", "tls_port", "ws_port", "wss_port"):
            if getattr(self, name) > 65535:
                raise ConfigError(f"{_env(name)}: {getattr(self, name)} is not a TCP port (0-65535)")
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError(f"TIDEMQ_LOG_LEVEL: {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        if self.log_json not in ("auto", "true", "false"):
            raise ConfigError(f"TIDEMQ_LOG_JSON: {self.log_json!r} is not auto, true or false")
        kind = self.auth_provider.strip().lower()
        if kind not in ("devonly", "file", "webhook") and ":" not in kind:
            raise ConfigError(f"TIDEMQ_AUTH_PROVIDER: {self.auth_provider!r} is not devonly, file, webhook or "
                              "package.module:Class")
        if kind == "file" and not self.auth_file:
            raise ConfigError("TIDEMQ_AUTH_FILE: required with TIDEMQ_AUTH_PROVIDER=file")
        for name in ("sys_interval", "event_queue", "event_stream_maxlen"):
            if not getattr(self, name) > 0:  # NaN too
                raise ConfigError(f"{_env(name)}: must be positive, got {getattr(self, name)}")
        for spec in self.event_sink_specs():
            module, sep, cls_name = spec.partition(":")
            if spec not in EVENT_SINKS and not (sep and module and cls_name):
                raise ConfigError(f"TIDEMQ_EVENT_SINKS: unknown sink {spec!r} (log, webhook, redis or "
                                  "package.module:Class)")
        if "webhook" in self.event_sink_specs() and not self.event_webhook_url.startswith(("http://", "https://")):
            raise ConfigError("TIDEMQ_EVENT_WEBHOOK_URL: an http:// or https:// URL is needed for the webhook sink")
        if not 0 < self.max_packet_size <= 268435460:
            raise ConfigError(f"TIDEMQ_MAX_PACKET_SIZE: {self.max_packet_size} is not in 1..268435460")
        scheme = urlsplit(self.redis_url).scheme.lower()
        if scheme not in ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel",
                          "rediss+sentinel", "memory"):
            raise ConfigError(f"TIDEMQ_REDIS_URL: unsupported scheme {scheme!r} (redis://, rediss://, "
                              "redis+cluster://, redis+sentinel://, memory://)")

    def check_files(self) -> None:
        """Raise ConfigError naming the first file setting that names no readable file (at process start)."""
        for name in ("auth_file", "auth_acl_file", "api_token_file", "tls_cert", "tls_key", "tls_ca"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ConfigError(f"{_env(name)}: no such file {path!r}")

    def event_sink_specs(self) -> list[str]:
        """``event_sinks`` as a list of sink names, blanks dropped."""
        return [s.strip() for s in self.event_sinks.split(",") if s.strip()]

    def store_url(self) -> str:
        """``redis_url`` with ``redis_password`` (when set) as its password; what the store connects to."""
        if not self.redis_password:
            return self.redis_url
        parts = urlsplit(self.redis_url)
        if parts.scheme.lower() in ("memory", "unix"):
            return self.redis_url
        host = parts.netloc.rpartition("@")[2]
        user = quote(parts.username, safe="") if parts.username else ""
        netloc = f"{user}:{quote(self.redis_password, safe='')}@{host}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    @classmethod
    def env_names(cls) -> list[str]:
        return [ENV_PREFIX + f.name.upper() for f in fields(cls)]

    def exposure(self, *, mqtt: bool, api: bool) -> list[str]:
        """What serving MQTT (``mqtt``) and/or the admin API (``api``) on ``host`` would expose unprotected.

        Empty when the host is loopback or every exposed service authenticates. The caller refuses to
        start on a non-empty answer unless ``allow_insecure`` is set (then it only warns).
        """
        if is_loopback(self.host):
            return []
        out = []
        if mqtt and self.auth_provider.strip().lower() == "devonly":
            out.append(f"MQTT on {self.host} with the devonly auth provider (every client is let in)")
        if api and not (self.api_token or self.api_token_file):
            out.append(f"the admin API on {self.host} without TIDEMQ_API_TOKEN or TIDEMQ_API_TOKEN_FILE")
        return out


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); False for anything else,
    including ``""`` and ``0.0.0.0`` / ``::`` (every interface) and other host names."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def _env(name: str) -> str:
    return ENV_PREFIX + name.upper()


def load_env_file(path: str) -> dict[str, str]:
    """``NAME=value`` lines (``#`` comments, ``export`` prefixes and one pair of quotes allowed) of an env
    file; raises ConfigError on an unreadable file, a malformed line or an unknown ``TIDEMQ_`` name."""
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--env-file {path}: {exc}") from None
    known = set(Settings.env_names()) | {_env(n) + "_FILE" for n in SECRETS}
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        name, sep, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise ConfigError(f"{path}:{n}: expected NAME=value")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if name.startswith(ENV_PREFIX) and name not in known:
            raise ConfigError(f"{path}:{n}: unknown setting {name}")
        out[name] = value
    return out


def _read_secret(name: str, path: str) -> str:
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{name}: cannot read {path!r}: {exc}") from None
    return text.removesuffix("\n").removesuffix("\r")


def _parse(name: str, raw: str, typ: Any) -> Any:
    try:
        if typ is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if typ is int:
            return int(raw, 10)
        if typ is float:
            return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}: cannot parse {raw!r} as {typ.__name__}") from exc
    return raw
