"""Mosquitto's ``password_file`` and ``acl_file``, read into the static provider's ``AuthFile`` (one tenant).

Password file: ``user:hash`` lines (``mosquitto_passwd``'s ``$7$`` and ``$6$``
hashes, or TideMQ's ``pbkdf2_sha256$``; ``#`` comments and blank lines
skipped). Every user lands in one tenant (``TIDEMQ_AUTH_FILE_TENANT``); the
username is the user id, as in mosquitto. ``write_password_file`` keeps the
order and comments of the lines it does not change (``tidemq passwd``).

ACL file, as mosquitto reads it: ``topic [read|write|readwrite|deny] <topic>``
lines before the first ``user <name>`` line are the anonymous client's,
those after it the named user's; ``pattern [access] <topic>`` lines apply to
every client, with ``%u`` (username) and ``%c`` (client id) substituted.
The access word is optional (readwrite). Mapped onto ``tidemq.auth.acl``
rules: ``read`` is the subscribe action (and so the per-message read check),
``write`` publish, ``readwrite`` both, ``deny`` a deny of both. Mosquitto
checks every ``deny`` before any grant, so a client's rules are its denies
(own, then patterns) followed by its grants (own, then patterns) and a final
deny of everything: with an ACL file, what is not granted is refused. A
pattern using ``%u`` does not apply to anonymous clients (no username).
Without an ACL file every authenticated client may do everything (as in
mosquitto). ``topic`` lines substitute ``%u``/``%c`` too (mosquitto keeps
them literal); a substituted value is always literal text.
Errors are ValueError naming the file and line. Pure code but the file reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from . import acl as acl_mod
from .passwd import check_hash
from .static import AuthFile, Tenant, User

ANONYMOUS_USER = "anonymous"
_ACCESS = {"read": acl_mod.SUBSCRIBE, "write": acl_mod.PUBLISH, "readwrite": acl_mod.ALL, "deny": acl_mod.ALL}

Line = tuple[str, str]  # (access word, topic)


@dataclass(slots=True)
class AclFile:
    anonymous: list[Line] = field(default_factory=list)
    users: dict[str, list[Line]] = field(default_factory=dict)
    patterns: list[Line] = field(default_factory=list)


def parse_password_file(text: str, where: str = "password file") -> dict[str, str]:
    """``{user: hash}`` in file order; raises ValueError naming the line."""
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, encoded = line.partition(":")
        if not sep or not user:
            raise ValueError(f"{where}:{n}: expected user:hash")
        if user in out:
            raise ValueError(f"{where}:{n}: user {user!r} is listed twice")
        try:
            check_hash(encoded)
        except ValueError as exc:
            raise ValueError(f"{where}:{n}: user {user!r}: {exc}") from None
        out[user] = encoded
    return out


def write_password_file(path: str | os.PathLike[str], user: str, encoded: str | None, *, create: bool = False) -> bool:
    """Set (``encoded``) or delete (None) ``user``'s line; keeps the other lines. True if the file changed.

    ``create`` starts from an empty file. The file is replaced atomically (written beside it, then renamed)
    with mode 0600 for a new file, the old mode otherwise.
    """
    if not user or ":" in user or any(c in user for c in "\r\n"):
        raise ValueError("a username must be non-empty and contain no ':' or line break")
    p = Path(path)
    lines = [] if create else p.read_text("utf-8").splitlines()
    parse_password_file("\n".join(lines), str(p))  # refuse to rewrite a file that is not one
    out, found = [], False
    for line in lines:
        name = line.strip().partition(":")[0]
        if line.strip() and not line.strip().startswith("#") and name == user:
            found = True
            if encoded is not None:
                out.append(f"{user}:{encoded}")
            continue
        out.append(line)
    if encoded is not None and not found:
        out.append(f"{user}:{encoded}")
    if encoded is None and not found:
        return False
    mode = p.stat().st_mode & 0o777 if p.exists() else 0o600
    tmp = p.with_name(f".{p.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in out))
    os.chmod(tmp, mode)
    os.replace(tmp, p)
    return True


def parse_acl_file(text: str, where: str = "acl file") -> AclFile:
    """The file's anonymous, per-user and pattern lines; raises ValueError naming the line."""
    acl = AclFile()
    current: list[Line] = acl.anonymous
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        rest = rest.strip()
        if keyword == "user":
            if not rest:
                raise ValueError(f"{where}:{n}: user needs a name")
            current = acl.users.setdefault(rest, [])
            continue
        if keyword not in ("topic", "pattern"):
            raise ValueError(f"{where}:{n}: unknown keyword {keyword!r} (user, topic or pattern)")
        access, _, topic = rest.partition(" ")
        if access not in _ACCESS:
            access, topic = "readwrite", rest
        topic = topic.strip()
        if not topic:
            raise ValueError(f"{where}:{n}: {keyword} needs a topic")
        try:
            acl_mod.parse_rule({"permission": "allow", "topics": [topic]})
        except ValueError as exc:
            raise ValueError(f"{where}:{n}: {exc}") from None
        (acl.patterns if keyword == "pattern" else current).append((access, topic))
    return acl


def rules_for(acl: AclFile, user: str | None) -> tuple[acl_mod.Rule, ...]:
    """The ordered rules of ``user`` (None: the anonymous client), as the module docstring describes."""
    own = acl.anonymous if user is None else acl.users.get(user, [])
    patterns = [p for p in acl.patterns if user is not None or "%u" not in p[1]]
    lines = own + patterns
    denies = [acl_mod.Rule(False, acl_mod.ALL, (topic,)) for access, topic in lines if access == "deny"]
    grants = [acl_mod.Rule(True, _ACCESS[access], (topic,)) for access, topic in lines if access != "deny"]
    return (*denies, *grants, acl_mod.Rule(False, acl_mod.ALL, ("#",)))


def load_mosquitto(password_file: str | os.PathLike[str], *, acl_file: str | os.PathLike[str] | None = None,
                   tenant: str, allow_anonymous: bool = False) -> AuthFile:
    """An ``AuthFile`` of one tenant from a mosquitto password file and optional ACL file; raises ValueError."""
    texts: list[str | None] = []
    for p in (password_file, acl_file):
        if p is None:
            texts.append(None)
            continue
        try:
            texts.append(Path(p).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{p}: {exc}") from exc
    assert texts[0] is not None
    users = parse_password_file(texts[0], str(password_file))
    acl = parse_acl_file(texts[1], str(acl_file)) if texts[1] is not None else None
    t = Tenant(tenant)
    for name, encoded in users.items():
        t.users[name] = User(name, encoded, rules=rules_for(acl, name) if acl is not None else ())
    anonymous = None
    if allow_anonymous:
        if ANONYMOUS_USER in users:
            raise ValueError(f"{password_file}: with anonymous clients allowed, no user may be called "
                             f"{ANONYMOUS_USER!r} (the anonymous identity)")
        anonymous = (tenant, User(ANONYMOUS_USER, None, rules=rules_for(acl, None) if acl is not None else ()))
    return AuthFile({tenant: t}, default_tenant=tenant, anonymous=anonymous)
