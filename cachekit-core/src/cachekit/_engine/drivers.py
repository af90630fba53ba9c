"""The two drivers of the miss steps (:mod:`cachekit._engine.miss`): :func:`run_sync`
executes their requests in the calling thread, :func:`run_async` in the calling asyncio
task. Each request kind has one handler per driver (_SYNC, _ASYNC); the decisions stay
in the steps.
"""

from __future__ import annotations

from _thread import allocate_lock
from contextlib import suppress

from cachekit._engine.miss import _Failed
from cachekit.coherence import router_for

TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    from typing import Any

    from cachekit._engine.miss import Steps
    from cachekit._engine.options import Plan

    #: cachekit.cached.CachedState (no import cycle, even for types).
    CachedState = Any

__all__ = ["run_async", "run_sync"]


class _Flow:
    """The steps as a driver sees them: the next request, given the last outcome."""

    __slots__ = ("error", "reply", "steps", "value")

    def __init__(self, steps: Steps) -> None:
        self.steps = steps
        self.reply: Any = None
        self.error: BaseException | None = None
        self.value: Any = None

    def next(self) -> tuple[Any, ...] | None:
        """The next request, or None when the steps returned (their value in .value)."""
        steps, error = self.steps, self.error
        try:
            request = steps.send(self.reply) if error is None else steps.throw(error)
        except StopIteration as done:
            self.value = done.value
            return None
        self.reply = self.error = None
        return request


def run_sync(
    state: CachedState, plan: Plan, steps: Steps, args: Any = (), kwargs: Any = None
) -> Any:
    """Execute the steps' requests in this thread; return what the steps return."""
    flow = _Flow(steps)
    while (request := flow.next()) is not None:
        try:
            flow.reply = _SYNC[request[0]](state, plan, request, args, kwargs or {})
        except BaseException as exc:
            flow.error = exc  # thrown into the steps at the request that raised it
    return flow.value


async def run_async(
    state: CachedState, plan: Plan, steps: Steps, args: Any = (), kwargs: Any = None
) -> Any:
    """Execute the steps' requests in this task; return what the steps return."""
    flow = _Flow(steps)
    while (request := flow.next()) is not None:
        try:
            flow.reply = await _ASYNC[request[0]](state, plan, request, args, kwargs or {})
        except BaseException as exc:
            flow.error = exc
    return flow.value


# What each request does, in a thread (_SYNC) and in a task (_ASYNC). A sync backend of
# an async function is called through state._acall: inline or in a worker thread.


def _io(state: CachedState, plan: Plan, request: Any, args: Any, kwargs: Any) -> Any:
    # The sync backend; for an async function's maintenance from sync code, its sync one.
    backend = plan.backend if plan.backend is not None else plan.abackend
    try:
        return getattr(backend, request[1])(*request[2])
    except Exception as exc:
        return _Failed(exc)


async def _aio(state: CachedState, plan: Plan, request: Any, args: Any, kwargs: Any) -> Any:
    try:
        return await state._acall(plan, request[1], *request[2])
    except Exception as exc:
        return _Failed(exc)


def _call(state: CachedState, plan: Plan, request: Any, args: Any, kwargs: Any) -> Any:
    return state.func(*args, **kwargs)


async def _acall(state: CachedState, plan: Plan, request: Any, args: Any, kwargs: Any) -> Any:
    return await state.func(*args, **kwargs)


def _flight(state: CachedState, plan: Plan, request: Any, args: Any, kwargs: Any) -> Any:
    return request[1].result()


async def _aflight(state: CachedState, plan: Plan, request: Any, args: Any, kwargs: Any) -> Any:
    import asyncio

    outcome = asyncio.wrap_future(request[1])
    # A waiter cancelled meanwhile leaves the outcome unread: read it, or asyncio logs
    # "Future exception was never retrieved" for a routine cancellation. shield: a
    # cancelled waiter must not cancel the shared future.
    outcome.add_done_callback(_retrieve_outcome)
    return await asyncio.shield(outcome)


def _wait(state: CachedState, plan: Plan, request: Any, args: Any, kwargs: Any) -> Any:
    _, pause, key = request
    if key is None:
        import time

        time.sleep(pause)
        return
    woken = allocate_lock()
    woken.acquire()
    router = router_for(state.coherence)
    router.wake_on(key, woken.release)
    try:
        woken.acquire(timeout=pause)
    finally:
        router.forget(key, woken.release)


async def _await(state: CachedState, plan: Plan, request: Any, args: Any, kwargs: Any) -> Any:
    import asyncio

    _, pause, key = request
    if key is None:
        await asyncio.sleep(pause)
        return
    loop = asyncio.get_running_loop()
    woken = loop.create_future()

    def wake() -> None:  # from the listener's thread
        loop.call_soon_threadsafe(_settle, woken)

    router = router_for(state.coherence)
    router.wake_on(key, wake)
    try:
        await asyncio.wait((woken,), timeout=pause)
    finally:
        router.forget(key, wake)
        woken.cancel()


def _settle(future: Any) -> None:
    if not future.done():
        future.set_result(None)


def _ready(state: CachedState, plan: Plan, request: Any, args: Any, kwargs: Any) -> Any:
    return state.l2_ready()


async def _aready(state: CachedState, plan: Plan, request: Any, args: Any, kwargs: Any) -> Any:
    return await state.al2_ready()


def _abandon(state: CachedState, plan: Plan, request: Any, args: Any, kwargs: Any) -> Any:
    with suppress(Exception):
        getattr(plan.backend, request[1])(*request[2])


async def _aabandon(state: CachedState, plan: Plan, request: Any, args: Any, kwargs: Any) -> Any:
    import asyncio

    with suppress(BaseException):  # within a second, cancelled or not
        await asyncio.wait_for(state._acall(plan, request[1], *request[2]), 1.0)


# Indexed by request kind: IO, CALL, FLIGHT, WAIT, READY, ABANDON.
_SYNC = (_io, _call, _flight, _wait, _ready, _abandon)
_ASYNC = (_aio, _acall, _aflight, _await, _aready, _aabandon)


def _retrieve_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" report
