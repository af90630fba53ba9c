"""Single flight: one computation per key at a time in a process, the others wait.

A base of :class:`cachekit.cached.CachedState` (one decision for the sync and async
paths), and the two kinds of flight the drivers wait on: :class:`_Flight` for threads,
a ``concurrent.futures.Future`` for asyncio tasks in any thread's event loop.
"""

from __future__ import annotations

from _thread import allocate_lock
from contextvars import ContextVar

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["SingleFlight"]

#: enter_flight's answers for a caller that does not lead the flight.
_WAIT: Any = object()
_REENTER: Any = object()
#: The flights the current thread or asyncio task leads (single flight), so that a
#: function calling itself with the same key computes instead of waiting for itself.
_LEADING: ContextVar[tuple[Any, ...]] = ContextVar("cachekit_leading", default=())


class _LeaderGone(Exception):
    """The computing caller was cancelled or interrupted; a waiter takes over."""


class _Flight:
    """One in-progress computation that other threads wait for (sync single flight).

    Lighter than concurrent.futures.Future (which also costs import time): a lock
    held by the leader until the outcome is set; each waiter acquires and releases
    it in turn.
    """

    __slots__ = ("_error", "_lock", "_value")

    def __init__(self) -> None:
        self._lock = allocate_lock()
        self._lock.acquire()
        self._value: Any = None
        self._error: BaseException | None = None

    def set_result(self, value: Any) -> None:
        self._value = value
        self._lock.release()

    def set_exception(self, error: BaseException) -> None:
        self._error = error
        self._lock.release()

    def result(self) -> Any:
        with self._lock:
            pass
        if self._error is not None:
            raise self._error
        return self._value


def _new_future() -> Any:
    """A future that asyncio tasks in any thread's event loop can await."""
    from concurrent.futures import Future

    return Future()


class SingleFlight:
    """The flights of one function, keyed by L1 key (a base of CachedState)."""

    if TYPE_CHECKING:
        epoch: int

    def _init_flights(self) -> None:
        self.inflight: dict[Any, tuple[Any, int]] = {}  # lkey -> (flight, its epoch)
        self.inflight_lock = allocate_lock()

    def enter_flight(self, lkey: Any, new: Callable[[], Any]) -> tuple[Any, Any]:
        """Join or start the flight computing ``lkey``: (flight, role).

        ``role`` is a context token when this caller leads (it must end with
        leave_flight), _WAIT when another caller leads (wait for its outcome), or
        _REENTER when this very thread or task already leads it: the function calls
        itself with the same arguments, and waiting for itself would never end, so it
        computes outside the flight, like plain Python recursion.

        A flight started before an invalidation that has since reached this function
        (its epoch moved) is not joined: its value may come from the old source. The
        caller starts a new flight in its place, which later callers join; the old
        one still serves the callers that joined it before the invalidation.
        """
        with self.inflight_lock:
            entry = self.inflight.get(lkey)
            epoch = self.epoch
            if entry is None or entry[1] != epoch:
                flight = new()
                self.inflight[lkey] = (flight, epoch)
                return flight, _LEADING.set((*_LEADING.get(), flight))
            flight = entry[0]
        return flight, (_REENTER if flight in _LEADING.get() else _WAIT)

    def leave_flight(
        self, lkey: Any, flight: Any, token: Any, pair: Any, error: BaseException | None
    ) -> None:
        """The leader's end: hand the outcome to the waiters and retire the flight."""
        _LEADING.reset(token)
        if error is None:
            flight.set_result(pair)
        else:
            # A cancelled or interrupted leader is nobody else's outcome: a waiter takes over.
            flight.set_exception(error if isinstance(error, Exception) else _LeaderGone())
        with self.inflight_lock:
            entry = self.inflight.get(lkey)
            if entry is not None and entry[0] is flight:
                del self.inflight[lkey]
