"""cachekit through Redis Sentinel: a master, a replica and one Sentinel (tests/support).

The backend conformance suites against the ``redis+sentinel://`` URL, the decorator writing
to the master, and a failover (``SENTINEL FAILOVER`` and kill -9 of the master) under load:
no call raises, values stay correct, L2 hits resume on the new master, and the coherence
listener follows the master (notifications reach a second copy and another process).
Figures are printed (run with -s); wall-clock assertions are generous sanity bounds.

Every test is in the "sentinel" xdist group: one worker owns the session's Sentinel setup.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from redis_fixtures import AsyncRedisBackendSuite, RedisBackendSuite

from cachekit.breaker import BreakerConfig
from cachekit.coherence import DEGRADED_L1_TTL, router_for
from cachekit.errors import BackendError
from cachekit_redis import AsyncRedisBackend, RedisBackend

HERE = Path(__file__).parent

pytestmark = pytest.mark.xdist_group("sentinel")


def _helpers() -> Any:
    sys.path.insert(0, str(HERE))
    try:
        return importlib.import_module("distributed_child")
    finally:
        sys.path.remove(str(HERE))


dist = _helpers()
make_copy, make_async_copy, wait_for = dist.make_copy, dist.make_async_copy, dist.wait_for


# --------------------------------------------------------------------------------------------
# The backend suites


class _SentinelUrl:
    @pytest.fixture(autouse=True)
    def _url(self, clean_redis_sentinel):
        self.url = clean_redis_sentinel.url


class TestSentinelBackend(_SentinelUrl, RedisBackendSuite):
    pass


class TestAsyncSentinelBackend(_SentinelUrl, AsyncRedisBackendSuite):
    pass


def test_sentinel_clients_pin_their_timeouts_and_never_retry(clean_redis_sentinel):
    options = {"socket_timeout": 0.3, "socket_connect_timeout": 0.2, "pool_size": 7}
    backend = RedisBackend(clean_redis_sentinel.url, **options)
    assert backend.ping()
    pool = backend.client.connection_pool
    kwargs = pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.3, 0.2)
    assert (kwargs["protocol"], kwargs["retry"].get_retries(), pool.max_connections) == (2, 0, 7)
    for sentinel in pool.sentinel_manager.sentinels:  # the Sentinels are asked the same way
        skwargs = sentinel.connection_pool.connection_kwargs
        assert (skwargs["socket_timeout"], skwargs["socket_connect_timeout"]) == (0.3, 0.2)
        assert skwargs["retry"].get_retries() == 0
    backend.close()

    async def run() -> None:
        abackend = AsyncRedisBackend(clean_redis_sentinel.url, **options)
        assert await abackend.ping()
        apool = abackend.client.connection_pool
        akwargs = apool.connection_kwargs
        assert (akwargs["socket_timeout"], akwargs["socket_connect_timeout"]) == (0.3, 0.2)
        assert (akwargs["retry"].get_retries(), apool.max_connections) == (0, 7)
        await abackend.close()

    asyncio.run(run())


# --------------------------------------------------------------------------------------------
# The decorator through Sentinel


def test_entries_go_to_the_master_and_are_shared_by_copies(clean_redis_sentinel):
    setup = clean_redis_sentinel
    first, second = make_copy(setup.url), make_copy(setup.url)
    args = [f"user-{i}" for i in range(5)]
    assert [first(a)["key"] for a in args] == args
    master = setup.master.client()
    assert all(master.exists(first.cache_key(a)) for a in args)
    assert master.execute_command("WAIT", 1, 1000) == 1
    assert all(setup.replica.client().exists(first.cache_key(a)) for a in args)
    assert [second(a) for a in args] == [first(a) for a in args]
    assert (second.cache_info().l2_hits, second.cache_info().errors) == (len(args), 0)
    health = first.check_health()
    assert health["backend"]["reachable"] is True
    assert health["backend"]["endpoint"] == setup.url

    afirst, asecond = make_async_copy(setup.url), make_async_copy(setup.url)

    async def run() -> None:
        assert [v["key"] for v in await asyncio.gather(*(afirst(a) for a in args))] == args
        assert [v["key"] for v in await asyncio.gather(*(asecond(a) for a in args))] == args

    asyncio.run(run())
    assert (asecond.cache_info().l2_hits, asecond.cache_info().errors) == (len(args), 0)


class _Load:
    """A thread calling ``fn`` over ``args`` until stopped; records every call."""

    def __init__(self, fn: Any, args: list[str], coherence: Any) -> None:
        self.fn, self.args, self.coherence = fn, args, coherence
        self.calls: list[tuple[float, bool]] = []  # (monotonic time, was an L2 hit)
        self.health: list[tuple[float, bool]] = []  # changes of coherence.healthy
        self.errors: list[BaseException] = []
        self.wrong = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        i = 0
        healthy = self.coherence.healthy
        while not self._stop.is_set():
            if self.coherence.healthy != healthy:
                healthy = not healthy
                self.health.append((time.monotonic(), healthy))
            arg = self.args[i % len(self.args)]
            i += 1
            before = self.fn.cache_info().l2_hits
            try:
                value = self.fn(arg)
            except BaseException as exc:  # must never happen: recorded, asserted empty
                self.errors.append(exc)
                continue
            self.wrong += value["key"] != arg
            self.calls.append((time.monotonic(), self.fn.cache_info().l2_hits > before))
            time.sleep(0.002)

    def hits_since(self, t: float) -> int:
        return sum(1 for at, hit in self.calls if at > t and hit)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.mark.parametrize("kill", [False, True], ids=["sentinel-failover", "kill-master"])
def test_calls_survive_a_failover_and_follow_the_new_master(
    clean_redis_sentinel, tmp_path, monkeypatch, kill
):
    setup = clean_redis_sentinel
    url = setup.url
    old_master = setup.master
    monkeypatch.setenv("CACHEKIT_BACKEND", url)
    dist.reset()
    keys = [f"user-{i}" for i in range(4)]
    versions = dict.fromkeys(keys, "v1")
    source = tmp_path / "source.json"
    dist.write_source(source, versions)
    monkeypatch.setenv("DIST_SOURCE", str(source))
    # l1=False: every call of `reader` asks L2. A short recovery_timeout so the breaker
    # that opens during the failover lets L2 back in soon after it.
    reader = make_copy(url, l1=False, circuit_breaker=BreakerConfig(recovery_timeout=0.5))
    watcher = make_copy(url)  # same keys, with an L1 kept coherent by notifications
    reader.__cachekit__.resolve().breaker.reset()
    for key in keys:
        reader(key)
        dist.lookup(key)
    assert setup.master.client().execute_command("WAIT", 1, 1000) == 1  # on the replica too
    coherence = reader.__cachekit__.coherence
    wait_for(lambda: coherence.healthy)
    reconnects = coherence.reconnects

    # The child's breaker (which opens during the failover, like ours) also recovers soon.
    quick = {"CACHEKIT_CIRCUIT_BREAKER_RECOVERY_TIMEOUT": "0.5"}
    with dist.Child(url, source, "watch", 60, *keys, env=quick) as child:
        assert json.loads(child.expect("READY")) == {"versions": versions, "healthy": True}
        load = _Load(reader, keys, coherence)
        try:
            wait_for(lambda: load.hits_since(0) >= 10)
            started = time.monotonic()
            new_master = setup.failover(kill=kill)
            failover = time.monotonic() - started
            wait_for(lambda: load.hits_since(time.monotonic() - 0.05) > 0, 20)
            wait_for(lambda: coherence.healthy and coherence.reconnects > reconnects, 10)
            time.sleep(0.2)
        finally:
            load.stop()
        assert new_master is not old_master and setup.master is new_master
        assert load.errors == [] and load.wrong == 0
        during = [(at, hit) for at, hit in load.calls if at >= started]
        misses = [at for at, hit in during if not hit]
        first_miss = misses[0] if misses else started
        back = next(at for at, hit in during if hit and at > first_miss)
        last_before = max((at for at, hit in load.calls if hit and at <= first_miss), default=0)
        lost = next(at for at, healthy in load.health if not healthy)
        regained = next(at for at, healthy in load.health if healthy and at > lost)

        # The child's listener lost the stream and is back; both listeners (this process's
        # and the child's) now sit on the new master.
        assert child.expect("HEALTH", 20).split()[0] == "False"
        assert child.expect("HEALTH", 20).split()[0] == "True"
        names = [c.get("name") for c in new_master.client().client_list()]
        assert names.count("cachekit-coherence") >= 2, names
        time.sleep(DEGRADED_L1_TTL + 0.5)  # the child's degraded entries and breaker: gone

        # A write on the new master reaches a second copy in this process...
        watcher(keys[0])
        watcher(keys[0])
        assert watcher.cache_info().l1_hits >= 1 and watcher.cache_info().size == 1
        router = router_for(coherence)
        resets, notices = router.resets, router.notifications
        assert reader.invalidate_cache(keys[0]) == 1  # DEL on the new master
        notified = wait_for(lambda: watcher.cache_info().size == 0, 5)
        assert (router.resets, router.notifications) == (resets, notices + 1)
        # ...and another process.
        versions[keys[1]] = "v2"
        dist.write_source(source, versions)
        t0 = time.monotonic()
        dist.lookup.invalidate_cache(keys[1])
        key, stamp, version, healthy, notes = child.expect("CHANGED").split()
        assert (key, version, healthy) == (keys[1], "v2", "True") and int(notes) > 0
        child_delay = float(stamp) - t0
        assert child_delay < DEGRADED_L1_TTL

    # L2 from the new master: keys[0] (invalidated) is stored again, then every key hits.
    assert [reader(k)["key"] for k in keys] == keys
    before = reader.cache_info().l2_hits
    assert [reader(k)["key"] for k in keys] == keys
    assert reader.cache_info().l2_hits == before + len(keys)
    assert reader.__cachekit__.plan.breaker.state == "closed"
    how = "kill -9 of the master" if kill else "SENTINEL FAILOVER"
    print(
        f"\n[sentinel] {how}: failover() returned after {failover:.2f} s; "
        f"{len(during)} calls meanwhile, 0 raised, 0 wrong, {len(misses)} ran uncached"
    )
    print(
        f"[sentinel] L2 gap {(back - last_before) * 1000:.0f} ms (last hit on the old master "
        f"-> first hit on the new one); notification stream lost "
        f"{(lost - started) * 1000:.0f} ms after the failover began, back on the new master "
        f"{(regained - lost) * 1000:.0f} ms later"
    )
    print(
        f"[sentinel] after the failover: a DEL on the new master dropped another copy's L1 "
        f"entry in {notified * 1000:.1f} ms and another process's in {child_delay * 1000:.1f} ms"
    )


# --------------------------------------------------------------------------------------------
# A planned failover: how soon writes leave the old master

#: Sanity bound: how long after Sentinel names the new master writes may still reach the old
#: one. Measured: a few ms (the coherence listener hears +switch-master and every pool drops
#: its connections). Before that reset, pooled connections kept using the old master until
#: Sentinel itself demoted it, 8-18 s later.
MOVE_BOUND = 3.0


class _Writer:
    """A thread calling ``fn`` with a new argument each time (a miss that writes its entry);
    for a coroutine function, four concurrent calls at a time in its own event loop."""

    def __init__(self, fn: Any, is_async: bool) -> None:
        self.fn = fn
        self.calls: list[tuple[float, str]] = []  # (monotonic time the call returned, arg)
        self.errors: list[BaseException] = []
        self.wrong = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run_async if is_async else self._run, daemon=True
        )
        self._thread.start()

    def _record(self, arg: str, value: Any) -> None:
        self.wrong += value["key"] != arg
        self.calls.append((time.monotonic(), arg))

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            arg = f"w-{i}"
            i += 1
            try:
                self._record(arg, self.fn(arg))
            except BaseException as exc:  # must never happen: recorded, asserted empty
                self.errors.append(exc)
            time.sleep(0.001)

    def _run_async(self) -> None:
        async def one(arg: str) -> None:
            try:
                self._record(arg, await self.fn(arg))
            except BaseException as exc:
                self.errors.append(exc)

        async def run() -> None:
            i = 0
            while not self._stop.is_set():
                await asyncio.gather(*(one(f"w-{i + k}") for k in range(4)))
                i += 4
                await asyncio.sleep(0.001)

        asyncio.run(run())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _switch_time(setup: Any) -> tuple[threading.Thread, list[float]]:
    """A thread subscribed to Sentinel's +switch-master: records when the message came."""
    pubsub = setup.sentinel_server.client().pubsub()
    pubsub.subscribe("+switch-master")
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    at: list[float] = []

    def run() -> None:
        deadline = time.monotonic() + 30
        try:
            while not at and time.monotonic() < deadline:
                if pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5):
                    at.append(time.monotonic())
        finally:
            pubsub.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, at


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_writes_leave_the_old_master_as_soon_as_sentinel_names_the_new_one(
    clean_redis_sentinel, report_figures, flavor
):
    """SENTINEL FAILOVER leaves the old master up and writable until Sentinel demotes it,
    8-18 s later (``failover(demote=False)`` leaves it so). Every call writes a new entry;
    afterwards, an entry that only the old master holds was written there after the split."""
    setup = clean_redis_sentinel
    url, old, new = setup.url, setup.master, setup.replica
    options: dict[str, Any] = {"l1": False, "circuit_breaker": BreakerConfig(recovery_timeout=0.5)}
    fn = make_async_copy(url, **options) if flavor == "async" else make_copy(url, **options)
    fn.cache_key("warm")  # resolves the backend and creates the generation counters
    assert old.client().execute_command("WAIT", 1, 1000) == 1  # the counters on the replica too
    coherence = fn.__cachekit__.coherence
    wait_for(lambda: coherence.healthy)
    watcher, switched = _switch_time(setup)
    writer = _Writer(fn, flavor == "async")
    try:
        wait_for(lambda: len(writer.calls) >= 50)
        started = time.monotonic()
        assert setup.failover(demote=False) is new
        watcher.join(30)
        assert switched, "no +switch-master message"
        switch = switched[0]
        time.sleep(max(0.0, switch + MOVE_BOUND + 1.0 - time.monotonic()))
        writer.stop()
        keys = [fn.cache_key(arg) for _, arg in writer.calls]
        on_old, on_new = old.client().pipeline(), new.client().pipeline()
        for key in keys:
            on_old.exists(key)
            on_new.exists(key)
        where = list(zip(on_old.execute(), on_new.execute(), strict=True))
        # Still a master: had Sentinel demoted it already, its entries would be gone.
        assert old.info("replication")["role"] == "master"
    finally:
        writer.stop()
        setup.demote_old_master()
    assert writer.errors == [] and writer.wrong == 0
    times = [at for at, _ in writer.calls]
    only_old = [at - switch for at, (o, n) in zip(times, where, strict=True) if o and not n]
    late = [offset for offset in only_old if offset > 0]
    window = max(late, default=0.0)
    after_bound = [n for at, (_, n) in zip(times, where, strict=True) if at > switch + MOVE_BOUND]
    uncached = sum(1 for o, n in where if not o and not n)
    assert window < MOVE_BOUND, f"writes reached the old master {window:.2f} s after the switch"
    assert len(after_bound) >= 10 and all(after_bound)  # the load went on; all on the new master
    report_figures(
        f"[sentinel] SENTINEL FAILOVER, {flavor} calls: the last write to the old master came "
        f"{window * 1000:.0f} ms after Sentinel named the new one ({len(late)} writes after "
        f"the switch; bound {MOVE_BOUND:.0f} s); {len(only_old) - len(late)} writes between the "
        f"replica's promotion and the switch, {switch - started:.2f} s after the failover "
        f"began, went to the old master while Sentinel still named it"
    )
    report_figures(
        f"[sentinel] {len(writer.calls)} calls meanwhile, 0 raised, 0 wrong, {uncached} ran "
        f"uncached (no entry on either server)"
    )


def test_a_master_answering_readonly_resets_every_pool_of_the_service(clean_redis_sentinel):
    """Without a listener to report the switch, the first READONLY from the demoted master
    (redis-py turns it into "The previous master is now a slave") resets every pool of the
    service: the other clients' next calls go to the new master instead of failing too."""
    setup = clean_redis_sentinel
    old, new = setup.master, setup.replica
    host, port = setup.sentinel
    # The sentinel named twice: a URL (and a watch) of its own, that no listener follows.
    url = f"redis+sentinel://{host}:{port},{host}:{port}/{setup.service_name}"
    first, second, third = RedisBackend(url), RedisBackend(url), AsyncRedisBackend(url)
    loop = asyncio.new_event_loop()
    try:
        first.set("k1", b"v")
        second.set("k2", b"v")
        loop.run_until_complete(third.set("k3", b"v"))
        setup.failover(demote=False)
        first.set("k4", b"v")  # nobody told the pools: still the old master
        assert old.client().exists("k4") and not new.client().exists("k4")
        old.execute("REPLICAOF", new.host, str(new.port))  # demoted; its clients stay connected
        with pytest.raises(BackendError, match="previous master is now a slave"):
            first.set("k5", b"v")
        second.set("k6", b"v")
        loop.run_until_complete(third.set("k7", b"v"))
        first.set("k8", b"v")
        assert [new.client().exists(k) for k in ("k6", "k7", "k8")] == [1, 1, 1]
        loop.run_until_complete(third.close())
    finally:
        loop.close()
        first.close()
        second.close()
        setup.demote_old_master()


# --------------------------------------------------------------------------------------------
# Issue 11 item 17: a stampede lock taken on the old master before a failover


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_a_lock_from_before_a_failover_does_not_hold_callers_for_its_lease(
    clean_redis_sentinel, report_figures, flavor
):
    """A leader took the key's lock on the master, which replicated it; after the failover its
    release (and its value) landed on the old master and were lost. The new master holds an
    orphan lock for the rest of its lease: a caller that has seen the switch takes it over
    instead of polling until the lease runs out."""
    from cachekit_redis.failover import watch_for
    from cachekit_redis.urls import parse

    setup = clean_redis_sentinel
    url, old, new = setup.url, setup.master, setup.replica
    lease = 10.0
    options: dict[str, Any] = {"l1": False, "lock_lease": lease}
    fn = make_async_copy(url, **options) if flavor == "async" else make_copy(url, **options)
    key = fn.cache_key("held")  # resolves the function and starts its listener
    lock = "cachekit-lock:{" + key + "}"
    coherence = fn.__cachekit__.coherence
    wait_for(lambda: coherence.healthy)
    watch = watch_for(parse(url))
    old.client().set(lock, "another-process", px=int(lease * 1000))
    assert old.client().execute_command("WAIT", 1, 1000) == 1  # the lock is on the replica
    try:
        assert setup.failover(demote=False) is new
        old.client().delete(lock)  # the holder's release: lost with the old master
        wait_for(lambda: watch.master == new.address, 5)  # this process saw the switch
        assert new.client().pttl(lock) > 2000  # the orphan would hold callers that long
        started = time.monotonic()
        value = asyncio.run(fn("held")) if flavor == "async" else fn("held")
        took = time.monotonic() - started
        if flavor == "sync":  # a lock taken after the switch is respected
            new.client().set(lock, "taken-after", px=int(lease * 1000))
            assert not fn.__cachekit__.plan.backend.acquire_lock(lock, "mine", lease)
    finally:
        setup.demote_old_master()
    assert value["key"] == "held"
    # About one reply timeout (0.5 s) at most, not the rest of a 10 s lease.
    assert took < 1.5, f"the call waited {took:.1f} s for an orphan lock"
    report_figures(
        f"[sentinel] {flavor} call after SENTINEL FAILOVER with an orphan lock on the new "
        f"master: {took * 1000:.0f} ms (lease {lease:.0f} s)"
    )
