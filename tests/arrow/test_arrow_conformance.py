"""ArrowSerializer passes cachekit's serializer conformance suite, in each configuration."""

from __future__ import annotations

from typing import Any

import pandas as pd
from arrow_samples import assert_same, frames, not_frames_or_tables, series, tables

from cachekit.testing import SerializerConformance
from cachekit_arrow import ArrowSerializer

_PICKED_FRAMES = ("ints", "strings", "object_strings", "categoricals", "datetimes", "multi_index")


class TestArrowSerializerConformance(SerializerConformance):
    # Each round trip builds and compares DataFrames (~1 ms): fewer threads keep the
    # thread-safety smoke test short while still overlapping calls.
    concurrency = 4

    def make_serializer(self) -> ArrowSerializer:
        return ArrowSerializer()

    def sample_values(self) -> list[Any]:
        every_frame = frames()
        return [
            *(every_frame[name] for name in _PICKED_FRAMES),
            every_frame["empty"],
            every_frame["empty_with_dtypes"],
            *series().values(),
            tables()["table_nested"],
            tables()["batch"],
        ]

    def unsupported_values(self) -> list[Any]:
        return [
            pd.DataFrame({"mixed": ["a", 1, 2.5]}),
            pd.DataFrame({"objects": [object(), object()]}),
            pd.Series([{"a": 1}, [1, 2]]),
            *not_frames_or_tables(),
        ]

    def assert_round_trip(self, original: Any, restored: Any) -> None:
        assert_same(original, restored)


class TestArrowSerializerWithLz4Conformance(TestArrowSerializerConformance):
    concurrency = 2

    def make_serializer(self) -> ArrowSerializer:
        return ArrowSerializer(compression="lz4")


class TestArrowSerializerWithZstdConformance(TestArrowSerializerConformance):
    concurrency = 2

    def make_serializer(self) -> ArrowSerializer:
        return ArrowSerializer(compression="zstd")
