"""The cachekit plugin module named by this distribution's entry point.

It registers the ``arrow`` serializer (class name ``ArrowSerializer``). Importing it
is cheap: neither ``pyarrow`` nor ``pandas`` is imported here; the serializer
imports ``pyarrow`` when it first serializes or reads a value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cachekit.hookspecs import SerializerSpec, hookimpl

__all__ = ["SERIALIZER_NAME", "cachekit_serializers", "make_serializer"]

SERIALIZER_NAME = "arrow"


def make_serializer(**options: Any) -> Any:
    """Build the ``arrow`` serializer: ``compression`` and ``return_format`` options."""
    from cachekit_arrow.serializer import ArrowSerializer

    return ArrowSerializer(**options)


def _serializer_class() -> type:
    from cachekit_arrow.serializer import ArrowSerializer

    return ArrowSerializer


@hookimpl
def cachekit_serializers() -> Iterable[SerializerSpec]:
    return [
        SerializerSpec(
            name=SERIALIZER_NAME,
            factory=make_serializer,
            class_names=("ArrowSerializer",),
            load_class=_serializer_class,
            description="Arrow IPC: pandas DataFrame/Series, pyarrow Table/RecordBatch; lz4/zstd",
        )
    ]
