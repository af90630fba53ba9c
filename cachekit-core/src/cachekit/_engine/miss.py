"""The miss path, written once as steps that do no I/O, and the two drivers that run them.

A miss is a generator (httpx's ``auth_flow`` style). It yields *requests* and is sent
their outcomes:

    (IO, method, args)       a backend call; outcome: its reply, or _Failed(exc)
    (CALL,)                  run the user's function; outcome: its result
    (FLIGHT, future)         wait for another caller's computation; outcome: (stored, loads)
    (WAIT, seconds, key)     sleep, or until the key's change notice (a lock loser)
    (READY,)                 read the generation counters; outcome: may L2 be used?
    (ABANDON, method, args)  best-effort cleanup after a cancellation; outcome ignored

An exception of the user's function, of a flight's leader or a cancellation is thrown
into the generator at the request that raised it, so its cleanup (releasing a lock,
leaving the flight) is written once as well. :func:`run_sync` and :func:`run_async`
only execute requests; every decision - L1 recheck, single flight, L2 read, lock,
store, unlock, fail open, coherence bookkeeping - is made here.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from itertools import count
from time import monotonic

from cachekit._engine.flight import _REENTER, _WAIT, _LeaderGone
from cachekit.constants import MISSING
from cachekit.stats import BYPASSED, COALESCED, MISSES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Generator
    from typing import Any

    from cachekit._engine.options import Plan

    #: cachekit.cached.CachedState, which imports this module (no cycle, even for types).
    CachedState = Any

    Steps = Generator[tuple[Any, ...], Any, Any]

__all__ = [
    "lock_key_for",
    "miss_steps",
]

IO, CALL, FLIGHT, WAIT, READY, ABANDON = range(6)
_DEBUG = 10  # logging.DEBUG

_NO_HIT: Any = object()
_NOT_READ: Any = (MISSING, None, None)
#: In place of the payload of an L2 read: the backend could not be reached. The miss
#: then skips its write (and lock), which would only pay a second timeout.
_UNREACHABLE: Any = object()
#: The lock steps' answer when the backend failed taking the lock: skip the write as
#: well, it would most likely pay a second timeout (e.g. under CLIENT PAUSE WRITE).
_LOCK_FAILED: Any = object()
#: backend_io's answer when the breaker is open: no I/O was done.
_SKIPPED: Any = object()
#: What the current thread's or task's last L2 read of a key found, for a guarded
#: write of the value it then computes: (backend key, "" or the SHA-1 of the bytes).
_SEEN: ContextVar[tuple[str, str] | None] = ContextVar("cachekit_seen", default=None)
#: Backoff of a process waiting for another one's lock: first and longest pause (s).
_FIRST_PAUSE = 0.002
_LONGEST_PAUSE = 0.05
#: The longest pause of a loser that the holder's write wakes (notifications flow).
_NOTIFIED_PAUSE = 0.25


class _Failed:
    """A backend exception, sent into the steps as the outcome of an IO request."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _transient(exc: BaseException) -> bool:
    """Does this backend failure say the server is unreachable or too slow?

    Connection errors and timeouts (builtin ``ConnectionError``/``TimeoutError``,
    any ``OSError``, cachekit's BackendUnavailableError) count towards the circuit
    breaker. Errors the server answered with (out of memory, read-only replica, a
    reply that could not be parsed) do not: the server is up, so opening the breaker
    would only stop reads that still work.
    """
    flag = getattr(exc, "transient", None)
    if flag is not None:
        return bool(flag)
    return isinstance(exc, (OSError, TimeoutError))


def _unreachable(exc: BaseException) -> bool:
    """Was the backend, or the part of it that holds the key, out of reach?

    Wider than _transient: a Cluster node's own breaker counts its failures (its
    NodeUnavailableError is not transient for the endpoint's breaker), yet the rest of
    the call must leave that node alone too, or it pays a second timeout there.
    """
    return _transient(exc) or isinstance(exc, (OSError, TimeoutError))


def _partial(exc: BaseException) -> bool:
    """Unreachable, but only a part of the backend: the error says the rest is up and gives
    the endpoint's breaker no failure (a Cluster node's NodeUnavailableError)."""
    return getattr(exc, "transient", None) is False and isinstance(exc, (OSError, TimeoutError))


def _new_token_source() -> None:
    """This process's lock tokens: a random prefix (drawn again in a forked child) and
    a counter, so no two holders, here or in another process, share a token."""
    global _token_prefix, _token_count
    _token_prefix = os.urandom(8).hex()
    _token_count = count()


_token_prefix = ""
_token_count = count()
_new_token_source()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_token_source)


def _lock_for(bkey: str) -> tuple[str, str]:
    """(lock key, a new token) for a miss that may take ``bkey``'s stampede lock.

    The token only has to be unique among the lock's holders: 32 hex digits, as
    os.urandom(16).hex() gave, without a system call per miss.
    """
    return lock_key_for(bkey), f"{_token_prefix}{next(_token_count):016x}"


def lock_key_for(bkey: str) -> str:
    """The stampede lock of a backend key.

    Outside the "cachekit:" prefix, so lock traffic never reaches L1 listeners, and in
    the key's Cluster slot, so get_or_lock / set_and_unlock touch one node: the whole
    key is the hash tag, unless it carries one of its own, which then decides both.
    """
    if "{" in bkey:
        return "cachekit-lock:" + bkey
    return "cachekit-lock:{" + bkey + "}"


# --- fail-open backend access: one decision for both drivers ------------------------------


def backend_io(state: CachedState, plan: Plan, op: str, method: str, *args: Any) -> Steps:
    """One backend call, failing open: its reply, _Failed (counted, fed to the
    breaker, logged) or _SKIPPED when the breaker is open (no I/O done)."""
    breaker = plan.breaker
    if breaker is not None and not breaker.allow():
        return _SKIPPED
    try:
        reply = yield (IO, method, args)
    except BaseException:  # cancelled or interrupted: not the backend's fault
        if breaker is not None:
            breaker.release_probe()
        raise
    if type(reply) is _Failed:
        state._backend_failed(plan, op, reply.error)
        return reply
    if breaker is not None:
        breaker.success()
    return reply


def get_steps(state: CachedState, plan: Plan, bkey: str) -> Steps:
    """Read one entry: (value, payload, expires); value is MISSING on a miss and the
    payload _UNREACHABLE when the backend was out of reach."""
    reply = yield from backend_io(state, plan, "get", "get", bkey)
    if reply is _SKIPPED:
        return _NOT_READ
    if type(reply) is _Failed:
        return _failed_read(reply.error)
    return state._read(plan, reply, bkey)


def _failed_read(exc: BaseException) -> tuple[Any, Any, None]:
    """What a read that raised ``exc`` (counted and logged already) found: nothing."""
    return MISSING, (_UNREACHABLE if _unreachable(exc) else None), None


def set_steps(state: CachedState, plan: Plan, bkey: str, payload: bytes) -> Steps:
    """Store the envelope; False when the backend was not reached (breaker open or a
    transient failure): the rest of the call then leaves the backend alone."""
    blob = state._seal(plan, payload, bkey)
    seen = state._take_seen(bkey)
    tracked = state._expect_own_notice(bkey)
    if seen is None:
        reply = yield from backend_io(state, plan, "set", "set", bkey, blob, plan.ttl)
    else:
        reply = yield from backend_io(state, plan, "set", "set_guarded", bkey, blob, plan.ttl, seen)
    if reply is _SKIPPED or type(reply) is _Failed:
        if tracked:
            state._own_write(bkey, -1)
        return reply is not _SKIPPED and not _unreachable(reply.error)
    if seen is not None and not reply:
        state._refused(bkey)
    return True


def set_and_unlock_steps(
    state: CachedState, plan: Plan, bkey: str, payload: bytes, lock_key: str, token: str
) -> Steps:
    """Store the envelope and release the lock in one round trip (CAP_ATOMIC_MISS)."""
    blob = state._seal(plan, payload, bkey)
    seen = state._take_seen(bkey)
    tracked = state._expect_own_notice(bkey)
    reply = yield from backend_io(
        state, plan, "set", "set_and_unlock", bkey, blob, plan.ttl, lock_key, token, seen
    )
    if reply is _SKIPPED or type(reply) is _Failed:
        if tracked:
            state._own_write(bkey, -1)
        return
    if seen is not None and not reply:
        state._refused(bkey)


def maintenance_steps(state: CachedState, plan: Plan, method: str, *args: Any) -> Steps:
    """A maintenance call (delete, tombstone, clear) failing open: its reply, or 0 when
    it failed (counted, fed to the breaker, logged). Not gated by the breaker: an
    invalidation is always tried."""
    reply = yield (IO, method, args)
    if type(reply) is _Failed:
        state._backend_failed(plan, method, reply.error)
        return 0
    return reply


def unlock_steps(state: CachedState, plan: Plan, lock_key: str, token: str) -> Steps:
    """Release the lock, unless the breaker is open: the lease frees it anyway."""
    yield from backend_io(state, plan, "unlock", "release_lock", lock_key, token)


def _lost_lock_pause(state: CachedState, bkey: str, delay: float) -> Steps:
    """A lock loser's pause before it asks again; returns the next one.

    Pauses double (each jittered, 0.5x to 1.5x, so the processes waiting for one holder
    do not poll in step). With a live notification stream the WAIT names the key: the
    holder's write wakes the loser at once (Router.wake_on), and the polls only cover a
    holder that leaves without storing or a notice that was lost, so they may grow to
    _NOTIFIED_PAUSE instead of _LONGEST_PAUSE.
    """
    coherence = state.coherence
    notified = coherence is not None and bool(coherence.healthy)
    yield (WAIT, _jittered(delay), bkey if notified else None)
    return min(delay * 2, _NOTIFIED_PAUSE if notified else _LONGEST_PAUSE)


def _jittered(delay: float) -> float:
    from random import random  # only lock losers pay its import

    return delay * (0.5 + random())  # noqa: S311 (jitter, not a secret)


def _lock_io(
    state: CachedState, plan: Plan, op: str, lock_key: str, token: str, *call: Any
) -> Steps:
    """backend_io for a call that may take the lock. If it is cancelled or interrupted,
    the SET NX may have reached the backend: free the lock if it is ours, so other
    processes do not wait out the lease for nothing."""
    try:
        return (yield from backend_io(state, plan, op, *call))
    except GeneratorExit:
        raise
    except BaseException:
        yield (ABANDON, "release_lock", (lock_key, token))
        raise


def lock_steps(state: CachedState, plan: Plan, bkey: str, lock_key: str, token: str) -> Steps:
    """The stampede lock taken the plain way (acquire_lock, then get while waiting).

    Returns ("found", value, payload, expires) when another process stored the value
    meanwhile, True when this process holds the lock, _LOCK_FAILED on backend trouble
    (no more traffic), or None when it should compute without a lock (breaker open, or
    the holder outlived lease + 1 s: a lease longer than the computation avoids that).
    """
    lease = float(state.options.lock_lease)
    deadline = monotonic() + lease + 1.0
    delay = _FIRST_PAUSE
    while True:
        acquired = yield from _lock_io(
            state, plan, "lock", lock_key, token, "acquire_lock", lock_key, token, lease
        )
        if acquired is _SKIPPED:
            return None
        if type(acquired) is _Failed:
            return _LOCK_FAILED
        if acquired:
            return True
        delay = yield from _lost_lock_pause(state, bkey, delay)
        value, payload, expires = yield from get_steps(state, plan, bkey)
        if value is not MISSING:
            return ("found", value, payload, expires)
        if payload is _UNREACHABLE:
            return _LOCK_FAILED  # one timeout per call: no more lock attempts
        if monotonic() > deadline:
            return None


def get_or_lock_steps(
    state: CachedState, plan: Plan, bkey: str, lock_key: str, token: str, reread: bool
) -> Steps:
    """Read the key or take its lock, one round trip per attempt (CAP_ATOMIC_MISS).

    The same answers as lock_steps. A loser retries get_or_lock after a backoff, so it
    gets the holder's value, or the lock when the holder left without storing, in one
    round trip; it gives up waiting after lease + 1 s, like lock_steps.
    """
    lease = float(state.options.lock_lease)
    lease_ms = max(1, int(lease * 1000))
    deadline = monotonic() + lease + 1.0
    delay = _FIRST_PAUSE
    while True:
        reply = yield from _lock_io(
            state, plan, "get", lock_key, token, "get_or_lock", bkey, lock_key, token, lease_ms
        )
        if reply is _SKIPPED:
            return None
        if type(reply) is _Failed:
            # Out of reach: no more traffic. Else the server answered with an error:
            # compute without the lock and try the (unguarded) write.
            return _LOCK_FAILED if _unreachable(reply.error) else None
        blob, acquired = reply
        # reread: this call read the key already (and counted an unreadable entry).
        value, payload, expires = state._read(
            plan, MISSING if blob is None else blob, bkey, count=not reread
        )
        reread = False
        if acquired:
            return True
        if value is not MISSING:
            return ("found", value, payload, expires)
        if blob is not None:
            # A tombstone or an unreadable entry: not "nothing", so no lock was offered.
            # Take it the plain way (a third round trip, only after an invalidation).
            return (yield from lock_steps(state, plan, bkey, lock_key, token))
        if monotonic() > deadline:
            return None
        delay = yield from _lost_lock_pause(state, bkey, delay)


# --- the miss ----------------------------------------------------------------------------


def miss_steps(
    state: CachedState,
    plan: Plan,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    lkey: Any,
    bkey: str | None,
    read: Any,
    new_flight: Any,
) -> Steps:
    """A miss: bypass decisions, then single flight around compute_steps.

    Returns the value for this caller.
    """
    options = state.options
    condition = options.condition
    if not plan.enabled or (condition is not None and not condition(*args, **kwargs)):
        state.counts[BYPASSED] += 1
        return (yield (CALL,))
    if not options.single_flight:
        return (yield from compute_steps(state, plan, args, kwargs, lkey, bkey, read))[0]
    while True:
        flight, role = state.enter_flight(lkey, new_flight)
        if role is _REENTER:
            return (yield from compute_steps(state, plan, args, kwargs, lkey, bkey, True))[0]
        if role is not _WAIT:
            break
        try:
            stored, loads = yield (FLIGHT, flight)
        except _LeaderGone:
            continue
        state.counts[COALESCED] += 1
        return stored if loads is None else loads(stored)
    try:
        value, pair = yield from compute_steps(state, plan, args, kwargs, lkey, bkey, read)
    except BaseException as exc:
        state.leave_flight(lkey, flight, role, None, exc)
        raise
    state.leave_flight(lkey, flight, role, pair, None)
    return value


def compute_steps(
    state: CachedState,
    plan: Plan,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    lkey: Any,
    bkey: str | None,
    read: Any,
) -> Steps:
    """Return (value for this caller, (stored, loads) for waiters).

    ``read``: True to read L2 first; False when the caller already read it and
    missed; _UNREACHABLE when that read could not reach the backend.
    """
    epoch = state.epoch
    call = (args, kwargs)
    hit = state.l1_lookup(lkey, refresh=False)  # filled while we queued?
    if hit is not _NO_HIT:
        return hit
    # A key computed before the generations were (re)read carries an old salt.
    stale = state.coherence is not None and not state.gens_ok
    if plan.backend is not None:
        state.check_event_loop(plan)
    use_l2 = (
        (plan.backend is not None or plan.abackend is not None)
        and read is not _UNREACHABLE
        and (not stale or (yield (READY,)))
    )
    token = lock_key = None
    if use_l2:
        if bkey is None or stale:
            bkey = state.builder.backend_key(args, kwargs)
        assert bkey is not None
        outcome: Any = None
        if state.atomic:  # read or not: one round trip reads again and locks
            lock_key, token = _lock_for(bkey)
            outcome = yield from get_or_lock_steps(
                state, plan, bkey, lock_key, token, reread=read is not True
            )
        else:
            found = (yield from get_steps(state, plan, bkey)) if read else _NOT_READ
            value, payload, expires = found
            if value is not MISSING:
                return state.accept_l2(plan, lkey, bkey, value, payload, call, epoch, expires)
            if payload is _UNREACHABLE:
                outcome = _LOCK_FAILED
            elif state.locking:
                lock_key, token = _lock_for(bkey)
                outcome = yield from lock_steps(state, plan, bkey, lock_key, token)
        if type(outcome) is tuple:
            _, value, payload, expires = outcome
            return state.accept_l2(plan, lkey, bkey, value, payload, call, epoch, expires)
        if outcome is _LOCK_FAILED:
            use_l2 = False  # compute, keep in L1, don't pay a second timeout writing
        if outcome is not True:
            token = None
    try:
        state.counts[MISSES] += 1
        if state.debug_on(_DEBUG):
            state.debug("miss", bkey, args, kwargs)
        result = yield (CALL,)
        value, pair, payload = state.store(plan, lkey, result, bkey if use_l2 else None, epoch)
    except GeneratorExit:
        raise
    except BaseException:
        if token is not None:
            assert lock_key is not None
            yield from unlock_steps(state, plan, lock_key, token)
        raise
    if payload is not None and use_l2:
        key = bkey or state.builder.backend_key(args, kwargs)
        if token is not None and state.atomic:
            assert lock_key is not None
            yield from set_and_unlock_steps(state, plan, key, payload, lock_key, token)
            return value, pair  # stored and unlocked, or unreachable: the lease frees it
        if not (yield from set_steps(state, plan, key, payload)):
            token = None  # unreachable: no second timeout unlocking, the lease frees it
    if token is not None:
        assert lock_key is not None
        yield from unlock_steps(state, plan, lock_key, token)
    return value, pair
