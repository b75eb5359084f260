"""Admin API tokens: the process-wide ``TIDEMQ_API_TOKEN`` and the tenant-scoped ``TIDEMQ_API_TOKEN_FILE``.

The token file is read once at start. Each line (blank lines and ``#`` comments
aside) is a token followed by the tenants it may act on, separated by spaces;
``*`` instead of tenants means every tenant::

    # token                                   tenants
    3f9a1c0d7e5b4a2f8c6d1e0b9a7f5c3e          acme beta
    c0ffee00c0ffee00c0ffee00c0ffee00          *

A token is at least 16 characters without spaces, and appears once; a bad file
raises ``TokenFileError`` whose text names the line (the CLI exits with it).
Lookups compare SHA-256 digests (a dict keyed by the digest of each token), so
the time taken says nothing about how much of a wrong token was right; the
environment token is compared with ``hmac.compare_digest``. ``Tokens.scope``
answers for one ``Authorization`` header: ``ALL`` (every tenant), a set of
tenants, or None (missing or wrong token).
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

MIN_TOKEN_LENGTH = 16
ALL: frozenset[str] = frozenset({"*"})  # the scope of the environment token and of "*" lines


class TokenFileError(ValueError):
    """The token file cannot be used; the message names the file and the line."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def parse_token_file(text: str, where: str = "token file") -> dict[bytes, frozenset[str]]:
    """``{sha256(token): tenants}`` (``ALL`` for ``*``) from the file's text; raises TokenFileError."""
    out: dict[bytes, frozenset[str]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        token, tenants = words[0], words[1:]
        if len(token) < MIN_TOKEN_LENGTH:
            raise TokenFileError(f"{where}:{n}: a token must be at least {MIN_TOKEN_LENGTH} characters")
        if not tenants:
            raise TokenFileError(f"{where}:{n}: name the tenants the token may act on, or *")
        if "*" in tenants and len(tenants) > 1:
            raise TokenFileError(f"{where}:{n}: * (every tenant) cannot be combined with tenant names")
        key = _digest(token)
        if key in out:
            raise TokenFileError(f"{where}:{n}: this token is already listed")
        out[key] = ALL if tenants == ["*"] else frozenset(tenants)
    return out


def load_token_file(path: str) -> dict[bytes, frozenset[str]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"TIDEMQ_API_TOKEN_FILE {path}: cannot read it: {exc}") from None
    return parse_token_file(text, path)


class Tokens:
    """Who an ``Authorization`` header lets act on which tenants (see module doc)."""

    def __init__(self, token: str = "", scoped: dict[bytes, frozenset[str]] | None = None) -> None:
        self.token = token.encode()
        self.scoped = scoped or {}

    @classmethod
    def from_settings(cls, token: str, token_file: str) -> Tokens:
        return cls(token, load_token_file(token_file) if token_file else None)

    @property
    def required(self) -> bool:
        return bool(self.token or self.scoped)

    def scope(self, authorization: str | None) -> frozenset[str] | None:
        """The tenants the header's bearer token may act on (``ALL``: every tenant); None if it is not one."""
        scheme, _, value = (authorization or "").partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            return None
        if self.token and hmac.compare_digest(value.encode("utf-8", "surrogateescape"), self.token):
            return ALL
        return self.scoped.get(_digest(value))


def allows(scope: frozenset[str] | None, tenant: str) -> bool:
    """True when ``scope`` (from ``Tokens.scope``; None: no token needed) covers ``tenant``."""
    return scope is None or scope == ALL or tenant in scope
