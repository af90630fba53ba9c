"""Concurrent misses on one key compute once per process (threads and asyncio tasks)."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from cachekit import cache


def test_concurrent_thread_misses_compute_once():
    release = threading.Event()
    runs = []

    @cache()
    def slow(x):
        runs.append(x)
        release.wait(5)
        return {"x": x}

    results = []
    barrier = threading.Barrier(20)

    def caller():
        barrier.wait()
        results.append(slow(7))

    threads = [threading.Thread(target=caller) for _ in range(20)]
    for t in threads:
        t.start()
    # Let every caller reach the cache before the computation finishes.
    deadline = 200
    while len(slow.__cachekit__.inflight) == 0 and deadline:
        deadline -= 1
        threading.Event().wait(0.01)
    threading.Event().wait(0.05)
    release.set()
    for t in threads:
        t.join(10)
    assert runs == [7]
    assert results == [{"x": 7}] * 20
    # Each waiter got its own copy.
    assert len({id(r) for r in results}) == 20
    info = slow.cache_info()
    assert info.misses == 1
    assert info.hits == 19


def test_when_the_computation_raises_every_waiter_gets_the_exception():
    release = threading.Event()
    runs = []

    @cache()
    def failing(x):
        runs.append(x)
        release.wait(5)
        raise RuntimeError("database down")

    errors = []
    barrier = threading.Barrier(8)

    def caller():
        barrier.wait()
        try:
            failing(1)
        except RuntimeError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    threading.Event().wait(0.1)
    release.set()
    for t in threads:
        t.join(10)
    assert errors == ["database down"] * 8
    # Late arrivals may start a second computation after the first failed; nothing is cached.
    assert 1 <= len(runs) <= 8
    assert failing.cache_info().size == 0
    release.set()
    with pytest.raises(RuntimeError):
        failing(1)


def test_concurrent_asyncio_misses_compute_once():
    runs = []

    @cache()
    async def fetch(x):
        runs.append(x)
        await asyncio.sleep(0.05)
        return [x]

    async def main():
        return await asyncio.gather(*(fetch(3) for _ in range(50)))

    results = asyncio.run(main())
    assert runs == [3]
    assert results == [[3]] * 50
    assert fetch.cache_info().coalesced == 49


def test_asyncio_exception_reaches_every_waiter_and_nothing_is_cached():
    runs = []

    @cache()
    async def fetch(x):
        runs.append(x)
        await asyncio.sleep(0.02)
        raise LookupError("nope")

    async def main():
        return await asyncio.gather(*(fetch(1) for _ in range(10)), return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, LookupError) for r in results)
    assert runs == [1]
    assert fetch.cache_info().size == 0


def test_cancelled_leader_hands_over_to_a_waiter():
    runs = []

    @cache()
    async def fetch(x):
        runs.append(x)
        await asyncio.sleep(0.05)
        return x * 10

    async def main():
        leader = asyncio.create_task(fetch(2))
        await asyncio.sleep(0.01)
        waiter = asyncio.create_task(fetch(2))
        await asyncio.sleep(0.01)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        return await waiter

    assert asyncio.run(main()) == 20
    assert runs == [2, 2]


def test_cancelled_waiter_does_not_disturb_the_leader():
    @cache()
    async def fetch(x):
        await asyncio.sleep(0.05)
        return x

    async def main():
        leader = asyncio.create_task(fetch(4))
        await asyncio.sleep(0.01)
        waiter = asyncio.create_task(fetch(4))
        await asyncio.sleep(0.01)
        waiter.cancel()
        return await leader

    assert asyncio.run(main()) == 4


def test_threads_and_event_loops_in_different_threads_share_one_computation():
    release = threading.Event()
    runs = []

    @cache()
    async def fetch(x):
        runs.append(x)
        while not release.is_set():
            await asyncio.sleep(0.01)
        return x

    results = []

    def in_own_loop():
        results.append(asyncio.run(fetch(5)))

    threads = [threading.Thread(target=in_own_loop) for _ in range(4)]
    for t in threads:
        t.start()
    threading.Event().wait(0.1)
    release.set()
    for t in threads:
        t.join(10)
    assert results == [5, 5, 5, 5]
    assert runs == [5]


def test_single_flight_can_be_turned_off():
    release = threading.Event()
    runs = []

    @cache(single_flight=False)
    def slow(x):
        runs.append(x)
        release.wait(2)
        return x

    threads = [threading.Thread(target=slow, args=(1,)) for _ in range(4)]
    for t in threads:
        t.start()
    threading.Event().wait(0.1)
    release.set()
    for t in threads:
        t.join(10)
    assert len(runs) == 4


def test_forked_child_starts_with_an_empty_l1():
    runs = []

    @cache()
    def f(x):
        runs.append(x)
        return x

    f(1)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            f(1)
            os.write(w, b"%d %d" % (len(runs), f.cache_info().size))
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    child = os.read(r, 100).decode()
    os.close(r)
    assert child == "2 1"  # the child recomputed: its L1 was empty
    assert runs == [1]


def test_a_function_calling_itself_with_the_same_key_does_not_deadlock():
    depth = []

    @cache()
    def recursive(x):
        depth.append(x)
        if len(depth) < 3:
            return recursive(x) + 1
        return 0

    assert recursive(1) == 2
    assert depth == [1, 1, 1]


@pytest.mark.parametrize("atomic", [False, True], ids=["acquire_lock", "get_or_lock"])
def test_a_caller_cancelled_while_taking_the_lock_does_not_keep_it(atomic):
    from cachekit.backends.memory import AsyncMemoryBackend, MemoryBackend
    from cachekit.constants import CAP_ATOMIC_MISS

    sync = MemoryBackend(f"cancel-lock-{atomic}")

    class SlowLock(AsyncMemoryBackend):
        # With "atomic_miss" the lock is taken by get_or_lock, else by acquire_lock.
        capabilities = (
            AsyncMemoryBackend.capabilities | {CAP_ATOMIC_MISS}
            if atomic
            else AsyncMemoryBackend.capabilities - {CAP_ATOMIC_MISS}
        )

        async def acquire_lock(self, key, token, lease):
            taken = await super().acquire_lock(key, token, lease)
            await asyncio.sleep(0.2)  # the reply is slow: the caller gives up meanwhile
            return taken

        async def get_or_lock(self, key, lock_key, token, lease_ms):
            found = self.sync.get_or_lock(key, lock_key, token, lease_ms)
            await asyncio.sleep(0.2)  # as acquire_lock above
            return found

    @cache(backend=SlowLock(sync), lock_lease=30)
    async def f(x):
        return x

    async def main():
        task = asyncio.create_task(f(1))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert sync._store.locks == {}  # released, not held for the 30 s lease


def test_an_async_function_awaiting_itself_with_the_same_key_recomputes_like_sync():
    depth = []

    @cache()
    async def recursive(x):
        depth.append(x)
        if len(depth) < 3:
            return await recursive(x) + 1
        return 0

    async def main():
        return await asyncio.wait_for(recursive(1), 5)

    assert asyncio.run(main()) == 2  # before the fix: a hang (TimeoutError) or _LeaderGone
    assert depth == [1, 1, 1]


def test_a_cancelled_waiter_whose_leader_is_cancelled_logs_no_error():
    import gc

    @cache()
    async def fetch(x):
        await asyncio.sleep(0.05)
        return x

    problems = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: problems.append(ctx))
        for i in range(20):
            leader = asyncio.create_task(fetch(i))
            await asyncio.sleep(0)
            waiter = asyncio.create_task(fetch(i))
            await asyncio.sleep(0.001)
            waiter.cancel()
            await asyncio.sleep(0)
            leader.cancel()
            for task in (waiter, leader):
                with pytest.raises(asyncio.CancelledError):
                    await task
            await asyncio.sleep(0)
        gc.collect()
        await asyncio.sleep(0)

    asyncio.run(main())
    assert [ctx.get("message") for ctx in problems] == []
