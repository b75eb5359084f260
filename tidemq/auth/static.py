"""StaticFileProvider: tenants, users (pbkdf2_sha256 password hashes) and ACL rules from one JSON or TOML file.

File layout (docs/auth.md has a full example)::

    default_tenant = "acme"            # optional: usernames without "tenant/" live here
    [anonymous]                        # optional: clients without a username
    tenant = "public"; user = "guest"; acl = [...]
    [tenants.acme]
    acl = [...]                        # tenant-wide rules, checked after the user's own
    [tenants.acme.users.alice]
    password = "pbkdf2_sha256$600000$salt$hash"
    superuser = false                  # true: no ACL checks
    acl = [...]

Passwords may also be ``mosquitto_passwd`` hashes (``$7$``/``$6$``). A file
that is neither ``.json``/``.toml`` nor starts with ``{`` is a mosquitto
password file, optionally with a mosquitto ACL file (``tidemq.auth.mosquitto``:
one tenant, ``allow_anonymous`` as in mosquitto); both are watched.

A username ``tenant/user`` names a tenant of the file; any other username is
a user of ``default_tenant``. The file is parsed and validated as a whole
(a bad file raises at load and, on reload, keeps the previous content). Hot
path: PBKDF2 runs in a thread and a successful verification is cached for
``cache_ttl`` (keyed by an HMAC of the password under a per-process random
key, never the password itself); each identity's rules are compiled once
and each ``(identity, action, topic, qos, retain)`` verdict is kept in a
bounded dict, cleared when the file is reloaded. The file is re-read when its
mtime changes, checked at most every ``watch_interval`` seconds at CONNECT,
SUBSCRIBE and ``poll()``; a successful reload bumps ``generation``.

Subscriptions may be narrowed (``acl`` module docstring): ``check_subscribe``
and its synchronous twin ``subscribe_grant_now`` answer a ``SubscribeGrant``
whose ``ReadFilter`` is shared by every grant with the same entries (one
verdict cache per distinct narrowing, not per connection).
``allowed_subscribe`` keeps its old bool meaning (True only for an
unconditional grant) for callers unaware of narrowing. ``allowed_read`` /
``check_read`` is the per-message read check: for a topic of a granted
filter it agrees with that grant's read filter.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..mqtt.reason_codes import RC
from . import acl as acl_mod
from .base import DEFAULT_TENANT, AuthResult, BaseAuthProvider, ConnectInfo, Identity
from .cache import MISSING, TTLCache
from .passwd import VerifierBusy, check_hash, verify_off_loop, verify_password

log = logging.getLogger("tidemq.auth")


@dataclass(slots=True)
class User:
    name: str
    password: str | None  # encoded hash; None for the anonymous identity
    superuser: bool = False
    rules: tuple[acl_mod.Rule, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Tenant:
    name: str
    users: dict[str, User] = field(default_factory=dict)
    rules: tuple[acl_mod.Rule, ...] = ()


@dataclass(slots=True)
class AuthFile:
    tenants: dict[str, Tenant]
    default_tenant: str | None = None
    anonymous: tuple[str, User] | None = None  # (tenant, user)

    def user(self, tenant: str, user: str) -> User | None:
        t = self.tenants.get(tenant)
        found = t.users.get(user) if t is not None else None
        if found is None and self.anonymous is not None and self.anonymous[0] == tenant \
                and self.anonymous[1].name == user:
            return self.anonymous[1]
        return found


def load_auth_file(path: str | os.PathLike[str], *, acl_file: str | os.PathLike[str] | None = None,
                   tenant: str = DEFAULT_TENANT, allow_anonymous: bool = False) -> AuthFile:
    """Parse and validate an auth file; raises ValueError.

    ``.toml`` is TOML, ``.json`` or a file starting with ``{`` JSON, anything else a mosquitto password
    file (``acl_file``, ``tenant`` and ``allow_anonymous`` apply to that kind only).
    """
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        raw_bytes = p.read_bytes()
        mosquitto = suffix not in (".toml", ".json") and not raw_bytes.lstrip().startswith(b"{")
        if not mosquitto:
            data = tomllib.loads(raw_bytes.decode("utf-8")) if suffix == ".toml" else json.loads(raw_bytes)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{p}: {exc}") from exc
    if mosquitto:
        from .mosquitto import load_mosquitto

        return load_mosquitto(p, acl_file=acl_file, tenant=tenant, allow_anonymous=allow_anonymous)
    if acl_file or allow_anonymous:
        raise ValueError(f"{p}: TIDEMQ_AUTH_ACL_FILE and TIDEMQ_AUTH_ALLOW_ANONYMOUS apply to a mosquitto "
                         "password file; a JSON/TOML file has its own acl and [anonymous] table")
    try:
        return parse_auth_data(data)
    except ValueError as exc:
        raise ValueError(f"{p}: {exc}") from None


def parse_auth_data(data: Any) -> AuthFile:
    """Validate the decoded file content (see the module docstring); raises ValueError naming the bad part."""
    if not isinstance(data, Mapping):
        raise ValueError("the top level must be a table/object")
    unknown = set(data) - {"tenants", "default_tenant", "anonymous"}
    if unknown:
        raise ValueError(f"unknown top-level keys {sorted(unknown)}")
    tenants: dict[str, Tenant] = {}
    raw_tenants = data.get("tenants", {})
    if not isinstance(raw_tenants, Mapping):
        raise ValueError("tenants must be a table/object")
    for tname, traw in raw_tenants.items():
        where = f"tenants.{tname}"
        if not isinstance(traw, Mapping) or set(traw) - {"users", "acl"}:
            raise ValueError(f"{where}: expected a table with users and acl")
        tenant = Tenant(str(tname), rules=_rules(traw.get("acl"), where))
        users = traw.get("users", {})
        if not isinstance(users, Mapping):
            raise ValueError(f"{where}.users must be a table/object")
        for uname, uraw in users.items():
            tenant.users[str(uname)] = _user(str(uname), uraw, f"{where}.users.{uname}")
        tenants[tenant.name] = tenant
    default = data.get("default_tenant")
    if default is not None and (not isinstance(default, str) or default not in tenants):
        raise ValueError(f"default_tenant {default!r} is not a tenant of the file")
    anonymous = None
    anon = data.get("anonymous")
    if anon is not None:
        if not isinstance(anon, Mapping) or set(anon) - {"tenant", "user", "acl"} or not anon.get("tenant"):
            raise ValueError("anonymous must be a table with tenant, user and acl")
        anon_user = User(str(anon.get("user", "anonymous")), None, False, _rules(anon.get("acl"), "anonymous"))
        anon_tenant = str(anon["tenant"])
        if anon_user.name in tenants.get(anon_tenant, Tenant("")).users:
            raise ValueError(f"anonymous user {anon_user.name!r} is also a user of tenant {anon_tenant!r}")
        anonymous = (anon_tenant, anon_user)
    return AuthFile(tenants, default, anonymous)


def _rules(raw: Any, where: str) -> tuple[acl_mod.Rule, ...]:
    try:
        return acl_mod.parse_rules(raw)
    except ValueError as exc:
        raise ValueError(f"{where}.acl: {exc}") from None


def _user(name: str, raw: Any, where: str) -> User:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a table/object")
    unknown = set(raw) - {"password", "superuser", "acl", "attributes"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    password = raw.get("password")
    if not isinstance(password, str):
        raise ValueError(f"{where}.password: a pbkdf2_sha256$... (or mosquitto $7$/$6$) hash is required")
    try:
        check_hash(password)
    except ValueError as exc:
        raise ValueError(f"{where}.password: {exc}") from None
    superuser = raw.get("superuser", False)
    if not isinstance(superuser, bool):
        raise ValueError(f"{where}.superuser must be true or false")
    attributes = raw.get("attributes", {})
    if not isinstance(attributes, Mapping):
        raise ValueError(f"{where}.attributes must be a table/object")
    return User(name, password, superuser, _rules(raw.get("acl"), where), dict(attributes))


class StaticFileProvider(BaseAuthProvider):
    def __init__(self, path: str | os.PathLike[str] | None = None, *, data: AuthFile | None = None,
                 acl_file: str | os.PathLike[str] | None = None, tenant: str = DEFAULT_TENANT,
                 allow_anonymous: bool = False, cache_ttl: float = 10.0, cache_size: int = 10000,
                 watch_interval: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        if (path is None) == (data is None):
            raise ValueError("give exactly one of path or data")
        self.path = Path(path) if path is not None else None
        self.acl_file = Path(acl_file) if acl_file else None
        self._options: dict[str, Any] = {"acl_file": self.acl_file, "tenant": tenant,
                                         "allow_anonymous": allow_anonymous}
        self.clock = clock
        self.cache_size = cache_size
        self.watch_interval = watch_interval
        self._mtime = self._stat()
        if self.path is not None:
            self.data = load_auth_file(self.path, **self._options)
        else:
            assert data is not None
            self.data = data
        self.generation = 0  # bumped by every successful reload
        self._next_check = clock() + watch_interval
        self._key = secrets.token_bytes(32)
        self._verified = TTLCache(cache_size, cache_ttl, clock)
        self._acls: dict[Identity, acl_mod.Acl | None] = {}
        self._decisions: dict[tuple[Any, ...], bool] = {}
        self._grants: dict[tuple[Identity, str, int], acl_mod.SubscribeGrant] = {}
        self._read_filters: dict[tuple[acl_mod.Entry, ...], acl_mod.ReadFilter] = {}

    # ------------------------------------------------------------ file

    def _stat(self) -> tuple[float | None, ...] | None:
        """The mtimes (None: unreadable) of the watched files: the auth file and the ACL file, if any."""
        if self.path is None:
            return None
        out: list[float | None] = []
        for p in (self.path, self.acl_file):
            if p is None:
                continue
            try:
                out.append(p.stat().st_mtime)
            except OSError:
                out.append(None)
        return tuple(out)

    def reload(self) -> bool:
        """Re-read the file; on any error keep the current content (logged). True if reloaded."""
        if self.path is None:
            return False
        mtime = self._stat()
        try:
            data = load_auth_file(self.path, **self._options)
        except ValueError as exc:
            log.error("auth file not reloaded, keeping the previous one: %s", exc)
            self._mtime = mtime
            return False
        self.data, self._mtime = data, mtime
        self._verified.clear()
        self._acls.clear()
        self._decisions.clear()
        self._grants.clear()
        self._read_filters.clear()
        self.generation += 1
        log.info("auth file %s reloaded (%d tenants)", self.path, len(data.tenants))
        return True

    def _maybe_reload(self) -> None:
        if self.path is None or self.watch_interval <= 0:
            return
        now = self.clock()
        if now < self._next_check:
            return
        self._next_check = now + self.watch_interval
        if self._stat() != self._mtime:
            self.reload()

    def poll(self) -> int:
        """Re-read the file if it changed (at most every ``watch_interval`` seconds); the current generation."""
        self._maybe_reload()
        return self.generation

    # ------------------------------------------------------------ connect

    def resolve(self, username: str | None) -> tuple[str, User] | None:
        """The ``(tenant, user)`` a username names, or None."""
        data = self.data
        if not username:
            return data.anonymous
        if "/" in username:
            tname, _, uname = username.partition("/")
            tenant = data.tenants.get(tname)
            if tenant is not None and uname in tenant.users:
                return tname, tenant.users[uname]
        if data.default_tenant is not None:
            user = data.tenants[data.default_tenant].users.get(username)
            if user is not None:
                return data.default_tenant, user
        return None

    async def authenticate(self, info: ConnectInfo) -> AuthResult:
        self._maybe_reload()
        found = self.resolve(info.username)
        if found is None:
            return AuthResult(False, reason_code=RC.BAD_USER_NAME_OR_PASSWORD)
        tenant, user = found
        attributes = dict(user.attributes)
        if user.password is None:  # the anonymous identity
            return AuthResult(True, tenant, user.name, attributes=attributes)
        if info.password is None:
            return AuthResult(False, reason_code=RC.BAD_USER_NAME_OR_PASSWORD)
        mark = hmac.new(self._key, user.password.encode() + b"\0" + info.password, hashlib.sha256).digest()
        key = (tenant, user.name, mark)
        if self._verified.get(key) is MISSING:
            try:
                ok = await verify_off_loop(info.password, user.password, source=info.address, verify=verify_password)
            except VerifierBusy:  # a flood fills the verification queue: busy, not a wrong password
                return AuthResult(False, reason_code=RC.SERVER_BUSY)
            if not ok:
                return AuthResult(False, reason_code=RC.BAD_USER_NAME_OR_PASSWORD)
            self._verified.put(key, True)
        return AuthResult(True, tenant, user.name, attributes=attributes)

    # ------------------------------------------------------------ permissions

    def _acl(self, who: Identity) -> acl_mod.Acl | None:
        """The compiled rules of ``who``; None means everything is allowed (superuser)."""
        try:
            return self._acls[who]
        except KeyError:
            pass
        tenant = self.data.tenants.get(who.tenant_id)
        user = self.data.user(who.tenant_id, who.user_id)
        compiled: acl_mod.Acl | None
        if user is None:
            compiled = acl_mod.Acl([acl_mod.Rule(False, acl_mod.ALL, ("#",))], "", "")  # unknown: deny all
        elif user.superuser:
            compiled = None
        else:
            rules = user.rules + (tenant.rules if tenant is not None else ())
            compiled = acl_mod.Acl(rules, who.user_id, who.client_id)
        if len(self._acls) >= self.cache_size:
            self._acls.pop(next(iter(self._acls)))
        self._acls[who] = compiled
        return compiled

    def _remember(self, key: tuple[Any, ...], verdict: bool) -> bool:
        if len(self._decisions) >= self.cache_size:
            self._decisions.pop(next(iter(self._decisions)))
        self._decisions[key] = verdict
        return verdict

    def allowed_publish(self, who: Identity, topic: str, qos: int, retain: bool) -> bool:
        """Synchronous publish check (what ``check_publish`` awaits): cached per identity and topic."""
        key = (who, 1, topic, qos, retain)
        verdict = self._decisions.get(key)
        if verdict is not None:
            return verdict
        acl = self._acl(who)
        return self._remember(key, True if acl is None else acl.can_publish(topic, qos, retain))

    def _read_filter(self, entries: tuple[acl_mod.Entry, ...]) -> acl_mod.ReadFilter:
        """One shared ReadFilter (and verdict cache) per distinct narrowing."""
        rf = self._read_filters.get(entries)
        if rf is None:
            if len(self._read_filters) >= self.cache_size:
                self._read_filters.pop(next(iter(self._read_filters)))
            rf = self._read_filters[entries] = acl_mod.ReadFilter(entries)
        return rf

    def subscribe_grant_now(self, who: Identity, topic_filter: str, qos: int) -> acl_mod.SubscribeGrant:
        """Synchronous subscribe answer, possibly narrowed: cached per identity, filter and QoS."""
        key = (who, topic_filter, qos)
        grant = self._grants.get(key)
        if grant is not None:
            return grant
        self._maybe_reload()
        acl = self._acl(who)
        grant = acl_mod.GRANTED if acl is None else acl.grant_subscribe(topic_filter, qos, self._read_filter)
        if len(self._grants) >= self.cache_size:
            self._grants.pop(next(iter(self._grants)))
        self._grants[key] = grant
        return grant

    def allowed_subscribe(self, who: Identity, topic_filter: str, qos: int) -> bool:
        """The pre-narrowing bool: True only for an unconditional grant (a narrowed one is refused)."""
        return bool(self.subscribe_grant_now(who, topic_filter, qos))

    def allowed_read(self, who: Identity, topic: str, qos: int | None = None) -> bool:
        """Per-message read check (mosquitto's): may ``topic`` be delivered to ``who``? Cached per topic."""
        key = (who, 4, topic, qos)
        verdict = self._decisions.get(key)
        if verdict is not None:
            return verdict
        acl = self._acl(who)
        return self._remember(key, True if acl is None else acl.can_read(topic, qos))

    async def check_publish(self, who: Identity, topic: str, qos: int, retain: bool) -> bool:
        return self.allowed_publish(who, topic, qos, retain)

    async def check_subscribe(self, who: Identity, topic_filter: str, qos: int) -> acl_mod.SubscribeGrant:
        return self.subscribe_grant_now(who, topic_filter, qos)

    async def check_read(self, who: Identity, topic: str, qos: int | None = None) -> bool:
        return self.allowed_read(who, topic, qos)
