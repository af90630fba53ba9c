"""L1 hit cost of a cached ``f(user_id: int)`` against functools.lru_cache and cachetools.

The dict case returns issue 12's small nested dict, ``{"id": 1, "name": "alice",
"tags": ["a", "b"], "score": 3.5}``; the immutable cases return an ``int`` and a ``str``.

All contenders wrap their own copy of the same function and are timed in the same
process, interleaved: every repeat times each of them once, in a rotated order, with
the cyclic GC paused. Figures are nanoseconds per call (min of the repeats, median
alongside); the target compares minimums.

cachekit returns a fresh copy on every hit of a mutable value (the cost of being
copy-safe); lru_cache and cachetools hand every caller the same object. The copy
check below shows the difference, and the ``int`` figures show cachekit's path for
immutable values, which returns the stored object as is (the ``str`` figures too).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import cachetools
from harness import (
    Section,
    calibrate,
    gc_paused,
    median,
    rotated,
    time_calls,
    time_empty_loop,
)

from cachekit import cache

NAME = "l1"
TITLE = "cached f(user_id) on a hit: cachekit L1 vs lru_cache vs cachetools(lock)"

MAXSIZE = 10_000
TTL = 300.0
HIT_TARGET = 0.8  # copy-safe L1 hit of the small dict <= 0.8x cachetools(TTLCache, lock)
IMMUTABLE_TARGET = 0.4  # L1 hit of an int or a str <= 0.4x cachetools(TTLCache, lock)
ARG = 1  # user(ARG) is issue 12's dict: {"id": 1, "name": "alice", "tags": [...], ...}


def user(user_id: int) -> dict[str, Any]:
    return {"id": user_id, "name": "alice", "tags": ["a", "b"], "score": 3.5}


def double(user_id: int) -> int:
    return user_id * 2


def user_name(user_id: int) -> str:
    return f"user-{user_id}"


def _contenders(body: Callable[[int], Any]) -> dict[str, tuple[Any, Callable[[], Any]]]:
    """Each library's cached version of ``body``, with a way to empty its cache."""
    ttl_cache: cachetools.TTLCache[Any, Any] = cachetools.TTLCache(MAXSIZE, TTL)
    lock = threading.Lock()

    def ct_clear() -> None:
        with lock:
            ttl_cache.clear()

    lru = functools.lru_cache(maxsize=MAXSIZE)(body)
    ck = cache(backend=None, ttl=TTL)(body)
    return {
        "lru_cache": (lru, lru.cache_clear),
        "cachetools(lock)": (cachetools.cached(ttl_cache, lock=lock)(body), ct_clear),
        "cachekit": (ck, ck.cache_clear),
    }


def _copy_safe(fn: Callable[[int], dict[str, Any]]) -> tuple[bool, bool]:
    """(same object on consecutive hits, next caller sees a mutation of a returned dict)."""
    fn(7)  # miss: store
    first = fn(7)
    second = fn(7)
    same = first is second
    second["name"] = "mutated"
    second["tags"].append("x")
    third = fn(7)
    return same, third != user(7)


def run(quick: bool) -> Section:
    # Many short timings rather than a few long ones: on a busy machine the minimum of
    # many 2 ms windows still finds undisturbed ones for every contender.
    repeats = 5 if quick else 51
    budget = 0.001 if quick else 0.002
    miss_keys = 300 if quick else 2000
    sec = Section(
        NAME,
        TITLE,
        method=(
            f"ns per call, min of {repeats} interleaved repeats (median in brackets), "
            "GC paused, loop included; ratios of minimums"
        ),
    )

    dict_fns = _contenders(user)
    int_fns = _contenders(double)
    str_fns = _contenders(user_name)
    hit_cases: list[tuple[str, Callable[[Any], Any], Any]] = [
        *((f"{name} hit -> dict", fn, ARG) for name, (fn, _) in dict_fns.items()),
        *((f"{name} hit -> int", fn, ARG) for name, (fn, _) in int_fns.items()),
        *((f"{name} hit -> str", fn, ARG) for name, (fn, _) in str_fns.items()),
        ("uncached call -> dict", user, ARG),
    ]
    for _, fn, arg in hit_cases:
        fn(arg)  # warm: the first call is the miss (and cachekit's plan resolution)
    loops = {label: calibrate(fn, arg, budget) for label, fn, arg in hit_cases}
    empty_n = max(loops.values())

    hit_times: dict[str, list[float]] = {label: [] for label, _, _ in hit_cases}
    empty_times: list[float] = []
    paired: list[float] = []
    with gc_paused():
        for r in range(repeats):
            for label, fn, arg in rotated(hit_cases, r):
                hit_times[label].append(time_calls(fn, arg, loops[label]))
            empty_times.append(time_empty_loop(empty_n))
            paired.append(
                hit_times["cachekit hit -> dict"][-1]
                / hit_times["cachetools(lock) hit -> dict"][-1]
            )

    # The timed calls must have been hits: one miss each (the warm-up call).
    for fns in (dict_fns, int_fns, str_fns):
        info = fns["cachekit"][0].cache_info()
        if info.misses != 1:
            raise RuntimeError(f"cachekit recorded {info.misses} misses; the hit loop missed")

    # Miss path: distinct keys into a cleared cache (information only).
    miss_cases: list[tuple[str, Callable[[Any], Any], Callable[[], Any]]] = [
        *((f"{name} miss -> dict", fn, clear) for name, (fn, clear) in dict_fns.items()),
        ("uncached call (distinct keys)", user, lambda: None),
    ]
    miss_times: dict[str, list[float]] = {label: [] for label, _, _ in miss_cases}
    keys = list(range(1_000_000, 1_000_000 + miss_keys))
    with gc_paused():
        for r in range(repeats):
            for label, fn, clear in rotated(miss_cases, r):
                clear()
                start = time.perf_counter_ns()
                for k in keys:
                    fn(k)
                miss_times[label].append((time.perf_counter_ns() - start) / len(keys))
        for _, clear in dict_fns.values():
            clear()

    notes = {
        "cachekit hit -> dict": "fresh copy each hit",
        "lru_cache hit -> dict": "same object each hit",
        "cachetools(lock) hit -> dict": "same object each hit",
        "cachekit hit -> int": "immutable: stored object returned",
        "cachekit hit -> str": "immutable: stored object returned",
    }
    for label, times in {**hit_times, **miss_times}.items():
        sec.figure(label, min(times), median(times), "ns/call", notes.get(label, ""))
    sec.figure("empty loop (per iteration)", min(empty_times), median(empty_times), "ns/iter")

    def best(label: str) -> float:
        return min(hit_times.get(label) or miss_times[label])

    def mid(label: str) -> float:
        return median(hit_times.get(label) or miss_times[label])

    ck, ct = "cachekit hit -> dict", "cachetools(lock) hit -> dict"
    sec.line(
        "ratio",
        "cachekit L1 hit / cachetools(lock), dict",
        best(ck) / best(ct),
        limit=HIT_TARGET,
        note=f"medians {mid(ck) / mid(ct):.2f}x, paired {median(paired):.2f}x",
    )
    for kind in ("int", "str"):
        mine, theirs = f"cachekit hit -> {kind}", f"cachetools(lock) hit -> {kind}"
        sec.line(
            "ratio",
            f"cachekit L1 hit / cachetools(lock), {kind}",
            best(mine) / best(theirs),
            limit=IMMUTABLE_TARGET,
            note=f"medians {mid(mine) / mid(theirs):.2f}x",
        )
    sec.line(
        "ratio",
        "cachekit L1 hit / lru_cache, dict",
        best(ck) / best("lru_cache hit -> dict"),
    )
    sec.line(
        "ratio",
        "cachekit miss / cachetools(lock) miss, dict",
        best("cachekit miss -> dict") / best("cachetools(lock) miss -> dict"),
        note=f"{miss_keys} distinct keys per repeat",
    )

    # Copy safety, on fresh wrappers so the timed ones stay untouched.
    for name, (fn, _) in _contenders(user).items():
        same, leaked = _copy_safe(fn)
        sec.line(
            "check",
            f"{name}: a mutated result stays private",
            not leaked,
            unit="",
            limit=True if name == "cachekit" else None,
            op="==",
            note="same object on each hit" if same else "fresh object on each hit",
        )
    return sec
