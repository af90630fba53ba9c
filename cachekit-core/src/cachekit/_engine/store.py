"""What a miss or an L2 hit keeps in L1, and the L1 lookup of the slower paths.

A base of :class:`cachekit.cached.CachedState`, used by the miss steps
(:mod:`cachekit._engine.miss`): serialize a fresh result once, give the caller, the
waiters of its single flight and L1 the same shape (an immutable scalar as is, small
plain data as a copy template, anything else as the serializer's bytes; see
:mod:`cachekit._engine.clone`), and fill L1 only when no invalidation raced with the
computation (:class:`cachekit._engine.coherence.CoherenceBook`).
"""

from __future__ import annotations

from time import monotonic, time

from cachekit._engine.clone import l1_form
from cachekit._engine.miss import _NO_HIT
from cachekit._engine.options import UNSET
from cachekit.errors import SerializationError
from cachekit.l1 import IMMUTABLE_TYPES
from cachekit.stats import L1_HITS, L2_HITS, STORES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cachekit._engine.options import Plan
    from cachekit.l1 import L1Cache

__all__ = ["L1Store"]


class L1Store:
    """How a function's results reach its L1 (a base of CachedState)."""

    if TYPE_CHECKING:
        name: str
        options: Any
        counts: list[int]
        l1: L1Cache | None
        epoch: int

        def _warn_once(self, tag: str, msg: str, *args: Any) -> None: ...
        def debug(self, event: str, bkey: str | None, args: Any, kwargs: Any) -> None: ...
        def fill_lifetime(self, bkey: str | None, ttl: float | None) -> float | None: ...
        def fill_allowed(self, epoch: int, bkey: str | None, lkey: Any) -> bool: ...

    def l1_lookup(self, lkey: Any, refresh: bool = True) -> Any:
        """A fresh copy from L1, or _NO_HIT. (The wrappers inline this on the fast path.)"""
        l1 = self.l1
        if l1 is None:
            return _NO_HIT
        entry = l1.data.get(lkey)
        if entry is None or entry[0] <= monotonic():
            return _NO_HIT
        self.counts[L1_HITS] += 1
        if refresh:
            try:
                l1.data.move_to_end(lkey)
            except KeyError:
                pass
        loads = entry[1]
        return (entry[2] if loads is None else loads(entry[2])), (entry[2], loads)

    def accept_l2(
        self,
        plan: Plan,
        lkey: Any,
        bkey: str,
        value: Any,
        payload: bytes,
        call: tuple[Any, Any],
        epoch: int,
        expires_at: float | None = None,
    ) -> tuple[Any, tuple[Any, Any]]:
        """Record an L2 hit and copy it into L1: (value, (stored, loads)).

        The L1 copy never outlives the L2 entry: its lifetime is capped by the expiry
        the writer recorded in the envelope.
        """
        self.counts[L2_HITS] += 1
        self.debug("L2 hit", bkey, *call)
        pair = (
            (value, None) if type(value) in IMMUTABLE_TYPES else l1_form(value, payload, plan.loads)
        )
        ttl = plan.ttl
        if expires_at is not None:
            left = expires_at - time()
            if left <= 0:
                return value, pair  # already gone in L2: don't keep it in L1 either
            ttl = left if ttl is None else min(ttl, left)
        self.l1_fill(plan, lkey, bkey, pair, epoch, ttl)
        return value, pair

    def store(
        self, plan: Plan, lkey: Any, result: Any, bkey: str | None, epoch: int
    ) -> tuple[Any, tuple[Any, Any], Any]:
        """Serialize a fresh result and keep it in L1.

        Returns (value for the caller, (stored, loads) for waiters, payload for L2 or
        None when the result is not to be cached). Serialization errors (E004) propagate.
        """
        payload = plan.serializer.serialize(result)
        if type(payload) is not bytes:
            payload = _byte_buffer(payload, plan.ser_name)
        if type(result) in IMMUTABLE_TYPES:
            pair: tuple[Any, Any] = (result, None)
            value = result
        else:
            value = plan.loads(payload)  # the same shape every later hit returns
            pair = l1_form(value, payload, plan.loads)
        if len(payload) > plan.max_value_size:
            self._warn_once(
                "too-large",
                "[E007] %s returned a value of %d bytes, above max_value_size=%d: it is "
                "returned but not cached",
                self.name,
                len(payload),
                plan.max_value_size,
            )
            return value, pair, None
        unless = self.options.unless
        if unless is not None and unless(result):
            return value, pair, None
        self.counts[STORES] += 1
        self.l1_fill(plan, lkey, bkey, pair, epoch)
        return value, pair, payload

    # -- attributes of the decorated function -------------------------------------

    def l1_fill(
        self,
        plan: Plan,
        lkey: Any,
        bkey: str | None,
        pair: Any,
        epoch: int,
        lifetime: Any = UNSET,
    ) -> None:
        """Put a miss's result into L1, unless an invalidation raced with it."""
        l1 = self.l1
        if l1 is None:
            return
        ttl = self.fill_lifetime(bkey, plan.ttl if lifetime is UNSET else lifetime)
        if not self.fill_allowed(epoch, bkey, lkey):
            return  # invalidated while this miss was running: don't resurrect
        l1.put(lkey, pair[0], pair[1], ttl)
        if self.epoch != epoch:  # an invalidation landed between the check and the put
            l1.pop(lkey)


def _byte_buffer(payload: Any, serializer: str) -> Any:
    """A serializer's bytearray or memoryview as an immutable buffer of bytes.

    Read-only, because L1 keeps it and hands it to ``deserialize`` on every hit: a
    result that shares memory with it must not be able to change later hits.
    """
    if isinstance(payload, bytearray):
        return bytes(payload)
    if isinstance(payload, memoryview) and payload.c_contiguous:
        if payload.format != "B" or payload.ndim != 1:
            payload = payload.cast("B")
        return payload.toreadonly()
    raise SerializationError(
        f"serializer {serializer!r} returned {type(payload).__name__}; serialize() must "
        "return bytes, a bytearray or a C-contiguous memoryview."
    )
