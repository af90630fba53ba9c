"""A dict-backed store that speaks cachekit's Backend protocol.

It keeps ``key -> (value, expires_at)`` in a plain dict guarded by a lock. Stores
are shared by name inside the process: ``example://users`` in two places is one
store. Expiry uses the monotonic clock and is applied lazily, on read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from cachekit.protocols import CAP_NONBLOCKING, CAP_TTL, MISSING, Missing

_NEVER = float("inf")
_stores: dict[str, dict[str, tuple[bytes, float]]] = {}
_lock = threading.RLock()


class DictBackend:
    # Declared, not guessed: ttl() exists, and no method ever blocks on I/O.
    capabilities = frozenset({CAP_TTL, CAP_NONBLOCKING})

    def __init__(self, name: str = "") -> None:
        with _lock:
            self._data = _stores.setdefault(name, {})
        self.endpoint = f"example://{name}"

    @classmethod
    def from_url(cls, url: str) -> DictBackend:
        """``example://NAME``; credentials in the URL are accepted and never shown."""
        parts = urlsplit(url)
        if parts.scheme != "example":
            raise ValueError(f"not an example:// URL: {parts.scheme}://...")
        return cls((parts.hostname or "") + parts.path.rstrip("/"))

    def __repr__(self) -> str:
        return f"DictBackend({self.endpoint!r})"

    def _read(self, key: str, now: float) -> bytes | Missing:
        item = self._data.get(key)
        if item is None:
            return MISSING
        if item[1] <= now:
            del self._data[key]
            return MISSING
        return item[0]

    def get(self, key: str) -> bytes | Missing:
        with _lock:
            return self._read(key, time.monotonic())

    def get_many(self, keys: Sequence[str]) -> list[bytes | Missing]:
        with _lock:
            now = time.monotonic()
            return [self._read(key, now) for key in keys]

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self.set_many({key: value}, ttl)

    def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        expires = _NEVER if ttl is None else time.monotonic() + ttl
        with _lock:
            for key, value in items.items():
                self._data[key] = (bytes(value), expires)

    def delete(self, key: str) -> bool:
        with _lock:
            present = self._read(key, time.monotonic()) is not MISSING
            self._data.pop(key, None)
        return present

    def delete_many(self, keys: Iterable[str]) -> int:
        return sum(self.delete(key) for key in keys)

    def clear(self, prefix: str) -> int:
        with _lock:
            doomed = [key for key in self._data if key.startswith(prefix)]
            for key in doomed:
                del self._data[key]
        return len(doomed)

    def ttl(self, key: str) -> float | Missing | None:
        with _lock:
            if self._read(key, time.monotonic()) is MISSING:
                return MISSING
            expires = self._data[key][1]
        return None if expires == _NEVER else max(expires - time.monotonic(), 1e-9)

    def ping(self) -> bool:
        return True

    def health(self) -> dict[str, Any]:
        with _lock:
            size = len(self._data)
        return {"backend": "example", "endpoint": self.endpoint, "healthy": True, "keys": size}

    def close(self) -> None:
        """Nothing to release: the store outlives this handle."""
