"""Structural protocols every backend, serializer and encryptor implements.

Plugins do not inherit from anything: they provide objects with these methods.
A miss is the :data:`MISSING` sentinel, never ``None`` (``None`` is a value that
can be cached like any other).

Optional behaviour is *declared* in a ``capabilities`` attribute (a frozenset of
the ``CAP_*`` names below), never guessed from the presence of a method.

This module imports only cachekit.constants.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from cachekit.constants import (
    CAP_ATOMIC_MISS,
    CAP_GUARDED_WRITES,
    CAP_INVALIDATION,
    CAP_LOCKING,
    CAP_NONBLOCKING,
    CAP_TRUSTED,
    CAP_TTL,
    MISSING,
    Missing,
)

__all__ = [
    "Coherence",
    "CAP_ATOMIC_MISS",
    "CAP_GUARDED_WRITES",
    "CAP_INVALIDATION",
    "CAP_LOCKING",
    "CAP_NONBLOCKING",
    "CAP_TRUSTED",
    "CAP_TTL",
    "MISSING",
    "AsyncBackend",
    "Backend",
    "Encryptor",
    "Missing",
    "Serializer",
]


@runtime_checkable
class Backend(Protocol):
    """A synchronous key/value store for serialized envelopes.

    ``endpoint`` identifies the server (``"redis://host:6379/0"``, never with a
    password) so that every function using it shares one circuit breaker.
    Backends raise their own exceptions on failure; the decorator fails open on
    any of them, and counts ``OSError``/``TimeoutError`` (and so
    :class:`cachekit.errors.BackendUnavailableError`) towards the circuit breaker.

    Optional capabilities, declared in ``capabilities``:

    * ``"locking"``: ``acquire_lock(key, token, lease) -> bool`` takes ``key`` for
      ``lease`` seconds unless it is held; ``release_lock(key, token) -> bool``
      frees it only while ``token`` holds it. Used for stampede protection across
      processes.
    * ``"invalidation"``: ``coherence()`` returns a :class:`Coherence` shared per
      endpoint (generations and change notifications).
    * ``"ttl"``: ``ttl(key)`` returns seconds left, None, or MISSING.
    * ``"guarded_writes"``: ``set_guarded(key, value, ttl, seen) -> bool`` stores only
      while ``key`` still holds what a miss read: nothing when ``seen`` is ``""``, else
      bytes whose SHA-1 hex digest is ``seen``; ``tombstone(key, ttl) -> bool``
      replaces the key with ``TOMBSTONE_PREFIX`` plus a fresh random suffix for ``ttl``
      seconds and says whether it held something else. Both atomic. cachekit
      invalidates one entry with ``tombstone``, so a miss that was computing meanwhile
      cannot store its old value after the invalidation.
    * ``"atomic_miss"``: a locked miss in two round trips.
      ``get_or_lock(key, lock_key, token, lease_ms) -> (bytes | None, bool)`` returns
      ``(value, False)`` when ``key`` holds a value; otherwise it takes ``lock_key``
      (``SET NX PX lease_ms``) and returns what ``key`` held - ``None``, or a
      tombstone, which is no value but must guard the store - and whether the lock
      is now the caller's. ``set_and_unlock(key, value, ttl, lock_key, token, seen)
      -> bool`` stores ``value`` for ``ttl`` seconds (None: no expiry) - only while
      ``key`` holds what the miss saw, exactly as ``set_guarded``, unless ``seen`` is
      None - then deletes ``lock_key`` if ``token`` still holds it, and says whether
      it stored. Each is one atomic round trip. cachekit passes
      ``lock_key = "cachekit-lock:{" + key + "}"`` (``"cachekit-lock:" + key`` when
      the key has a ``{``), so a sharded backend finds both keys in one shard.
    """

    endpoint: str

    def get(self, key: str) -> bytes | Missing: ...

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None: ...

    def delete(self, key: str) -> bool: ...

    def get_many(self, keys: Sequence[str]) -> list[bytes | Missing]: ...

    def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None: ...

    def delete_many(self, keys: Iterable[str]) -> int: ...

    def clear(self, prefix: str) -> int:
        """Delete every key starting with ``prefix``; return how many were removed."""
        ...

    def ping(self) -> bool: ...

    def health(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncBackend(Protocol):
    """The asynchronous twin of :class:`Backend`: the same methods as coroutines."""

    endpoint: str

    async def get(self, key: str) -> bytes | Missing: ...

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None: ...

    async def delete(self, key: str) -> bool: ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | Missing]: ...

    async def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None: ...

    async def delete_many(self, keys: Iterable[str]) -> int: ...

    async def clear(self, prefix: str) -> int: ...

    async def ping(self) -> bool: ...

    async def health(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


@runtime_checkable
class Coherence(Protocol):
    """Cross-process invalidation, offered by backends that declare CAP_INVALIDATION.

    A backend with that capability has a ``coherence()`` method returning one
    shared object per endpoint with:

    * ``generations(keys)``: the integer counters stored under ``keys``. A missing
      counter may start anywhere (Redis starts it at a random value), but a counter
      must never return to a value it had before - not even after its server lost
      it - or entries invalidated under that value would be served again.
      cachekit mixes them into every key digest of a function, so bumping one
      moves every key of that function, namespace or tag at once: O(1)
      invalidation, old entries simply expire.
    * ``bump(key)``: increment one counter and return its new value.
    * ``listen(callback)``: call ``callback(keys)`` with the names of keys under
      ``cachekit:`` that any process wrote, deleted or that expired, soon after it
      happened (Redis: ``CLIENT TRACKING ... BCAST``); ``callback(None)`` when
      notifications may have been lost (connection dropped, failover), so every
      L1 fed by this backend must be dropped.
    * ``healthy``: True while notifications flow. While False, cachekit caps the
      lifetime of new L1 entries (see docs/backends/redis.md).
    * optional ``raise_to(key, value)``: make the counter at least ``value``
      (replacing it when it is missing or not a counter) and return its value.
      cachekit calls it when a counter reads lower than this process has seen it;
      without it, such a function skips the backend until the counter is back up.
    """

    healthy: bool

    def generations(self, keys: Sequence[str]) -> list[int]: ...

    def bump(self, key: str) -> int: ...

    def listen(self, callback: Callable[[Sequence[str] | None], None]) -> None: ...


@runtime_checkable
class Serializer(Protocol):
    """Turns values into bytes and back.

    ``name`` is a short, stable ASCII id (at most 32 characters) written into the
    stored envelope; an envelope claiming another serializer is never handed to
    this one. ``serialize`` raises :class:`cachekit.errors.SerializationError`
    (E004) for unsupported values and ``deserialize`` raises
    :class:`cachekit.errors.DeserializationError` (E005) for bytes it cannot read.

    A serializer whose ``deserialize`` can execute code (pickle) sets
    ``requires_authentication = True``: its payloads are then only read back from
    a shared backend when they carry a valid signature or were encrypted.

    ``serialize`` may return ``bytes`` or, to spare a copy of a large payload, a
    C-contiguous ``memoryview`` that it never touches again (a ``bytearray`` is
    accepted and copied to ``bytes``). ``deserialize`` gets ``bytes`` read from a
    backend, or a read-only view of what ``serialize`` returned (values kept in L1 are
    read back from it).
    """

    name: str

    def serialize(self, obj: Any) -> bytes | bytearray | memoryview: ...

    def deserialize(self, data: bytes) -> Any: ...


@runtime_checkable
class Encryptor(Protocol):
    """Authenticated encryption of payloads (AES-256-GCM in cachekit-crypto).

    ``key_id`` names the current key (written into the envelope, so rotation
    needs no trial decryption). ``aad`` binds the ciphertext to its context (cache
    key, serializer, envelope version); ``decrypt`` raises
    :class:`cachekit.errors.DecryptionError` (E003) when authentication fails.
    """

    key_id: str

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes: ...

    def decrypt(self, blob: bytes, aad: bytes, *, key_id: str) -> bytes: ...
