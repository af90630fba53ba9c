"""ArrowSerializer end to end through a real redis-server.

Every test goes through the decorator, cachekit-redis and the serializer found by the
plugin registry, on the worker's private redis-server (the ``redis_url`` fixture, reset
for each test; never the machine's Redis on 6379). The frames have 10^5 rows of mixed
dtypes: int64, float64, nullable Int64, categorical, tz-aware datetime, strings (the default
string dtype, with missing values, and an object column).

* a miss, then an L2 hit (``l1=False``) that gives back an equal frame, dtypes included,
  also to a second decorated copy of the function (same name, so the same keys), for
  every way of naming the serializer and with compression;
* garbage in Redis under the function's key (not an envelope, an envelope whose payload
  is not Arrow, a plain pyarrow stream, truncated streams): the call recomputes, returns
  the right frame and counts the entry as invalid, never raises;
* another process (``sys.executable -c``) computes and stores; this one hits;
* ``return_format="arrow"``: a function returning a DataFrame gets a Table on hits.
"""

from __future__ import annotations

import functools
import itertools
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cachekit import cache
from cachekit.envelope import read_header, seal
from cachekit.serializers import ArrowSerializer

ROWS = 100_000
TTL = 300
#: The module every decorated function here claims, in this process and in the child.
MODULE = "arrow_redis_tests"
#: The end-of-stream marker of the Arrow IPC stream format.
EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"
_names = itertools.count()


@functools.lru_cache(maxsize=8)
def _build(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    maybe = pd.array(rng.integers(-1000, 1000, n), dtype="Int64")
    maybe[rng.random(n) < 0.1] = pd.NA
    labels: list[str | None] = [
        f"item-{k}-" + "x" * (k % 23) for k in rng.integers(0, 10**6, n).tolist()
    ]
    labels[::50] = [None] * len(labels[::50])
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64) + seed,
            "x": rng.standard_normal(n),
            "maybe": maybe,
            "colour": pd.Categorical.from_codes(
                rng.integers(0, 4, n), categories=["red", "green", "blue", "grey"]
            ),
            # Minutes from just before a DST change in Europe/Paris.
            "at": pd.date_range("2024-03-30 12:00", periods=n, freq="min", tz="Europe/Paris"),
            "label": labels,
            # pandas 3 reads Arrow strings back as ``str``: object must stay object.
            "code": pd.Series([f"c{k % 997}" for k in range(n)], dtype=object),
        }
    )


def make_frame(seed: int = 0, n: int = ROWS) -> pd.DataFrame:
    """The test frame for ``seed`` (a copy: callers may not share it)."""
    return _build(seed, n).copy()


def assert_same_frame(got: Any, want: pd.DataFrame) -> None:
    assert isinstance(got, pd.DataFrame), type(got)
    pd.testing.assert_frame_equal(got, want, check_dtype=True, check_exact=True)


def cached_report(url: str, *, name: str | None = None, serializer: Any = None, **options: Any):
    """A fresh ``@cache`` function returning ``make_frame(seed)``, L1 off, Arrow by default.

    ``name`` gives copies (and the child process) the same keys; ``fn.calls`` lists the
    seeds it computed."""
    calls: list[int] = []

    def report(seed: int) -> pd.DataFrame:
        calls.append(seed)
        return make_frame(seed)

    report.__qualname__ = report.__name__ = name or f"report_{os.getpid()}_{next(_names)}"
    report.__module__ = MODULE
    options.setdefault("l1", False)
    fn = cache(
        backend=url,
        ttl=TTL,
        serializer=ArrowSerializer() if serializer is None else serializer,
        **options,
    )(report)
    fn.calls = calls  # type: ignore[attr-defined]
    return fn


def stored(raw, fn, *args: Any) -> bytes:
    blob = raw.get(fn.cache_key(*args))
    assert blob is not None, "nothing stored under the function's key"
    return blob


def envelope(payload: bytes, fn, *args: Any, serializer: str = "arrow") -> bytes:
    """A valid cachekit envelope around ``payload`` for ``fn(*args)``'s key."""
    return seal(
        payload,
        serializer=serializer,
        key=fn.cache_key(*args),
        expires_at=time.time() + TTL,
    )


def arrow_payload(blob: bytes) -> bytes:
    """The serializer output inside a plain (unsigned, unencrypted) envelope."""
    return blob[read_header(blob).payload_offset :]


def plain_pyarrow_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def first_message_end(payload: bytes) -> int:
    """Where the first IPC message (the schema) of a stream ends."""
    source = pa.BufferReader(payload)
    pa.ipc.MessageReader.open_stream(source).read_next_message()
    return source.tell()


# --- miss, hit, shared ---------------------------------------------------------------------


SERIALIZERS = {
    "instance": lambda: ArrowSerializer(),
    "by name": lambda: "arrow",
    "lz4": lambda: ArrowSerializer(compression="lz4"),
    "zstd": lambda: ArrowSerializer(compression="zstd"),
}


@pytest.mark.parametrize("how", list(SERIALIZERS))
def test_miss_then_l2_hit_returns_an_equal_frame_to_every_copy(redis_url, raw, how) -> None:
    name = f"shared_{how.replace(' ', '_')}_{next(_names)}"
    writer = cached_report(redis_url, name=name, serializer=SERIALIZERS[how]())
    reader = cached_report(redis_url, name=name, serializer=SERIALIZERS[how]())
    want = make_frame(7)

    assert_same_frame(writer(7), want)  # miss: computed and stored
    blob = stored(raw, writer, 7)
    header = read_header(blob)
    assert header.serializer == "arrow"
    assert_same_frame(writer(7), want)  # L2 hit (no L1)
    assert_same_frame(reader(7), want)  # the copy reads the same entry

    assert writer.calls == [7]
    assert reader.calls == []
    w, r = writer.cache_info(), reader.cache_info()
    assert (w.misses, w.l2_hits, w.invalid, w.errors) == (1, 1, 0, 0)
    assert (r.misses, r.l2_hits, r.invalid, r.errors) == (0, 1, 0, 0)
    if how in ("lz4", "zstd"):
        plain = ArrowSerializer().serialize(want)
        assert len(arrow_payload(blob)) < len(plain), "compression did not shrink the frame"


@pytest.mark.parametrize(("written", "read"), [("zstd", None), (None, "lz4"), ("lz4", "zstd")])
def test_a_reader_with_other_compression_reads_the_entry(redis_url, written, read) -> None:
    """Arrow records compression per buffer: a fleet changing the option keeps its entries."""
    name = f"compression_{next(_names)}"
    writer = cached_report(redis_url, name=name, serializer=ArrowSerializer(compression=written))
    reader = cached_report(redis_url, name=name, serializer=ArrowSerializer(compression=read))
    writer(3)
    assert_same_frame(reader(3), make_frame(3))
    assert reader.calls == []
    assert reader.cache_info().l2_hits == 1


# --- garbage under the key -----------------------------------------------------------------


def _random_bytes(fn, blob: bytes) -> bytes:
    return os.urandom(4096)


def _truncated_envelope(fn, blob: bytes) -> bytes:
    return blob[: len(blob) // 2]


def _envelope_of_msgpack(fn, blob: bytes) -> bytes:
    return envelope(msgpack.packb({"not": "arrow", "rows": [1, 2, 3]}), fn, 5)


def _envelope_of_text(fn, blob: bytes) -> bytes:
    return envelope(b"this is not an Arrow IPC stream", fn, 5)


def _envelope_of_random_bytes(fn, blob: bytes) -> bytes:
    return envelope(os.urandom(4096), fn, 5)


def _envelope_of_plain_pyarrow_stream(fn, blob: bytes) -> bytes:
    return envelope(plain_pyarrow_stream(pa.table({"a": [1, 2, 3]})), fn, 5)


def _envelope_of_plain_pyarrow_stream_of_a_frame(fn, blob: bytes) -> bytes:
    return envelope(plain_pyarrow_stream(pa.Table.from_pandas(make_frame(99, 1000))), fn, 5)


def _bare_plain_pyarrow_stream(fn, blob: bytes) -> bytes:
    return plain_pyarrow_stream(pa.table({"a": [1, 2, 3]}))


def _envelope_of_truncated_stream(fn, blob: bytes) -> bytes:
    payload = arrow_payload(blob)
    return envelope(payload[: len(payload) // 2], fn, 5)


def _envelope_of_stream_cut_after_its_schema(fn, blob: bytes) -> bytes:
    payload = arrow_payload(blob)
    return envelope(payload[: first_message_end(payload)], fn, 5)


def _envelope_of_stream_with_its_batches_dropped(fn, blob: bytes) -> bytes:
    """The schema message, then the end-of-stream marker: a well-formed empty stream."""
    payload = arrow_payload(blob)
    return envelope(payload[: first_message_end(payload)] + EOS, fn, 5)


def _envelope_of_another_serializer(fn, blob: bytes) -> bytes:
    return envelope(arrow_payload(blob), fn, 5, serializer="pickle")


GARBAGE = {
    f.__name__.lstrip("_"): f
    for f in (
        _random_bytes,
        _truncated_envelope,
        _envelope_of_msgpack,
        _envelope_of_text,
        _envelope_of_random_bytes,
        _envelope_of_plain_pyarrow_stream,
        _envelope_of_plain_pyarrow_stream_of_a_frame,
        _bare_plain_pyarrow_stream,
        _envelope_of_truncated_stream,
        _envelope_of_stream_cut_after_its_schema,
        _envelope_of_stream_with_its_batches_dropped,
        _envelope_of_another_serializer,
    )
}


@pytest.mark.parametrize("garbage", list(GARBAGE))
def test_garbage_under_the_key_is_recomputed_and_counted_invalid(redis_url, raw, garbage) -> None:
    fn = cached_report(redis_url)
    want = make_frame(5)
    fn(5)  # store a genuine entry, so the key is the one the call reads
    key = fn.cache_key(5)
    blob = stored(raw, fn, 5)
    bad = GARBAGE[garbage](fn, blob)
    assert bad != blob
    raw.set(key, bad, px=TTL * 1000)
    before = fn.cache_info()

    assert_same_frame(fn(5), want)  # recomputed, no exception

    after = fn.cache_info()
    assert fn.calls == [5, 5]
    assert after.invalid == before.invalid + 1
    assert (after.misses, after.l2_hits) == (before.misses + 1, before.l2_hits)
    # The recomputed frame replaced the garbage: the next call is a plain hit.
    assert raw.get(key) != bad
    assert_same_frame(fn(5), want)
    assert fn.calls == [5, 5]
    assert fn.cache_info().l2_hits == before.l2_hits + 1


# --- another process -----------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys

    sys.path.insert(0, sys.argv[1])
    import test_arrow_redis as t

    fn = t.cached_report(sys.argv[2], name=sys.argv[3], serializer=sys.argv[4])
    frame = fn(int(sys.argv[5]))
    info = fn.cache_info()
    print("CHILD", info.misses, info.l2_hits, len(frame), fn.cache_key(int(sys.argv[5])))
    """
)


def test_a_frame_stored_by_another_process_is_an_l2_hit_here(redis_url, raw) -> None:
    name = f"cross_process_{os.getpid()}_{next(_names)}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHEKIT_")}
    env.pop("REDIS_URL", None)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(Path(__file__).parent), redis_url, name, "arrow", "11"],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("CHILD "))
    misses, hits, rows, key = line.split()[1:]
    assert (misses, hits, rows) == ("1", "0", str(ROWS))

    fn = cached_report(redis_url, name=name, serializer="arrow")
    assert fn.cache_key(11) == key
    assert raw.exists(key)
    assert_same_frame(fn(11), make_frame(11))
    assert fn.calls == []
    info = fn.cache_info()
    assert (info.misses, info.l2_hits, info.invalid) == (0, 1, 0)


# --- return_format="arrow" -----------------------------------------------------------------


def test_return_format_arrow_gives_a_table_on_hits(redis_url) -> None:
    name = f"as_table_{next(_names)}"
    fn = cached_report(redis_url, name=name, serializer=ArrowSerializer(return_format="arrow"))
    want = make_frame(2)
    fn(2)  # miss
    hit = fn(2)
    assert isinstance(hit, pa.Table)
    assert hit.num_rows == ROWS
    # The table pyarrow makes of the frame, its pandas metadata included (to_pandas() of
    # it gives the frame back, except object columns, which pandas 3 reads as ``str``).
    table = pa.Table.from_pandas(want)
    assert hit.equals(table)
    assert hit.schema.metadata == table.schema.metadata
    assert_same_frame(hit.to_pandas(), table.to_pandas())
    # A pandas reader of the same entry gets the frame.
    other = cached_report(redis_url, name=name)
    assert_same_frame(other(2), want)
    assert fn.calls == [2]
    assert other.calls == []
