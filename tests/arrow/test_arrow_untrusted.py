"""Bytes ArrowSerializer did not write are refused with DeserializationError (E005) and
nothing else: garbage, truncations, foreign Arrow streams, hostile metadata, and
extension types that would run code (the pickle-based ``arrow.py_extension_type``)."""

from __future__ import annotations

import json
import pickle
import random
import subprocess
import sys
import textwrap

import pandas as pd
import pyarrow as pa
import pytest
from arrow_samples import extension_type

from cachekit import cache
from cachekit.envelope import seal_plain
from cachekit.errors import DeserializationError
from cachekit_arrow import ArrowSerializer

MARKER = b"cachekit.arrow"
EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"

#: Set by _Payload.__reduce__'s callable if anything ever unpickles it.
UNPICKLED: list[str] = []


def record_unpickling(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class _Payload:
    def __reduce__(self):
        return (record_unpickling, ("unpickled",))


def _stream(table: pa.Table | pa.RecordBatch, metadata: dict[bytes, bytes] | None) -> bytes:
    """An IPC stream of ``table`` whose schema metadata is exactly ``metadata``."""
    schema = table.schema.with_metadata(metadata) if metadata else table.schema.remove_metadata()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        if isinstance(table, pa.RecordBatch):
            writer.write_batch(table)
        else:
            writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _refused(data: object, ser: ArrowSerializer | None = None) -> str:
    """The message of the E005 that reading ``data`` must raise (and nothing else)."""
    for reader in (ser,) if ser else (ArrowSerializer(), ArrowSerializer(return_format="arrow")):
        error: DeserializationError | None = None
        try:
            value = reader.deserialize(data)  # type: ignore[arg-type]
        except DeserializationError as exc:
            error = exc
        except Exception as exc:  # the point of the test: nothing but E005
            pytest.fail(f"{reader!r} raised {type(exc).__name__}: {exc}")
        else:
            pytest.fail(f"{reader!r} read {type(value).__name__} from bytes it did not write")
        assert error.code == "E005"
        assert isinstance(error, ValueError)
        message = str(error)
    return message


def _frame_stream(frame: pd.DataFrame, pandas_meta: object, marker: object = None) -> bytes:
    table = pa.Table.from_pandas(frame)
    meta = {
        b"pandas": pandas_meta
        if isinstance(pandas_meta, bytes)
        else json.dumps(pandas_meta).encode(),
        MARKER: json.dumps(marker or {"v": 1, "kind": "frame"}).encode(),
    }
    return _stream(table, meta)


def _pandas_meta(frame: pd.DataFrame) -> dict:
    return json.loads(pa.Table.from_pandas(frame).schema.metadata[b"pandas"])


FRAME = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}, index=pd.Index([7, 8, 9], name="k"))


# --- garbage and truncation -----------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        EOS,
        EOS * 2,
        b"\xff" * 64,
        b"\x00" * 64 + EOS,
        pickle.dumps({"a": 1}),
        pickle.dumps(_Payload()),
        b"\x81\xa1a\x01",  # msgpack {"a": 1}
        b"PAR1" + b"\x00" * 32 + b"PAR1",
        b"ARROW1\x00\x00" + b"\x00" * 32 + b"ARROW1",
        random.Random(7).randbytes(1024),
    ],
    ids=lambda d: d[:8].hex() or "empty",
)
def test_garbage_is_refused(data):
    _refused(data)
    assert UNPICKLED == []


@pytest.mark.parametrize("value", ["text", None, 42, ["a"], bytearray(b"\x00")])
def test_non_bytes_are_refused(value):
    _refused(value)


@pytest.mark.parametrize(
    "value",
    [FRAME, pd.Series([1.5], name="s"), pa.table({"a": [1]}), pa.record_batch({"a": ["x"]})],
    ids=["frame", "series", "table", "batch"],
)
def test_every_truncation_is_refused(value):
    data = ArrowSerializer().serialize(value)
    for length in range(len(data)):
        _refused(data[:length])


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_truncated_compressed_streams_are_refused(codec):
    data = ArrowSerializer(compression=codec).serialize(pd.DataFrame({"a": range(1000)}))
    for length in (len(data) - 1, len(data) - 8, len(data) // 2, 8):
        _refused(data[:length])


def test_bytes_after_the_end_of_stream_are_refused():
    data = bytes(ArrowSerializer().serialize(FRAME))
    assert "after the end-of-stream marker" in _refused(data + EOS)
    _refused(data + b"junk" + EOS)
    _refused(data + data)


def test_random_corruption_never_raises_anything_but_e005():
    rng = random.Random(20240601)
    data = bytearray(ArrowSerializer(compression="lz4").serialize(FRAME))
    read = 0
    for _ in range(600):
        corrupt = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            corrupt[rng.randrange(len(corrupt) - 8)] = rng.randrange(256)
        try:
            ArrowSerializer().deserialize(bytes(corrupt))
            read += 1  # a flip in padding or an unused byte can be harmless
        except DeserializationError:
            pass
    assert read < 600


# --- streams not written by ArrowSerializer --------------------------------------------


def test_a_valid_arrow_stream_without_the_marker_is_refused():
    assert "no cachekit marker" in _refused(_stream(pa.table({"a": [1, 2]}), None))
    # ... even one pyarrow wrote from a DataFrame, with pandas metadata
    table = pa.Table.from_pandas(FRAME)
    assert "no cachekit marker" in _refused(_stream(table, table.schema.metadata))


@pytest.mark.parametrize(
    "marker",
    [
        b"not json",
        b"[1]",
        b"{}",
        b'{"v": 2, "kind": "table"}',
        b'{"v": true, "kind": "table"}',
        b'{"v": "1", "kind": "table"}',
        b'{"v": 1, "kind": "pickle"}',
        b'{"v": 1, "kind": "table", "extra": 1}',
        b'{"v": 1, "kind": "table", "fix": [["column", 0, "object"]]}',
        b'{"v": 1, "kind": "frame", "fix": [["column", 0, "int64"]]}',
        b'{"v": 1, "kind": "frame", "fix": [["column", -1, "object"]]}',
        b'{"v": 1, "kind": "frame", "fix": [["elsewhere", 0, "object"]]}',
        b'{"v": 1, "kind": "frame", "fix": "object"}',
        b'{"v": 1, "kind": "frame", "range_columns": [0, 2, 0]}',
        b'{"v": 1, "kind": "frame", "unnamed": "yes"}',
        b'{"v": 1, "kind": "frame", "unique_labels": 1}',
        b'{"v": 1, "kind": "frame", "fix": [["categories", 0, "object"]]}',
        b'{"v": 1, "kind": "frame", "fix": [["column", 0, "categories:freq:D"]]}',
        b'{"v": 1, "kind": "frame", "fix": [["column", 0, "freq:D"]]}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"v": 1, "kind": "table", "pad": "' + b"x" * (5 << 20) + b'"}',
    ],
    ids=lambda m: m[:40].decode(errors="replace"),
)
def test_malformed_markers_are_refused(marker):
    table = pa.Table.from_pandas(FRAME)
    _refused(_stream(table, {**table.schema.metadata, MARKER: marker}))


def test_fixes_naming_columns_or_levels_the_frame_lacks_are_refused():
    for fix in (
        ["column", 5, "object"],
        ["index", 3, "object"],
        ["label", 2, "object"],
        ["column", 0, "categories:object"],
        ["index", 0, "freq:D"],
        ["label", 0, "categories:object"],
        ["column", 0, "freq:D"],
    ):
        _refused(_frame_stream(FRAME, _pandas_meta(FRAME), {"v": 1, "kind": "frame", "fix": [fix]}))


def test_a_batch_stream_with_two_batches_is_refused():
    batch = pa.record_batch({"a": [1]})
    schema = batch.schema.with_metadata({MARKER: b'{"v":1,"kind":"batch"}'})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(batch)
        writer.write_batch(batch)
    assert "2 batches" in _refused(sink.getvalue().to_pybytes())


def test_a_series_stream_with_two_columns_is_refused():
    _refused(_frame_stream(FRAME, _pandas_meta(FRAME), {"v": 1, "kind": "series"}))


# --- hostile pandas metadata -------------------------------------------------------------


def _hostile_pandas_metadata() -> dict[str, object]:
    good = _pandas_meta(FRAME)

    def edit(**changes):
        return {**good, **changes}

    column = good["columns"][0]
    return {
        "missing": None,
        "not json": b"{nope",
        "a list": [],
        "nested too deep": b"[" * 50_000 + b"]" * 50_000,
        "no columns": edit(columns=None),
        "too few columns": edit(columns=good["columns"][:1]),
        "columns reordered": edit(columns=good["columns"][::-1]),
        "unknown field": edit(columns=[{**column, "field_name": "nope"}, *good["columns"][1:]]),
        "field name not a str": edit(columns=[{**column, "field_name": 1}, *good["columns"][1:]]),
        "column entry not an object": edit(columns=["a", *good["columns"][1:]]),
        "name a list": edit(columns=[{**column, "name": ["a"]}, *good["columns"][1:]]),
        "numpy_type injection": edit(
            columns=[{**column, "numpy_type": "__import__('os')"}, *good["columns"][1:]]
        ),
        "numpy_type huge": edit(
            columns=[{**column, "numpy_type": "i" * 5000}, *good["columns"][1:]]
        ),
        "numpy_type nonsense": edit(
            columns=[{**column, "numpy_type": "float128[zz]"}, *good["columns"][1:]]
        ),
        "pandas_type missing": edit(
            columns=[{k: v for k, v in column.items() if k != "pandas_type"}, *good["columns"][1:]]
        ),
        "metadata nested": edit(
            columns=[{**column, "metadata": {"timezone": {"x": 1}}}, *good["columns"][1:]]
        ),
        "datetimetz claim": edit(
            columns=[
                {**column, "pandas_type": "datetimetz", "metadata": {"timezone": "Nowhere/City"}},
                *good["columns"][1:],
            ]
        ),
        "categorical claim": edit(
            columns=[
                {**column, "pandas_type": "categorical", "metadata": {"ordered": "x"}},
                *good["columns"][1:],
            ]
        ),
        "decimal claim": edit(
            columns=[
                {**column, "pandas_type": "decimal", "metadata": {"precision": 3, "scale": 1}},
                *good["columns"][1:],
            ]
        ),
        "index names a missing field": edit(index_columns=["nope"]),
        "index not a list": edit(index_columns="k"),
        "index entry a number": edit(index_columns=[1]),
        "range with step 0": edit(
            index_columns=[{"kind": "range", "name": None, "start": 0, "stop": 3, "step": 0}]
        ),
        "range of the wrong length": edit(
            index_columns=[{"kind": "range", "name": None, "start": 0, "stop": 10**12, "step": 1}]
        ),
        "range with float bounds": edit(
            index_columns=[{"kind": "range", "name": None, "start": 0.5, "stop": 3, "step": 1}]
        ),
        "range of another kind": edit(
            index_columns=[{"kind": "pickle", "name": None, "start": 0, "stop": 3, "step": 1}]
        ),
        "too many column levels": edit(column_indexes=[good["column_indexes"][0]] * 100),
        "column levels not a list": edit(column_indexes={"a": 1}),
        "attributes not an object": edit(attributes=[1]),
    }


HOSTILE = _hostile_pandas_metadata()
#: Well-formed metadata whose *meaning* is wrong: a reader that returns the Table
#: (return_format="arrow") does not interpret it, the pandas reader refuses it.
MISLEADING = ("numpy_type nonsense",)


def _hostile_stream(meta: object) -> bytes:
    table = pa.Table.from_pandas(FRAME)
    metadata = {MARKER: b'{"v":1,"kind":"frame"}'}
    if meta is not None:
        metadata[b"pandas"] = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    return _stream(table, metadata)


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_pandas_metadata_is_refused(case):
    data = _hostile_stream(HOSTILE[case])
    if case in MISLEADING:
        _refused(data, ArrowSerializer())
        assert type(ArrowSerializer(return_format="arrow").deserialize(data)) is pa.Table
    else:
        _refused(data)


def test_a_frame_stream_claiming_a_range_index_for_rows_it_lacks_is_refused():
    meta = _pandas_meta(FRAME.reset_index(drop=True))
    table = pa.Table.from_pandas(FRAME.reset_index(drop=True))
    meta["index_columns"][0]["stop"] = 2
    _refused(
        _stream(table, {b"pandas": json.dumps(meta).encode(), MARKER: b'{"v":1,"kind":"frame"}'})
    )


# --- extension types -----------------------------------------------------------------------


def _py_extension_stream(kind: str) -> bytes:
    """A stream whose field claims the pickle-based ``arrow.py_extension_type``."""
    field = pa.field(
        "x",
        pa.binary(),
        metadata={
            b"ARROW:extension:name": b"arrow.py_extension_type",
            b"ARROW:extension:metadata": pickle.dumps(_Payload()),
        },
    )
    table = pa.table([pa.array([pickle.dumps(_Payload())])], schema=pa.schema([field]))
    metadata = {MARKER: json.dumps({"v": 1, "kind": kind}).encode()}
    if kind in ("frame", "series"):
        metadata[b"pandas"] = json.dumps(
            {
                "index_columns": [
                    {"kind": "range", "name": None, "start": 0, "stop": 1, "step": 1}
                ],
                "column_indexes": [],
                "columns": [
                    {
                        "name": "x",
                        "field_name": "x",
                        "pandas_type": "object",
                        "numpy_type": "object",
                        "metadata": None,
                    }
                ],
            }
        ).encode()
    return _stream(table, metadata)


@pytest.mark.parametrize("kind", ["table", "batch", "frame", "series"])
def test_a_py_extension_type_stream_is_refused_without_unpickling(kind):
    message = _refused(_py_extension_stream(kind))
    assert "arrow.py_extension_type" in message
    assert UNPICKLED == []


def test_pyarrow_itself_does_not_autoload_py_extension_types():
    """The guarantee ArrowSerializer builds on (pyarrow >= 14.0.1): reading such a field
    gives its storage, never an unpickled object."""
    table = pa.ipc.open_stream(_py_extension_stream("table")).read_all()
    read_as = table.schema.field("x").type
    # Older pyarrow (18) wraps the storage in an UnknownExtensionType: nothing unpickled either.
    assert getattr(read_as, "storage_type", read_as) == pa.binary()
    assert UNPICKLED == []


def test_a_py_extension_type_nested_in_a_struct_is_refused():
    inner = pa.field(
        "evil", pa.binary(), metadata={b"ARROW:extension:name": b"arrow.py_extension_type"}
    )
    struct = pa.struct([pa.field("ok", pa.int8()), inner])
    table = pa.table([pa.array([{"ok": 1, "evil": b"x"}], struct)], names=["s"])
    schema = pa.schema([pa.field("s", struct)]).with_metadata({MARKER: b'{"v":1,"kind":"table"}'})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_table(table.cast(schema))
    assert "'s.evil'" in _refused(sink.getvalue().to_pybytes())


def test_an_unknown_extension_type_is_refused():
    field = pa.field("x", pa.int64(), metadata={b"ARROW:extension:name": b"acme.anything"})
    table = pa.table([pa.array([1])], schema=pa.schema([field]))
    assert "'acme.anything'" in _refused(_stream(table, {MARKER: b'{"v":1,"kind":"table"}'}))


def test_a_registered_but_unlisted_extension_type_is_refused_on_read():
    ext = extension_type("test.cachekit_arrow_registered")
    table = pa.table({"e": pa.ExtensionArray.from_storage(ext, pa.array([1]))})
    data = _stream(table, {MARKER: b'{"v":1,"kind":"table"}'})
    pa.register_extension_type(ext)
    try:
        assert "'test.cachekit_arrow_registered'" in _refused(data)
    finally:
        pa.unregister_extension_type("test.cachekit_arrow_registered")


def test_pandas_extension_types_are_read_in_a_process_that_has_not_imported_pandas():
    data = bytes(
        ArrowSerializer(return_format="arrow").serialize(
            pd.DataFrame({"p": pd.period_range("2024-01", periods=2, freq="M")})
        )
    )
    code = textwrap.dedent(
        f"""
        import sys
        from cachekit_arrow import ArrowSerializer
        table = ArrowSerializer(return_format="arrow").deserialize({data!r})
        print(table.schema.field("p").type.extension_name, "pandas" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["pandas.period", "True"]


# --- through the decorator: a bad stream in L2 is a miss ----------------------------------


def test_a_corrupt_arrow_payload_in_the_backend_is_a_miss_not_an_error():
    runs = []

    def make():
        @cache(backend="memory://arrow-untrusted", serializer=ArrowSerializer())
        def frame(n: int) -> pd.DataFrame:
            runs.append(n)
            return pd.DataFrame({"n": range(n)})

        return frame

    writer, reader = make(), make()
    from cachekit.backends.memory import MemoryBackend

    backend = MemoryBackend("arrow-untrusted")
    for payload in (b"garbage", _py_extension_stream("frame"), _stream(pa.table({"n": [1]}), None)):
        backend.set(writer.cache_key(3), seal_plain(payload, "arrow", None))
        got = make()(3)
        pd.testing.assert_frame_equal(got, pd.DataFrame({"n": range(3)}))
    assert len(runs) == 3
    assert UNPICKLED == []
    reader(3)  # the last recomputation was stored: now a hit
    assert reader.cache_info().l2_hits == 1


def _forge(data: bytes, bad_end: int) -> bytes:
    """``data`` with the last offset of its ["aaaa", "bbbb"] column set to ``bad_end``
    (offsets are 32-bit for string, 64-bit for large_string, as pandas 3 writes)."""
    for width in (8, 4):
        offsets = b"".join(n.to_bytes(width, "little") for n in (0, 4, 8))
        if data.count(offsets) == 1:
            return data.replace(offsets, offsets[: 2 * width] + bad_end.to_bytes(width, "little"))
    raise AssertionError("no offsets buffer found")


@pytest.mark.parametrize("bad_end", [40, 100_000_000, 2**31 - 1])
@pytest.mark.parametrize("value", ["frame", "table"])
def test_offsets_pointing_outside_their_buffer_are_refused(value, bad_end):
    """A stream with a string offset past its data buffer must never be read: pyarrow
    would hand back bytes from beyond the buffer, or crash the process."""
    strings = ["aaaa", "bbbb"]
    obj = pd.DataFrame({"s": strings}) if value == "frame" else pa.table({"s": strings})
    forged = _forge(bytes(ArrowSerializer().serialize(obj)), bad_end)
    code = textwrap.dedent(
        f"""
        from cachekit_arrow import ArrowSerializer
        from cachekit.errors import DeserializationError
        try:
            ArrowSerializer().deserialize({forged!r})
        except DeserializationError as exc:
            print("refused", exc.code)
        """
    )
    # In a child process: if the check were missing, a crash must fail the test, not
    # take the test runner down.
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "refused E005"


def test_a_forged_entry_under_a_cached_function_is_a_miss():
    calls = []

    @cache(backend="memory://arrow-forged", serializer=ArrowSerializer(), l1=False)
    def names(n: int) -> pd.DataFrame:
        calls.append(n)
        return pd.DataFrame({"s": ["aaaa", "bbbb"]})

    names(1)
    from cachekit.backends.memory import MemoryBackend  # noqa: F401 - the store behind memory://

    state = names.__cachekit__
    backend = state.plan.backend
    key = names.cache_key(1)
    payload = bytes(ArrowSerializer().serialize(pd.DataFrame({"s": ["aaaa", "bbbb"]})))
    forged = _forge(payload, 40)
    backend.set(key, seal_plain(forged, "arrow", None), 60)
    pd.testing.assert_frame_equal(names(1), pd.DataFrame({"s": ["aaaa", "bbbb"]}))
    assert calls == [1, 1]
    assert names.cache_info().invalid == 1


def _zeros_zstd(rows: int = 100_000) -> bytes:
    frame = pd.DataFrame({"z": pd.Series([0] * rows, dtype="int64")})
    return bytes(ArrowSerializer(compression="zstd").serialize(frame))


def test_a_stream_claiming_a_huge_decompressed_size_is_refused_before_inflating():
    data = _zeros_zstd()
    declared = (100_000 * 8).to_bytes(8, "little")
    assert data.count(declared) == 1
    bomb = data.replace(declared, (2**40).to_bytes(8, "little"))  # a terabyte
    with pytest.raises(DeserializationError, match="claim"):
        ArrowSerializer().deserialize(bomb)


def test_the_decompressed_size_limit_applies_to_honest_streams_too(monkeypatch):
    import cachekit_arrow._stream as stream

    data = _zeros_zstd()
    assert len(data) < 10_000  # 800 kB of zeros compress to almost nothing
    pd.testing.assert_frame_equal(
        ArrowSerializer().deserialize(data),
        pd.DataFrame({"z": pd.Series([0] * 100_000, dtype="int64")}),
    )
    monkeypatch.setattr(stream, "MAX_DECOMPRESSED", 100_000)
    with pytest.raises(DeserializationError, match="limit"):
        ArrowSerializer().deserialize(data)


@pytest.mark.parametrize("seed", range(20))
def test_corrupted_batch_headers_are_refused_cleanly(seed):
    """Random bytes flipped anywhere in a compressed stream: E005 or the same value,
    never another exception (the header walk checks every offset it follows)."""
    rng = random.Random(seed)
    data = bytearray(_zeros_zstd(1000))
    for _ in range(4):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    try:
        ArrowSerializer().deserialize(bytes(data))
    except DeserializationError:
        pass


# --- zero-buffer columns: rows that cost nothing to ship (issue 11 item 20) ----------------

HUGE = 400_000_000  # rows (or child values) behind a few hundred bytes of stream


def _zero_buffer_columns(n: int = HUGE) -> dict[str, pa.Array]:
    """Columns whose IPC body is (almost) empty whatever ``n`` is."""
    return {
        "null": pa.nulls(n),
        "struct-of-nulls": pa.StructArray.from_arrays([pa.nulls(n)], ["x"]),
        "list-of-nulls": pa.ListArray.from_arrays(pa.array([0, n], pa.int32()), pa.nulls(n)),
        "fixed-size-list": pa.FixedSizeListArray.from_arrays(pa.nulls(n), max(n // 1000, 1)),
        "dictionary-of-nulls": pa.DictionaryArray.from_arrays(
            pa.array([0], pa.int32()), pa.nulls(n)
        ),
        "run-end-encoded": pa.RunEndEncodedArray.from_arrays(
            pa.array([n], pa.int32()), pa.array([1], pa.int64())
        ),
        "list-of-structs": pa.ListArray.from_arrays(
            pa.array([0, n], pa.int32()), pa.StructArray.from_arrays([pa.nulls(n)], ["x"])
        ),
    }


ZERO_BUFFER = sorted(_zero_buffer_columns(8))


def _table_stream(column: pa.Array) -> bytes:
    return _stream(
        pa.table({"c": column}), {MARKER: json.dumps({"v": 1, "kind": "table"}).encode()}
    )


@pytest.mark.parametrize("name", ZERO_BUFFER)
def test_a_zero_buffer_column_of_huge_length_is_refused_before_it_is_converted(name):
    data = _table_stream(_zero_buffer_columns()[name])
    assert len(data) < 2000  # hundreds of millions of rows in a couple of kilobytes
    assert "materialised" in _refused(data)


@pytest.mark.parametrize("name", ZERO_BUFFER)
def test_the_same_columns_of_honest_length_are_read(name):
    column = _zero_buffer_columns(1000)[name]
    table = ArrowSerializer().deserialize(_table_stream(column))
    assert table.column("c").combine_chunks().equals(column)


def test_the_logical_limit_applies_to_honest_frames_too(monkeypatch):
    import cachekit_arrow._stream as stream

    frame = pd.DataFrame({"n": range(1000), "s": ["x"] * 1000})
    data = bytes(ArrowSerializer().serialize(frame))
    pd.testing.assert_frame_equal(ArrowSerializer().deserialize(data), frame)
    monkeypatch.setattr(stream, "MAX_LOGICAL", 8 * 1000)
    with pytest.raises(DeserializationError, match="materialised"):
        ArrowSerializer().deserialize(data)


def test_a_planted_null_column_frame_is_refused_without_the_memory_pandas_would_take():
    """The issue's stream: a frame whose one null column has 4*10**8 rows (848 bytes).
    Converting it takes 3-6 GB; refusing it must not. Run in a child process, whose
    peak resident memory is the measure."""
    small = pa.Table.from_pandas(pd.DataFrame({"c": pd.Series([None, None], dtype=object)}))
    doc = json.loads(small.schema.metadata[b"pandas"])
    doc["index_columns"][0]["stop"] = HUGE
    table = pa.table({"c": pa.nulls(HUGE)})
    data = _stream(
        table,
        {
            b"pandas": json.dumps(doc).encode(),
            MARKER: json.dumps({"v": 1, "kind": "frame"}).encode(),
        },
    )
    assert len(data) < 2000
    code = textwrap.dedent(
        f"""
        import resource
        from cachekit_arrow import ArrowSerializer
        from cachekit.errors import DeserializationError
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            ArrowSerializer().deserialize({data!r})
        except DeserializationError as exc:
            print("refused", exc.code)
        else:
            print("read")
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) // 1024)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    verdict, grown_mb = done.stdout.split("\n")[:2]
    assert verdict == "refused E005"
    assert int(grown_mb) < 100, f"refusing it grew the reader by {grown_mb} MB"


def test_a_planted_zero_buffer_stream_under_a_cached_function_is_a_miss():
    calls = []

    @cache(backend="memory://arrow-zero-buffer", serializer=ArrowSerializer(), l1=False)
    def table(n: int) -> pa.Table:
        calls.append(n)
        return pa.table({"c": [n]})

    key = table.cache_key(1)  # settles the plan, and with it the backend
    backend = table.__cachekit__.plan.backend
    planted = _table_stream(_zero_buffer_columns()["null"])
    backend.set(key, seal_plain(planted, "arrow", None), 60)
    assert table(1).equals(pa.table({"c": [1]}))
    assert calls == [1]
    assert table.cache_info().invalid == 1
