"""Hit throughput of one cached function with 8 threads versus 1 thread.

Every thread calls the hit path N times on its own pre-warmed key; a
``threading.Barrier`` releases them together and the elapsed time runs from the
first thread's start to the last thread's finish. Throughput is total calls per
second. Under the GIL the best possible 8-thread figure is about the 1-thread
figure, so the ratio measures what concurrency costs: lock contention, convoys on
GIL hand-offs. cachekit takes no lock on a hit; cachetools(lock) does, for
comparison, and the uncached function shows what the interpreter itself loses to
thread switching on this machine. Each repeat runs a contender's 1- and 8-thread
configurations back to back (alternating which goes first); the reported ratio is
the median of these per-repeat ratios, which cancels slow drifts in machine load.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from itertools import repeat
from typing import Any

import cachetools
from harness import Section, calibrate, gc_paused, median, rotated

from cachekit import cache

NAME = "threads"
TITLE = "hit throughput, 8 threads vs 1 thread on the same cached function"

THREADS = 8
TARGET = 0.85  # 8-thread / 1-thread throughput >= 0.85
FIRST_KEY = 1000


def user(user_id: int) -> dict[str, Any]:
    return {"id": user_id, "name": f"user-{user_id}", "active": True, "roles": ["a", "b"]}


def throughput(fn: Callable[[int], Any], nthreads: int, calls: int) -> float:
    """Total hit calls per second with ``nthreads`` threads each making ``calls`` calls."""
    barrier = threading.Barrier(nthreads)
    starts = [0] * nthreads
    ends = [0] * nthreads
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        f = fn
        arg = FIRST_KEY + i
        clock = time.perf_counter_ns
        it = repeat(None, calls)
        try:
            barrier.wait()
            starts[i] = clock()
            for _ in it:
                f(arg)
            ends[i] = clock()
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return nthreads * calls / ((max(ends) - min(starts)) / 1e9)


def run(quick: bool) -> Section:
    repeats = 3 if quick else 15
    budget = 0.005 if quick else 0.015  # seconds of one 1-thread run
    sec = Section(
        NAME,
        TITLE,
        method=(
            f"total calls/s, best of {repeats} interleaved repeats (median in brackets); "
            "each thread makes the same number of hit calls; GC paused; ratios are the "
            "median of the per-repeat (adjacent 1- and 8-thread runs) ratios"
        ),
    )
    ttl_cache: cachetools.TTLCache[Any, Any] = cachetools.TTLCache(10_000, 300.0)
    contenders: dict[str, Callable[[int], Any]] = {
        "cachekit": cache(backend=None, ttl=300.0)(user),
        "cachetools(lock)": cachetools.cached(ttl_cache, lock=threading.Lock())(user),
        "uncached call": user,
    }
    calls: dict[str, int] = {}
    for name, fn in contenders.items():
        for i in range(THREADS):
            fn(FIRST_KEY + i)  # warm every thread's key
        calls[name] = calibrate(fn, FIRST_KEY, budget)

    runs = [(name, n) for name in contenders for n in (1, THREADS)]
    results: dict[tuple[str, int], list[float]] = {key: [] for key in runs}
    paired: dict[str, list[float]] = {name: [] for name in contenders}
    with gc_paused():
        for r in range(repeats):
            # Each contender's 1- and 8-thread runs are adjacent in time (a pair), the
            # pair order alternates and the contender order rotates between repeats.
            for name in rotated(list(contenders), r):
                counts = (1, THREADS) if r % 2 == 0 else (THREADS, 1)
                for n in counts:
                    results[name, n].append(throughput(contenders[name], n, calls[name]))
                paired[name].append(results[name, THREADS][-1] / results[name, 1][-1])

    info = contenders["cachekit"].cache_info()  # type: ignore[attr-defined]
    if info.misses != THREADS:
        raise RuntimeError(f"cachekit recorded {info.misses} misses; the hit loop missed")

    for name, n in runs:
        values = results[name, n]
        sec.figure(
            f"{name}, {n} thread{'s' if n > 1 else ''}",
            max(values),
            median(values),
            "calls/s",
            f"{calls[name]:,} calls per thread",
        )
    for name in contenders:
        ratio_of_medians = median(results[name, THREADS]) / median(results[name, 1])
        sec.line(
            "ratio",
            f"{name}: {THREADS} threads / 1 thread throughput",
            median(paired[name]),
            limit=TARGET if name == "cachekit" else None,
            op=">=",
            note=f"ratio of medians {ratio_of_medians:.2f}x"
            + (", the interpreter's own cost" if name == "uncached call" else ""),
        )
    return sec
