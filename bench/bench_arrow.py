"""``ArrowSerializer`` (cachekit-arrow) on DataFrames, against pickle and MessagePack records.

Part 1, the serializers alone (no cache, no I/O). The same two frames for every
contender, built once with a fixed seed:

* *numeric*: ``id`` (0..n-1) and ``count`` (int64), ``price``, ``ratio``, ``score``
  (float64) and ``at`` (datetime64[ns]);
* *strings*: ``id`` (int64) and five string columns of varied short and medium strings
  (``name``, ``email``, ``city``, ``sku``, ``comment`` of 2-12 words), every cell its
  own string object, as a database driver or CSV reader hands them over.

Contenders, each timed as serialize and deserialize, the round trip being their sum:

* ``ArrowSerializer()`` (Arrow IPC stream, no compression), and with ``compression="lz4"``
  and ``"zstd"`` for information;
* ``pickle.dumps(df, protocol=5)`` / ``pickle.loads``;
* ``msgpack.packb(df.to_dict("records"))`` / ``msgpack.unpackb`` **followed by**
  ``pd.DataFrame(records)`` with the datetime column restored (``pd.Timestamp`` is
  packed as its int64 nanoseconds), since a cache must hand back a frame.

Every contender's round trip is checked to give back an equal frame before timing.
Each repeat times every contender's serialize and deserialize once (one window of
calls, the loop count set from one call so that a window lasts about the window
budget, at least one call), in a rotated order; the cyclic GC is collected before each
window (large frames leave much garbage) and paused during it. The ratios are of the
minimum round trips (no I/O), with the ratio of medians alongside. MessagePack records
at 10^6 rows take seconds per call, so they get fewer repeats.

Part 2, a full cached call through Redis: a function returning a 10^5-row frame (each
kind) under ``@cache(backend=url, serializer=ArrowSerializer(), l1=False)`` on a
private redis-server (the ``redis`` benchmark's helper and timing machinery; never the
machine's Redis on 6379). The L2 hit is compared with raw redis-py ``GET`` +
``ArrowSerializer().deserialize`` of the same bytes, the miss (compute + serialize +
``SET``, ``distributed_lock=False``) with raw ``GET`` (nil) + compute + serialize +
``SET PX``; both for information, as the median of paired per-repeat ratios.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgpack
from bench_redis import (
    Case,
    Fresh,
    Report,
    check_l2_hits,
    check_misses,
    check_same_settings,
    named,
    private_server,
    raw_client,
    time_case,
)
from harness import Section, gc_paused, median, rotated

NAME = "arrow"
TITLE = "ArrowSerializer vs pickle 5 and msgpack records on DataFrames; a cached call on Redis"

SEED = 20240501
PICKLE_TARGET = 1.00  # arrow round trip <= pickle 5 round trip, both kinds, target rows
MSGPACK_TARGET = 5.0  # msgpack records round trip >= 5x arrow, both kinds, target rows
TTL_MS = 300_000
KINDS = ("numeric", "strings")


@dataclass(frozen=True)
class Plan:
    """How much to run: frame sizes, repeats and window budgets."""

    small: int  # rows of the information frames
    large: int  # rows of the target frames
    small_repeats: int
    large_repeats: int
    #: At ``large`` rows: MessagePack records (seconds a call at 10^6 rows) and the
    #: compressed arrow contenders (information) get fewer repeats.
    msgpack_large_repeats: int
    compressed_large_repeats: int
    small_window_s: float
    large_window_s: float
    redis_rows: int
    redis_repeats: int
    redis_window_s: float

    def frames(self) -> list[tuple[int, int, float, dict[str, int], bool]]:
        """(rows, repeats, window, repeats by contender, targets?) for each frame size."""
        fewer = {
            "msgpack records": self.msgpack_large_repeats,
            "arrow lz4": self.compressed_large_repeats,
            "arrow zstd": self.compressed_large_repeats,
        }
        return [
            (self.small, self.small_repeats, self.small_window_s, {}, False),
            (self.large, self.large_repeats, self.large_window_s, fewer, True),
        ]


FULL = Plan(10**4, 10**6, 21, 7, 2, 3, 0.02, 0.05, 10**5, 21, 0.03)
QUICK = Plan(10**4, 10**5, 3, 3, 1, 2, 0.005, 0.01, 10**5, 3, 0.01)


def rows_text(n: int) -> str:
    """``10^k rows`` for powers of ten, else the count."""
    k = len(str(n)) - 1
    return f"10^{k} rows" if n == 10**k else f"{n:,} rows"


# --- the frames ------------------------------------------------------------------------------


def _words(rng: Any, count: int, low: int, high: int) -> list[str]:
    """``count`` random lowercase words of ``low``..``high`` letters."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    lengths = rng.integers(low, high + 1, count)
    picks = rng.integers(0, len(letters), int(lengths.sum())).tolist()
    out, pos = [], 0
    for n in lengths.tolist():
        out.append("".join(letters[i] for i in picks[pos : pos + n]))
        pos += n
    return out


def numeric_frame(n: int, seed: int = SEED) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64),
            "count": rng.integers(0, 1_000_000, n, dtype=np.int64),
            "price": rng.normal(100.0, 15.0, n),
            "ratio": rng.random(n),
            "score": rng.standard_normal(n),
            "at": pd.Timestamp("2024-01-01")
            + pd.to_timedelta(rng.integers(0, 365 * 86_400, n), unit="s"),
        }
    )


def strings_frame(n: int, seed: int = SEED) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    first, last = _words(rng, 500, 3, 9), _words(rng, 2000, 4, 12)
    cities, vocab = _words(rng, 300, 4, 14), _words(rng, 5000, 2, 10)
    f, la, ci = (rng.integers(0, len(p), n).tolist() for p in (first, last, cities))
    num = rng.integers(0, 10_000_000, n).tolist()
    sizes = rng.integers(2, 13, n).tolist()
    picks = rng.integers(0, len(vocab), int(sum(sizes))).tolist()
    comments, pos = [], 0
    for k in sizes:
        comments.append(" ".join([vocab[i] for i in picks[pos : pos + k]]))
        pos += k
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64),
            "name": [f"{first[a].title()} {last[b].title()}" for a, b in zip(f, la, strict=True)],
            "email": [
                f"{first[a]}.{last[b]}{m % 1000}@example.com"
                for a, b, m in zip(f, la, num, strict=True)
            ],
            # "".join: a fresh string object per cell, not the pool's (pickle would memoize those).
            "city": ["".join((cities[c],)) for c in ci],
            "sku": [f"SKU-{m:07d}" for m in num],
            "comment": comments,
        }
    )


FRAMES: dict[str, Callable[..., Any]] = {"numeric": numeric_frame, "strings": strings_frame}


def frame_equal(got: Any, want: Any) -> None:
    """pandas' own check, dtypes included."""
    import pandas as pd

    pd.testing.assert_frame_equal(got, want, check_dtype=True, check_exact=True)


# --- the contenders --------------------------------------------------------------------------


def _timestamp_ns(obj: Any) -> Any:
    """msgpack ``default``: ``pd.Timestamp`` as its int64 nanoseconds."""
    import pandas as pd

    if isinstance(obj, pd.Timestamp):
        return obj.value
    raise TypeError(f"cannot pack {type(obj).__name__}")


def msgpack_records_pack(df: Any) -> bytes:
    return msgpack.packb(df.to_dict("records"), default=_timestamp_ns)  # type: ignore[no-any-return]


def msgpack_records_unpack(blob: bytes, *, datetimes: dict[str, Any] | None = None) -> Any:
    """The frame back from records; ``datetimes`` maps datetime columns to their dtype."""
    import pandas as pd

    df = pd.DataFrame(msgpack.unpackb(blob))
    for column, dtype in (datetimes or {}).items():
        df[column] = pd.to_datetime(df[column], unit="ns").astype(dtype)
    return df


@dataclass
class Contender:
    label: str
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]


def contenders(df: Any) -> list[Contender]:
    from cachekit.serializers import ArrowSerializer

    datetimes = {c: t for c, t in df.dtypes.items() if str(t).startswith("datetime64")}
    out = []
    for compression in (None, "lz4", "zstd"):
        ser = ArrowSerializer(compression=compression or "none")  # not the environment's
        label = "arrow" if compression is None else f"arrow {compression}"
        out.append(Contender(label, ser.serialize, ser.deserialize))
    return [
        *out,
        Contender("pickle 5", partial(pickle.dumps, protocol=5), pickle.loads),
        Contender(
            "msgpack records",
            msgpack_records_pack,
            partial(msgpack_records_unpack, datetimes=datetimes),
        ),
    ]


# --- timing ----------------------------------------------------------------------------------


def window_loops(ns_per_call: float, budget_s: float) -> int:
    """Calls in one window of about ``budget_s``; at least one."""
    return max(1, round(budget_s * 1e9 / max(ns_per_call, 1.0)))


def timed(fn: Callable[[Any], Any], arg: Any) -> tuple[Any, float, float]:
    """(``fn(arg)``, wall ns, calling thread's CPU ns) of one call."""
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    c0, t0 = cpu(), wall()
    out = fn(arg)
    t1, c1 = wall(), cpu()
    return out, t1 - t0, c1 - c0


def probe(fn: Callable[[Any], Any], arg: Any, budget_s: float) -> tuple[Any, float, float]:
    """(``fn(arg)``, wall ns, CPU ns) of one call, GC paused; a second call is timed when
    the first, the warm-up, took less than the window budget."""
    with gc_paused():
        out, wall, cpu = timed(fn, arg)
        if wall < budget_s * 1e9:
            out, wall, cpu = timed(fn, arg)
    return out, wall, cpu


def measure_windows(
    cases: list[Case],
    repeats: int,
    fresh: Fresh,
    *,
    caps: dict[str, int] | None = None,
    after: Callable[[Case, int, int], None] | None = None,
) -> None:
    """Interleaved windows of ``case.loops`` calls (set by the caller), as in
    ``bench_redis.measure`` but for calls of milliseconds to seconds: the cyclic GC is
    collected before each window and paused during it; ``caps[label]`` limits a case's
    repeats; ``after(case, first, stop)`` runs after each window, untimed, with the
    range of fresh integers the window used."""
    caps = caps or {}
    for r in range(repeats):
        for case in rotated(cases, r):
            if len(case.wall) >= caps.get(case.label, repeats):
                continue
            first = fresh.next
            with gc_paused():
                w, c = time_case(case, case.loops, fresh)
            case.wall.append(w)
            case.cpu.append(c)
            if after is not None:
                after(case, first, fresh.next)


@dataclass
class Measured:
    """One contender on one frame: its serialize and deserialize cases and its size."""

    dumps: Case
    loads: Case
    size: int

    def round_trips(self) -> list[float]:
        """ns per round trip, per repeat (serialize + deserialize of the same repeat)."""
        return [a + b for a, b in zip(self.dumps.wall, self.loads.wall, strict=True)]


def measure_frame(
    kind: str, df: Any, repeats: int, budget_s: float, fewer: dict[str, int]
) -> dict[str, Measured]:
    """Every contender on ``df``: checked, then timed in interleaved windows.

    ``fewer[label]`` caps a contender's repeats; such a contender's checked round trip
    (GC paused too) counts as its first repeat, since its calls are slow."""
    measured: dict[str, Measured] = {}
    cases: list[Case] = []
    caps: dict[str, int] = {}
    where = f"{kind}, {rows_text(len(df))}"
    for con in contenders(df):
        blob, dumps_ns, dumps_cpu = probe(con.dumps, df, budget_s)
        back, loads_ns, loads_cpu = probe(con.loads, blob, budget_s)
        try:
            frame_equal(back, df)
        except AssertionError as exc:
            raise RuntimeError(f"{con.label} did not give back the {kind} frame: {exc}") from None
        del back
        dumps = Case(f"{con.label} serialize, {where}", con.dumps, df)
        loads = Case(f"{con.label} deserialize, {where}", con.loads, blob)
        dumps.loops = window_loops(dumps_ns, budget_s)
        loads.loops = window_loops(loads_ns, budget_s)
        cap = fewer.get(con.label, repeats)
        if cap < repeats:
            caps[dumps.label] = caps[loads.label] = cap
            dumps.wall.append(dumps_ns)
            dumps.cpu.append(dumps_cpu)
            loads.wall.append(loads_ns)
            loads.cpu.append(loads_cpu)
        measured[con.label] = Measured(dumps, loads, len(blob))
        cases += [dumps, loads]
    measure_windows(cases, repeats, Fresh(), caps=caps)
    return measured


def ms(ns: float) -> float:
    return ns / 1e6


def report_frame(
    sec: Section, kind: str, rows: int, measured: dict[str, Measured], target: bool
) -> None:
    where = f"{kind}, {rows_text(rows)}"
    for label, m in measured.items():
        rt = m.round_trips()
        sec.figure(
            f"{label} round trip, {where}",
            ms(min(rt)),
            ms(median(rt)),
            "ms",
            f"serialize {ms(min(m.dumps.wall)):.2f} + deserialize {ms(min(m.loads.wall)):.2f} ms, "
            f"{m.size:,} B, min of {len(rt)}",
        )

    def ratio(name: str, num: list[float], den: list[float], limit: float | None, op: str) -> None:
        sec.line(
            "ratio",
            f"{name}, {where}",
            min(num) / min(den),
            limit=limit if target else None,
            op=op,
            note=f"minimums; medians {median(num) / median(den):.2f}x",
        )

    arrow, pickled, records = measured["arrow"], measured["pickle 5"], measured["msgpack records"]
    ratio(
        "arrow / pickle 5 round trip",
        arrow.round_trips(),
        pickled.round_trips(),
        PICKLE_TARGET,
        "<=",
    )
    ratio("arrow / pickle 5 serialize", arrow.dumps.wall, pickled.dumps.wall, None, "<=")
    ratio("arrow / pickle 5 deserialize", arrow.loads.wall, pickled.loads.wall, None, "<=")
    ratio(
        "msgpack records / arrow round trip",
        records.round_trips(),
        arrow.round_trips(),
        MSGPACK_TARGET,
        ">=",
    )
    sizes = ", ".join(f"{label} {m.size:,}" for label, m in measured.items())
    sec.notes.append(f"sizes in bytes, {where}: {sizes}")


# --- through Redis ---------------------------------------------------------------------------


def _redis_part(sec: Section, plan: Plan, server: Any) -> None:
    from cachekit.serializers import ArrowSerializer

    url, n = server.url, plan.redis_rows
    raw = raw_client(url)
    try:
        _redis_measure(sec, plan, url, n, raw, ArrowSerializer(compression="none"))
    finally:
        raw.close()


def _redis_measure(sec: Section, plan: Plan, url: str, n: int, raw: Any, ser: Any) -> None:
    get, set_, serialize, deserialize = raw.get, raw.set, ser.serialize, ser.deserialize
    fresh = Fresh()
    hits: list[Case] = []
    misses: list[Case] = []
    checks: list[tuple[Any, Case, Any, Callable[..., None]]] = []
    miss_keys: dict[str, Callable[[int], str]] = {}
    sizes: dict[str, int] = {}

    for kind in KINDS:
        base = FRAMES[kind](n)
        where = f"{kind}, {rows_text(n)}"

        def compute(i: int, base: Any = base) -> Any:
            return base.assign(id=base["id"] + i)

        def raw_hit(key: str) -> Any:
            return deserialize(get(key))

        def raw_miss(
            i: int, prefix: str = f"bench:arrow:miss:{kind}:", compute: Any = compute
        ) -> Any:
            key = f"{prefix}{i}"
            blob = get(key)
            if blob is not None:
                return deserialize(blob)
            value = compute(i)
            set_(key, serialize(value), px=TTL_MS)
            return value

        ck_hit = named(compute, f"arrow_l2_hit_{kind}", backend=url, serializer=ser, l1=False)
        ck_miss = named(
            compute,
            f"arrow_miss_{kind}",
            backend=url,
            serializer=ser,
            l1=False,
            distributed_lock=False,
        )
        hit_key = f"bench:arrow:hit:{kind}"
        set_(hit_key, serialize(compute(42)), px=TTL_MS)
        ck_hit(42)  # miss: stores the entry
        ck_miss(-1)  # resolves the plan
        check_same_settings(raw, ck_hit.__cachekit__.plan.backend)
        frame_equal(ck_hit(42), compute(42))
        frame_equal(raw_hit(hit_key), compute(42))
        sizes[kind] = len(get(hit_key))

        pair = [
            Case(f"raw GET + deserialize, {where}", raw_hit, hit_key),
            Case(f"cachekit L2 hit (l1=False), {where}", ck_hit, 42),
        ]
        miss_pair = [
            Case(f"raw miss: GET + compute + serialize + SET PX, {where}", raw_miss),
            Case(f"cachekit miss (l1=False, no lock), {where}", ck_miss),
        ]
        for case in pair:
            _, took, _ = probe(case.fn, case.arg, plan.redis_window_s)
            case.loops = window_loops(took, plan.redis_window_s)
        for case in miss_pair:
            case.loops = pair[1].loops  # a miss costs somewhat more than a hit
        miss_keys[miss_pair[0].label] = partial("bench:arrow:miss:{}:{}".format, kind)
        miss_keys[miss_pair[1].label] = ck_miss.cache_key
        checks += [(ck_hit, pair[1], ck_hit.cache_info(), check_l2_hits)]
        checks += [(ck_miss, miss_pair[1], ck_miss.cache_info(), check_misses)]
        hits += pair
        misses += miss_pair

    def forget(case: Case, first: int, stop: int) -> None:
        """Drop the entries a miss window wrote (10^5-row frames add up)."""
        key = miss_keys.get(case.label)
        if key is not None and stop > first:
            raw.delete(*(key(i) for i in range(first, stop)))

    measure_windows(hits, plan.redis_repeats, fresh)
    measure_windows(misses, plan.redis_repeats, fresh, after=forget)
    for fn, case, was, check in checks:
        check(fn, case, was)

    report = Report(sec, (*hits, *misses))
    for case in (*hits, *misses):
        sec.figure(case.label, ms(min(case.wall)), ms(median(case.wall)), "ms/call")
    for kind in KINDS:
        where = f"{kind}, {rows_text(n)}"
        report.paired_ratio(
            f"L2 hit (l1=False) / raw GET + deserialize, {where}",
            f"cachekit L2 hit (l1=False), {where}",
            f"raw GET + deserialize, {where}",
            None,
        )
        report.delta(
            f"L2 hit: cachekit adds per call, {where}",
            f"cachekit L2 hit (l1=False), {where}",
            f"raw GET + deserialize, {where}",
        )
        report.paired_ratio(
            f"miss (l1=False, no lock) / raw miss, {where}",
            f"cachekit miss (l1=False, no lock), {where}",
            f"raw miss: GET + compute + serialize + SET PX, {where}",
            None,
        )
    sec.notes.append(
        "through Redis: "
        + ", ".join(f"{kind} frame {size:,} B of Arrow IPC" for kind, size in sizes.items())
        + "; compute = base.assign(id=id + i) on a prebuilt frame; every hit loop only hit "
        "L2 and every miss loop only missed (checked)"
    )


# --- the benchmark ---------------------------------------------------------------------------


def _versions() -> str:
    import pandas as pd
    import pyarrow as pa

    import cachekit_arrow

    version = getattr(cachekit_arrow, "__version__", "?")
    return (
        f"pandas {pd.__version__}, pyarrow {pa.__version__}, msgpack "
        f"{'.'.join(map(str, msgpack.version))}, cachekit-arrow {version}"
    )


def run(quick: bool) -> Section:
    plan = QUICK if quick else FULL
    sec = Section(
        NAME,
        TITLE,
        method=(
            f"ms per serialize + deserialize round trip, min of {plan.small_repeats} "
            f"({rows_text(plan.small)}) / {plan.large_repeats} ({rows_text(plan.large)}; "
            f"msgpack records {plan.msgpack_large_repeats}, arrow lz4/zstd "
            f"{plan.compressed_large_repeats}) interleaved repeats, median in brackets, GC "
            "paused; msgpack records = packb(df.to_dict('records')) and "
            "pd.DataFrame(unpackb(...)) with the datetime column restored (a cache must "
            f"return a frame); targets at {rows_text(plan.large)}, {rows_text(plan.small)} "
            f"for information; ratios of minimums; Redis part: {plan.redis_repeats} repeats, "
            "median of paired ratios"
        ),
    )
    for rows, repeats, window_s, fewer, target in plan.frames():
        for kind in KINDS:
            df = FRAMES[kind](rows)
            measured = measure_frame(kind, df, repeats, window_s, fewer)
            report_frame(sec, kind, rows, measured, target)
            del df, measured
    with private_server("bench-arrow") as server:
        _redis_part(sec, plan, server)
    sec.notes.append(_versions() + "; string columns: " + _string_dtype())
    return sec


def _string_dtype() -> str:
    return str(strings_frame(10)["name"].dtype)
