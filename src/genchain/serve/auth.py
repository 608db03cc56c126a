"""API keys, per-key rate limits and the web page's local session.

A key is 32 random bytes (``gc-`` + URL-safe base64), shown once when it is made; the database keeps only its
SHA-256, so a stolen database file grants nothing. Each key carries a rate like ``60/min``, enforced by a token
bucket per key in this process (capacity = the rate's count, refilled continuously): bursts up to the limit pass,
and a client over it gets 429 with the seconds until its next token. The web page served at ``/`` gets an HttpOnly
session cookie instead of a key (a local user: whoever can load the page may use it); sessions live in memory and
end with the process.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass

from genchain.errors import ConfigError

KEY_PREFIX = "gc-"
SESSION_COOKIE = "genchain_session"
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def new_key() -> tuple[str, str, str]:
    """(the key to show once, its public id, its SHA-256 for the database)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, secrets.token_hex(4), hash_key(key)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_rate(text: str) -> tuple[int, float]:
    """``"60/min"`` -> (60 requests, per 60.0 seconds)."""
    found = _RATE.match(text)
    if not found or int(found.group(1)) < 1:
        raise ConfigError(f"--rate {text!r} is not a rate; write COUNT/UNIT, like 60/min, 5/s or 1000/hour")
    return int(found.group(1)), float(_UNIT_SECONDS[found.group(2)])


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key (its public id), the web page's session, or anyone (``--no-auth``)."""

    id: str
    kind: str  # key, session, anonymous
    rate: str | None = None


class RateLimiter:
    """One token bucket per principal; :meth:`acquire` returns 0 when allowed, else the seconds to wait."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # id -> (tokens, last refill time)
        self._lock = threading.Lock()

    def acquire(self, principal: str, rate: str) -> float:
        capacity, period = parse_rate(rate)
        per_second = capacity / period
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(principal, (float(capacity), now))
            tokens = min(float(capacity), tokens + (now - last) * per_second)
            if tokens >= 1.0:
                self._buckets[principal] = (tokens - 1.0, now)
                return 0.0
            self._buckets[principal] = (tokens, now)
            return (1.0 - tokens) / per_second


class Sessions:
    """Random session tokens handed to the web page; valid until the server stops."""

    def __init__(self) -> None:
        self._tokens: set[str] = set()
        self._lock = threading.Lock()

    def new(self) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens.add(token)
        return token

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        with self._lock:
            return token in self._tokens


class KeyCache:
    """Key lookups remembered for a few seconds, so a busy client costs no query per request; a revocation
    (``genchain apikey revoke``, another process) is seen within ``ttl`` seconds."""

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> tuple[bool, Principal | None]:
        with self._lock:
            found = self._entries.get(digest)
        if found is None or time.monotonic() - found[0] > self.ttl:
            return False, None
        return True, found[1]

    def put(self, digest: str, principal: Principal | None) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = (time.monotonic(), principal)
