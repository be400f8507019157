"""API token format, hashing and the in-process verification cache.

A token reads ``keel_<id>_<secret>``: ``id`` (16 hex characters) is public
and is how the token is looked up, so verification costs one argon2 check,
never a scan over hashes; ``secret`` (43 url-safe characters, 256 bits from
:mod:`secrets`) is stored only as an argon2id hash.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from keel.auth.models import Principal

__all__ = ["TOKEN_PREFIX", "VerifiedCache", "hash_secret", "new_token", "split_token", "verify"]

TOKEN_PREFIX = "keel_"
_TOKEN = re.compile(r"^keel_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
# argon2id with OWASP's minimum profile (19 MiB, 2 passes, 1 lane): tens of ms per
# check. The secret has 256 random bits, so the slow hash guards a stolen database,
# not a guessable password; argon2-cffi's default (64 MiB, 4 lanes) took 0.5 s here.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


def new_token() -> tuple[str, str, str]:
    """A fresh ``(token, id, secret)``."""
    token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    return f"{TOKEN_PREFIX}{token_id}_{secret}", token_id, secret


def split_token(token: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed token, else None."""
    match = _TOKEN.match(token)
    return (match.group(1), match.group(2)) if match else None


def hash_secret(secret: str) -> str:
    """The argon2id hash stored for a token secret."""
    return _HASHER.hash(secret)


def verify(secret_hash: str, secret: str) -> bool:
    """True when ``secret`` matches ``secret_hash`` (constant-time inside argon2)."""
    try:
        return _HASHER.verify(secret_hash, secret)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal
    valid_until: float  # monotonic seconds: min(cache TTL, token expiry)


class VerifiedCache:
    """Successful verifications for ``ttl_s`` seconds, keyed by sha256 of the whole token.

    Keyed by a fast hash so a hit costs microseconds and the cache never holds a
    usable secret. Entries are dropped here on revocation or user changes; other
    processes keep theirs until the TTL ends (the documented revocation lag).
    """

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[bytes, _Entry] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(token: str) -> bytes:
        """The cache key of a token."""
        return hashlib.sha256(token.encode()).digest()

    def get(self, key: bytes) -> Principal | None:
        """The cached principal, or None when absent or stale."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.valid_until < time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry.principal

    def put(self, key: bytes, principal: Principal, expires_in_s: float | None) -> None:
        """Remember a verified token until the TTL or its own expiry, whichever is first."""
        if self.ttl_s <= 0:
            return
        ttl = self.ttl_s if expires_in_s is None else min(self.ttl_s, expires_in_s)
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # bounded memory; a flood of tokens only costs re-checks
            self._entries[key] = _Entry(principal, time.monotonic() + ttl)

    def drop(self, token_id: str | None = None, user: str | None = None) -> None:
        """Forget entries of one token, of one user, or (no arguments) all of them."""
        with self._lock:
            if token_id is None and user is None:
                self._entries.clear()
                return
            stale = [
                k
                for k, e in self._entries.items()
                if e.principal.token_id == token_id or e.principal.name == user
            ]
            for k in stale:
                del self._entries[k]
