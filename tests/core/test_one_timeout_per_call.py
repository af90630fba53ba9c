"""A backend that stops answering costs a call at most one timeout (issue 11 item 12).

Once one backend operation of a call failed transiently (a timeout, a lost connection),
the rest of that call leaves the backend alone: no write after it, no unlock (the lock's
lease frees it), no further lock attempts. Sync and async callers alike. The real-server
version (a SIGSTOPped redis-server, many threads) is in tests/redis/test_faults.py.
"""

from __future__ import annotations

import asyncio

import pytest

from cachekit import cache
from cachekit.backends.memory import MemoryBackend
from cachekit.breaker import BreakerConfig
from cachekit.constants import CAP_LOCKING, MISSING

PATIENT = BreakerConfig(failure_threshold=100)  # the breaker stays out of the way


class Recording(MemoryBackend):
    """The memory store with the one capability these tests need: the stampede lock.
    Async functions call it in a worker thread, as they would any blocking backend."""

    capabilities = frozenset({CAP_LOCKING})
    to_async = None

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.calls: list[str] = []

    def get(self, key):
        self.calls.append("get")
        return super().get(key)

    def set(self, key, value, ttl=None):
        self.calls.append("set")
        return super().set(key, value, ttl)

    def acquire_lock(self, key, token, lease):
        self.calls.append("lock")
        return super().acquire_lock(key, token, lease)

    def release_lock(self, key, token):
        self.calls.append("unlock")
        return super().release_lock(key, token)


class FreezesAfterLocking(Recording):
    """Reads miss and the lock is taken; then the server stops answering."""

    def set(self, key, value, ttl=None):
        self.calls.append("set")
        raise TimeoutError("timed out")

    def release_lock(self, key, token):
        self.calls.append("unlock")
        raise TimeoutError("timed out")


class FreezesWhileAnotherHoldsTheLock(Recording):
    """Another process holds the lock; the read that polls for its value times out."""

    def acquire_lock(self, key, token, lease):
        self.calls.append("lock")
        return False

    def get(self, key):
        self.calls.append("get")
        if self.calls.count("get") > 1:
            raise TimeoutError("timed out")
        return MISSING


def call_once(backend, is_async):
    runs = []
    if is_async:

        @cache(backend=backend, l1=False, circuit_breaker=PATIENT)
        async def afn(x):
            runs.append(x)
            return {"x": x}

        assert asyncio.run(afn(1)) == {"x": 1}
    else:

        @cache(backend=backend, l1=False, circuit_breaker=PATIENT)
        def fn(x):
            runs.append(x)
            return {"x": x}

        assert fn(1) == {"x": 1}
    assert runs == [1]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_write_that_timed_out_is_not_followed_by_an_unlock(is_async):
    backend = FreezesAfterLocking(f"freeze-after-lock-{is_async}")
    call_once(backend, is_async)
    assert backend.calls == ["get", "lock", "set"]  # the lease frees the lock


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_waiting_for_another_holder_stops_at_the_first_timeout(is_async):
    backend = FreezesWhileAnotherHoldsTheLock(f"freeze-while-held-{is_async}")
    call_once(backend, is_async)
    assert backend.calls == ["get", "lock", "get"]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_healthy_miss_still_writes_and_unlocks(is_async):
    backend = Recording(f"healthy-miss-{is_async}")
    call_once(backend, is_async)
    assert backend.calls == ["get", "lock", "set", "unlock"]
