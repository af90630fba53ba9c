"""An in-process backend: a dict of envelopes with expiry, behind the Backend protocol.

Useful for tests, for single-process services that want envelope semantics, and
as the reference implementation of the protocol (it passes the conformance suites
in :mod:`cachekit.testing`). ``memory://`` URLs select it; two URLs with the same
name (``memory://shared``) share one store inside the process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from time import monotonic
from typing import Any
from urllib.parse import urlsplit

from cachekit.constants import CAP_ATOMIC_MISS, TOMBSTONE_PREFIX
from cachekit.errors import ConfigurationError
from cachekit.protocols import (
    CAP_GUARDED_WRITES,
    CAP_INVALIDATION,
    CAP_LOCKING,
    CAP_NONBLOCKING,
    CAP_TRUSTED,
    CAP_TTL,
    MISSING,
    Missing,
)

__all__ = ["AsyncMemoryBackend", "MemoryBackend", "from_url"]

_INF = float("inf")


class _Store:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: dict[str, tuple[bytes, float]] = {}
        self.locks: dict[str, tuple[str, float]] = {}  # key -> (token, expires)
        self.coherence = MemoryCoherence()


class MemoryCoherence:
    """Generations and change notifications for a memory store (see protocols.Coherence).

    Notifications are delivered synchronously, in the writing thread, to every
    listener: two decorated functions sharing ``memory://name`` in one process stay
    coherent exactly like two processes sharing Redis.
    """

    healthy = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}
        self._listeners: list[Callable[[Sequence[str] | None], None]] = []

    def generations(self, keys: Sequence[str]) -> list[int]:
        with self._lock:
            return [self._counters.get(k, 0) for k in keys]

    def bump(self, key: str) -> int:
        with self._lock:
            value = self._counters[key] = self._counters.get(key, 0) + 1
        self.notify([key])
        return value

    def raise_to(self, key: str, value: int) -> int:
        with self._lock:
            current = self._counters.get(key, 0)
            if current >= value:
                return current
            self._counters[key] = value
        self.notify([key])
        return value

    def listen(self, callback: Callable[[Sequence[str] | None], None]) -> None:
        with self._lock:
            self._listeners.append(callback)

    def notify(self, keys: Sequence[str] | None) -> None:
        if keys is not None:
            keys = [k for k in keys if k.startswith("cachekit:")]
            if not keys:
                return
        for listener in list(self._listeners):
            listener(keys)


_named_stores: dict[str, _Store] = {}
_named_lock = threading.Lock()


def _check_key(key: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f"backend keys are str, got {type(key).__name__}")
    return key


def _check_value(value: bytes) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"backend values are bytes, got {type(value).__name__}")
    return bytes(value)


def _expiry(ttl: float | None) -> float:
    if ttl is None:
        return _INF
    if ttl <= 0:
        return 0.0  # already expired: set() with ttl<=0 stores nothing readable
    return monotonic() + ttl


_CAPABILITIES = frozenset(
    {
        CAP_TTL,
        CAP_NONBLOCKING,
        CAP_TRUSTED,
        CAP_INVALIDATION,
        CAP_LOCKING,
        CAP_GUARDED_WRITES,
        CAP_ATOMIC_MISS,
    }
)


def _fingerprint(value: bytes | Missing) -> str:
    """What ``set_guarded`` compares: "" for nothing, else the SHA-1 hex digest."""
    if not isinstance(value, bytes):
        return ""
    import hashlib

    return hashlib.sha1(value, usedforsecurity=False).hexdigest()


class MemoryBackend:
    """Thread-safe in-process store. ``max_entries`` bounds it (oldest writes go first)."""

    capabilities = _CAPABILITIES

    def __init__(self, name: str | None = None, *, max_entries: int = 100_000) -> None:
        if name:
            with _named_lock:
                self._store = _named_stores.setdefault(name, _Store())
        else:
            self._store = _Store()
        self.name = name or ""
        self.max_entries = max_entries
        self.endpoint = f"memory://{self.name}" if self.name else f"memory://@{id(self):x}"

    def __repr__(self) -> str:
        return f"MemoryBackend({self.endpoint!r}, entries={len(self._store.items)})"

    def _live(self, key: str, now: float) -> bytes | Missing:
        item = self._store.items.get(key)
        if item is None:
            return MISSING
        if item[1] <= now:
            self._store.items.pop(key, None)
            return MISSING
        return item[0]

    def get(self, key: str) -> bytes | Missing:
        _check_key(key)
        with self._store.lock:
            return self._live(key, monotonic())

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self.set_many({key: value}, ttl)

    def set_guarded(self, key: str, value: bytes, ttl: float | None, seen: str) -> bool:
        """Store only while ``key`` holds what a miss saw (see protocols.Backend)."""
        _check_key(key)
        with self._store.lock:
            if _fingerprint(self._live(key, monotonic())) != seen:
                return False
            self._store.items.pop(key, None)
            self._store.items[key] = (_check_value(value), _expiry(ttl))
        self._store.coherence.notify([key])
        return True

    def tombstone(self, key: str, ttl: float | None) -> bool:
        """Replace ``key`` with a fresh tombstone; True when it held a value."""
        import os

        _check_key(key)
        with self._store.lock:
            old = self._live(key, monotonic())
            self._store.items.pop(key, None)
            self._store.items[key] = (TOMBSTONE_PREFIX + os.urandom(8).hex().encode(), _expiry(ttl))
        self._store.coherence.notify([key])
        return isinstance(old, bytes) and not old.startswith(TOMBSTONE_PREFIX)

    def delete(self, key: str) -> bool:
        _check_key(key)
        with self._store.lock:
            item = self._store.items.pop(key, None)
        if item is not None:
            self._store.coherence.notify([key])
        return item is not None and item[1] > monotonic()

    def get_many(self, keys: Sequence[str]) -> list[bytes | Missing]:
        now = monotonic()
        with self._store.lock:
            return [self._live(_check_key(k), now) for k in keys]

    def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        checked = {_check_key(k): _check_value(v) for k, v in items.items()}
        expires = _expiry(ttl)
        store = self._store
        with store.lock:
            for k, v in checked.items():
                store.items.pop(k, None)
                store.items[k] = (v, expires)
            evicted = []
            while len(store.items) > self.max_entries:
                oldest = next(iter(store.items))
                del store.items[oldest]
                evicted.append(oldest)
        store.coherence.notify([*checked, *evicted])

    def delete_many(self, keys: Iterable[str]) -> int:
        return sum(self.delete(k) for k in keys)

    def clear(self, prefix: str = "") -> int:
        with self._store.lock:
            doomed = [k for k in self._store.items if k.startswith(prefix)]
            for k in doomed:
                del self._store.items[k]
        if doomed:
            self._store.coherence.notify(doomed)
        return len(doomed)

    def ttl(self, key: str) -> float | Missing | None:
        """Seconds left, ``None`` for no expiry, MISSING when absent."""
        with self._store.lock:
            item = self._store.items.get(_check_key(key))
        if item is None:
            return MISSING
        if item[1] == _INF:
            return None
        left = item[1] - monotonic()
        return left if left > 0 else MISSING

    def ping(self) -> bool:
        return True

    def health(self) -> dict[str, Any]:
        return {
            "backend": "memory",
            "endpoint": self.endpoint,
            "healthy": True,
            "entries": len(self._store.items),
        }

    def close(self) -> None:
        """Nothing to release; the store stays readable (like a connection pool)."""

    def coherence(self) -> MemoryCoherence:
        """Generations and change notifications of this store (capability "invalidation")."""
        return self._store.coherence

    def acquire_lock(self, key: str, token: str, lease: float) -> bool:
        """Take ``key`` for ``lease`` seconds unless someone holds it (capability "locking")."""
        now = monotonic()
        with self._store.lock:
            held = self._store.locks.get(key)
            if held is not None and held[1] > now:
                return False
            self._store.locks[key] = (token, now + lease)
            return True

    def release_lock(self, key: str, token: str) -> bool:
        """Release ``key`` if ``token`` still holds it."""
        with self._store.lock:
            return self._unlock(key, token)

    def _unlock(self, key: str, token: str) -> bool:
        held = self._store.locks.get(key)
        if held is None or held[0] != token:
            return False
        del self._store.locks[key]
        return True

    def get_or_lock(
        self, key: str, lock_key: str, token: str, lease_ms: int
    ) -> tuple[bytes | None, bool]:
        """The value of ``key``, or take ``lock_key`` (capability "atomic_miss").

        A tombstone is no value: it is returned (for a guarded store) with whether
        the lock was taken.
        """
        _check_key(key)
        now = monotonic()
        with self._store.lock:
            value = self._live(key, now)
            if isinstance(value, bytes) and not value.startswith(TOMBSTONE_PREFIX):
                return value, False
            found = value if isinstance(value, bytes) else None
            held = self._store.locks.get(lock_key)
            if held is not None and held[1] > now:
                return found, False
            self._store.locks[lock_key] = (token, now + max(1, int(lease_ms)) / 1000)
            return found, True

    def set_and_unlock(
        self, key: str, value: bytes, ttl: float | None, lock_key: str, token: str, seen: str | None
    ) -> bool:
        """Store (guarded like set_guarded when ``seen`` is not None), release the lock."""
        _check_key(key)
        value = _check_value(value)
        with self._store.lock:
            stored = seen is None or _fingerprint(self._live(key, monotonic())) == seen
            if stored:
                self._store.items.pop(key, None)
                self._store.items[key] = (value, _expiry(ttl))
            self._unlock(lock_key, token)
        if stored:
            self._store.coherence.notify([key])
        return stored

    def to_async(self) -> AsyncMemoryBackend:
        return AsyncMemoryBackend(self)


class AsyncMemoryBackend:
    """The async face of a :class:`MemoryBackend` (same store)."""

    capabilities = _CAPABILITIES

    def __init__(self, sync: MemoryBackend | None = None, *, name: str | None = None) -> None:
        self.sync = sync if sync is not None else MemoryBackend(name)
        self.endpoint = self.sync.endpoint

    def __repr__(self) -> str:
        return f"AsyncMemoryBackend({self.endpoint!r})"

    async def get(self, key: str) -> bytes | Missing:
        return self.sync.get(key)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self.sync.set(key, value, ttl)

    async def set_guarded(self, key: str, value: bytes, ttl: float | None, seen: str) -> bool:
        return self.sync.set_guarded(key, value, ttl, seen)

    async def tombstone(self, key: str, ttl: float | None) -> bool:
        return self.sync.tombstone(key, ttl)

    async def delete(self, key: str) -> bool:
        return self.sync.delete(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | Missing]:
        return self.sync.get_many(keys)

    async def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        self.sync.set_many(items, ttl)

    async def delete_many(self, keys: Iterable[str]) -> int:
        return self.sync.delete_many(keys)

    async def clear(self, prefix: str = "") -> int:
        return self.sync.clear(prefix)

    async def ttl(self, key: str) -> float | Missing | None:
        return self.sync.ttl(key)

    async def ping(self) -> bool:
        return True

    async def health(self) -> dict[str, Any]:
        return self.sync.health()

    def coherence(self) -> MemoryCoherence:
        return self.sync.coherence()

    async def acquire_lock(self, key: str, token: str, lease: float) -> bool:
        return self.sync.acquire_lock(key, token, lease)

    async def release_lock(self, key: str, token: str) -> bool:
        return self.sync.release_lock(key, token)

    async def get_or_lock(
        self, key: str, lock_key: str, token: str, lease_ms: int
    ) -> tuple[bytes | None, bool]:
        return self.sync.get_or_lock(key, lock_key, token, lease_ms)

    async def set_and_unlock(
        self, key: str, value: bytes, ttl: float | None, lock_key: str, token: str, seen: str | None
    ) -> bool:
        return self.sync.set_and_unlock(key, value, ttl, lock_key, token, seen)

    async def close(self) -> None:
        self.sync.close()


def from_url(url: str, **options: Any) -> MemoryBackend:
    """``memory://`` (a private store) or ``memory://NAME`` (shared by NAME in-process)."""
    parts = urlsplit(url)
    if parts.scheme != "memory":
        raise ConfigurationError(f"not a memory:// URL: {url!r}")
    name = (parts.netloc + parts.path).strip("/") or None
    unknown = set(options) - {"max_entries"}
    if unknown:
        raise ConfigurationError(
            f"memory backend does not take option(s) {sorted(unknown)}; it accepts max_entries."
        )
    return MemoryBackend(name, **options)
