"""Password hashes for the static-file provider: ``pbkdf2_sha256$<iterations>$<salt>$<hash>``.

The format is Django's: ``salt`` is an ASCII string used as UTF-8 bytes,
``hash`` is the standard base64 of PBKDF2-HMAC-SHA256(password, salt,
iterations) with a 32-byte output, so Django-made hashes verify here too.
Comparison is constant time. Run ``python -m tidemq.auth.passwd`` to print a
hash (the password is read without echo, or from ``--password`` / stdin).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import secrets
import sys

ALGORITHM = "pbkdf2_sha256"
DEFAULT_ITERATIONS = 600_000  # OWASP 2023 guidance for PBKDF2-HMAC-SHA256
_SALT_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def hash_password(password: str | bytes, *, iterations: int = DEFAULT_ITERATIONS, salt: str | None = None) -> str:
    """A ``pbkdf2_sha256$...`` string for ``password`` (a random 22-character salt unless given)."""
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    if salt is None:
        salt = "".join(secrets.choice(_SALT_ALPHABET) for _ in range(22))
    if not salt or "$" in salt:
        raise ValueError("salt must be non-empty and contain no '$'")
    pw = password.encode("utf-8") if isinstance(password, str) else password
    dk = hashlib.pbkdf2_hmac("sha256", pw, salt.encode("utf-8"), iterations)
    return f"{ALGORITHM}${iterations}${salt}${base64.b64encode(dk).decode('ascii')}"


def parse_hash(encoded: str) -> tuple[int, str, bytes]:
    """``(iterations, salt, digest)`` of an encoded hash; raises ValueError if malformed."""
    parts = encoded.split("$")
    if len(parts) != 4 or parts[0] != ALGORITHM:
        raise ValueError(f"not a {ALGORITHM}$<iterations>$<salt>$<hash> string")
    iterations = int(parts[1], 10)
    if iterations < 1 or not parts[2]:
        raise ValueError("bad iterations or empty salt")
    digest = base64.b64decode(parts[3], validate=True)
    if not digest:
        raise ValueError("empty hash")
    return iterations, parts[2], digest


def verify_password(password: str | bytes, encoded: str) -> bool:
    """True if ``password`` matches ``encoded`` (False for a malformed hash; never raises on input)."""
    try:
        iterations, salt, digest = parse_hash(encoded)
    except ValueError:
        return False
    pw = password.encode("utf-8") if isinstance(password, str) else password
    dk = hashlib.pbkdf2_hmac("sha256", pw, salt.encode("utf-8"), iterations, dklen=len(digest))
    return hmac.compare_digest(dk, digest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tidemq.auth.passwd",
                                     description="Print a pbkdf2_sha256 hash for a TideMQ auth file.")
    parser.add_argument("--password", help="the password (default: prompt, or read one line from stdin)")
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS)
    args = parser.parse_args(argv)
    password = args.password
    if password is None:
        if sys.stdin.isatty():
            password = getpass.getpass("Password: ")
            if getpass.getpass("Again: ") != password:
                print("passwords differ", file=sys.stderr)
                return 1
        else:
            password = sys.stdin.readline().rstrip("\r\n")
    print(hash_password(password, iterations=args.iterations))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
