"""A process that lost a key's stampede lock waits for the holder's write: the write's
change notice wakes it (Router.wake_on), so it neither polls the backend every few
milliseconds nor sleeps past the value. Without a live notification stream it polls
with pauses of at most 50 ms, as before.

Two separately decorated copies of one function act as two processes sharing the
backend (their own L1, single flight and lock attempts); memory:// delivers notices
the way Redis does, to one router per backend."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from lock_waits import LONG_PAUSE, hold_then

import cachekit._engine.drivers as drivers
import cachekit._engine.miss as miss
from cachekit.coherence import Router, router_for


@pytest.fixture
def long_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(miss, "_FIRST_PAUSE", LONG_PAUSE)
    monkeypatch.setattr(miss, "_NOTIFIED_PAUSE", LONG_PAUSE)


def test_a_lock_loser_is_woken_by_the_holder_s_write(long_pauses: None) -> None:
    backend = f"memory://wake-{uuid.uuid4().hex}"
    got, took, runs = hold_then(backend, lambda waiter, _: waiter("k"))
    assert got == {"key": "k", "by": "holder"}
    assert runs == ["holder"]  # the loser took the holder's value, it did not compute
    # Its first pause was at least 2.5 s (LONG_PAUSE jittered); the write ended it.
    assert took < LONG_PAUSE / 2, f"the loser slept {took:.2f} s: not woken"
    from cachekit.backends.memory import MemoryBackend

    assert router_for(MemoryBackend(backend.removeprefix("memory://")).coherence()).wakeups >= 1


def test_an_async_lock_loser_is_woken_by_the_holder_s_write(long_pauses: None) -> None:
    backend = f"memory://wake-{uuid.uuid4().hex}"
    got, took, runs = hold_then(backend, lambda _, awaiter: asyncio.run(awaiter("k")))
    assert got == {"key": "k", "by": "holder"}
    assert runs == ["holder"]
    assert took < LONG_PAUSE / 2, f"the loser slept {took:.2f} s: not woken"


def recorded_waits(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The WAIT requests the sync driver executes from now on (still executed)."""
    waits: list[Any] = []
    real_wait = drivers._SYNC[miss.WAIT]

    def spy(state: Any, plan: Any, request: Any, args: Any, kwargs: Any) -> Any:
        waits.append(request)
        return real_wait(state, plan, request, args, kwargs)

    handlers = tuple(spy if f is real_wait else f for f in drivers._SYNC)
    monkeypatch.setattr(drivers, "_SYNC", handlers)
    return waits


def test_without_notifications_a_loser_polls_with_short_pauses(monkeypatch) -> None:
    """A stream that is down cannot wake anyone: the WAIT names no key, the loser
    polls (pauses of at most _LONGEST_PAUSE) and still gets the holder's value."""
    from cachekit.backends.memory import MemoryBackend

    backend = f"memory://nowake-{uuid.uuid4().hex}"
    coherence = MemoryBackend(backend.removeprefix("memory://")).coherence()
    monkeypatch.setattr(coherence, "healthy", False, raising=False)
    monkeypatch.setattr(miss, "_NOTIFIED_PAUSE", LONG_PAUSE)  # must not be used
    waits = recorded_waits(monkeypatch)
    got, _, runs = hold_then(backend, lambda waiter, _: waiter("k"))
    assert got["by"] == "holder" and runs == ["holder"]
    assert waits and all(key is None for _, _, key in waits)
    assert max(pause for _, pause, _ in waits) <= miss._LONGEST_PAUSE * 1.5


def test_with_notifications_the_pauses_name_the_key_and_grow_longer(monkeypatch) -> None:
    backend = f"memory://names-{uuid.uuid4().hex}"
    waits = recorded_waits(monkeypatch)
    got, _, _ = hold_then(backend, lambda waiter, _: waiter("k"), work=0.05)
    assert got["by"] == "holder"
    assert waits and all(key is not None and key.startswith("cachekit:") for *_, key in waits)


# --- the router's wakers ----------------------------------------------------------------


class _Silent:
    def listen(self, callback: Any) -> None:
        pass


def test_a_notice_wakes_the_waiters_of_its_key_once() -> None:
    router = Router(_Silent())
    woken: list[str] = []
    router.wake_on("cachekit:f:a", lambda: woken.append("a1"))
    router.wake_on("cachekit:f:a", lambda: woken.append("a2"))
    router.wake_on("cachekit:f:b", lambda: woken.append("b"))
    router(["cachekit:f:a"])
    router([b"cachekit:f:a"])  # a second notice finds nobody left
    assert woken == ["a1", "a2"]
    assert router.wakeups == 2
    router(None)  # a reset: the notices waited for may be lost, everyone polls again
    assert woken == ["a1", "a2", "b"]


def test_a_forgotten_waker_is_not_called_and_a_failing_one_stops_nobody() -> None:
    router = Router(_Silent())
    woken: list[str] = []

    def gone() -> None:
        raise RuntimeError("Event loop is closed")

    def kept() -> None:
        woken.append("kept")

    def dropped() -> None:
        woken.append("dropped")

    router.wake_on("cachekit:f:a", gone)
    router.wake_on("cachekit:f:a", kept)
    router.wake_on("cachekit:f:a", dropped)
    router.forget("cachekit:f:a", dropped)
    router.forget("cachekit:f:zzz", dropped)  # never registered: nothing happens
    router(["cachekit:f:a"])
    assert woken == ["kept"]
    assert not router._waiters
