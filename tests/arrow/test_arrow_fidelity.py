"""What ArrowSerializer promises to give back exactly: every dtype, index kind, label
kind, empty frames, Series, Tables and RecordBatches, in each return format."""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from arrow_samples import assert_same, frames, series, tables

from cachekit_arrow import ArrowSerializer

FRAMES = frames()
SERIES = series()
TABLES = tables()


@pytest.fixture(params=[None, "lz4", "zstd"], ids=["uncompressed", "lz4", "zstd"])
def ser(request: pytest.FixtureRequest) -> ArrowSerializer:
    return ArrowSerializer(compression=request.param)


@pytest.mark.parametrize("name", FRAMES)
def test_data_frame_round_trips_exactly(name: str, ser: ArrowSerializer):
    frame = FRAMES[name]
    assert_same(frame, ser.deserialize(ser.serialize(frame)))


@pytest.mark.parametrize("name", SERIES)
def test_series_round_trips_exactly(name: str):
    ser = ArrowSerializer()
    value = SERIES[name]
    got = ser.deserialize(ser.serialize(value))
    assert_same(value, got)
    assert got.name == value.name


@pytest.mark.parametrize("return_format", ["pandas", "arrow"])
@pytest.mark.parametrize("name", TABLES)
def test_tables_and_record_batches_come_back_as_themselves(name: str, return_format: str):
    value = TABLES[name]
    for compression in (None, "zstd"):
        ser = ArrowSerializer(compression=compression, return_format=return_format)
        assert_same(value, ser.deserialize(ser.serialize(value)))


@pytest.mark.parametrize("name", ["ints", "strings", "multi_index", "datetimes", "empty"])
def test_return_format_arrow_gives_a_data_frame_back_as_a_table(name: str):
    frame = FRAMES[name]
    ser = ArrowSerializer(return_format="arrow")
    table = ser.deserialize(ser.serialize(frame))
    assert type(table) is pa.Table
    assert b"cachekit.arrow" not in (table.schema.metadata or {})
    assert table.equals(pa.Table.from_pandas(frame), check_metadata=True)
    # The pandas metadata travels with it, so pyarrow rebuilds the index and labels.
    rebuilt = table.to_pandas()
    pd.testing.assert_index_equal(rebuilt.index, frame.index, exact="equiv")
    assert list(rebuilt.columns) == list(frame.columns)


def test_return_format_arrow_gives_a_series_back_as_a_one_column_table():
    ser = ArrowSerializer(return_format="arrow")
    table = ser.deserialize(ser.serialize(pd.Series([1, 2], name="n")))
    assert type(table) is pa.Table
    assert table.column_names == ["n"]
    assert table.column("n").to_pylist() == [1, 2]


def test_pandas_and_arrow_readers_read_the_same_bytes():
    frame = FRAMES["nullable"]
    data = ArrowSerializer().serialize(frame)
    assert_same(frame, ArrowSerializer(return_format="arrow").deserialize(data).to_pandas())
    assert_same(frame, ArrowSerializer(compression="zstd").deserialize(data))


def test_object_columns_keep_python_objects_and_none_for_missing():
    frame = FRAMES["object_scalars"]
    got = ArrowSerializer().deserialize(ArrowSerializer().serialize(frame))
    assert all(dtype == np.dtype(object) for dtype in got.dtypes)
    assert got["ints"].tolist() == [1, None, 2**62, -5]
    assert type(got["ints"][2]) is int
    assert got["bytes"][0] == b"\x00\xff"
    assert got["decimals"][0].as_tuple() == frame["decimals"][0].as_tuple()  # scale kept


def test_missing_values_in_object_string_columns_come_back_as_none():
    frame = pd.DataFrame({"s": pd.Series(["a", np.nan, None], dtype=object)})
    got = ArrowSerializer().deserialize(ArrowSerializer().serialize(frame))
    assert got["s"].tolist() == ["a", None, None]
    assert got["s"].dtype == object


def test_decimals_of_one_column_share_the_widest_scale():
    from decimal import Decimal

    frame = pd.DataFrame({"d": pd.Series([Decimal("1.5"), Decimal("1.25")], dtype=object)})
    got = ArrowSerializer().deserialize(ArrowSerializer().serialize(frame))
    assert got["d"].tolist() == [Decimal("1.50"), Decimal("1.25")]  # equal values, scale 2
    pd.testing.assert_frame_equal(got, frame, check_exact=True)


def test_a_returned_frame_is_writable_and_independent_of_the_bytes():
    ser = ArrowSerializer()
    frame = pd.DataFrame({"a": np.arange(5.0), "b": np.arange(5)})
    data = ser.serialize(frame)
    first = ser.deserialize(data)
    first.iloc[0, 0] = 99.0
    first.loc[1, "b"] = -1
    first["a"] += 1
    second = ser.deserialize(data)
    assert_same(frame, second)


def test_a_nonstandard_frequency_comes_back_as_none_rather_than_failing():
    index = pd.bdate_range("2024-01-01", periods=3, freq="C", holidays=["2024-01-02"])
    frame = pd.DataFrame({"v": [1, 2, 3]}, index=index)
    got = ArrowSerializer().deserialize(ArrowSerializer().serialize(frame))
    pd.testing.assert_frame_equal(got, frame, check_freq=False)


@pytest.mark.parametrize("name", FRAMES)
def test_every_column_of_a_frame_read_back_can_be_assigned_to(name: str):
    """As writable as the function's own frame: to_pandas leaves some arrays (the codes
    of a categorical) read-only, which would make `df.iloc[...] = ...` fail on hits."""
    frame = FRAMES[name]
    if not len(frame):
        return
    ser = ArrowSerializer()
    out = ser.deserialize(bytes(ser.serialize(frame)))
    for pos in range(out.shape[1]):
        probe = frame.copy()
        try:
            probe.iloc[0, pos] = frame.iloc[0, pos]
        except Exception:
            continue  # not assignable in the original either
        out.iloc[0, pos] = out.iloc[0, pos]


def _time_zones() -> dict[str, Any]:
    """One zone of each family pandas accepts, pytz's only where it is installed."""
    zones: dict[str, Any] = {
        "timezone_offset": datetime.timezone(datetime.timedelta(hours=5, minutes=30)),
        "timezone_negative_offset": datetime.timezone(-datetime.timedelta(hours=3, minutes=45)),
        "timezone_utc": datetime.timezone.utc,
        "zoneinfo_named": zoneinfo.ZoneInfo("Europe/Paris"),
        "zoneinfo_utc": zoneinfo.ZoneInfo("UTC"),
    }
    try:
        import pytz
    except ImportError:  # pandas 3 does not need it
        return zones
    return zones | {
        "pytz_offset": pytz.FixedOffset(330),
        "pytz_utc": pytz.utc,
        "pytz_named": pytz.timezone("Europe/Paris"),
    }


TIME_ZONES = _time_zones()


@pytest.mark.parametrize("name", TIME_ZONES)
def test_a_time_zone_comes_back_as_the_same_kind_of_object(name: str):
    """pyarrow gives every zone back as pytz under pandas 2 (and never as pytz under
    pandas 3); the marker records the family, so a datetime.timezone stays one."""
    tz = TIME_ZONES[name]
    stamps = pd.date_range("2024-03-30 12:00", periods=3, freq="h", tz=tz)
    frame = pd.DataFrame({"at": stamps, "n": [1, 2, 3]}, index=stamps.rename("when"))
    got = ArrowSerializer().deserialize(ArrowSerializer().serialize(frame))
    assert_same(frame, got)
    assert type(got["at"].dtype.tz) is type(tz), got["at"].dtype.tz
    assert type(got.index.tz) is type(tz), got.index.tz
    assert got.index.freq == stamps.freq
    series = frame["at"]
    back = ArrowSerializer().deserialize(ArrowSerializer().serialize(series))
    assert_same(series, back)
    assert type(back.dtype.tz) is type(tz)


def test_a_fixed_offset_column_keeps_its_datetime_timezone():
    """The case first reported: pandas 2 read +05:30 back as pytz.FixedOffset(330)."""
    tz = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
    frame = pd.DataFrame({"t": pd.to_datetime(["2024-01-01 10:00"]).tz_localize(tz)})
    got = ArrowSerializer().deserialize(ArrowSerializer().serialize(frame))
    assert got["t"].dtype.tz == tz
    assert type(got["t"].dtype.tz) is datetime.timezone
    assert got["t"].iloc[0] == frame["t"].iloc[0]
