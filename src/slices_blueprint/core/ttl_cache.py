"""A small in-process cache whose entries each expire at their own time."""

from __future__ import annotations

import hashlib
import time
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


def token_key(token: str) -> bytes:
    """The cache key of a bearer token: its SHA-256 (the token itself is never kept as a key)."""
    return hashlib.sha256(token.encode()).digest()


class TtlCache(Generic[K, V]):
    """At most ``max_entries`` values, each until its own wall-clock deadline; when full, the
    expired entries go first, then the oldest."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: dict[K, tuple[V, float]] = {}

    def get(self, key: K) -> V | None:
        """The value of ``key`` if it has not expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= time.time():
            del self._entries[key]
            return None
        return entry[0]

    def put(self, key: K, value: V, until: float) -> None:
        """Keep ``value`` until ``until`` (seconds since the epoch); a past deadline keeps nothing."""
        now = time.time()
        if until <= now:
            return
        if len(self._entries) >= self.max_entries:
            self._entries = {k: e for k, e in self._entries.items() if e[1] > now}
            while len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]
        self._entries[key] = (value, until)

    def clear(self) -> None:
        self._entries.clear()
