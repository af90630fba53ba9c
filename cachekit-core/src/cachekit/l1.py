"""The in-process L1: a bounded LRU of serialized values with monotonic expiry.

One :class:`L1Cache` per decorated function, each bounded by entries and bytes,
plus a process-wide byte budget (``CACHEKIT_L1_MAX_SIZE_MB``) shared by all of
them. Values are stored *serialized* (the same bytes that go to L2), so every hit
deserializes a fresh copy: a caller that mutates a returned dict or list never
changes what the next caller gets. Immutable scalars (int, float, str, bytes,
bool, None) are stored as themselves and returned as is.

Thread safety: a hit is one ``dict.get``, a monotonic clock read and an
``OrderedDict.move_to_end`` - each atomic under the GIL - and takes no lock.
Writes, evictions and clears take the cache's own lock; the global budget has a
lock of its own, never held together with a cache's lock.

After ``fork()`` the child starts with every L1 empty (the parent's entries could
be stale by the time the child reads them, and its locks may be held).

This module imports only cachekit.errors.
"""

from __future__ import annotations

import os
import weakref
from _thread import allocate_lock
from collections import OrderedDict
from sys import getsizeof
from time import monotonic

from cachekit.errors import ConfigurationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Hashable
    from typing import Any

__all__ = [
    "IMMUTABLE_TYPES",
    "L1Budget",
    "L1Cache",
    "budget",
    "charged",
    "entry_size",
    "max_bytes_from_env",
]

#: Values of these exact types are kept as objects, not bytes: nobody can mutate them.
IMMUTABLE_TYPES = frozenset({int, float, str, bytes, bool, type(None), complex})

# Rough per-entry overhead (dict slot, key tuple, entry tuple) so that millions of
# tiny entries still count against the byte budget.
_ENTRY_OVERHEAD = 120

# An entry: (expires_at, loads_or_None, value). ``loads`` is None when the value is an
# immutable object returned as is. The hit path reads only these three. The bytes
# charged to the budget are entry_size(value), worked out again when the entry leaves
# (a size object would cost every entry 8-36 B): only a value whose size could change,
# or one stored with an explicit size, carries it as a fourth item.
if TYPE_CHECKING:
    Entry = (
        tuple[float, Callable[[bytes], Any] | None, Any]
        | tuple[float, Callable[[bytes], Any] | None, Any, int]
    )

#: Values whose entry_size never changes: their entries need not record it.
_FIXED_SIZE = IMMUTABLE_TYPES | {bytes}


def entry_size(value: Any) -> int:
    """Bytes charged to the budget for one stored value."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value) + _ENTRY_OVERHEAD
    return _deep_size(value) + _ENTRY_OVERHEAD


_NESTED = (dict, list)


def _deep_size(value: Any) -> int:
    """The size of a value with its items: a copy template (cachekit._engine.clone) is a
    small dict or list of scalars and flat containers, so this walk stays short."""
    size = getsizeof(value)
    t = type(value)
    if t is dict:
        for k, v in value.items():
            # A scalar is its own size: no call of this function for it (every miss
            # and eviction of such a template walks it).
            size += getsizeof(k) + (_deep_size(v) if type(v) in _NESTED else getsizeof(v))
    elif t is list:
        for v in value:
            size += _deep_size(v) if type(v) in _NESTED else getsizeof(v)
    return size


def charged(entry: Entry) -> int:
    """Bytes an entry of :attr:`L1Cache.data` is charged to the budget."""
    if len(entry) == 4:
        return entry[3]
    return entry_size(entry[2])


class L1Budget:
    """The process-wide byte budget shared by every L1 cache."""

    def __init__(self, max_bytes: int | None = None) -> None:
        self._lock = allocate_lock()
        self._max_bytes = max_bytes
        self._used = 0
        self.caches: weakref.WeakSet[L1Cache] = weakref.WeakSet()
        # Bytes of caches that were garbage-collected. Appended from __del__ without
        # the lock (list.append is atomic), settled by add() under the lock.
        self.refunds: list[int] = []

    @property
    def max_bytes(self) -> int:
        if self._max_bytes is None:
            self._max_bytes = max_bytes_from_env()
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        self._max_bytes = value

    def add(self, delta: int) -> int:
        """Charge (or refund) ``delta`` bytes; return the excess over the budget."""
        with self._lock:
            while self.refunds:
                delta -= self.refunds.pop()
            self._used += delta
            return self._used - self.max_bytes

    @property
    def used(self) -> int:
        """Bytes charged to the budget by every live L1 cache."""
        self.add(0)
        return self._used

    def reclaim(self, excess: int, exclude: L1Cache | None = None) -> None:
        """Evict least recently used entries from other caches until ``excess`` is paid."""
        with self._lock:  # a snapshot: iterating the WeakSet races with new caches
            caches = list(self.caches)
        for cache in sorted(caches, key=lambda c: c.nbytes, reverse=True):
            if excess <= 0:
                return
            if cache is not exclude:
                excess -= cache.evict_bytes(excess)


def max_bytes_from_env() -> int:
    raw = os.environ.get("CACHEKIT_L1_MAX_SIZE_MB", "").strip()
    if not raw:
        return 100 * 1024 * 1024
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not mb > 0:
        raise ConfigurationError(
            f"CACHEKIT_L1_MAX_SIZE_MB={raw!r} is not a positive number of megabytes "
            "(for example CACHEKIT_L1_MAX_SIZE_MB=64)."
        )
    return int(mb * 1024 * 1024)


budget = L1Budget()


class L1Cache:
    """One function's L1: LRU bounded by ``max_entries`` and ``max_bytes``.

    The decorator reads ``data`` directly on the hit path; everything that
    changes the cache goes through the methods below.
    """

    __slots__ = ("__weakref__", "_lock", "data", "max_bytes", "max_entries", "name", "nbytes")

    def __init__(
        self, max_entries: int = 10_000, max_bytes: int | None = None, name: str = ""
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.data: OrderedDict[Hashable, Entry] = OrderedDict()
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.name = name
        self._lock = allocate_lock()
        with budget._lock:
            budget.caches.add(self)

    def __len__(self) -> int:
        return len(self.data)

    def __del__(self) -> None:
        # A decorated function that is garbage-collected gives its bytes back.
        nbytes = getattr(self, "nbytes", 0)  # __init__ may have failed half-way
        if nbytes:
            budget.refunds.append(nbytes)

    def __repr__(self) -> str:
        return f"L1Cache({self.name!r}, entries={len(self.data)}, bytes={self.nbytes})"

    def get(self, key: Hashable) -> Any:
        """Return a fresh copy of the value, or raise KeyError (miss or expired)."""
        entry = self.data.get(key)
        if entry is None or entry[0] <= monotonic():
            raise KeyError(key)
        try:
            self.data.move_to_end(key)
        except KeyError:
            pass
        loads = entry[1]
        return entry[2] if loads is None else loads(entry[2])

    def put(
        self,
        key: Hashable,
        value: Any,
        loads: Callable[[bytes], Any] | None,
        ttl: float | None,
        size: int | None = None,
    ) -> None:
        """Store ``value`` (serialized bytes with their ``loads``, or an immutable object)."""
        # A value kept with its ``loads`` (bytes, or a copy template nobody else holds)
        # never changes size either.
        fixed = size is None and (loads is not None or type(value) in _FIXED_SIZE)
        if size is None:
            size = entry_size(value)
        expires = monotonic() + ttl if ttl is not None else float("inf")
        limit = self.max_bytes
        if limit is not None and size > limit:
            return  # larger than the whole cache: not worth evicting everything
        freed = 0
        data = self.data
        entry: Entry = (expires, loads, value) if fixed else (expires, loads, value, size)
        with self._lock:
            old = data.pop(key, None)
            if old is not None:
                freed += charged(old)
            data[key] = entry
            self.nbytes += size - freed
            while len(data) > self.max_entries or (limit is not None and self.nbytes > limit):
                _, evicted = data.popitem(last=False)
                evicted_size = charged(evicted)
                self.nbytes -= evicted_size
                freed += evicted_size
        excess = budget.add(size - freed)
        if excess > 0:
            excess -= self.evict_bytes(excess, keep=key)
            if excess > 0:
                budget.reclaim(excess, exclude=self)

    def evict_bytes(self, amount: int, keep: Hashable = None) -> int:
        """Evict LRU entries until ``amount`` bytes are freed; return bytes freed."""
        freed = 0
        data = self.data
        with self._lock:
            # popitem() is one atomic C call: a concurrent hit's move_to_end cannot
            # invalidate it the way it would invalidate an iterator.
            while freed < amount and data:
                key, entry = data.popitem(last=False)
                if key == keep:
                    data[key] = entry  # back in, as the most recent entry
                    if len(data) == 1:
                        break
                    continue
                freed += charged(entry)
            self.nbytes -= freed
        if freed:
            budget.add(-freed)
        return freed

    def pop(self, key: Hashable) -> bool:
        with self._lock:
            entry = self.data.pop(key, None)
            if entry is None:
                return False
            size = charged(entry)
            self.nbytes -= size
        budget.add(-size)
        return True

    def clear(self) -> int:
        with self._lock:
            n = len(self.data)
            freed = self.nbytes
            self.data.clear()
            self.nbytes = 0
        if freed:
            budget.add(-freed)
        return n

    def purge_expired(self) -> int:
        """Drop expired entries (the hit path ignores them; this frees their memory)."""
        now = monotonic()
        with self._lock:
            # list() copies in one step; iterating the live dict races with hits.
            dead = [k for k, e in list(self.data.items()) if e[0] <= now]
        return sum(self.pop(k) for k in dead)

    def _after_fork(self) -> None:
        self._lock = allocate_lock()
        self.data.clear()
        self.nbytes = 0


def _reset_after_fork() -> None:
    budget._lock = allocate_lock()
    budget._used = 0
    budget.refunds.clear()
    for cache in list(budget.caches):
        cache._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
