"""Keeping every process's L1 honest when another process changes the shared backend.

Two mechanisms, both offered by backends with the ``invalidation`` capability
(see :class:`cachekit.protocols.Coherence`):

* **Generations** make "invalidate everything of X" O(1). Each function reads three
  kinds of counters at its first call - its own, its namespace's and its tags' -
  and mixes them into every key digest. ``invalidate_cache()`` (all entries),
  ``cachekit.invalidate(namespace=...)`` and ``cachekit.invalidate(tags=...)``
  increment one counter: every key of the affected functions changes at once, in
  every process, and the old entries expire on their own TTL. No KEYS, no SCAN.
* **Notifications** keep L1 coherent: the backend reports every key under
  ``cachekit:`` that anyone writes, deletes or lets expire. A :class:`Router` per
  backend endpoint maps each reported key to the function that owns it and drops
  the matching L1 entry (or, for a generation counter, the function's whole L1 and
  its cached generations). Notifications about this process's own writes are
  recognised and ignored, so a miss does not evict the value it just stored.

When the backend says notifications may have been lost (``callback(None)``),
every L1 fed by that backend is dropped and, until notifications flow again, new
L1 entries live at most :data:`DEGRADED_L1_TTL` seconds.

Every operation here runs off the hit path: the router is called from the
backend's listener thread, and the per-function bookkeeping from the miss path.
"""

from __future__ import annotations

import weakref
from _thread import allocate_lock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, Protocol

    class CachedState(Protocol):
        """What the router uses of a decorated function's state (cachekit.cached)."""

        l1: Any
        builder: Any

        def coherence_reset(self) -> None: ...
        def coherence_key_changed(self, digest: str) -> None: ...


__all__ = [
    "DEGRADED_L1_TTL",
    "GENERATION_PREFIX",
    "GENERATION_READS",
    "GENERATION_RETRY",
    "OWN_WRITE_WAIT",
    "STALE_GENERATIONS_TTL",
    "Router",
    "generation_keys",
    "router_for",
]

#: Where generation counters live (under the prefix backends report on).
GENERATION_PREFIX = "cachekit:gen:"
#: Longest L1 lifetime while notifications are not known to flow, in seconds.
DEGRADED_L1_TTL = 1.0
#: Seconds after one of its own writes during which a process takes a notice for
#: that key as the write's own (notices take milliseconds; a lost one is forgotten).
OWN_WRITE_WAIT = 1.0
#: Reads of a function's generations in one miss while notices keep resetting them.
GENERATION_READS = 3
#: Seconds after a failed read of a function's generation counters before it is tried again.
GENERATION_RETRY = 1.0
#: How long after a function's generations stopped being known to be current (its
#: notifications were lost) a miss may still use them when they cannot be re-read.
STALE_GENERATIONS_TTL = 30.0


def generation_keys(
    function_prefix: str, namespace: str | None, tags: Sequence[str]
) -> tuple[str, ...]:
    """The counters a function's digests depend on: function, namespace, tags."""
    keys = [GENERATION_PREFIX + "f:" + function_prefix.removeprefix("cachekit:")]
    if namespace:
        keys.append(f"{GENERATION_PREFIX}n:{namespace}")
    keys.extend(f"{GENERATION_PREFIX}t:{tag}" for tag in tags)
    return tuple(keys)


def encode_generations(values: Sequence[int]) -> bytes:
    """The salt mixed into digests; empty while every counter is 0 (keys stay stable)."""
    if not any(values):
        return b""
    return b"|gen:" + ",".join(str(int(v)) for v in values).encode()


class Router:
    """Routes one backend's notifications to the functions that use it.

    Every write to a cached key, in every process sharing the backend, costs each
    process one notification, so routing one is kept short: the functions are held
    in tuples of weak references, rebuilt when a function registers (rare) and read
    without a lock. A function without an L1 has nothing to evict on a per-key
    notice; it only listens to its generation counters.
    """

    def __init__(self, coherence: Any) -> None:
        self.coherence = coherence
        self._lock = allocate_lock()
        self._by_prefix: dict[str, tuple[weakref.ref[CachedState], ...]] = {}
        self._by_generation: dict[str, tuple[weakref.ref[CachedState], ...]] = {}
        self._all: tuple[weakref.ref[CachedState], ...] = ()
        self.notifications = 0
        self.resets = 0
        self._highest: dict[str, int] = {}  # counter -> highest value this process saw
        # backend key -> callbacks of lock losers waiting for its value (wake_on)
        self._waiters: dict[str, list[Callable[[], None]]] = {}
        self.wakeups = 0  # wakers called (lock losers woken by a notice or a reset)

    def register(self, state: CachedState, generation_keys: Sequence[str]) -> None:
        ref = weakref.ref(state)
        with self._lock:
            if state.l1 is not None:
                prefix = state.builder.prefix
                self._by_prefix[prefix] = _add(self._by_prefix.get(prefix, ()), ref)
            for key in generation_keys:
                self._by_generation[key] = _add(self._by_generation.get(key, ()), ref)
            self._all = _add(self._all, ref)

    def wake_on(self, key: str, waker: Callable[[], None]) -> None:
        """Call ``waker`` once, from the listener's thread, at the next notice for
        ``key`` or at a stream reset: a process that lost a key's stampede lock waits
        for the holder's write this way instead of polling the backend. ``waker`` must
        not block; :meth:`forget` it when the wait ends some other way."""
        with self._lock:
            self._waiters.setdefault(key, []).append(waker)

    def forget(self, key: str, waker: Callable[[], None]) -> None:
        """Drop a waker that was not called (the wait timed out or was cancelled)."""
        with self._lock:
            found = self._waiters.get(key)
            if found is not None and waker in found:
                found.remove(waker)
                if not found:
                    del self._waiters[key]

    def _wake(self, key: str | None) -> None:
        """Call the wakers of ``key`` (every waker when None), each once."""
        with self._lock:
            if key is None:
                woken = [w for ws in self._waiters.values() for w in ws]
                self._waiters.clear()
            else:
                woken = self._waiters.pop(key, [])
            self.wakeups += len(woken)
        for waker in woken:
            try:
                waker()
            except Exception:  # noqa: S110 (a closed event loop: its waiter is gone)
                pass

    def never_lower(self, keys: Sequence[str], values: Sequence[int]) -> list[int]:
        """The counters read, none below the highest value this process has seen.

        Counters only go up. A lower one was set back by someone who can write to the
        backend (or lost with its data): reading it would serve entries from before an
        invalidation this process saw, and its own bumps would never get past the old
        value. So it is raised, in the backend, past the highest value seen (which
        invalidates what depends on it everywhere) and logged as E012. A coherence
        without ``raise_to`` gets GenerationRollbackError: the caller skips L2.
        """
        out = [int(v) for v in values]
        highest = self._highest
        for i, key in enumerate(keys):
            seen = highest.get(key)
            if seen is not None and out[i] < seen:
                out[i] = self._raise(key, out[i], seen)
        with self._lock:
            for key, value in zip(keys, out, strict=True):
                if value > highest.get(key, value - 1):
                    highest[key] = value
        return out

    def _raise(self, key: str, found: int, seen: int) -> int:
        import logging

        from cachekit.errors import GenerationRollbackError

        raise_to = getattr(self.coherence, "raise_to", None)
        if raise_to is None:
            raise GenerationRollbackError(
                f"generation counter {key} went back from {seen} to {found}, and this "
                "backend's coherence cannot raise it (no raise_to)."
            )
        value = int(raise_to(key, seen + 1))
        if value <= seen:
            raise GenerationRollbackError(f"generation counter {key} could not be raised.")
        logging.getLogger("cachekit").warning(
            "[E012] generation counter %s went back from %d to %d: set back by someone "
            "who can write to the backend, or lost with its data. Raised to %d, so "
            "entries from before the invalidations this process saw stay unreachable. %s",
            key,
            seen,
            found,
            value,
            GenerationRollbackError.hint,
        )
        return value

    def __call__(self, keys: Sequence[str | bytes] | None) -> None:
        """The backend's listener callback (runs on the backend's thread)."""
        if keys is None:
            self.resets += 1
            if self._waiters:
                self._wake(None)  # the notice they wait for may be lost: poll again now
            for ref in self._all:
                state = ref()
                if state is not None:
                    state.coherence_reset()
            return
        by_prefix = self._by_prefix
        for raw in keys:
            key = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            self.notifications += 1
            if self._waiters:
                self._wake(key)
            if key.startswith(GENERATION_PREFIX):
                for ref in self._by_generation.get(key, ()):
                    state = ref()
                    if state is not None:
                        state.coherence_reset()
                continue
            prefix, _, digest = key.rpartition(":")
            for ref in by_prefix.get(prefix + ":", ()):
                state = ref()
                if state is not None:
                    state.coherence_key_changed(digest)


def _add(
    refs: tuple[weakref.ref[CachedState], ...], ref: weakref.ref[CachedState]
) -> tuple[weakref.ref[CachedState], ...]:
    """``refs`` plus ``ref``, without references to functions that are gone."""
    return (*(r for r in refs if r() is not None and r is not ref), ref)


_routers: dict[int, Router] = {}
_routers_lock = allocate_lock()


def router_for(coherence: Any) -> Router:
    """The router of a coherence object, created (and subscribed) once."""
    found = _routers.get(id(coherence))
    if found is not None and found.coherence is coherence:
        return found
    with _routers_lock:
        found = _routers.get(id(coherence))
        if found is None or found.coherence is not coherence:
            found = Router(coherence)
            coherence.listen(found)  # if it raises, nothing is kept: the next call retries
            _routers[id(coherence)] = found
    return found
