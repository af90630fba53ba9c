"""cachekit with a Redis L2 against raw redis-py on the same private redis-server.

The benchmark starts its own redis-server on a free loopback port (the test suite's
``tests/support/redis_servers.py``, loaded by path; never the machine's Redis on 6379)
and kills it at the end. Every contender runs in this process against that server.

The raw baseline is a ``redis.Redis`` on its own ``BlockingConnectionPool`` built with
the very connection settings cachekit-redis uses (timeouts, no retries, RESP2, pool
size), checked equal to cachekit's client at startup:

* hit: ``msgpack.unpackb(r.get(key))``;
* miss: ``GET`` (nil) + compute + ``msgpack.packb`` + ``SET key value PX ttl``;
* miss with a lock, for information: the same plus ``SET lock token NX PX lease``
  before the computation and the same Lua compare-and-delete after it.

Raw keys live outside the ``cachekit:`` prefix, so they do not wake cachekit's
coherence listener (which watches that prefix); cachekit's own writes do, and that
cost is part of cachekit's figures.

Each comparison is a *group* timed on its own: every repeat times each member once
(one window of calls), in a rotated order, with the cyclic GC paused, so a member and
its baseline always run within a few milliseconds of each other. A round trip costs
far more than the Python around it and its time swings with the scheduling of the
server process, so the Redis ratios are the **median of the per-repeat (paired)
ratios**; the ratio of minimums and of medians are printed alongside. The L1 ratio
(no I/O) is a ratio of minimums, as in the ``l1`` benchmark. Client CPU time per call
(``time.thread_time_ns`` of the calling thread) is recorded too: it is what cachekit
itself spends, without the waits for the server.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import repeat
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack
from harness import Section, calibrate, gc_paused, median, rotated

from cachekit import cache

NAME = "redis"
TITLE = "cachekit with a Redis L2 vs raw redis-py + msgpack on the same private server"

ROOT = Path(__file__).resolve().parents[1]
SERVERS = ROOT / "tests" / "support" / "redis_servers.py"

TTL = 300.0
TTL_MS = 300_000
LEASE_MS = 10_000
HIT_ADDED_US = 3.0  # L2 hit (L1 off): at most 3 us over raw GET + unpackb (issue 12)
MISS_TARGET = 1.20  # miss, with or without the lock, <= 1.20x raw GET + compute + packb + SET PX
MISS_ROUND_TRIPS = 2.0  # default miss (lock on): read-or-lock, store-and-unlock (issue 12)
L1_TARGET = 1.10  # L1 hit in front of Redis <= 1.10x the L1-only hit ("equal within noise")
ROUND_TRIP_CALLS = 200  # calls per round-trip count
REFERENCE = (
    "for reference, cachekit 0.24.1 measured 1.44-1.63x on the L2 hit and 15-34 us on "
    "its L1 hit in front of Redis"
)

#: The same compare-and-delete cachekit-redis uses to release its lock.
RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def user(user_id: int) -> dict[str, Any]:
    return {"id": user_id, "name": f"user-{user_id}", "active": True, "roles": ["a", "b"]}


def profile(user_id: int) -> dict[str, Any]:
    """About 1 KB of MessagePack."""
    return {
        "id": user_id,
        "name": f"user-{user_id}",
        "email": f"user-{user_id}@example.com",
        "active": True,
        "bio": "lorem ipsum dolor sit amet " * 12,
        "roles": [f"role-{i}" for i in range(12)],
        "scores": [i * 1.5 for i in range(30)],
        "settings": {f"option_{i}": i % 3 == 0 for i in range(20)},
    }


# --- the server and the raw client -------------------------------------------------------


def load_redis_servers() -> ModuleType:
    """tests/support/redis_servers.py, imported by path (the test suite's server helper)."""
    name = "_cachekit_bench_redis_servers"
    found = sys.modules.get(name)
    if found is not None:
        return found
    spec = importlib.util.spec_from_file_location(name, SERVERS)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {SERVERS}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def raw_client(url: str) -> Any:
    """redis.Redis on a BlockingConnectionPool with cachekit-redis's connection settings."""
    import redis
    from redis.connection import BlockingConnectionPool

    from cachekit_redis.clients import no_retry
    from cachekit_redis.settings import RedisSettings

    settings = RedisSettings.from_env()
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=settings.pool_size,
        timeout=settings.effective_pool_timeout,
        **settings.connection_kwargs(),
        retry=no_retry(),
    )
    return redis.Redis(connection_pool=pool)


def _pool_settings(client: Any) -> dict[str, Any]:
    pool = client.connection_pool
    kwargs = dict(pool.connection_kwargs)
    retry = kwargs.pop("retry", None)
    plain = (str, int, float, bool, type(None), tuple, list, dict, type)
    return {
        **{k: v if isinstance(v, plain) else type(v).__name__ for k, v in kwargs.items()},
        "retries": getattr(retry, "_retries", None),
        # cachekit-redis subclasses redis-py's pool (to fail fast after a broken
        # connection); what must match is the redis-py pool it builds on
        "pool": next(c.__name__ for c in type(pool).__mro__ if c.__module__.startswith("redis")),
        "connection": pool.connection_class.__name__,
        "max_connections": pool.max_connections,
        "pool_timeout": getattr(pool, "timeout", None),
    }


def check_same_settings(raw: Any, backend: Any) -> None:
    """The raw client must talk to Redis exactly as cachekit's client does."""
    mine, theirs = _pool_settings(raw), _pool_settings(backend.client)
    if mine != theirs:
        diff = {
            k: (mine.get(k), theirs.get(k))
            for k in sorted({*mine, *theirs})
            if mine.get(k) != theirs.get(k)
        }
        raise RuntimeError(f"the raw client's settings differ from cachekit-redis's: {diff}")


# --- timing --------------------------------------------------------------------------------

#: ``Case.arg`` for a miss: every call gets an integer no call has used before.
DISTINCT: Any = object()


class Case:
    """One contender: ``fn(arg)`` repeated, or ``fn(i)`` over fresh integers (DISTINCT)."""

    def __init__(self, label: str, fn: Callable[[Any], Any], arg: Any = DISTINCT) -> None:
        self.label = label
        self.fn = fn
        self.arg = arg
        self.loops = 0
        self.calls = 0
        self.wall: list[float] = []
        self.cpu: list[float] = []


class Fresh:
    """Hands out blocks of integers that were never used as a key."""

    def __init__(self, first: int = 1_000_000) -> None:
        self.next = first

    def block(self, n: int) -> int:
        start, self.next = self.next, self.next + n
        return start


def time_case(case: Case, n: int, fresh: Fresh) -> tuple[float, float]:
    """(wall ns, calling thread's CPU ns) per call over ``n`` calls."""
    fn = case.fn
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    if case.arg is DISTINCT:
        start = fresh.block(n)
        it: Any = range(start, start + n)
        c0, t0 = cpu(), wall()
        for i in it:
            fn(i)
        t1, c1 = wall(), cpu()
    else:
        arg = case.arg
        it = repeat(None, n)
        c0, t0 = cpu(), wall()
        for _ in it:
            fn(arg)
        t1, c1 = wall(), cpu()
    case.calls += n
    return (t1 - t0) / n, (c1 - c0) / n


def connected_coherence(backend: Any, timeout: float = 5.0) -> Any:
    """The backend's coherence listener, after waiting up to ``timeout`` s for it to connect."""
    coherence = backend.coherence()
    deadline = time.monotonic() + timeout
    while not coherence.healthy and time.monotonic() < deadline:
        time.sleep(0.01)
    return coherence


def calibrate_case(case: Case, budget_s: float, fresh: Fresh) -> int:
    if case.arg is not DISTINCT:
        return calibrate(case.fn, case.arg, budget_s)
    per_call = min(time_case(case, 20, fresh)[0] for _ in range(3))
    return max(10, int(budget_s * 1e9 / max(per_call, 1.0)))


def measure(cases: list[Case], repeats: int, budget_s: float, fresh: Fresh) -> None:
    """Interleaved windows: each repeat times every case once, in a rotated order."""
    for case in cases:
        case.loops = calibrate_case(case, budget_s, fresh)
    with gc_paused():
        for r in range(repeats):
            for case in rotated(cases, r):
                w, c = time_case(case, case.loops, fresh)
                case.wall.append(w)
                case.cpu.append(c)


def check_l2_hits(fn: Any, case: Case, was: Any) -> None:
    """Every timed call of ``case`` (on cached ``fn``) was an L2 hit."""
    info = fn.cache_info()
    if info.misses != was.misses or info.errors or info.l2_hits - was.l2_hits < case.calls:
        raise RuntimeError(f"{case.label}: the loop did not only hit L2: {info}")


def check_l1_hits(fn: Any, what: str, was: Any) -> int:
    """No timed call of ``fn`` missed; returns how many went on to L2 (refills)."""
    info = fn.cache_info()
    if info.misses != was.misses or info.errors:
        raise RuntimeError(f"{what} missed: {info}")
    return int(info.l2_hits - was.l2_hits)


def check_misses(fn: Any, case: Case, was: Any) -> None:
    """Every timed call of ``case`` (on cached ``fn``) was a miss."""
    info = fn.cache_info()
    if info.misses - was.misses != case.calls or info.errors or info.hits != was.hits:
        raise RuntimeError(f"{case.label}: the loop did not only miss: {info}")


class Report:
    """Writes the figures of measured cases into ``sec``, and ratios and deltas between them."""

    def __init__(self, sec: Section, cases: Iterable[Case]) -> None:
        self.sec = sec
        self.cases = {c.label: c for c in cases}

    def figures(self, notes: dict[str, str], cpu: Iterable[Case]) -> None:
        """Wall time of every case (min, median), then the client CPU time of ``cpu``."""
        for label, c in self.cases.items():
            self.sec.figure(label, min(c.wall), median(c.wall), "ns/call", notes.get(label, ""))
        for c in cpu:
            self.sec.figure(f"client CPU: {c.label}", min(c.cpu), median(c.cpu), "ns/call")

    def paired_ratio(
        self, name: str, num: str, den: str, limit: float | None, *, minimums: bool = False
    ) -> None:
        """``num`` / ``den``: the median of per-repeat ratios, or of minimums (no I/O)."""
        a, b = self.cases[num], self.cases[den]
        paired = median([x / y for x, y in zip(a.wall, b.wall, strict=True)])
        of_min = min(a.wall) / min(b.wall)
        of_med = median(a.wall) / median(b.wall)
        cpu = median(a.cpu) / median(b.cpu)
        if minimums:
            value, note = of_min, f"medians {of_med:.2f}x, paired {paired:.2f}x"
        else:
            value, note = paired, f"minimums {of_min:.2f}x, medians {of_med:.2f}x"
        self.sec.line("ratio", name, value, limit=limit, note=f"{note}, client CPU {cpu:.2f}x")

    def delta(
        self,
        name: str,
        num: str,
        den: str,
        limit: float | None = None,
        *,
        minimums: bool = False,
    ) -> None:
        """``num`` - ``den`` in us: the median of per-repeat differences, or the
        difference of the minimums (a busy machine only ever adds time)."""
        a, b = self.cases[num], self.cases[den]
        paired = median([x - y for x, y in zip(a.wall, b.wall, strict=True)]) / 1000
        of_min = (min(a.wall) - min(b.wall)) / 1000
        cpu = (median(a.cpu) - median(b.cpu)) / 1000
        if minimums:
            value, note = of_min, f"minimums; paired median {paired:+.1f} us"
        else:
            value, note = paired, f"paired median; minimums {of_min:+.1f} us"
        self.sec.line(
            "delta",
            name,
            value,
            unit="us",
            limit=limit,
            note=f"{note}; client CPU {cpu:+.1f} us",
        )


# --- the benchmark -------------------------------------------------------------------------


@contextmanager
def private_server(name: str = "bench") -> Iterator[Any]:
    """A private redis-server (never the machine's 6379), killed on the way out after
    cachekit's pools and coherence listeners for it are closed."""
    servers = load_redis_servers()
    server = servers.RedisServer(name=name)
    try:
        if server.port == servers.SHARED_MACHINE_PORT:  # never handed out; belt and braces
            raise RuntimeError("refusing to benchmark the machine's shared Redis")
        yield server
    finally:
        _close_backends(server.url)
        server.cleanup(graceful=False)


def run(quick: bool) -> Section:
    with private_server() as server:
        return _run(quick, server)


def _close_backends(url: str) -> None:
    """Stop the coherence listeners and close the pools cachekit opened (``url``'s among them)."""
    import cachekit

    cachekit.close()


@contextmanager
def counting_sends(connection_class: type) -> Iterator[list[int]]:
    """Count the sends this thread makes on ``connection_class`` connections.

    redis-py sends every command, pipeline and script call with one
    ``send_packed_command``: one send is one round trip. Other threads (the coherence
    listener) are not counted. The method is put back on the way out.
    """
    count = [0]
    me = threading.get_ident()
    own = connection_class.__dict__.get("send_packed_command")
    send = connection_class.send_packed_command  # type: ignore[attr-defined]

    def send_packed_command(self: Any, *args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() == me:
            count[0] += 1
        return send(self, *args, **kwargs)

    connection_class.send_packed_command = send_packed_command  # type: ignore[attr-defined]
    try:
        yield count
    finally:
        if own is None:
            del connection_class.send_packed_command  # type: ignore[attr-defined]
        else:
            connection_class.send_packed_command = own  # type: ignore[attr-defined]


def round_trips(connection_class: type, fn: Callable[[int], Any], fresh: Fresh, n: int) -> float:
    """Sends per call of ``fn`` over ``n`` calls on arguments never used before."""
    start = fresh.block(n)
    with counting_sends(connection_class) as count:
        for i in range(start, start + n):
            fn(i)
    return count[0] / n


def named(body: Callable[[int], Any], name: str, decorator: Any = cache, **options: Any) -> Any:
    """``@decorator(ttl=TTL, **options)`` (``@cache`` by default) on a copy of ``body``
    called ``name``, so that it has its own keys and statistics."""

    def f(user_id: int) -> Any:
        return body(user_id)

    f.__name__ = f.__qualname__ = name
    return decorator(ttl=TTL, **options)(f)


def method(quick: bool, server: Any, others: str = "L1 ratio: ratio of minimums") -> str:
    """The method line: repeats, the private server, how the ratios are taken."""
    hit_repeats, miss_repeats, _, _ = schedule(quick)
    return (
        f"ns per call (wall), min of {hit_repeats} (hits) / {miss_repeats} (misses) "
        "interleaved repeats, median in brackets, GC paused; private redis-server "
        f"{'.'.join(map(str, server.version))} on 127.0.0.1:{server.port} (TCP); Redis "
        f"ratios: median of paired per-repeat ratios, {others}"
    )


def _run(quick: bool, server: Any) -> Section:
    url = server.url
    sec = Section(NAME, TITLE, method=method(quick, server))

    raw = raw_client(url)
    try:
        return _measure(quick, sec, url, raw)
    finally:
        raw.close()


def schedule(quick: bool) -> tuple[int, int, float, float]:
    """(hit repeats, miss repeats, hit window s, miss window s).

    A round trip here is 30-300 us: hit windows of 3 ms hold 10-100 calls; miss windows
    (two or four round trips a call) are longer, to hold about as many.
    """
    return (9, 7, 0.0015, 0.003) if quick else (101, 51, 0.003, 0.008)


def _measure(quick: bool, sec: Section, url: str, raw: Any) -> Section:
    hit_repeats, miss_repeats, budget, miss_budget = schedule(quick)
    get, set_ = raw.get, raw.set
    unpackb, packb = msgpack.unpackb, msgpack.packb
    release = raw.register_script(RELEASE_SCRIPT)

    def raw_hit(key: str) -> Any:
        return unpackb(get(key))

    def raw_miss(i: int, prefix: str = "bench:raw:miss:") -> Any:
        key = f"{prefix}{i}"
        blob = get(key)
        if blob is not None:
            return unpackb(blob)
        value = user(i)
        set_(key, packb(value), px=TTL_MS)
        return value

    def raw_miss_watched(i: int) -> Any:
        # The same, under the prefix cachekit's coherence listener is told about.
        return raw_miss(i, "cachekit:bench-raw:")

    def raw_miss_locked(i: int) -> Any:
        key = f"bench:raw:locked:{i}"
        blob = get(key)
        if blob is not None:
            return unpackb(blob)
        lock, token = "bench:lock:" + key, os.urandom(16).hex()
        if not set_(lock, token, nx=True, px=LEASE_MS):
            raise RuntimeError("the raw lock was unexpectedly held")
        try:
            value = user(i)
            set_(key, packb(value), px=TTL_MS)
        finally:
            release(keys=[lock], args=[token])
        return value

    ck_l2 = named(user, "l2_hit_small", backend=url, l1=False)
    ck_l2_1k = named(profile, "l2_hit_1k", backend=url, l1=False)
    ck_front = named(user, "l1_hit_in_front", backend=url)
    ck_l1_only = named(user, "l1_hit_only", backend=None)
    ck_miss = {
        "l1=False, no lock": named(
            user, "miss_l2_nolock", backend=url, l1=False, distributed_lock=False
        ),
        "l1=True, no lock": named(user, "miss_l1_nolock", backend=url, distributed_lock=False),
        "l1=False, lock": named(user, "miss_l2_lock", backend=url, l1=False),
        "l1=True, lock": named(user, "miss_l1_lock", backend=url),
    }

    # Warm up: store the hit entries, resolve every plan, start the coherence listener.
    for fn in (ck_l2, ck_l2_1k, ck_front, ck_l1_only, *ck_miss.values()):
        fn(42)
    backend = ck_l2.__cachekit__.plan.backend
    check_same_settings(raw, backend)
    coherence = connected_coherence(backend)
    small_key, large_key = "bench:raw:hit:small", "bench:raw:hit:1k"
    set_(small_key, packb(user(42)), px=TTL_MS)
    set_(large_key, packb(profile(42)), px=TTL_MS)
    if raw_hit(small_key) != user(42) or raw_hit(large_key) != profile(42):
        raise RuntimeError("the raw hit returned the wrong value")
    if ck_l2(42) != user(42) or ck_l2_1k(42) != profile(42) or ck_front(42) != user(42):
        raise RuntimeError("cachekit returned the wrong value")
    size_small, size_large = len(packb(user(42))), len(packb(profile(42)))
    before = {id(fn): fn.cache_info() for fn in (ck_l2, ck_l2_1k, ck_front, *ck_miss.values())}

    fresh = Fresh()
    hit_small = [
        Case("raw GET + unpackb, small", raw_hit, small_key),
        Case("cachekit L2 hit (l1=False), small", ck_l2, 42),
    ]
    hit_large = [
        Case("raw GET + unpackb, 1 KB", raw_hit, large_key),
        Case("cachekit L2 hit (l1=False), 1 KB", ck_l2_1k, 42),
    ]
    l1 = [
        Case("cachekit L1-only hit (backend=None)", ck_l1_only, 42),
        Case("cachekit L1 hit in front of Redis", ck_front, 42),
    ]
    ck_miss_cases = [(Case(f"cachekit miss, {name}", fn), fn) for name, fn in ck_miss.items()]
    misses = [
        Case("raw miss: GET + compute + packb + SET PX", raw_miss),
        *(case for case, _ in ck_miss_cases),
        Case("raw miss with SET NX lock + Lua unlock", raw_miss_locked),
        Case("raw miss, keys under cachekit: (listener notified)", raw_miss_watched),
    ]
    measure(hit_small, hit_repeats, budget, fresh)
    measure(hit_large, hit_repeats, budget, fresh)
    measure(l1, hit_repeats, budget, fresh)
    measure(misses, miss_repeats, miss_budget, fresh)

    # The timed calls were what they claim to be.
    for fn, case in ((ck_l2, hit_small[1]), (ck_l2_1k, hit_large[1])):
        check_l2_hits(fn, case, before[id(fn)])
    refills = check_l1_hits(ck_front, "the L1-in-front hit loop", before[id(ck_front)])
    for case, fn in ck_miss_cases:
        check_misses(fn, case, before[id(fn)])

    # -- report ----------------------------------------------------------------------
    notes = {
        "raw GET + unpackb, small": f"{size_small} B of msgpack",
        "raw GET + unpackb, 1 KB": f"{size_large} B of msgpack",
        "cachekit L1 hit in front of Redis": f"{refills} L2 refills during the loops",
    }
    report = Report(sec, (*hit_small, *hit_large, *l1, *misses))
    report.figures(notes, cpu=(*hit_small, *hit_large, *misses))
    cases, paired_ratio, delta = report.cases, report.paired_ratio, report.delta

    raw_miss_label = "raw miss: GET + compute + packb + SET PX"
    paired_ratio(
        "L2 hit (l1=False) / raw GET + unpackb, small",
        "cachekit L2 hit (l1=False), small",
        "raw GET + unpackb, small",
        None,  # swings with the loopback's speed: the target is the absolute overhead
    )
    paired_ratio(
        "L2 hit (l1=False) / raw GET + unpackb, 1 KB",
        "cachekit L2 hit (l1=False), 1 KB",
        "raw GET + unpackb, 1 KB",
        None,
    )
    delta(
        "L2 hit: cachekit adds per call, small",
        "cachekit L2 hit (l1=False), small",
        "raw GET + unpackb, small",
        HIT_ADDED_US,
        minimums=True,
    )
    paired_ratio(
        "miss, l1=False, no lock / raw miss",
        "cachekit miss, l1=False, no lock",
        raw_miss_label,
        MISS_TARGET,
    )
    paired_ratio(
        "miss, l1=True, no lock / raw miss",
        "cachekit miss, l1=True, no lock",
        raw_miss_label,
        MISS_TARGET,
    )
    delta(
        "miss: cachekit adds per call, l1=False, no lock",
        "cachekit miss, l1=False, no lock",
        raw_miss_label,
    )
    paired_ratio(
        "miss, l1=True, lock (default) / raw miss",
        "cachekit miss, l1=True, lock",
        raw_miss_label,
        MISS_TARGET,
    )
    paired_ratio(
        "miss, l1=True, lock (default) / raw miss with lock",
        "cachekit miss, l1=True, lock",
        "raw miss with SET NX lock + Lua unlock",
        None,
    )
    paired_ratio(
        "raw miss under cachekit: / raw miss (listener's cost)",
        "raw miss, keys under cachekit: (listener notified)",
        raw_miss_label,
        None,
    )
    delta(
        "miss: the lock adds per call, l1=True",
        "cachekit miss, l1=True, lock",
        "cachekit miss, l1=True, no lock",
    )
    paired_ratio(
        "L1 hit in front of Redis / L1-only hit",
        "cachekit L1 hit in front of Redis",
        "cachekit L1-only hit (backend=None)",
        L1_TARGET,
        minimums=True,
    )
    # Round trips, counted on the client after the timed loops (fresh keys again).
    ck_class = backend.client.connection_pool.connection_class
    trips = {
        "raw miss (GET + SET PX)": (raw.connection_pool.connection_class, raw_miss, None),
        "raw miss with SET NX lock + Lua unlock": (
            raw.connection_pool.connection_class,
            raw_miss_locked,
            None,
        ),
        "cachekit miss, l1=True, lock (default)": (
            ck_class,
            ck_miss["l1=True, lock"],
            MISS_ROUND_TRIPS,
        ),
        "cachekit miss, l1=False, lock": (ck_class, ck_miss["l1=False, lock"], None),
        "cachekit miss, l1=True, no lock": (ck_class, ck_miss["l1=True, no lock"], None),
        "cachekit L2 hit (l1=False)": (ck_class, lambda _: ck_l2(42), None),
    }
    for name, (conn_class, fn, limit) in trips.items():
        per_call = round_trips(conn_class, fn, fresh, ROUND_TRIP_CALLS)
        if name.startswith("raw miss (") and per_call != 2:
            raise RuntimeError(f"the send counter is broken: the raw miss made {per_call}")
        sec.line(
            "check",
            f"round trips per call: {name}",
            per_call,
            unit="RT",
            limit=limit,
            op="==",
            note=f"sends on the client's connections over {ROUND_TRIP_CALLS} calls",
        )

    front_us = min(cases["cachekit L1 hit in front of Redis"].wall) / 1000
    sec.notes.append(f"cachekit's L1 hit in front of Redis: {front_us:.2f} us; {REFERENCE}")
    sec.notes.append(
        "raw client: redis.Redis on BlockingConnectionPool.from_url with cachekit-redis's "
        "connection settings (checked equal); hiredis "
        + ("installed" if importlib.util.find_spec("hiredis") else "not installed")
        + f"; coherence listener {'connected' if coherence.healthy else 'NOT connected'}"
    )
    return sec
