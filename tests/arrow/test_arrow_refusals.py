"""What Arrow cannot store exactly is refused when it is written: SerializationError
(E004) naming the column and the alternative (PickleSerializer), never a silent change."""

from __future__ import annotations

import datetime
import decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from arrow_samples import extension_type, not_frames_or_tables

from cachekit import cache
from cachekit.errors import SerializationError
from cachekit_arrow import ArrowSerializer


def _refusal(value: object) -> str:
    with pytest.raises(SerializationError) as info:
        ArrowSerializer().serialize(value)
    assert info.value.code == "E004"
    assert isinstance(info.value, TypeError)
    message = str(info.value)
    assert "PickleSerializer" in message
    return message


@pytest.mark.parametrize(
    ("values", "described"),
    [
        (["a", 1, 2.5], "values of mixed types (str, int, float)"),
        (["a", b"b"], "values of mixed types (str, bytes)"),
        ([1, 2.5], "values of mixed types (int, float)"),
        ([object(), object()], "values of type object"),
        ([[1, 2], [3]], "values of type list"),
        ([{"a": 1}, {"b": 2}], "values of type dict"),
        ([np.arange(2), np.arange(3)], "values of type ndarray"),
        ([datetime.datetime(2024, 1, 1), None], "values of type datetime"),
        ([1 + 2j, 3j], "values of type complex"),
        ([1.5, 2.5], "values of type float"),
        ([decimal.Decimal("1"), "1"], "values of mixed types (Decimal, str)"),
    ],
    ids=lambda v: v.split("(")[0].strip().replace(" ", "-") if isinstance(v, str) else "",
)
def test_object_column_arrow_cannot_store_exactly_is_refused_naming_it(values, described):
    frame = pd.DataFrame({"fine": range(len(values)), "bad col": pd.Series(values, dtype=object)})
    message = _refusal(frame)
    assert "column 'bad col'" in message
    assert described in message
    assert "Arrow cannot store" in message


def test_python_integers_beyond_64_bits_are_refused_naming_the_column():
    frame = pd.DataFrame({"big": pd.Series([1, 2**70], dtype=object)})
    message = _refusal(frame)
    assert "column 'big'" in message


def test_complex_numbers_are_refused_naming_the_column():
    message = _refusal(pd.DataFrame({"z": np.array([1 + 1j, 2j])}))
    assert "column 'z'" in message


def test_mixed_object_index_level_is_refused_naming_it():
    frame = pd.DataFrame({"v": [1, 2]}, index=pd.Index(["a", 1], dtype=object, name="key"))
    assert "index level 'key'" in _refusal(frame)


def test_mixed_series_is_refused():
    assert "the Series values" in _refusal(pd.Series(["a", 1], name="s"))


@pytest.mark.parametrize(
    "columns",
    [
        pd.Index(["a", 1], dtype=object),
        pd.Index([("a", "b"), ("c", "d")], tupleize_cols=False),
        pd.Index([True, False]),
        pd.CategoricalIndex(["a", "b"]),
        pd.Index([pd.Timedelta(1), pd.Timedelta(2)]),
    ],
    ids=["mixed", "tuples", "bools", "categorical", "timedelta"],
)
def test_column_labels_arrow_would_change_are_refused(columns):
    assert "the column labels" in _refusal(pd.DataFrame([[1, 2]], columns=columns))


def test_non_scalar_index_names_are_refused():
    frame = pd.DataFrame({"v": [1]}, index=pd.Index(["a"], name=("a", "b")))
    assert "the index" in _refusal(frame)


def test_a_series_with_a_tuple_name_is_refused():
    assert "the Series" in _refusal(pd.Series([1], name=("a", 1)))


def test_duplicate_column_names_are_refused():
    frame = pd.DataFrame([[1, 2]], columns=["a", "a"])
    assert "Duplicate column names" in _refusal(frame)


@pytest.mark.parametrize(
    "attrs", [{"when": datetime.datetime(2024, 1, 1)}, {"pair": (1, 2)}, {1: "int key"}]
)
def test_attrs_that_json_would_change_are_refused(attrs):
    frame = pd.DataFrame({"a": [1]})
    frame.attrs = attrs
    assert "DataFrame.attrs" in _refusal(frame)


class MyFrame(pd.DataFrame):
    @property
    def _constructor(self):
        return MyFrame


@pytest.mark.parametrize(
    "value", [*not_frames_or_tables(), MyFrame({"a": [1]})], ids=lambda v: type(v).__name__
)
def test_values_that_are_not_frames_or_tables_are_refused_naming_the_type(value):
    message = _refusal(value)
    assert type(value).__name__ in message
    assert "DataFrame" in message and "Table" in message


def test_tables_with_extension_types_readers_would_not_load_are_refused():
    ext = extension_type("test.cachekit_arrow_ext")
    pa.register_extension_type(ext)
    try:
        table = pa.table({"e": pa.ExtensionArray.from_storage(ext, pa.array([1]))})
        message = _refusal(table)
        assert "column 'e'" in message
        assert "test.cachekit_arrow_ext" in message
    finally:
        pa.unregister_extension_type("test.cachekit_arrow_ext")


def test_extension_metadata_on_a_plain_field_is_refused():
    field = pa.field("x", pa.binary(), metadata={"ARROW:extension:name": "acme.thing"})
    table = pa.table([pa.array([b"x"])], schema=pa.schema([field]))
    assert "'acme.thing'" in _refusal(table)


def test_the_decorator_raises_e004_to_the_caller_for_a_mixed_frame():
    @cache(serializer=ArrowSerializer())
    def load() -> pd.DataFrame:
        return pd.DataFrame({"mixed": ["a", 1]})

    with pytest.raises(SerializationError, match="column 'mixed'"):
        load()
