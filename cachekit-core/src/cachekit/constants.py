"""Constants shared by every layer: the MISSING sentinel and backend capability names.

Kept apart from :mod:`cachekit.protocols` so that the hot path does not import
``typing``. This module imports nothing.
"""

from __future__ import annotations

__all__ = [
    "CAP_ATOMIC_MISS",
    "CAP_GUARDED_WRITES",
    "CAP_INVALIDATION",
    "CAP_LOCKING",
    "CAP_NONBLOCKING",
    "CAP_TRUSTED",
    "CAP_TTL",
    "MISSING",
    "TOMBSTONE_PREFIX",
    "Missing",
]


class Missing:
    """Type of :data:`MISSING`: the single value meaning "no entry"."""

    __slots__ = ()
    _instance: Missing | None = None

    def __new__(cls) -> Missing:
        if cls._instance is None:
            cls._instance = object.__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"


#: Returned by ``Backend.get`` when the key holds nothing.
MISSING = Missing()

#: The backend can take distributed locks (``acquire_lock`` / ``release_lock``).
CAP_LOCKING = "locking"
#: The backend can broadcast invalidations to other processes.
CAP_INVALIDATION = "invalidation"
#: ``ttl(key)`` reports the remaining time to live.
CAP_TTL = "ttl"
#: Sync methods never block on I/O, so async callers may call them inline.
CAP_NONBLOCKING = "nonblocking"
#: ``set_guarded(key, value, ttl, seen)`` writes only while the key still holds what a
#: miss saw, and ``tombstone(key, ttl)`` invalidates one key by replacing it with a
#: tombstone: a miss computing during an invalidation cannot store its old value.
CAP_GUARDED_WRITES = "guarded_writes"
#: ``get_or_lock(key, lock_key, token, lease_ms)`` reads a key or, when it holds
#: nothing, takes the stampede lock, in one round trip; ``set_and_unlock(key, value,
#: ttl, lock_key, token, seen)`` stores (guarded like ``set_guarded`` when ``seen`` is
#: not None) and releases the lock, in one round trip: a locked miss costs two.
CAP_ATOMIC_MISS = "atomic_miss"
#: How a tombstone starts (never an envelope, which starts with b"CK"). Reads see a miss.
TOMBSTONE_PREFIX = b"\x00cachekit-tombstone:"
#: Storage lives inside this process: nobody else can write into it, so payloads
#: that need authentication (pickle) may be read back without a signature.
CAP_TRUSTED = "trusted"
