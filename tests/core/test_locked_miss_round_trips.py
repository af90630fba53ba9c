"""A locked miss costs two round trips on a backend with "atomic_miss" (issue 12 item 2).

get_or_lock reads the key or takes its stampede lock; set_and_unlock stores the value
(guarded by what get_or_lock saw) and releases the lock. Backends without the
capability keep the plain path (get, acquire_lock, set, release_lock). The Redis
version, counting the commands a real server receives, is in tests/redis/test_stampede.py.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from cachekit import cache
from cachekit.backends.memory import MemoryBackend
from cachekit.breaker import BreakerConfig
from cachekit.constants import CAP_ATOMIC_MISS, CAP_GUARDED_WRITES, CAP_LOCKING

PATIENT = BreakerConfig(failure_threshold=100)
ATOMIC = frozenset({CAP_LOCKING, CAP_GUARDED_WRITES, CAP_ATOMIC_MISS})


class Counting(MemoryBackend):
    """The memory store, recording every backend call (each one is one round trip).
    Async functions call it in a worker thread, as they would any blocking backend."""

    capabilities = ATOMIC
    to_async = None

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.calls: list[tuple] = []

    def _record(self, *call):
        self.calls.append(call)

    def get(self, key):
        self._record("get", key)
        return super().get(key)

    def set(self, key, value, ttl=None):
        self._record("set", key)
        return super().set(key, value, ttl)

    def set_guarded(self, key, value, ttl, seen):
        self._record("set_guarded", key, seen)
        return super().set_guarded(key, value, ttl, seen)

    def acquire_lock(self, key, token, lease):
        self._record("acquire_lock", key)
        return super().acquire_lock(key, token, lease)

    def release_lock(self, key, token):
        self._record("release_lock", key)
        return super().release_lock(key, token)

    def get_or_lock(self, key, lock_key, token, lease_ms):
        self._record("get_or_lock", key, lock_key)
        return super().get_or_lock(key, lock_key, token, lease_ms)

    def set_and_unlock(self, key, value, ttl, lock_key, token, seen):
        self._record("set_and_unlock", key, lock_key, seen)
        return super().set_and_unlock(key, value, ttl, lock_key, token, seen)

    def names(self):
        return [c[0] for c in self.calls]


def _function(backend, is_async, runs, **options):
    options = {"l1": False, "circuit_breaker": PATIENT, **options}
    if is_async:

        @cache(backend=backend, **options)
        async def afn(x):
            runs.append(x)
            return {"x": x}

        return lambda x: asyncio.run(afn(x)), afn

    @cache(backend=backend, **options)
    def fn(x):
        runs.append(x)
        return {"x": x}

    return fn, fn


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_locked_miss_is_two_round_trips(is_async):
    backend = Counting(f"atomic-two-{is_async}")
    runs = []
    call, fn = _function(backend, is_async, runs, l1=True)
    assert call(1) == {"x": 1}
    assert runs == [1]
    key = fn.cache_key(1)
    lock = "cachekit-lock:{" + key + "}"
    # Before the fix: get, acquire_lock, set_guarded, release_lock (four).
    assert backend.calls == [
        ("get_or_lock", key, lock),
        ("set_and_unlock", key, lock, ""),  # guarded: the key held nothing
    ]
    assert backend._store.locks == {}
    backend.calls.clear()
    other, _ = _function(backend, is_async, runs, l1=True)  # another process's view
    assert other(1) == {"x": 1}  # one round trip, no computation
    assert backend.names() == ["get_or_lock"]
    assert runs == [1]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_without_l1_a_sync_miss_reads_first_then_locks_in_one_round_trip(is_async):
    # A function without L1 reads with a plain GET outside single flight (its hits stay
    # reads, e.g. under CLIENT PAUSE WRITE); its miss then costs get_or_lock and
    # set_and_unlock. Async functions read inside single flight: two in all.
    backend = Counting(f"atomic-nol1-{is_async}")
    call, _ = _function(backend, is_async, [])
    call(0)  # the first call resolves the plan
    backend.calls.clear()
    assert call(1) == {"x": 1}
    expected = ["get_or_lock", "set_and_unlock"]
    assert backend.names() == (expected if is_async else ["get", *expected])


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_without_the_capability_a_miss_keeps_the_plain_lock_path(is_async):
    backend = Counting(f"atomic-plain-{is_async}")
    backend.capabilities = frozenset({CAP_LOCKING, CAP_GUARDED_WRITES})
    call, _ = _function(backend, is_async, [])
    assert call(1) == {"x": 1}
    assert backend.names() == ["get", "acquire_lock", "set_guarded", "release_lock"]


def test_a_lock_key_shares_the_entrys_cluster_slot():
    backend = Counting("atomic-slot")
    call, fn = _function(backend, False, [], namespace="ns")
    call(1)
    key = fn.cache_key(1)
    assert backend.calls[0] == ("get_or_lock", key, "cachekit-lock:{" + key + "}")
    # A key with a hash tag of its own: that tag decides the slot of both.
    from cachekit._engine.miss import lock_key_for

    assert lock_key_for("cachekit:{t}:f:abc") == "cachekit-lock:cachekit:{t}:f:abc"


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_an_invalidation_during_the_computation_refuses_the_store(is_async):
    backend = Counting(f"atomic-guard-{is_async}")
    runs = []
    holder = {}

    def invalidate_then_return(x):
        runs.append(x)
        holder["fn"].__cachekit__.invalidate((x,), {})  # a tombstone lands while computing
        return {"x": x}

    options = {"l1": False, "circuit_breaker": PATIENT}
    if is_async:

        @cache(backend=backend, **options)
        async def afn(x):
            return invalidate_then_return(x)

        holder["fn"] = afn
        assert asyncio.run(afn(1)) == {"x": 1}
    else:

        @cache(backend=backend, **options)
        def fn(x):
            return invalidate_then_return(x)

        holder["fn"] = fn
        assert fn(1) == {"x": 1}
    key = holder["fn"].cache_key(1)
    [(_, _, _, seen)] = [c for c in backend.calls if c[0] == "set_and_unlock"]
    assert seen == ""
    raw = backend._store.items[key][0]
    assert raw.startswith(b"\x00cachekit-tombstone:")  # the invalidation stands
    assert backend._store.locks == {}  # unlocked all the same


def test_a_loser_waits_for_the_holders_value_without_a_polling_storm():
    backend = Counting("atomic-loser")
    runs = []
    call, fn = _function(backend, False, runs, lock_lease=5)
    key = fn.cache_key(1)
    lock = "cachekit-lock:{" + key + "}"
    assert backend.acquire_lock(lock, "another-process", 5.0)
    payload = fn.__cachekit__.resolve().serializer.serialize({"x": "theirs"})
    sealed = fn.__cachekit__._seal(fn.__cachekit__.plan, payload, key)

    def holder_finishes():
        time.sleep(0.15)
        backend.set_and_unlock(key, sealed, 60, lock, "another-process", None)

    backend.calls.clear()
    threading.Thread(target=holder_finishes).start()
    started = time.monotonic()
    assert call(1) == {"x": "theirs"}
    took = time.monotonic() - started
    assert runs == []  # served the holder's value, never computed
    polls = backend.names().count("get_or_lock")
    # Backoff from 2 ms doubling to 50 ms: a handful of polls in 0.15 s, not one per ms.
    assert 2 <= polls <= 15, backend.names()
    assert took < 1.0


def test_a_loser_takes_the_lock_when_the_holder_leaves_without_storing():
    backend = Counting("atomic-left")
    runs = []
    call, fn = _function(backend, False, runs, lock_lease=5)
    key = fn.cache_key(1)
    lock = "cachekit-lock:{" + key + "}"
    assert backend.acquire_lock(lock, "another-process", 5.0)
    threading.Timer(0.05, backend.release_lock, (lock, "another-process")).start()
    assert call(1) == {"x": 1}
    assert runs == [1]
    assert backend.names()[-1] == "set_and_unlock"
    assert backend._store.locks == {}


def test_a_backend_that_fails_get_or_lock_costs_one_timeout():
    class Frozen(Counting):
        def get_or_lock(self, key, lock_key, token, lease_ms):
            self._record("get_or_lock", key, lock_key)
            raise TimeoutError("timed out")

    backend = Frozen("atomic-frozen")
    runs = []
    call, _ = _function(backend, False, runs)
    assert call(1) == {"x": 1}
    assert runs == [1]
    assert backend.names() == ["get_or_lock"]  # no write, no unlock after the timeout
