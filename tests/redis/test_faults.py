"""Fault injection: whatever Redis does, callers get their own correct values and no exception.

Every scenario drives real load through ``@cache`` against a private redis-server (or a
loopback proxy in front of one) with short, explicit client timeouts, breaks something, and
checks four things:

* no exception reaches a caller, and every value is the one for the caller's own argument
  (the functions return ``{"x": x, "sq": x * x}``, so a mix-up cannot go unnoticed);
* at most ``threshold + in-flight calls (+ one per failed half-open probe)`` calls pay a
  timeout: a call is counted as *slow* when it took longer than half the socket timeout -
  a count of calls, not a wall-clock bound on the test;
* the circuit breaker opens after ``threshold`` consecutive failures (for faults that make
  Redis unreachable) and stays closed for errors Redis answers with (out of memory);
* recovery: once the server is back, a probe closes the breaker and L2 hits resume.

Each scenario reports its figures through the ``report_figures`` fixture: printed (``-s``)
and listed in the "figures" section of the terminal summary, also under pytest-xdist, e.g.
``[faults] kill -9: 3311 calls, 0 errors to callers, 0 paid a timeout (bound 11 = ...), ...``.
Functions use ``l1=False`` so that every call goes to Redis. Destructive scenarios run against
disposable servers (``make_redis_server``); the last ones use the shared server unharmed.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterator
from time import monotonic, sleep
from typing import Any

import pytest
import redis
from fault_load import AsyncLoad, BreakerLog, Load, async_wait_until, expected
from faults import TcpProxy, flip_bytes, wait_until

from cachekit import cache
from cachekit.breaker import CLOSED, OPEN, BreakerConfig, CircuitBreaker
from cachekit_redis import AsyncRedisBackend, RedisBackend

SOCKET_TIMEOUT = 0.2
SLOW = SOCKET_TIMEOUT / 2  # a call slower than this paid a timeout
THRESHOLD = 5
RECOVERY = 0.5
THREADS = 4
TASKS = 8
KEYS = range(40)
BREAKER = BreakerConfig(failure_threshold=THRESHOLD, recovery_timeout=RECOVERY)


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture
def breaker_log() -> Iterator[BreakerLog]:
    logger = logging.getLogger("cachekit.breaker")
    handler = BreakerLog()
    level = logger.level
    logger.setLevel(logging.WARNING)  # whatever an earlier test did to the "cachekit" logger
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def redis_backend(backends: list[Any], url: str, **options: Any) -> RedisBackend:
    options.setdefault("socket_timeout", SOCKET_TIMEOUT)
    options.setdefault("socket_connect_timeout", SOCKET_TIMEOUT)
    backend = RedisBackend(url, **options)
    backends.append(backend)
    return backend


def async_redis_backend(backends: list[Any], url: str, **options: Any) -> AsyncRedisBackend:
    options.setdefault("socket_timeout", SOCKET_TIMEOUT)
    options.setdefault("socket_connect_timeout", SOCKET_TIMEOUT)
    backend = AsyncRedisBackend(url, **options)
    backends.append(backend)
    return backend


def cached_square(backend: Any) -> Any:
    @cache(backend=backend, ttl=60, l1=False, circuit_breaker=BREAKER)
    def square(x: int) -> dict[str, int]:
        return expected(x)

    return square


def fresh_breaker(fn: Any) -> CircuitBreaker:
    """The function's breaker, closed (a port reused from an earlier test shares it)."""
    breaker = fn.__cachekit__.resolve().breaker
    assert breaker is not None
    breaker.reset()
    return breaker


def warm(fn: Any, keys: Any = KEYS) -> None:
    """Store every key in Redis, then check that reading them back hits L2."""
    for x in keys:
        assert fn(x) == expected(x)
    before = fn.cache_info().l2_hits
    for x in keys:
        assert fn(x) == expected(x)
    assert fn.cache_info().l2_hits - before == len(keys)


def line(name: str, *figures: str) -> str:
    """One line of figures: ``[faults] <scenario>: <figure>, <figure>, ...``."""
    return f"[faults] {name}: " + ", ".join(figures)


def timeout_figure(slow: int, bound: int, in_flight: int, probes: int) -> str:
    return (
        f"{slow} paid a timeout (bound {bound} = threshold {THRESHOLD} + {in_flight} in "
        f"flight + {probes} probes)"
    )


def fault_then_recover(
    name: str,
    square: Any,
    log: BreakerLog,
    report_figures: Callable[[str], None],
    *,
    inject: Callable[[], None],
    heal: Callable[[], None],
    failed_probes: int = 1,
    healed_by: str = "the fault ended",
) -> None:
    """Threads calling, fault, breaker opens (and ``failed_probes`` probes fail), heal,
    recovery; then: no error and no wrong value for any caller, few calls paid a timeout."""
    breaker = fresh_breaker(square)
    warm(square)
    base = dict(breaker.transitions)
    with Load(square, KEYS, threads=THREADS) as load:
        load.wait_calls(100)
        fault = load.mark()
        inject()
        # Opened once, then again after each failed half-open probe.
        wait_until(
            lambda: breaker.transitions["opened"] - base["opened"] >= 1 + failed_probes,
            timeout=15,
        )
        opened = breaker.transitions["opened"] - base["opened"]
        assert breaker.state == OPEN
        load.wait_calls(100)  # fast: no Redis I/O while open
        heal_started = load.mark()
        heal()
        healed = load.mark()
        hits = square.cache_info().l2_hits
        wait_until(
            lambda: breaker.state == CLOSED and square.cache_info().l2_hits >= hits + 20,
            timeout=15,
        )
        recovered = monotonic() - healed
        load.wait_calls(100)
    probes = breaker.transitions["half_opened"] - base["half_opened"]
    slow = load.slow(fault, heal_started, SLOW)
    bound = THRESHOLD + THREADS + probes
    after = log.opened_after(breaker.endpoint)
    report_figures(
        line(
            name,
            f"{len(load)} calls from {THREADS} threads",
            f"{load.errors} errors to callers",
            timeout_figure(slow, bound, THREADS, probes),
            f"breaker opened after {after[0] if after else '?'} failures ({opened}x while down)",
            f"recovered {recovered:.2f} s after {healed_by}",
        )
    )
    load.check()
    assert after, "the breaker never logged its opening (E030)"
    assert after[0] == THRESHOLD
    assert slow <= bound


# --- 1. kill -9 and restart -------------------------------------------------------------------


def test_kill_9_mid_load_fails_open_then_recovers_after_restart(
    make_redis_server, backends, breaker_log, report_figures
):
    server = make_redis_server(name="kill")
    square = cached_square(redis_backend(backends, server.url))
    fault_then_recover(
        "kill -9",
        square,
        breaker_log,
        report_figures,
        inject=server.kill,
        heal=server.restart,  # same port, no data
        healed_by="restart",
    )


# --- 2. SIGSTOP / SIGCONT ---------------------------------------------------------------------


def test_frozen_server_costs_at_most_one_timeout_per_in_flight_call(
    make_redis_server, backends, breaker_log, report_figures
):
    server = make_redis_server(name="sigstop")
    square = cached_square(redis_backend(backends, server.url))
    fault_then_recover(
        "SIGSTOP/SIGCONT",
        square,
        breaker_log,
        report_figures,
        inject=server.pause,
        heal=server.resume,
        healed_by="SIGCONT",
    )


# --- 3. CLIENT PAUSE ------------------------------------------------------------------------


def test_client_pause_all_times_out_fails_open_and_recovers(
    make_redis_server, backends, breaker_log, report_figures
):
    server = make_redis_server(name="pause-all")
    square = cached_square(redis_backend(backends, server.url))
    pause_ms = 1500  # PAUSE ALL also blocks CLIENT UNPAUSE: the pause has to run out
    ends_at = 0.0

    def pause() -> None:
        nonlocal ends_at
        ends_at = monotonic() + pause_ms / 1000
        server.execute("CLIENT", "PAUSE", pause_ms, "ALL")

    fault_then_recover(
        "CLIENT PAUSE ALL",
        square,
        breaker_log,
        report_figures,
        inject=pause,
        heal=lambda: sleep(max(0.0, ends_at - monotonic())),
        failed_probes=0,
        healed_by="the pause ended",
    )


def test_client_pause_write_keeps_reads_hitting_and_fails_writes_open(
    make_redis_server, backends, report_figures
):
    server = make_redis_server(name="pause-write")
    square = cached_square(redis_backend(backends, server.url))
    breaker = fresh_breaker(square)
    warm(square)
    new_keys = range(1000, 1005)
    server.execute("CLIENT", "PAUSE", 30_000, "WRITE")
    try:
        before = square.cache_info()
        # Readers of stored keys run while the main thread misses on new keys, whose lock
        # and SET block until the socket timeout: reads keep hitting, writes fail open.
        with Load(square, KEYS, threads=2) as readers:
            readers.wait_calls(50)
            slow_misses = 0
            for x in new_keys:
                started = monotonic()
                assert square(x) == expected(x)
                slow_misses += monotonic() - started > SLOW
            readers.wait_calls(50)
        after = square.cache_info()
        readers.check()
        assert after.l2_hits - before.l2_hits == len(readers)  # every read was an L2 hit
        assert after.misses - before.misses == len(new_keys)
        assert breaker.state == CLOSED  # timeouts on writes, successes on reads
        assert breaker.transitions["opened"] == 0
    finally:
        server.execute("CLIENT", "UNPAUSE")
    for x in new_keys:  # writes work again: these are stored now...
        assert square(x) == expected(x)
    hits = square.cache_info().l2_hits
    for x in new_keys:  # ...and read back from L2
        assert square(x) == expected(x)
    assert square.cache_info().l2_hits - hits == len(new_keys)
    slow_reads = readers.slow(0.0, monotonic(), SLOW)
    report_figures(
        line(
            "CLIENT PAUSE WRITE",
            f"{len(readers)} reads during the pause, all L2 hits, {slow_reads} slow",
            f"{len(new_keys)} misses returned correct values, {slow_misses} paid a timeout",
            f"{after.errors - before.errors} write errors counted",
            "breaker stayed closed",
        )
    )


# --- 4. TCP proxy: delay, blackhole, reset, refuse, corrupt -----------------------------------

PROXY_FAULTS: dict[str, Callable[[TcpProxy], None]] = {
    "delay 2x the socket timeout": lambda proxy: proxy.delay(2 * SOCKET_TIMEOUT),
    "blackhole": TcpProxy.blackhole,
    "connection reset": TcpProxy.reset,
    "connection refused": TcpProxy.refuse,
}


@pytest.mark.parametrize("fault", list(PROXY_FAULTS))
def test_proxy_fault_fails_open_and_recovers(
    fault, make_redis_server, tcp_proxy, backends, breaker_log, report_figures
):
    server = make_redis_server(name="proxied")
    proxy = tcp_proxy(server)
    square = cached_square(redis_backend(backends, proxy.url))
    fault_then_recover(
        f"proxy {fault}",
        square,
        breaker_log,
        report_figures,
        inject=lambda: PROXY_FAULTS[fault](proxy),
        heal=proxy.pass_through,
        healed_by="pass-through",
    )


def test_delay_below_the_socket_timeout_still_hits(
    make_redis_server, tcp_proxy, backends, report_figures
):
    server = make_redis_server(name="slow-link")
    proxy = tcp_proxy(server)
    square = cached_square(redis_backend(backends, proxy.url))
    breaker = fresh_breaker(square)
    warm(square)
    delay = SOCKET_TIMEOUT / 10
    proxy.delay(delay)
    before = square.cache_info()
    with Load(square, KEYS, threads=THREADS) as load:
        load.wait_calls(200)
    after = square.cache_info()
    median = sorted(c.seconds for c in load.calls)[len(load) // 2]
    report_figures(
        line(
            f"proxy delay {delay * 1000:.0f} ms (timeout {SOCKET_TIMEOUT * 1000:.0f} ms)",
            f"{len(load)} calls, {load.errors} errors to callers",
            f"{after.l2_hits - before.l2_hits} L2 hits (median call {median * 1000:.1f} ms)",
            f"{after.errors - before.errors} backend errors, breaker {breaker.state}",
        )
    )
    load.check()
    assert after.errors == before.errors
    assert after.l2_hits - before.l2_hits == len(load)  # every call was an L2 hit
    assert breaker.state == CLOSED


def _scramble(rng: random.Random) -> Callable[[bytes], bytes]:
    """Replace 1-3 random bytes of a chunk by other bytes."""

    def scramble(chunk: bytes) -> bytes:
        buf = bytearray(chunk)
        for _ in range(rng.randint(1, 3)):
            buf[rng.randrange(len(buf))] ^= rng.randint(1, 255)
        return bytes(buf)

    return scramble


def _sometimes(
    transform: Callable[[bytes], bytes], rng: random.Random, share: float
) -> Callable[[bytes], bytes]:
    """Apply ``transform`` to a random ``share`` of the chunks; pass the others intact."""
    return lambda chunk: transform(chunk) if rng.random() < share else chunk


def test_corrupted_replies_never_produce_a_wrong_value(
    make_redis_server, tcp_proxy, backends, report_figures
):
    server = make_redis_server(name="corrupt")
    proxy = tcp_proxy(server)
    square = cached_square(redis_backend(backends, proxy.url))
    breaker = fresh_breaker(square)
    warm(square)
    rng = random.Random(20240601)  # reproducible
    kinds: dict[str, Callable[[bytes], bytes]] = {
        "payload byte flipped": lambda chunk: flip_bytes(chunk, 1, at="end"),
        "framing broken": lambda chunk: flip_bytes(chunk, 1, at="start"),
        "random bytes": _scramble(rng),
    }
    figures = []
    with Load(square, KEYS, threads=THREADS) as load:
        load.wait_calls(50)
        for kind, transform in kinds.items():
            before = square.cache_info()
            proxy.corrupt(_sometimes(transform, rng, 0.3))  # 30% of the replies
            load.wait_calls(150)
            proxy.pass_through()
            after = square.cache_info()
            figures.append(
                f"{kind}: {after.invalid - before.invalid} unreadable entries -> misses, "
                f"{after.errors - before.errors} errors"
            )
        healed = monotonic()
        hits = square.cache_info().l2_hits
        wait_until(
            lambda: breaker.state == CLOSED and square.cache_info().l2_hits >= hits + 20,
            timeout=15,
        )
        recovered = monotonic() - healed
        load.wait_calls(100)
    wrong = sum(1 for c in load.calls if c.wrong is not None)
    report_figures(
        line(
            "proxy corrupt (30% of replies)",
            f"{len(load)} calls, {load.errors} errors to callers, {wrong} wrong values",
            *figures,
            f"L2 hits again {recovered:.2f} s after pass-through",
        )
    )
    load.check()  # above all: never a wrong value


def test_a_probe_that_reads_garbage_does_not_wedge_the_breaker(
    make_redis_server, tcp_proxy, backends, report_figures
):
    """Half-open, the probe gets a reply Redis never sent: an error that is not a timeout
    (and does not count as one). The breaker must still close once the link is clean."""
    server = make_redis_server(name="probe-garbage")
    proxy = tcp_proxy(server)
    square = cached_square(redis_backend(backends, proxy.url))
    breaker = fresh_breaker(square)
    warm(square)
    proxy.blackhole()
    for x in KEYS:  # time out until the breaker opens
        assert square(x) == expected(x)
        if breaker.state == OPEN:
            break
    assert breaker.state == OPEN
    proxy.corrupt(1, at="start")  # every reply garbled: protocol errors, not timeouts
    base = dict(breaker.transitions)
    errors = square.cache_info().errors
    wait_until(
        lambda: (
            square(1) == expected(1) and breaker.transitions["half_opened"] > base["half_opened"]
        )
    )
    for x in KEYS:  # more probes, all answered with garbage
        assert square(x) == expected(x)
    garbled = square.cache_info().errors - errors
    proxy.pass_through()
    healed = monotonic()
    wait_until(lambda: square(2) == expected(2) and breaker.state == CLOSED, timeout=5)
    recovered = monotonic() - healed
    hits = square.cache_info().l2_hits
    for x in KEYS:
        assert square(x) == expected(x)
    report_figures(
        line(
            "half-open probe reads garbage",
            f"{garbled} garbled replies to half-open probes",
            f"breaker closed {recovered:.2f} s after the link was clean",
        )
    )
    assert garbled > 0
    assert square.cache_info().l2_hits - hits == len(KEYS)


# --- 5. connect timeouts: a listener with a full backlog --------------------------------------


def test_connect_timeouts_fail_open_and_open_the_breaker(
    full_backlog_listener, backends, breaker_log, report_figures
):
    square = cached_square(redis_backend(backends, full_backlog_listener.url))
    breaker = fresh_breaker(square)
    base = dict(breaker.transitions)
    with Load(square, KEYS, threads=THREADS) as load:
        # Opens, then a probe fails and it opens again.
        wait_until(lambda: breaker.transitions["opened"] - base["opened"] >= 2, timeout=15)
        load.wait_calls(200)
    probes = breaker.transitions["half_opened"] - base["half_opened"]
    slow = load.slow(0.0, monotonic(), SLOW)
    bound = THRESHOLD + THREADS + probes
    after = breaker_log.opened_after(breaker.endpoint)
    report_figures(
        line(
            "full backlog (connect timeouts)",
            f"{len(load)} calls from {THREADS} threads",
            f"{load.errors} errors to callers",
            timeout_figure(slow, bound, THREADS, probes),
            f"breaker opened after {after[0] if after else '?'} failures",
        )
    )
    load.check()
    assert after, "the breaker never logged its opening (E030)"
    assert after[0] == THRESHOLD
    assert slow <= bound
    assert full_backlog_listener.probe() == "timeout"  # it really was a connect timeout


# --- 6. maxmemory + noeviction ----------------------------------------------------------------


def test_out_of_memory_writes_fail_open_without_opening_the_breaker(
    make_redis_server, backends, report_figures
):
    server = make_redis_server(name="oom", maxmemory_policy="noeviction")
    square = cached_square(redis_backend(backends, server.url, socket_timeout=1.0))
    breaker = fresh_breaker(square)
    warm(square)
    client = server.client()
    for i in range(256):  # 1 MB of other data, then a limit below what is used: full
        client.set(f"filler:{i}", b"x" * 4096)
    used = int(server.info("memory")["used_memory"])
    server.config_set("maxmemory", used - 512 * 1024)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set("one-more", b"x")
    client.close()
    before = square.cache_info()
    new_keys = range(1000, 1040)
    for x in new_keys:  # misses: the lock and the SET are refused, the function runs
        assert square(x) == expected(x)
    for x in KEYS:  # entries stored before the server filled up still hit
        assert square(x) == expected(x)
    after = square.cache_info()
    report_figures(
        line(
            "maxmemory + noeviction",
            f"{len(new_keys) + len(KEYS)} calls, 0 errors to callers",
            f"{after.errors - before.errors} refused writes counted",
            f"breaker {breaker.state}",
            f"{after.l2_hits - before.l2_hits} stored keys still hit L2",
        )
    )
    assert after.errors - before.errors >= len(new_keys)  # each refused write is counted
    assert after.l2_hits - before.l2_hits == len(KEYS)
    assert breaker.state == CLOSED  # OOM is an answer, not an unreachable server
    assert breaker.transitions["opened"] == 0


# --- 7. a restart that lost the data ----------------------------------------------------------


def test_a_restart_that_lost_the_data_recomputes_and_repopulates(
    make_redis_server, backends, report_figures
):
    server = make_redis_server(name="amnesia")
    computed: Counter[int] = Counter()

    @cache(backend=redis_backend(backends, server.url), ttl=60, l1=False, circuit_breaker=BREAKER)
    def square(x: int) -> dict[str, int]:
        computed[x] += 1
        return expected(x)

    breaker = fresh_breaker(square)
    warm(square)
    coherence = square.__cachekit__.coherence
    reconnects = coherence.reconnects
    server.kill()
    server.restart()  # no persistence: empty
    assert server.execute("DBSIZE") == 0
    # The notification stream comes back and resets the function, whose generation
    # counters were lost with the data: after that, the keys take new random salts. Wait
    # for it, or the reset could land between the two loops and make them miss twice.
    wait_until(lambda: coherence.healthy and coherence.reconnects > reconnects, 5.0)
    before = square.cache_info()
    for x in KEYS:  # everything is gone: miss, recompute, store again
        assert square(x) == expected(x)
    middle = square.cache_info()
    for x in KEYS:  # repopulated: L2 hits
        assert square(x) == expected(x)
    after = square.cache_info()
    report_figures(
        line(
            "restart without persistence",
            f"{middle.misses - before.misses} misses recomputed and stored again",
            f"then {after.l2_hits - middle.l2_hits} L2 hits",
            f"{after.errors - before.errors} errors counted, 0 to callers",
        )
    )
    assert middle.misses - before.misses == len(KEYS)
    assert all(computed[x] == 2 for x in KEYS)
    assert after.l2_hits - middle.l2_hits == len(KEYS)
    assert after.errors == before.errors == 0
    assert breaker.state == CLOSED


# --- 8. asyncio: kill/restart, and cancellation ----------------------------------------------


def test_async_kill_9_mid_load_fails_open_then_recovers(
    make_redis_server, backends, breaker_log, report_figures
):
    server = make_redis_server(name="akill")
    backend = async_redis_backend(backends, server.url)

    @cache(backend=backend, ttl=60, l1=False, circuit_breaker=BREAKER)
    async def asquare(x: int) -> dict[str, int]:
        return expected(x)

    breaker = fresh_breaker(asquare)
    base = dict(breaker.transitions)

    async def scenario() -> tuple[AsyncLoad, float, int]:
        for x in KEYS:
            assert await asquare(x) == expected(x)
        async with AsyncLoad(asquare, KEYS, tasks=TASKS) as load:
            await load.wait_calls(100)
            fault = load.mark()
            server.kill()
            await async_wait_until(
                lambda: breaker.transitions["opened"] - base["opened"] >= 2, timeout=15
            )
            await load.wait_calls(100)
            heal = load.mark()
            await asyncio.to_thread(server.restart)
            healed = monotonic()
            hits = asquare.cache_info().l2_hits
            await async_wait_until(
                lambda: breaker.state == CLOSED and asquare.cache_info().l2_hits >= hits + 20,
                timeout=15,
            )
            recovered = monotonic() - healed
            await load.wait_calls(100)
        await backend.close()
        return load, recovered, load.slow(fault, heal, SLOW)

    load, recovered, slow = asyncio.run(scenario())
    probes = breaker.transitions["half_opened"] - base["half_opened"]
    bound = THRESHOLD + TASKS + probes
    after = breaker_log.opened_after(breaker.endpoint)
    report_figures(
        line(
            "async kill -9",
            f"{len(load)} calls from {TASKS} tasks",
            f"{load.errors} errors to callers",
            timeout_figure(slow, bound, TASKS, probes),
            f"breaker opened after {after[0] if after else '?'} failures",
            f"recovered {recovered:.2f} s after restart",
        )
    )
    load.check()
    assert after, "the breaker never logged its opening (E030)"
    assert after[0] == THRESHOLD
    assert slow <= bound


def test_cancelled_requests_never_hand_their_reply_to_another_key(
    tcp_proxy, backends, report_figures
):
    """The classic redis.asyncio bug: a request cancelled after it was sent leaves its reply
    on the connection; if that connection goes back to the pool, the next command on it reads
    the stale reply - another key's value."""
    delay = 0.1
    proxy = tcp_proxy()  # in front of the shared server
    # 16 connections for 48 concurrent callers: connections are reused after cancellations.
    backend = async_redis_backend(backends, proxy.url, socket_timeout=2.0, pool_size=16)

    @cache(backend=backend, ttl=60, l1=False, circuit_breaker=BREAKER)
    async def lookup(x: int) -> dict[str, int]:
        return expected(x)

    breaker = fresh_breaker(lookup)
    keys = range(48)
    rng = random.Random(7)

    async def scenario() -> tuple[int, int, int]:
        for x in keys:
            assert await lookup(x) == expected(x)
        cancelled = completed = checked = 0
        for _ in range(3):
            proxy.delay(delay)  # every reply arrives late...
            calls = []
            for x in keys:  # ...and a quarter of the callers give up long before
                if x % 4 == 0:
                    calls.append(asyncio.wait_for(lookup(x), rng.uniform(0.01, delay / 2)))
                else:
                    calls.append(lookup(x))
            results = await asyncio.gather(*calls, return_exceptions=True)
            for x, result in zip(keys, results, strict=True):
                if isinstance(result, asyncio.TimeoutError):
                    cancelled += 1
                else:
                    assert result == expected(x), f"key {x} got {result!r}"
                    completed += 1
            proxy.pass_through()
            # Every later read gets its own key's value, concurrently and one by one.
            results = await asyncio.gather(*(lookup(x) for x in keys))
            for x, result in zip(keys, results, strict=True):
                assert result == expected(x), f"key {x} got {result!r} after cancellations"
            for x in keys:
                assert await lookup(x) == expected(x)
            checked += 2 * len(keys)
        await backend.close()
        return cancelled, completed, checked

    cancelled, completed, checked = asyncio.run(scenario())
    info = lookup.cache_info()
    report_figures(
        line(
            "async cancellation",
            f"{cancelled} requests cancelled after they were sent",
            f"{completed} concurrent ones completed with their own values",
            f"{checked} later reads all got their own key's value",
            f"{info.errors} errors counted, breaker {breaker.state}",
        )
    )
    assert cancelled > 0
    assert info.errors == 0  # a cancellation is not a backend failure...
    assert breaker.state == CLOSED  # ...and never counts towards the breaker
    assert breaker.transitions["opened"] == 0


def test_a_caller_cancelled_at_any_point_of_a_miss_is_cancelled(
    make_redis_server, backends, report_figures
):
    """Cancel a call after 0, 1, 2, ... event-loop turns: wherever the cancellation lands
    (connecting, writing the GET, waiting for the lock, in the function), the call ends with
    CancelledError and the function does not run on. (redis.asyncio wraps socket writes in
    asyncio.wait_for, which on Python 3.11 can return normally when its caller is cancelled
    as the write completes - CPython gh-86296 - and so lose the cancellation.)"""
    server = make_redis_server(name="acancel")
    backend = async_redis_backend(backends, server.url, socket_timeout=1.0)
    finished: list[int] = []

    @cache(backend=backend, ttl=60, l1=False, circuit_breaker=BREAKER)
    async def slow(x: int) -> dict[str, int]:
        await asyncio.sleep(0.5)
        finished.append(x)
        return expected(x)

    breaker = fresh_breaker(slow)
    turns, sweeps = range(60), 3

    async def scenario() -> list[int]:
        lost = []
        for sweep in range(sweeps):
            for k in turns:  # a fresh key each time: every call is a miss
                task = asyncio.create_task(slow(sweep * 1000 + k))
                for _ in range(k):
                    await asyncio.sleep(0)
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=0.2)
                if not done:  # still running: the cancellation was lost on the way
                    lost.append(k)
                    task.cancel()
                    await asyncio.wait({task})
                else:
                    assert task.cancelled()
        await backend.close()
        return lost

    lost = asyncio.run(scenario())
    report_figures(
        line(
            "async cancellation at every point of a miss",
            f"{sweeps * len(turns)} calls cancelled after 0..{len(turns) - 1} loop turns",
            f"{len(lost)} cancellations lost{f' (after {lost} turns)' if lost else ''}",
            f"breaker {breaker.state}",
        )
    )
    assert lost == []
    assert finished == []
    assert breaker.state == CLOSED
    assert slow.cache_info().errors == 0


# --- 9. the function's own exceptions ----------------------------------------------------------


def test_the_functions_own_exceptions_never_count_towards_the_breaker(redis_url, backends):
    computed: Counter[int] = Counter()
    config = BreakerConfig(failure_threshold=2, recovery_timeout=RECOVERY)
    backend = redis_backend(backends, redis_url, socket_timeout=1.0)

    @cache(backend=backend, l1=False, ttl=60, circuit_breaker=config)
    def half_broken(x: int) -> dict[str, int]:
        computed[x] += 1
        if x % 2:
            raise ValueError(f"odd {x}")
        return expected(x)

    breaker = fresh_breaker(half_broken)
    rounds = 3
    for _ in range(rounds):
        for x in KEYS:
            if x % 2:
                with pytest.raises(ValueError, match=f"^odd {x}$"):
                    half_broken(x)
            else:
                assert half_broken(x) == expected(x)
    info = half_broken.cache_info()
    assert info.errors == 0
    assert breaker.state == CLOSED
    assert breaker.transitions["opened"] == 0
    assert breaker.failures == 0
    assert all(computed[x] == (rounds if x % 2 else 1) for x in KEYS)  # errors never cached
    assert info.l2_hits == (rounds - 1) * len(KEYS) // 2


def test_async_exceptions_and_cancellations_of_the_function_never_count(redis_url, backends):
    config = BreakerConfig(failure_threshold=2, recovery_timeout=RECOVERY)
    backend = async_redis_backend(backends, redis_url, socket_timeout=1.0)

    @cache(backend=backend, l1=False, ttl=60, circuit_breaker=config)
    async def half_broken(x: int) -> dict[str, int]:
        if x % 3 == 1:
            raise ValueError(f"bad {x}")
        if x % 3 == 2:
            await asyncio.sleep(10)  # cancelled by the caller below
        return expected(x)

    breaker = fresh_breaker(half_broken)

    async def scenario() -> None:
        for _ in range(2):
            for x in range(30):
                if x % 3 == 1:
                    with pytest.raises(ValueError, match=f"^bad {x}$"):
                        await half_broken(x)
                elif x % 3 == 2:
                    started = monotonic()
                    try:
                        value = await asyncio.wait_for(half_broken(x), 0.01)
                    except asyncio.TimeoutError:
                        continue
                    pytest.fail(
                        f"the cancelled call for {x} returned {value!r} after "
                        f"{monotonic() - started:.3f} s; {half_broken.cache_info()}"
                    )
                else:
                    assert await half_broken(x) == expected(x)
        await backend.close()

    asyncio.run(scenario())
    assert half_broken.cache_info().errors == 0
    assert breaker.state == CLOSED
    assert breaker.transitions["opened"] == 0
    assert breaker.failures == 0


# --- 11. at most one timeout per call (issue 11 item 12) ---------------------------------------


@pytest.mark.parametrize("threads", [16, 64])
def test_a_frozen_server_costs_each_call_at_most_one_timeout(
    threads, make_redis_server, backends, report_figures
):
    """Misses that hold the stampede lock when Redis freezes pay one timeout, not one for the
    SET and another for the unlock; threads waiting for a pooled connection wait within it."""
    timeout = 0.3
    server = make_redis_server(name=f"frozen-miss-{threads}")
    backend = redis_backend(
        backends, server.url, socket_timeout=timeout, socket_connect_timeout=timeout, pool_size=4
    )

    @cache(
        backend=backend,
        ttl=60,
        l1=False,
        circuit_breaker=BreakerConfig(failure_threshold=THRESHOLD, recovery_timeout=30),
    )
    def square(x: int) -> dict[str, int]:
        sleep(0.02)  # a miss holds the lock while it computes
        return expected(x)

    breaker = fresh_breaker(square)
    with Load(square, range(1_000_000), threads=threads, pause=0) as load:
        load.wait_calls(50)
        frozen = load.mark()
        server.pause()
        try:
            wait_until(lambda: breaker.state == OPEN, timeout=15)
            load.wait_calls(2 * threads)
            end = load.mark()
        finally:
            server.resume()
    calls = load.overlapping(frozen, end)
    # What the freeze cost a call: its time from the freeze (or its start) to its end; the
    # time before the freeze is the ordinary queueing of many threads on a pool of 4.
    worst = max(c.ended - max(c.started, frozen) for c in calls)
    report_figures(
        line(
            f"frozen during misses, {threads} threads, pool of 4",
            f"{len(calls)} calls while frozen",
            f"the longest blocked {worst:.3f} s for a {timeout} s timeout",
        )
    )
    load.check()
    assert worst < 1.5 * timeout, f"a call took {worst:.3f} s: more than one {timeout} s timeout"


def test_a_call_waiting_for_a_pooled_connection_when_redis_freezes_pays_no_second_timeout(
    make_redis_server, backends
):
    """One connection, two callers: the first times out on the frozen server; the second,
    queued for the connection meanwhile, fails when it comes back broken instead of
    reconnecting to the frozen server (a second timeout)."""
    import threading

    from cachekit.constants import MISSING
    from cachekit.errors import BackendError

    timeout = 0.3
    server = make_redis_server(name="frozen-pool")
    backend = redis_backend(
        backends, server.url, socket_timeout=timeout, socket_connect_timeout=timeout, pool_size=1
    )
    assert backend.get("warm") is not None  # the pool's one connection is open
    failures: list[BaseException] = []

    def first_call() -> None:
        try:
            backend.get("a")
        except BackendError as exc:
            failures.append(exc)

    server.pause()
    try:
        first = threading.Thread(target=first_call)
        first.start()
        sleep(timeout / 3)  # the first call holds the connection
        started = monotonic()
        with pytest.raises(BackendError):
            backend.get("b")
        waited = monotonic() - started
        first.join()
    finally:
        server.resume()
    assert len(failures) == 1  # the first call timed out
    assert waited < 1.5 * timeout, f"the queued call took {waited:.3f} s"
    assert backend.get("after") is MISSING  # the pool works again once Redis does


def test_an_async_call_waiting_for_a_pooled_connection_when_redis_freezes_pays_no_second_timeout(
    make_redis_server, backends
):
    """The asyncio twin of the test above: two tasks, one connection."""
    from cachekit.constants import MISSING
    from cachekit.errors import BackendError

    timeout = 0.3
    server = make_redis_server(name="frozen-apool")
    backend = async_redis_backend(
        backends, server.url, socket_timeout=timeout, socket_connect_timeout=timeout, pool_size=1
    )

    async def scenario() -> tuple[float, object]:
        assert await backend.get("warm") is MISSING  # the pool's one connection is open
        server.pause()
        try:
            first = asyncio.ensure_future(backend.get("a"))
            await asyncio.sleep(timeout / 3)  # the first call holds the connection
            started = monotonic()
            with pytest.raises(BackendError):
                await backend.get("b")
            waited = monotonic() - started
            with pytest.raises(BackendError):
                await first
        finally:
            server.resume()
        return waited, await backend.get("after")

    waited, after = asyncio.run(scenario())
    assert waited < 1.5 * timeout, f"the queued call took {waited:.3f} s"
    assert after is MISSING  # the pool works again once Redis does
