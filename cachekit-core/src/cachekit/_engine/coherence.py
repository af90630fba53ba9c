"""The coherence protocol of one decorated function, enforced in one place.

docs/coherence.md states the protocol; this module is its bookkeeping, shared by the
sync and async paths (the miss steps in :mod:`cachekit._engine.miss` call it, never
the other way round):

* **epochs** - ``epoch`` goes up with every invalidation that reaches the function (a
  notice for one of its keys, a generation change, a stream reset, a refused write);
  a miss notes it first and fills L1 only if it is unchanged (:meth:`fill_allowed`).
  ``resets`` goes up with every stream reset: a generation read that saw another
  value is older than a change and is read again (:meth:`refresh_generations`).
* **pending own writes** - ``own_writes`` records this process's writes in flight,
  each with a deadline (OWN_WRITE_WAIT), cleared by a stream reset.
* **generation reads** - ``gens_ok``, ``gens_lost_at``, ``gens_retry_at``: when the
  salt of the function's keys is current, and for how long an old one may serve.
* **guarded writes** - what a miss's read saw (:data:`_SEEN`), the compare-and-set it
  turns into, what a refused write undoes, and the tombstone an invalidation leaves.
"""

from __future__ import annotations

from _thread import allocate_lock
from time import monotonic

from cachekit._engine.miss import _NO_HIT, _SEEN, _partial
from cachekit.coherence import DEGRADED_L1_TTL, OWN_WRITE_WAIT
from cachekit.keys import DIGEST_HEX_LENGTH

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cachekit._engine.options import Plan
    from cachekit.keys import KeyBuilder

__all__ = ["CoherenceBook"]

#: Lifetime of a tombstone when the function's entries never expire (seconds).
_TOMBSTONE_MAX_TTL = 86400.0


class CoherenceBook:
    """The coherence state of one function (a base of CachedState)."""

    if TYPE_CHECKING:
        name: str
        builder: KeyBuilder
        l1: Any
        plan: Plan | None
        guarded: bool

        def _backend_failed(self, plan: Any, op: str, exc: BaseException) -> None: ...
        def debug(self, event: str, bkey: str | None, args: Any, kwargs: Any) -> None: ...

    def _init_coherence(self) -> None:
        # Cross-process coherence (backends with the "invalidation" capability).
        self.coherence: Any = None
        self.gen_keys: tuple[str, ...] = ()
        self.gens_ok = False
        # Since when the generations read last are no longer known to be current (None:
        # they are, or none was ever read), and when a failed read may be tried again.
        self.gens_lost_at: float | None = None
        self.gens_retry_at = 0.0
        self._stale_warned: float | None = None
        self.epoch = 0  # bumped by every invalidation; a miss that saw another epoch skips L1
        self.resets = 0  # bumped by every reset: a generations read that saw another is old
        self.index: dict[str, Any] = {}  # digest -> L1 key, to drop one entry on notice
        # digest -> [writes in flight, deadline of their notice]: see _own_write
        self.own_writes: dict[str, list[float]] = {}
        self._coh_lock = allocate_lock()

    # -- epochs: what may enter L1 -------------------------------------------------

    def note_invalidation(self) -> None:
        """This process invalidates entries of the function (called before its L1 is
        touched): a computation that started before may neither fill L1 nor be joined
        by a later caller (enter_flight)."""
        with self._coh_lock:
            self.epoch += 1

    def fill_lifetime(self, bkey: str | None, ttl: float | None) -> float | None:
        """An L1 entry whose change notice may be lost lives at most DEGRADED_L1_TTL."""
        coherence = self.coherence
        if coherence is not None and (not coherence.healthy or bkey is None):
            return DEGRADED_L1_TTL if ttl is None else min(ttl, DEGRADED_L1_TTL)
        return ttl

    def fill_allowed(self, epoch: int, bkey: str | None, lkey: Any) -> bool:
        """May a miss that started at ``epoch`` fill L1? Index the entry if so.

        Called with L1 present. No invalidation may have reached the function since
        the miss began: a value computed before it must not be resurrected.
        """
        if self.coherence is None:
            return self.epoch == epoch  # only this process's invalidations move it
        with self._coh_lock:
            if self.epoch != epoch:
                return False
            if bkey is not None:
                index = self.index
                l1 = self.l1
                if len(index) > 2 * l1.max_entries + 64:
                    live = l1.data
                    for d in [d for d, k in index.items() if k not in live]:
                        del index[d]
                index[bkey[-DIGEST_HEX_LENGTH:]] = lkey
        return True

    # -- guarded writes: what a read saw -------------------------------------------

    def note_seen(self, bkey: str, blob: Any) -> None:
        """A miss's read found nothing (None), a tombstone or an unreadable entry: note
        it for the guarded write of the value this caller may compute next."""
        if not self.guarded:
            return
        if blob is None:
            _SEEN.set((bkey, ""))
            return
        import hashlib

        _SEEN.set((bkey, hashlib.sha1(blob, usedforsecurity=False).hexdigest()))

    # -- generations, resets, own writes, invalidation ---------------------------

    def refresh_generations(self) -> bool:
        """Read the generation counters into the key salt; False when L2 must be skipped.

        A backend read like any other: while the breaker is open it does no I/O. A call
        whose read fails skips L2 (it paid its one timeout). When the failure was partial
        (a Cluster node holding a counter is down; the rest answers, and the endpoint's
        breaker does not count it), no call reads them again for GENERATION_RETRY seconds:
        those calls use the generations read last, for up to STALE_GENERATIONS_TTL seconds
        after they stopped being known current, so the function's keys on the other nodes
        keep L2.
        """
        from cachekit.coherence import (
            GENERATION_READS,
            GENERATION_RETRY,
            encode_generations,
            router_for,
        )

        now = monotonic()
        if now < self.gens_retry_at:
            return self._stale_generations_usable(now)
        plan = self.plan
        breaker = plan.breaker if plan is not None else None
        for _ in range(GENERATION_READS):
            if breaker is not None and not breaker.allow():
                return False
            resets = self.resets  # epoch of the generations: see coherence_reset
            try:
                values = self.coherence.generations(self.gen_keys)
                values = router_for(self.coherence).never_lower(self.gen_keys, values)
            except Exception as exc:
                if plan is not None:
                    self._backend_failed(plan, "generations", exc)
                if _partial(exc):  # else the breaker counts it and decides on the next try
                    self.gens_retry_at = monotonic() + GENERATION_RETRY
                return False
            if breaker is not None:
                breaker.success()
            with self._coh_lock:
                # A reply can be older than a change whose notice arrived while it was
                # on its way: trust it only if no reset came in meanwhile; else re-read.
                if self.resets == resets:
                    self.builder.salt = encode_generations(values)
                    self.gens_ok = True
                    self.gens_lost_at = None
                    return True
        return False  # generations kept moving: this miss skips L2

    def _stale_generations_usable(self, now: float) -> bool:
        """May a miss use the generations read last, which could not be re-read?"""
        from cachekit.coherence import STALE_GENERATIONS_TTL

        lost = self.gens_lost_at
        if lost is None or now - lost > STALE_GENERATIONS_TTL:
            return False
        if self._stale_warned != lost:  # once per outage
            import logging

            self._stale_warned = lost
            logging.getLogger("cachekit").warning(
                "[E010] the generation counters of %s cannot be read; its misses use the "
                "generations read last for up to %.0f s after they stopped being current, "
                "then skip the backend until the counters answer again.",
                self.name,
                STALE_GENERATIONS_TTL,
            )
        return True

    def l2_ready(self) -> bool:
        """May this miss use L2? Not while the generations are unknown."""
        if self.coherence is None or self.gens_ok:
            return True
        return self.refresh_generations()

    async def al2_ready(self) -> bool:
        if self.coherence is None or self.gens_ok:
            return True
        import asyncio

        return await asyncio.to_thread(self.refresh_generations)

    def coherence_reset(self) -> None:
        """Drop this function's L1 and re-read its generations at the next miss."""
        with self._coh_lock:
            self.epoch += 1
            self.resets += 1
            if self.gens_ok:  # current until now: usable a while if they cannot be re-read
                self.gens_lost_at = monotonic()
            self.gens_ok = False
            self.index.clear()
            # Notices of writes made before the reset may never come: a record left
            # here would swallow the next real notice for its key.
            self.own_writes.clear()
        if self.l1 is not None:
            self.l1.clear()

    def coherence_key_changed(self, digest: str) -> None:
        """Another process wrote or deleted one key of this function."""
        with self._coh_lock:
            pending = self.own_writes.pop(digest, None)
            # One notice settles every write of ours in flight: Redis (BCAST) reports a
            # key once per server cycle however often it was written. A second notice
            # then evicts our entry: one more L2 read, never an old value kept.
            if pending is not None and pending[1] >= monotonic():
                return
            self.epoch += 1
            lkey = self.index.pop(digest, _NO_HIT)
        if lkey is not _NO_HIT and self.l1 is not None:
            self.l1.pop(lkey)

    def _expect_own_notice(self, bkey: str) -> bool:
        """Before a write (sync or async): record it when its notice could evict our L1.

        Only an L1 needs the record (the notice must not evict what we just stored);
        without one no notice is routed here, so a record would never be cleared.
        Returns whether one was made, to be undone if the write fails.
        """
        if self.coherence is None or self.l1 is None:
            return False
        self._own_write(bkey, 1)
        return True

    def _own_write(self, bkey: str, delta: int) -> None:
        """Count a write of ours in flight (+1), or one that failed (-1).

        A record expects its notice within OWN_WRITE_WAIT seconds of the latest write;
        after that (the notice was lost) a notice for the key is another process's.
        """
        digest = bkey[-DIGEST_HEX_LENGTH:]
        with self._coh_lock:
            pending = self.own_writes.get(digest)
            if delta > 0:
                if pending is None:
                    pending = self.own_writes[digest] = [0.0, 0.0]
                pending[0] += delta
                pending[1] = monotonic() + OWN_WRITE_WAIT
            elif pending is not None:
                pending[0] += delta
                if pending[0] <= 0:
                    del self.own_writes[digest]

    def _take_seen(self, bkey: str) -> str | None:
        """What this caller's read of ``bkey`` found, for a guarded write (sync and async).

        Guarded when this caller read the key first: the write lands only while the
        key still holds what that read found, so it never outlives an invalidation
        (a tombstone) or another process's newer value written meanwhile.
        """
        seen = _SEEN.get() if self.guarded else None
        if seen is None or seen[0] != bkey:
            return None
        _SEEN.set(None)
        return seen[1]

    def _refused(self, bkey: str) -> None:
        """A refused guarded write drops the L1 copy it was made for."""
        self.debug("write refused: the key changed while computing", bkey, (), {})
        digest = bkey[-DIGEST_HEX_LENGTH:]
        with self._coh_lock:
            self.own_writes.pop(digest, None)  # the notice it waits for is not ours
            self.epoch += 1
            lkey = self.index.pop(digest, _NO_HIT)
        if lkey is not _NO_HIT and self.l1 is not None:
            self.l1.pop(lkey)

    def _remove_op(self, plan: Plan, bkey: str) -> tuple[Any, ...]:
        """How invalidate_cache(args) removes one entry from the backend (sync and async).

        With guarded writes, a tombstone that lives as long as an entry would: a miss
        that read the key before it cannot store its value after it.
        """
        if not self.guarded:
            return ("delete", bkey)
        return ("tombstone", bkey, _TOMBSTONE_MAX_TTL if plan.ttl is None else plan.ttl)

    def bump_generation(self, key: str) -> None:
        """Increment one generation counter (failing open) and reset locally."""
        try:
            self.coherence.bump(key)
        except Exception as exc:
            plan = self.plan
            if plan is not None:
                self._backend_failed(plan, "generation bump", exc)
        self.coherence_reset()
