"""Fail-open access to a function's L2 entries: read, decode, seal, store.

Backend trouble never reaches the caller: a backend exception is counted, fed to the
endpoint's circuit breaker (:meth:`L2Access._backend_failed`) and turns into "run the
function"; an entry that cannot be read back (corrupt, foreign, expired, failing
authentication) is a miss that gets overwritten. The calls themselves are the miss
steps' IO requests (cachekit._engine.miss.backend_io); this is what they decide with.
"""

from __future__ import annotations

from time import monotonic, time

from cachekit._engine.drivers import run_sync
from cachekit._engine.miss import _failed_read, _transient, get_steps, set_steps
from cachekit._engine.plan import _thread_call
from cachekit.constants import MISSING, TOMBSTONE_PREFIX
from cachekit.envelope import open_encrypted, open_plain, seal, seal_plain, unseal
from cachekit.stats import ERRORS, INVALID

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import Any

    from cachekit._engine.options import Plan, _Place

__all__ = ["L2Access"]

_DEBUG = 10
#: cachekit.breaker.CLOSED, which is the same interned string (that module imports
#: logging). Were it ever another object, every read would take the general path.
_CLOSED = "closed"
_logger: logging.Logger | None = None


def _log() -> logging.Logger:
    """The ``cachekit`` logger, imported on first use (logging costs import time)."""
    global _logger
    if _logger is None:
        import logging

        _logger = logging.getLogger("cachekit")
    return _logger


class L2Access:
    """How a function reads and writes its L2 entries (a base of CachedState)."""

    if TYPE_CHECKING:
        name: str
        options: Any
        counts: list[int]
        _last_error_log: float

        def _warn_once(self, tag: str, msg: str, *args: Any) -> None: ...
        def note_seen(self, bkey: str, blob: Any) -> None: ...

    # -- backend I/O (fail open) ---------------------------------------------------

    def _backend_failed(self, plan: Plan | _Place, op: str, exc: BaseException) -> None:
        self.counts[ERRORS] += 1
        if plan.breaker is not None:
            if _transient(exc):
                plan.breaker.failure(exc)
            else:
                # The server answered (OOM, a garbled reply): no verdict, but a half-open
                # probe must give its slot back or the breaker stays half-open for good.
                plan.breaker.release_probe()
        now = monotonic()
        if now - self._last_error_log >= 60.0:
            self._last_error_log = now
            _log().warning(
                "[E010] backend %s failed during %s for %s (%s: %s); the function runs "
                "uncached. Further errors for 60s are logged at DEBUG.",
                plan.endpoint,
                op,
                self.name,
                type(exc).__name__,
                exc,
            )
        elif _log().isEnabledFor(_DEBUG):
            _log().debug("backend %s %s failed: %r", plan.endpoint, op, exc)

    def _decode(self, plan: Plan, blob: Any, bkey: str, count: bool = True) -> Any:
        """Turn a stored envelope into a value, or MISSING when it is unreadable."""
        try:
            plain = None
            if plan.encryptor is None and plan.signer is None and not plan.require_auth:
                plain = open_plain(blob, plan.ser_name)
            elif plan.encryptor is not None:
                plain = open_encrypted(blob, plan.ser_name, bkey, plan.encryptor)
            if plain is not None:
                payload, expires_at = plain
            else:
                payload, header = unseal(
                    blob,
                    serializer=plan.ser_name,
                    key=bkey,
                    encryptor=plan.encryptor,
                    signer=plan.signer,
                    require_authentication=plan.require_auth,
                    # Planted bombs: inflate no further than a value this function may
                    # store, and not at all for a function that never compresses.
                    max_size=plan.max_value_size,
                    allow_compressed=self.options.compress,
                )
                expires_at = header.expires_at
            if expires_at is None:
                if plan.encryptor is not None:
                    # Authentic but unbounded: a replay could last forever. Writers
                    # under encryption always record an expiry (SECURE_MAX_TTL).
                    return MISSING, None, None
            elif expires_at <= time():
                # Past the expiry its writer recorded (authenticated under encryption
                # or signing): a stale copy put back, or a backend that kept it too long.
                return MISSING, None, None
            value = plan.loads(payload)
        except Exception as exc:
            # Anything that cannot be read back is a miss, whoever raised it (a
            # third-party serializer may raise plain ValueError): never the caller's problem.
            if count:  # not when re-reading what this call already counted
                self.counts[INVALID] += 1
            code = getattr(exc, "code", "E005")
            if self.options.fail_closed and code == "E003":
                raise
            self._warn_once(
                f"invalid-{code}",
                "[%s] unreadable cache entry for %s treated as a miss and overwritten: %s",
                code,
                self.name,
                getattr(exc, "message", f"{type(exc).__name__}: {exc}"),
            )
            return MISSING, None, None
        return value, payload, expires_at

    def _seal(self, plan: Plan, payload: bytes, bkey: str) -> bytes:
        expires_at = None if plan.ttl is None else time() + plan.ttl
        if plan.encryptor is None and plan.signer is None and not self.options.compress:
            return seal_plain(payload, plan.ser_name, expires_at)
        return seal(
            payload,
            serializer=plan.ser_name,
            key=bkey,
            encryptor=plan.encryptor,
            signer=plan.signer,
            compress=self.options.compress,
            expires_at=expires_at,
        )

    def l2_get(self, plan: Plan, bkey: str) -> Any:
        """Read one entry from a sync backend, failing open: miss.get_steps.

        The L2 hit of a function without L1. With no breaker, or a closed one, it is
        get_steps and backend_io written out without the generator and its driver:
        in CLOSED, allow() has no side effect and takes no probe. A breaker in any
        other state has its say through get_steps.
        """
        breaker = plan.breaker
        if breaker is not None and breaker.state is not _CLOSED:
            return run_sync(self, plan, get_steps(self, plan, bkey))
        try:
            blob = plan.backend.get(bkey)
        except Exception as exc:
            self._backend_failed(plan, "get", exc)
            return _failed_read(exc)
        if breaker is not None and (breaker.failures or breaker.state is not _CLOSED):
            breaker.success()
        return self._read(plan, blob, bkey)

    def l2_set(self, plan: Plan, bkey: str, payload: bytes) -> bool:
        """Store one entry in a sync backend, failing open (see miss.set_steps)."""
        return bool(run_sync(self, plan, set_steps(self, plan, bkey, payload)))

    async def _acall(self, plan: Plan, method: str, *args: Any) -> Any:
        """Call the async backend's ``method`` (a sync one inline or in a worker thread,
        as the plan chose when it was built: Plan.acall)."""
        acall = plan.acall
        if acall is None:  # a sync function's backend, maintained from async code
            return await _thread_call(plan.backend, method, *args)
        return await acall(plan.abackend, method, *args)

    def _read(self, plan: Plan, blob: Any, bkey: str, count: bool = True) -> Any:
        """(value, payload, expires) of what an L2 read returned (sync and async).

        A miss notes what it found (nothing, a tombstone, an unreadable entry) for
        the guarded write of the value this caller may compute next (note_seen).
        """
        if blob is MISSING or blob is None:
            self.note_seen(bkey, None)
            return MISSING, None, None
        read_plain = plan.read_plain
        if read_plain is not None:  # an unencrypted, unsigned entry with an expiry
            opened = read_plain(blob)
            if opened is not None and opened[1] > time():
                payload = opened[0]
                try:
                    return plan.loads(payload), payload, opened[1]
                except Exception:  # noqa: S110 (read again below: counted and logged there)
                    pass
        if blob[: len(TOMBSTONE_PREFIX)] == TOMBSTONE_PREFIX:
            outcome = (MISSING, None, None)  # an invalidated entry
        else:
            outcome = self._decode(plan, blob, bkey, count)
            if outcome[0] is not MISSING:
                return outcome
        self.note_seen(bkey, blob)
        return outcome
