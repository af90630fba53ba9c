"""Values ArrowSerializer must round-trip exactly, and the comparison it is held to.

Imported by the tests in tests/arrow (pytest puts this folder on sys.path).
"""

from __future__ import annotations

import datetime
import decimal
import threading
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa


def _nan_string_columns() -> dict[str, pd.Series]:
    """A StringDtype column with NaN as its missing value: pandas >= 2.3 only."""
    try:
        dtype = pd.StringDtype("python", na_value=np.nan)
    except TypeError:  # pandas 2.2: StringDtype takes no na_value
        return {}
    return {"str_python": pd.Series(["a", None, "b", ""], dtype=dtype)}


def frames() -> dict[str, pd.DataFrame]:
    """One DataFrame per dtype and index kind the fidelity table promises."""
    n = 4
    dt_naive = pd.to_datetime(
        ["2024-01-01 10:00", "2024-02-29 23:59:59.123456", None, "1970-01-01"], format="ISO8601"
    )
    cases: dict[str, pd.DataFrame] = {
        "ints": pd.DataFrame(
            {
                **{f"i{b}": np.arange(n, dtype=f"int{b}") - 2 for b in (8, 16, 32, 64)},
                **{f"u{b}": np.arange(n, dtype=f"uint{b}") for b in (8, 16, 32, 64)},
                "i64_extremes": np.array([np.iinfo(np.int64).min, -1, 0, np.iinfo(np.int64).max]),
                "u64_max": np.array([0, 1, 2, np.iinfo(np.uint64).max], dtype="uint64"),
            }
        ),
        "floats": pd.DataFrame(
            {
                "f64": [1.5, np.nan, np.inf, -0.0],
                "f32": np.array([1.25, -np.inf, np.nan, 3.0], dtype="float32"),
                "f16": np.array([0.5, 1.0, np.nan, -2.0], dtype="float16"),
            }
        ),
        "bools": pd.DataFrame({"b": [True, False, True, False]}),
        "nullable": pd.DataFrame(
            {
                "Int64": pd.array([1, None, -3, 4], dtype="Int64"),
                "Int8": pd.array([1, None, -3, 4], dtype="Int8"),
                "UInt32": pd.array([1, None, 3, 4], dtype="UInt32"),
                "Float64": pd.array([1.5, None, 3.0, 4.0], dtype="Float64"),
                "Float32": pd.array([1.5, None, 3.0, 4.0], dtype="Float32"),
                "boolean": pd.array([True, None, False, True], dtype="boolean"),
            }
        ),
        "strings": pd.DataFrame(
            {
                "default": ["a", None, "ünïcødé ✓", ""],
                "string_python": pd.array(["a", None, "b", ""], dtype="string[python]"),
                "string_pyarrow": pd.array(["a", None, "b", ""], dtype="string[pyarrow]"),
                **_nan_string_columns(),
            }
        ),
        "object_strings": pd.DataFrame(
            {"obj": pd.Series(["a", None, "ünïcødé", "x" * 1000], dtype=object)}
        ),
        "object_scalars": pd.DataFrame(
            {
                "bytes": pd.Series([b"\x00\xff", None, b"", b"raw"], dtype=object),
                "dates": pd.Series(
                    [datetime.date(2024, 1, 1), None, datetime.date(1, 1, 1), datetime.date.max],
                    dtype=object,
                ),
                "decimals": pd.Series(
                    [
                        decimal.Decimal("1.50"),
                        None,
                        decimal.Decimal("-2.25"),
                        decimal.Decimal("0.00"),
                    ],
                    dtype=object,
                ),
                "ints": pd.Series([1, None, 2**62, -5], dtype=object),
                "bools": pd.Series([True, None, False, True], dtype=object),
                "times": pd.Series(
                    [datetime.time(1, 2, 3), None, datetime.time(23, 59), datetime.time(0)],
                    dtype=object,
                ),
                "all_missing": pd.Series([None, None, None, None], dtype=object),
            }
        ),
        "categoricals": pd.DataFrame(
            {
                "ordered": pd.Categorical(
                    ["lo", "hi", None, "lo"], categories=["lo", "mid", "hi"], ordered=True
                ),
                "unordered_ints": pd.Categorical([3, 1, 3, 2]),
                "object_categories": pd.Categorical(
                    ["a", "b", "a", "b"], categories=pd.Index(["b", "a"], dtype=object)
                ),
            }
        ),
        "datetimes": pd.DataFrame(
            {
                "naive_us": dt_naive.as_unit("us"),
                "naive_ns": dt_naive.as_unit("ns"),
                "naive_s": pd.to_datetime(
                    ["2024-01-01", None, "2000-01-01", "1900-06-01"], format="ISO8601"
                ).as_unit("s"),
                "paris": pd.date_range("2024-03-31 00:30", periods=n, freq="h", tz="Europe/Paris"),
                "utc_ns": pd.to_datetime(
                    ["2024-01-01T00:00:00.000000001", None, "2024-01-02", "2024-01-03"],
                    utc=True,
                    format="ISO8601",
                ).as_unit("ns"),
                "fixed_offset": pd.to_datetime(["2024-01-01 10:00+05:30"] * n, format="ISO8601"),
            }
        ),
        "timedeltas": pd.DataFrame(
            {
                "ns": pd.to_timedelta([1, None, -86400, 1e-9], unit="s").as_unit("ns"),
                "s": pd.to_timedelta([1, 2, None, 4], unit="s").as_unit("s"),
            }
        ),
        "named_index": pd.DataFrame({"v": range(n)}, index=pd.Index(list("wxyz"), name="key")),
        "int_index": pd.DataFrame({"v": range(n)}, index=pd.Index([10, 5, 5, -1], name="id")),
        "object_index": pd.DataFrame(
            {"v": range(n)}, index=pd.Index(["a", "b", None, "d"], dtype=object, name="o")
        ),
        "multi_index": pd.DataFrame(
            {"v": range(n)},
            index=pd.MultiIndex.from_tuples(
                [("b", 2), ("a", 1), ("b", 1), ("a", 2)], names=["letter", None]
            ),
        ),
        "multi_index_object_level": pd.DataFrame(
            {"v": range(n)},
            index=pd.MultiIndex.from_arrays(
                [pd.Index(["x", "y", "x", "y"], dtype=object), pd.date_range("2024", periods=n)],
                names=["k", "day"],
            ),
        ),
        "range_index_stepped": pd.DataFrame(
            {"v": range(n)}, index=pd.RangeIndex(100, 100 - 3 * n, -3, name="r")
        ),
        "datetime_index_tz_freq": pd.DataFrame(
            {"v": range(n)}, index=pd.date_range("2024-01-01", periods=n, freq="15min", tz="UTC")
        ),
        "timedelta_index": pd.DataFrame(
            {"v": range(n)}, index=pd.timedelta_range("1s", periods=n, freq="s", name="elapsed")
        ),
        "categorical_index": pd.DataFrame(
            {"v": range(n)}, index=pd.CategoricalIndex(list("abba"), categories=list("bac"))
        ),
        "categorical_index_object_categories": pd.DataFrame(
            {"v": range(n)},
            index=pd.CategoricalIndex(
                list("abba"), categories=pd.Index(["b", "a"], dtype=object), name="c"
            ),
        ),
        "objects_with_duplicate_index": pd.DataFrame(
            {"o": pd.Series(["a", None, "b", "c"], dtype=object), "n": [1, 2, 3, 4]},
            index=pd.Index([1, 1, 2, 2], name="dup"),
        ),
        "no_duplicate_labels_flag": pd.DataFrame({"a": [1], "b": [2]}).set_flags(
            allows_duplicate_labels=False
        ),
        "range_column_labels": pd.DataFrame(np.arange(12.0).reshape(n, 3)),
        "int_column_labels": pd.DataFrame([[1, 2]], columns=pd.Index([10, -3], name="n")),
        "float_column_labels": pd.DataFrame([[1, 2]], columns=[0.5, 1.5]),
        "object_column_labels": pd.DataFrame([[1, 2]], columns=pd.Index(["a", "b"], dtype=object)),
        "named_column_axis": pd.DataFrame({"a": [1], "b": [2]}).rename_axis(columns="field"),
        "multi_column_labels": pd.DataFrame(
            [[1, 2.5, "x"]],
            columns=pd.MultiIndex.from_tuples(
                [("a", 1), ("a", 2), ("b", 1)], names=["outer", "inner"]
            ),
        ),
        "datetime_column_labels": pd.DataFrame(
            [[1, 2]], columns=pd.date_range("2024-01-01", periods=2, tz="UTC")
        ),
        "column_order": pd.DataFrame({"z": [1], "a": [2], "m": [3]}),
        "empty": pd.DataFrame(),
        "empty_with_dtypes": pd.DataFrame(
            {
                "i": pd.Series([], dtype="int32"),
                "s": pd.Series([], dtype="str"),
                "o": pd.Series([], dtype=object),
                "c": pd.Categorical([], categories=["x", "y"]),
                "t": pd.Series([], dtype="datetime64[ns, Asia/Tokyo]"),
                "n": pd.Series([], dtype="Int64"),
            }
        ),
        "empty_with_named_index": pd.DataFrame(
            {"v": pd.Series([], dtype="float32")}, index=pd.Index([], dtype="int64", name="id")
        ),
        "rows_without_columns": pd.DataFrame(index=pd.RangeIndex(3)),
        "index_without_columns": pd.DataFrame(index=pd.Index(["a", "b"], name="k")),
        "attrs": _with_attrs(pd.DataFrame({"v": [1, 2]}), {"source": "db", "version": 2}),
        "period_and_interval": pd.DataFrame(
            {
                "period": pd.period_range("2024-01", periods=n, freq="M"),
                "interval": pd.interval_range(0, n),
            }
        ),
        "arrow_backed": pd.DataFrame(
            {
                "a": pd.array([1, None, 3, 4], dtype="int64[pyarrow]"),
                "s": pd.array(list("abcd"), dtype=pd.ArrowDtype(pa.large_string())),
            }
        ),
        "large": pd.DataFrame(
            {
                "x": np.arange(50_000, dtype="int64"),
                "y": np.linspace(0, 1, 50_000),
                "s": pd.Series([f"row{i % 97}" for i in range(50_000)]),
            }
        ),
    }
    return cases


def _with_attrs(frame: pd.DataFrame, attrs: dict[str, Any]) -> pd.DataFrame:
    frame.attrs = attrs
    return frame


def series() -> dict[str, pd.Series]:
    return {
        "named": pd.Series([1.5, np.nan, 3.0], name="price"),
        "unnamed": pd.Series([1, 2, 3]),
        "int_name": pd.Series(["a", "b"], name=7),
        "zero_name": pd.Series([True, False], name=0),
        "object_strings": pd.Series(["a", None], dtype=object, name="o"),
        "categorical": pd.Series(pd.Categorical(["x", "y", "x"], ordered=True), name="c"),
        "datetime_tz_with_index": pd.Series(
            pd.date_range("2024", periods=3, tz="US/Eastern"),
            index=pd.Index(["a", "b", "c"], name="k"),
        ),
        "multi_index": pd.Series(
            [1, 2], index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)]), name="m"
        ),
        "empty_str": pd.Series([], dtype="str", name="e"),
        "nullable": pd.Series([1, None], dtype="Int64"),
    }


def tables() -> dict[str, Any]:
    nested = pa.table(
        {
            "list": pa.array([[1, 2], None, []], pa.list_(pa.int32())),
            "struct": pa.array([{"a": 1, "b": "x"}, None, {"a": None, "b": "z"}]),
            "map": pa.array([[("k", 1)], [], None], pa.map_(pa.string(), pa.int64())),
            "dict": pa.array(["a", "b", "a"]).dictionary_encode(),
            "decimal": pa.array([decimal.Decimal("1.10"), None, decimal.Decimal("-3.00")]),
            "ts": pa.array([1, None, 3], pa.timestamp("ms", tz="UTC")),
            "binary": pa.array([b"\x00", None, b"\xff"], pa.large_binary()),
        }
    )
    return {
        "table": pa.table({"a": [1, 2, 3], "b": ["x", None, "z"]}),
        "table_nested": nested,
        "table_with_metadata": pa.table({"a": [1]}).replace_schema_metadata({"owner": "me"}),
        "table_with_field_metadata": pa.table(
            [pa.array([1.0])], schema=pa.schema([pa.field("a", pa.float64(), metadata={"u": "m"})])
        ),
        "table_chunked": pa.concat_tables([pa.table({"a": [1]}), pa.table({"a": [2, 3]})]),
        "table_empty": pa.table({"a": pa.array([], pa.int8())}),
        "table_no_columns": pa.table({"a": [1, 2]}).drop_columns(["a"]),
        "table_uuid": pa.table({"id": pa.array([b"\x01" * 16], pa.uuid())}),
        "table_from_pandas": pa.Table.from_pandas(pd.DataFrame({"a": [1]})),
        "batch": pa.record_batch({"a": [1, 2], "b": [None, "y"]}),
        "batch_empty": pa.record_batch({"a": pa.array([], pa.string())}),
        "batch_with_metadata": pa.record_batch({"a": [1]}).replace_schema_metadata({"k": "v"}),
    }


#: What every comparison checks, for frames and Series alike.
_EXACT = {
    "check_dtype": True,
    "check_index_type": True,
    "check_exact": True,
    "check_names": True,
    "check_categorical": True,
    "check_freq": True,
}


def assert_same(expected: Any, got: Any) -> None:
    """``got`` is ``expected``: same type, values, dtypes, index, labels and metadata."""
    assert type(got) is type(expected), f"{type(expected).__name__} came back as {type(got)}"
    if isinstance(expected, pd.DataFrame):
        pd.testing.assert_frame_equal(
            expected, got, check_column_type=True, check_flags=True, **_EXACT
        )
        assert got.attrs == expected.attrs
        assert list(got.columns) == list(expected.columns)
    elif isinstance(expected, pd.Series):
        pd.testing.assert_series_equal(expected, got, check_series_type=True, **_EXACT)
    elif isinstance(expected, (pa.Table, pa.RecordBatch)):
        assert got.schema.equals(expected.schema, check_metadata=True), (
            f"{expected.schema} came back as {got.schema}"
        )
        assert got.equals(expected, check_metadata=True)
        assert got.num_rows == expected.num_rows
    else:
        raise AssertionError(f"not a sample value: {type(expected)}")


def not_frames_or_tables() -> list[Any]:
    """Values that are none of the four types ArrowSerializer takes."""
    return [
        {"a": 1},
        [1, 2],
        (1, 2),
        "text",
        b"bytes",
        42,
        1.5,
        None,
        object(),
        threading.Lock(),
        np.arange(3),
        datetime.date(2024, 1, 1),
        pa.array([1, 2]),
        pa.chunked_array([[1]]),
        pd.Index([1, 2]),
        pd.Categorical(["a"]),
    ]


def extension_type(name: str) -> pa.ExtensionType:
    """An instance of a new Arrow extension type ``name`` over int64 (not registered)."""

    class Ext(pa.ExtensionType):
        def __init__(self) -> None:
            super().__init__(pa.int64(), name)

        def __arrow_ext_serialize__(self) -> bytes:
            return b""

        @classmethod
        def __arrow_ext_deserialize__(cls, storage_type: Any, serialized: bytes) -> Ext:
            return cls()

    return Ext()
