"""A dict-backed stand-in for a shared store (tests): no capabilities, so cachekit
treats it like Redis (pickle must be signed, no invalidation notices, no generations),
and it records the operations it was asked for."""

from __future__ import annotations

from cachekit.constants import MISSING


class DictBackend:
    """A shared-store stand-in: no CAP_TRUSTED, so it is treated like Redis."""

    capabilities = frozenset()

    def __init__(self, name="dict"):
        self.endpoint = f"dict://{name}"
        self.store: dict[str, bytes] = {}
        self.calls: list[str] = []

    def get(self, key):
        self.calls.append("get")
        return self.store.get(key, MISSING)

    def set(self, key, value, ttl=None):
        self.calls.append("set")
        self.store[key] = value

    def delete(self, key):
        self.calls.append("delete")
        return self.store.pop(key, None) is not None

    def clear(self, prefix=""):
        doomed = [k for k in self.store if k.startswith(prefix)]
        for k in doomed:
            del self.store[k]
        return len(doomed)

    def ping(self):
        return True
