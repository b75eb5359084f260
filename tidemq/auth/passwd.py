"""Password hashes for the static-file provider: its own format and ``mosquitto_passwd``'s two.

``pbkdf2_sha256$<iterations>$<salt>$<hash>`` is Django's format: ``salt`` is
an ASCII string used as UTF-8 bytes, ``hash`` is the standard base64 of
PBKDF2-HMAC-SHA256(password, salt, iterations) with a 32-byte output, so
Django-made hashes verify here too. ``mosquitto_passwd`` writes
``$7$<iterations>$<salt>$<hash>`` (PBKDF2-HMAC-SHA512, base64 salt and 64-byte
hash; mosquitto 2's default) and ``$6$<salt>$<hash>`` (SHA-512 of the
password followed by the salt; mosquitto 1.x, ``-H sha512``); both verify
here and ``hash_mosquitto`` writes the first (what ``tidemq passwd`` stores,
so a file stays usable by mosquitto). Only hashlib is used. Comparison is
constant time. Run ``python -m tidemq.auth.passwd`` to print a
hash (the password is read without echo, or from ``--password`` / stdin).

Off the event loop: ``verify_off_loop`` runs the verification on one small
process-wide thread pool (``configure(threads=...)``, default 1), so a flood of
passwords costs at most that many cores' worth of PBKDF2 however many
connections wait. ``FailureBackoff`` (sans-IO, clock injected) counts wrong
passwords per source address: after ``threshold`` failures in a row an address
is refused without hashing for 1 s, doubling per further failure up to
``backoff_max``; a success or a quiet period of ``backoff_max`` forgets it. It
holds at most ``max_entries`` addresses (the oldest are forgotten first).
Verifications under way count too: an address may have at most
``PER_SOURCE_INFLIGHT`` at once, and failures plus those in flight may not pass
``threshold`` (a burst of concurrent attempts cannot all slip past the check).
Waiting for a thread, an address with no recent failure goes before one with
failures (``_Slots``), so a client with a good password is not queued behind a
flood; at most ``WAITING_PER_THREAD`` per thread wait, the rest are refused at
once (a flood from many fresh addresses is then answered quickly instead of
queueing hashes nobody waits for any more).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import getpass
import hashlib
import hmac
import logging
import secrets
import sys
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

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


MOSQUITTO_ITERATIONS = 210_000  # OWASP 2023 guidance for PBKDF2-HMAC-SHA512 (mosquitto_passwd writes 101)
MAX_ITERATIONS = 100_000_000  # a larger count in a file is refused: one login would take minutes


def hash_mosquitto(password: str | bytes, *, iterations: int = MOSQUITTO_ITERATIONS,
                   salt: bytes | None = None) -> str:
    """A mosquitto ``$7$<iterations>$<salt>$<hash>`` string (PBKDF2-HMAC-SHA512, 12-byte random salt)."""
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise ValueError(f"iterations must be between 1 and {MAX_ITERATIONS}")
    salt = secrets.token_bytes(12) if salt is None else salt
    pw = password.encode("utf-8") if isinstance(password, str) else password
    dk = hashlib.pbkdf2_hmac("sha512", pw, salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode('ascii')}${base64.b64encode(dk).decode('ascii')}"


def parse_mosquitto_hash(encoded: str) -> tuple[int, bytes, bytes]:
    """``(iterations, salt, digest)`` of a ``$7$`` hash, iterations 0 for a ``$6$`` one; ValueError if not one."""
    parts = encoded.split("$")
    try:
        if len(parts) == 5 and parts[:2] == ["", "7"]:
            iterations = int(parts[2], 10)
            salt, digest = base64.b64decode(parts[3], validate=True), base64.b64decode(parts[4], validate=True)
            if not 1 <= iterations <= MAX_ITERATIONS:
                raise ValueError(f"iterations must be between 1 and {MAX_ITERATIONS}")
        elif len(parts) == 4 and parts[:2] == ["", "6"]:
            iterations = 0
            salt, digest = base64.b64decode(parts[2], validate=True), base64.b64decode(parts[3], validate=True)
        else:
            raise ValueError("not a mosquitto $7$<iterations>$<salt>$<hash> or $6$<salt>$<hash> string")
    except (ValueError, TypeError) as exc:  # binascii.Error is a ValueError
        raise ValueError(str(exc)) from None
    if not salt or len(digest) != 64:
        raise ValueError("empty salt or a hash that is not 64 bytes (SHA-512)")
    return iterations, salt, digest


def check_hash(encoded: str) -> None:
    """Raise ValueError unless ``encoded`` is a hash of a supported format (``pbkdf2_sha256$``, ``$7$``, ``$6$``)."""
    if encoded.startswith("$"):
        parse_mosquitto_hash(encoded)
        return
    try:
        parse_hash(encoded)
    except ValueError as exc:
        raise ValueError(f"{exc} (nor a mosquitto_passwd $7$/$6$ hash)") from None


def verify_password(password: str | bytes, encoded: str) -> bool:
    """True if ``password`` matches ``encoded`` (False for a malformed hash; never raises on input)."""
    pw = password.encode("utf-8") if isinstance(password, str) else password
    if encoded.startswith("$"):
        try:
            rounds, salt_bytes, digest = parse_mosquitto_hash(encoded)
        except ValueError:
            return False
        if rounds:
            dk = hashlib.pbkdf2_hmac("sha512", pw, salt_bytes, rounds)
        else:
            dk = hashlib.sha512(pw + salt_bytes).digest()
        return hmac.compare_digest(dk, digest)
    try:
        iterations, salt, digest = parse_hash(encoded)
    except ValueError:
        return False
    dk = hashlib.pbkdf2_hmac("sha256", pw, salt.encode("utf-8"), iterations, dklen=len(digest))
    return hmac.compare_digest(dk, digest)


log = logging.getLogger("tidemq.auth")

DEFAULT_THREADS = 1
PER_SOURCE_INFLIGHT = 2  # verifications of one address under way at once
WAITING_PER_THREAD = 8  # verifications that may wait per thread; more are refused at once (the wait stays
# within a few hashes: a client waiting longer would have given up, and its hash would be wasted work)
DEFAULT_FAIL_THRESHOLD = 5
DEFAULT_BACKOFF_MAX = 60.0
BACKOFF_FIRST = 1.0
MAX_SOURCES = 10000


def source_of(address: str) -> str:
    """The host part of a ``host:port`` peer address (``::1:5000`` -> ``::1``); ``address`` if no port."""
    host, sep, port = address.rpartition(":")
    return host.strip("[]") if sep and port.isdigit() and host else address


@dataclass(slots=True)
class _Source:
    failures: int = 0
    until: float = 0.0  # refused before this time
    last: float = 0.0  # time of the last failure
    inflight: int = 0  # verifications under way


class FailureBackoff:
    """Wrong passwords per source address, and how long each address is refused (see module doc)."""

    def __init__(self, *, threshold: int = DEFAULT_FAIL_THRESHOLD, backoff_max: float = DEFAULT_BACKOFF_MAX,
                 max_entries: int = MAX_SOURCES, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.backoff_max = backoff_max
        self.max_entries = max_entries
        self.clock = clock
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self.refused = 0  # attempts refused without verifying

    def wait(self, source: str) -> float:
        """Seconds ``source`` is still refused for (0.0: verify its password)."""
        if self.threshold <= 0 or not source:
            return 0.0
        entry = self._sources.get(source)
        if entry is None:
            return 0.0
        now = self.clock()
        if now - entry.last >= self.backoff_max:  # quiet long enough: forgotten
            del self._sources[source]
            return 0.0
        return max(0.0, entry.until - now)

    def begin(self, source: str) -> bool:
        """A verification of ``source`` may start (counted until ``end``): not backing off, not too many
        under way, and failures plus those under way below the threshold."""
        if self.threshold <= 0 or not source:
            return True
        if self.wait(source) > 0.0:
            return False
        entry = self._sources.get(source)
        if entry is None:
            entry = self._sources[source] = _Source(last=self.clock())
            while len(self._sources) > self.max_entries:
                self._sources.popitem(last=False)
        if entry.inflight >= PER_SOURCE_INFLIGHT or entry.failures + entry.inflight >= self.threshold:
            return False
        entry.inflight += 1
        return True

    def end(self, source: str) -> None:
        entry = self._sources.get(source)
        if entry is not None and entry.inflight > 0:
            entry.inflight -= 1

    def suspect(self, source: str) -> bool:
        """``source`` failed recently (its verifications wait behind those of clean addresses)."""
        entry = self._sources.get(source)
        return entry is not None and entry.failures > 0

    def failure(self, source: str) -> float:
        """Record a wrong password from ``source``; returns the back-off it starts (0.0: none yet)."""
        if self.threshold <= 0 or not source:
            return 0.0
        now = self.clock()
        entry = self._sources.pop(source, None)
        if entry is None or now - entry.last >= self.backoff_max:
            entry = _Source(inflight=entry.inflight if entry is not None else 0)
        self._sources[source] = entry  # most recent last
        while len(self._sources) > self.max_entries:
            self._sources.popitem(last=False)
        entry.failures += 1
        entry.last = now
        over = entry.failures - self.threshold
        if over < 0:
            return 0.0
        delay = min(self.backoff_max, BACKOFF_FIRST * 2.0 ** min(over, 32))
        entry.until = now + delay
        return delay

    def success(self, source: str) -> None:
        entry = self._sources.get(source)
        if entry is not None and entry.inflight:
            entry.failures, entry.until = 0, 0.0
        else:
            self._sources.pop(source, None)

    def __len__(self) -> int:
        return len(self._sources)


class VerifierBusy(Exception):
    """Too many verifications wait already: the client is told the server is busy (not that its password
    is wrong), and may retry."""


class _Slots:
    """At most ``n`` verifications at once on one event loop; waiters without failures go first."""

    def __init__(self, n: int) -> None:
        self.free = n
        self._clean: deque[asyncio.Future[None]] = deque()
        self._suspect: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._clean) + len(self._suspect)

    async def acquire(self, suspect: bool) -> None:
        if self.free > 0 and not self.waiting:
            self.free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (self._suspect if suspect else self._clean).append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # it was handed the slot as it was cancelled: pass it on
            raise

    def release(self) -> None:
        for queue in (self._clean, self._suspect):
            while queue:
                fut = queue.popleft()
                if not fut.done():
                    fut.set_result(None)
                    return
        self.free += 1


_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Slots] = weakref.WeakKeyDictionary()
_threads = DEFAULT_THREADS
_pool: ThreadPoolExecutor | None = None
backoff = FailureBackoff()


def configure(*, threads: int = DEFAULT_THREADS, fail_threshold: int = DEFAULT_FAIL_THRESHOLD,
              backoff_max: float = DEFAULT_BACKOFF_MAX) -> None:
    """Size the verification pool and set the back-off (per process; the CLI calls it from Settings)."""
    global _threads, _pool, backoff
    if threads < 1:
        raise ValueError("TIDEMQ_AUTH_VERIFY_THREADS must be >= 1")
    old, _pool = _pool, None
    if old is not None:
        old.shutdown(wait=False)
    _threads = threads
    _slots.clear()
    backoff = FailureBackoff(threshold=fail_threshold, backoff_max=backoff_max)


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_threads, thread_name_prefix="tidemq-passwd")
    return _pool


async def verify_off_loop(password: str | bytes, encoded: str, *, source: str = "",
                          verify: Callable[[str | bytes, str], bool] = verify_password) -> bool:
    """``verify(password, encoded)`` on the bounded pool; False at once while ``source`` backs off.

    ``source`` is the client's address (``host`` or ``host:port``); empty: no back-off.
    """
    src = source_of(source) if source else ""
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = _Slots(_threads)
    if slots.waiting >= WAITING_PER_THREAD * _threads:
        backoff.refused += 1
        raise VerifierBusy("password verification queue full")
    if src and not backoff.begin(src):
        backoff.refused += 1
        return False
    try:
        await slots.acquire(bool(src) and backoff.suspect(src))
        try:
            ok = await loop.run_in_executor(_executor(), verify, password, encoded)
        finally:
            slots.release()
    finally:
        if src:
            backoff.end(src)
    if src:
        if ok:
            backoff.success(src)
        else:
            delay = backoff.failure(src)
            if delay:
                log.warning("wrong passwords from %s: refused without checking for %.0fs", src, delay,
                            extra={"event": "auth_backoff", "address": src})
    return ok


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
