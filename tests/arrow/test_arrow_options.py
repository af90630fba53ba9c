"""ArrowSerializer's options: compression (argument and CACHEKIT_ARROW_COMPRESSION),
return_format, equality, repr, pickling, and the stream format it writes."""

from __future__ import annotations

import copy
import json
import pickle

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cachekit.errors import ConfigurationError
from cachekit_arrow import COMPRESSION_ENV, ArrowSerializer

ENV = "CACHEKIT_ARROW_COMPRESSION"


def _compressible() -> pd.DataFrame:
    n = 200_000
    return pd.DataFrame(
        {
            "id": np.arange(n) % 100,
            "price": np.repeat([1.5, 2.5, 3.5, 4.5], n // 4),
            "label": pd.Series(["alpha", "beta", "gamma", "delta"] * (n // 4)),
        }
    )


def test_the_variable_name_is_exported():
    assert COMPRESSION_ENV == ENV


def test_name_is_arrow_for_every_option():
    for options in (
        {},
        {"compression": "lz4"},
        {"compression": "zstd"},
        {"return_format": "arrow"},
    ):
        assert ArrowSerializer(**options).name == "arrow"
    assert ArrowSerializer.name == "arrow"


def test_reading_needs_no_signature():
    assert ArrowSerializer().requires_authentication is False


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_compressed_streams_round_trip_and_are_smaller_for_compressible_data(codec):
    frame = _compressible()
    plain = ArrowSerializer(compression="none").serialize(frame)
    packed = ArrowSerializer(compression=codec).serialize(frame)
    assert len(packed) < len(plain) / 4, (len(packed), len(plain))
    pd.testing.assert_frame_equal(ArrowSerializer(compression=codec).deserialize(packed), frame)


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_any_reader_reads_any_compression(codec):
    frame = _compressible().head(1000)
    data = ArrowSerializer(compression=codec).serialize(frame)
    for reader in (ArrowSerializer(), ArrowSerializer(compression="lz4")):
        pd.testing.assert_frame_equal(reader.deserialize(data), frame)


def test_compression_is_recorded_in_the_arrow_stream_itself():
    table = pa.table({"a": np.zeros(10_000)})
    data = ArrowSerializer(compression="zstd").serialize(table)
    reader = pa.ipc.open_stream(data)
    batch = reader.read_next_batch()
    assert batch.column(0).to_pylist() == [0.0] * 10_000
    # uncompressed this column alone is 80 kB
    assert len(data) < 10_000


def test_without_argument_or_variable_streams_are_uncompressed():
    ser = ArrowSerializer()
    assert ser.compression is None
    frame = _compressible()
    assert len(ser.serialize(frame)) == len(ArrowSerializer(compression="none").serialize(frame))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("lz4", "lz4"),
        ("zstd", "zstd"),
        ("none", None),
        ("", None),
        ("  ZSTD ", "zstd"),
        ("LZ4", "lz4"),
    ],
)
def test_the_variable_sets_the_default(monkeypatch, value, expected):
    monkeypatch.setenv(ENV, value)
    assert ArrowSerializer().compression == expected


def test_the_variable_is_read_when_an_instance_is_built(monkeypatch):
    before = ArrowSerializer()
    monkeypatch.setenv(ENV, "zstd")
    assert before.compression is None
    assert ArrowSerializer().compression == "zstd"


@pytest.mark.parametrize("value", ["gzip", "snappy", "1", "lz4_frame", "zstd:3"])
def test_an_unknown_variable_value_is_e040_naming_the_variable_and_the_choices(monkeypatch, value):
    monkeypatch.setenv(ENV, value)
    with pytest.raises(ConfigurationError) as info:
        ArrowSerializer()
    message = str(info.value)
    assert info.value.code == "E040"
    assert ENV in message
    assert repr(value) in message
    for choice in ("'none'", "'lz4'", "'zstd'"):
        assert choice in message


def test_the_argument_wins_over_the_variable(monkeypatch):
    monkeypatch.setenv(ENV, "zstd")
    assert ArrowSerializer(compression="lz4").compression == "lz4"
    assert ArrowSerializer(compression="none").compression is None
    monkeypatch.setenv(ENV, "not-a-codec")
    assert ArrowSerializer(compression="lz4").compression == "lz4"  # the variable is not read


@pytest.mark.parametrize("value", ["gzip", "", 3, True, b"lz4"])
def test_an_unknown_compression_argument_is_e040(value):
    with pytest.raises(ConfigurationError, match="compression must be one of") as info:
        ArrowSerializer(compression=value)
    assert info.value.code == "E040"


@pytest.mark.parametrize("value", ["numpy", "Pandas", "", None, "table"])
def test_an_unknown_return_format_is_e040(value):
    with pytest.raises(ConfigurationError, match="return_format must be 'pandas' or 'arrow'"):
        ArrowSerializer(return_format=value)


def test_instances_with_the_same_options_are_equal_and_hash_alike(monkeypatch):
    assert ArrowSerializer() == ArrowSerializer(compression="none")
    assert ArrowSerializer(compression="lz4") == ArrowSerializer(compression="LZ4")
    assert hash(ArrowSerializer(compression="lz4")) == hash(ArrowSerializer(compression="lz4"))
    assert ArrowSerializer() != ArrowSerializer(compression="zstd")
    assert ArrowSerializer() != ArrowSerializer(return_format="arrow")
    assert ArrowSerializer() != object()
    monkeypatch.setenv(ENV, "zstd")
    assert ArrowSerializer() == ArrowSerializer(compression="zstd")
    assert len({ArrowSerializer(), ArrowSerializer(compression="zstd")}) == 1


def test_repr_shows_the_options():
    assert repr(ArrowSerializer()) == "ArrowSerializer(compression=None, return_format='pandas')"
    assert (
        repr(ArrowSerializer(compression="zstd", return_format="arrow"))
        == "ArrowSerializer(compression='zstd', return_format='arrow')"
    )


def test_options_are_read_only():
    ser = ArrowSerializer()
    with pytest.raises(AttributeError):
        ser.compression = "lz4"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        ser.other = 1  # type: ignore[attr-defined]


def test_instances_pickle_and_copy_with_their_options(monkeypatch):
    ser = ArrowSerializer(compression="lz4", return_format="arrow")
    assert pickle.loads(pickle.dumps(ser)) == ser
    assert copy.deepcopy(ser) == ser
    plain = ArrowSerializer()
    monkeypatch.setenv(ENV, "zstd")  # an uncompressed instance stays uncompressed
    assert pickle.loads(pickle.dumps(plain)).compression is None


def test_the_payload_is_an_arrow_ipc_stream_any_arrow_reader_opens():
    frame = pd.DataFrame({"a": [1, 2]}, index=pd.Index(["x", "y"], name="k"))
    raw = ArrowSerializer().serialize(frame)
    assert isinstance(raw, memoryview)  # uncompressed: a view of a buffer written in place
    data = bytes(raw)
    assert data.endswith(b"\xff\xff\xff\xff\x00\x00\x00\x00")
    table = pa.ipc.open_stream(data).read_all()
    assert table.column_names == ["a", "k"]
    marker = json.loads(table.schema.metadata[b"cachekit.arrow"])
    assert (marker["v"], marker["kind"]) == (1, "frame")
    pd.testing.assert_frame_equal(table.to_pandas(), frame)
