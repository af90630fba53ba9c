"""L1 memory per entry: what one more cached small value costs, over the value itself.

Each contender caches ``f(i)`` for 50,000 distinct integers ``i``, in a cache large
enough to hold them all, and ``tracemalloc`` measures the memory still allocated
after the loop (the cyclic GC collected before and after). The arguments and the
returned values are built before the measurement starts, so what is left is the
cache's own cost per entry: its table, its key, its entry record, its expiry.

The target case returns an ``int`` (cachekit keeps immutable values as they are, so
the value is not copied). For information, a function returning a small dict, for
which cachekit keeps a private copy of the dict (the template each hit copies; see
``cachekit._engine.clone``): its figure is given with the size of that copy (a decoded
dict with its list, strings and numbers, measured the same way) subtracted.
"""

from __future__ import annotations

import functools
import gc
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cachetools
import msgpack
from harness import Section

from cachekit import cache

NAME = "memory"
TITLE = "L1 memory per small entry over the value (tracemalloc, 50,000 entries)"

ENTRIES = 50_000
FIRST = 1_000_000  # arguments well above the small-int cache
TTL = 300.0
PER_ENTRY_TARGET = 200.0  # bytes per L1 entry over the value

ARGS = list(range(FIRST, FIRST + ENTRIES))
INTS = [10**9 + i for i in range(ENTRIES)]


def small_dict(i: int) -> dict[str, Any]:
    return {"id": i, "name": "alice", "tags": ["a", "b"], "score": 3.5}


def _contenders(values: list[Any]) -> dict[str, Callable[[int], Any]]:
    def body(i: int) -> Any:
        return values[i - FIRST]

    ttl_cache: cachetools.TTLCache[Any, Any] = cachetools.TTLCache(2 * ENTRIES, TTL)
    return {
        "cachekit @cache(backend=None)": cache(backend=None, ttl=TTL, l1_max_entries=2 * ENTRIES)(
            body
        ),
        "cachetools(TTLCache, lock)": cachetools.cached(ttl_cache, lock=threading.Lock())(body),
        "functools.lru_cache": functools.lru_cache(maxsize=2 * ENTRIES)(body),
    }


def traced(fn: Callable[[int], Any]) -> tuple[float, tracemalloc.Snapshot]:
    """(bytes still allocated per call after calling ``fn`` on every argument, snapshot)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in ARGS:
            fn(i)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    return (after - before) / ENTRIES, snapshot


def _kept_copy_size() -> float:
    """Bytes per entry of what cachekit keeps for a small dict: a decoded copy."""
    blobs = [msgpack.packb(small_dict(i)) for i in ARGS]
    kept, _ = traced_values(lambda: [msgpack.unpackb(b) for b in blobs])
    return kept


def traced_values(build: Callable[[], Any]) -> tuple[float, Any]:
    """(bytes per entry that ``build()``'s result holds, the result)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # The result list's own slots (8 B per entry) are not part of the kept copies.
    return (after - before) / ENTRIES - 8, result


def where(snapshot: tracemalloc.Snapshot, top: int = 4) -> str:
    """The lines that hold the most of it, in bytes per entry."""
    out = []
    for stat in snapshot.statistics("lineno")[:top]:
        if stat.size < ENTRIES:  # under a byte per entry: not the entries' cost
            break
        frame = stat.traceback[0]
        out.append(f"{Path(frame.filename).name}:{frame.lineno} {stat.size / ENTRIES:.0f} B")
    return ", ".join(out)


def run(quick: bool) -> Section:
    repeats = 1 if quick else 2  # the figures barely move between runs
    # --quick: the target case only (cachekit and cachetools, int values)
    kinds = ("int",) if quick else ("int", "small dict")
    names = list(_contenders([]))[: 2 if quick else None]
    sec = Section(
        NAME,
        TITLE,
        method=(
            f"tracemalloc bytes still allocated after {ENTRIES:,} misses on distinct int "
            f"arguments, per entry; arguments and values built beforehand; min of {repeats}"
        ),
    )
    kept = _kept_copy_size()
    results: dict[str, float] = {}
    for kind in kinds:
        for name in names:
            best = float("inf")
            for _ in range(repeats):
                vals = INTS if kind == "int" else [small_dict(i) for i in ARGS]
                fn = _contenders(vals)[name]
                fn(ARGS[0])  # the first call resolves cachekit's plan: not an entry's cost
                clear = getattr(fn, "cache_clear", None)
                if callable(clear):
                    clear()
                else:
                    fn.cache.clear()  # type: ignore[attr-defined]
                per_entry, snapshot = traced(fn)
                if per_entry < best:
                    best, best_snapshot = per_entry, snapshot
            own = name.startswith("cachekit") and kind == "small dict"
            results[f"{name}, {kind}"] = best - (kept if own else 0.0)
            note = f"{best:.0f} B minus {kept:.0f} B of the kept copy" if own else ""
            if name.startswith("cachekit"):
                note = (note + "; " if note else "") + "where: " + where(best_snapshot)
            sec.figure(f"{name}, {kind} value", results[f"{name}, {kind}"], None, "B", note)

    ck, ct = "cachekit @cache(backend=None)", "cachetools(TTLCache, lock)"
    sec.line(
        "delta",
        "cachekit L1 memory per entry over the value, int",
        results[f"{ck}, int"],
        unit="B",
        limit=PER_ENTRY_TARGET,
    )
    sec.line(
        "ratio",
        "cachekit / cachetools(TTLCache) memory per entry, int",
        results[f"{ck}, int"] / results[f"{ct}, int"],
    )
    if quick:
        return sec
    sec.line(
        "delta",
        "cachekit L1 memory per entry over its kept copy, small dict",
        results[f"{ck}, small dict"],
        unit="B",
        note="cachetools keeps the dict itself (its size is not counted there)",
    )
    return sec
