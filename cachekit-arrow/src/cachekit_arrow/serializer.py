"""``ArrowSerializer``: pandas and Arrow values as Arrow IPC streams.

This module imports neither ``pyarrow`` nor ``pandas``: :mod:`cachekit_arrow._stream`
does, the first time a value is serialized or read.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from cachekit.errors import ConfigurationError

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["COMPRESSION_CHOICES", "COMPRESSION_ENV", "RETURN_FORMATS", "ArrowSerializer"]

#: The environment variable that picks the default compression.
COMPRESSION_ENV = "CACHEKIT_ARROW_COMPRESSION"
#: Accepted compression names ("none" = uncompressed).
COMPRESSION_CHOICES = ("none", "lz4", "zstd")
#: Accepted values of ``return_format``.
RETURN_FORMATS = ("pandas", "arrow")

_stream: ModuleType | None = None


def _stream_module() -> ModuleType:
    global _stream
    if _stream is None:
        from cachekit_arrow import _stream as module

        _stream = module
    return _stream


def _compression(value: object, source: str) -> str | None:
    if isinstance(value, str):
        name = value.strip().lower()
        if name in COMPRESSION_CHOICES:
            return None if name == "none" else name
    choices = ", ".join(repr(c) for c in COMPRESSION_CHOICES)
    raise ConfigurationError(
        f"{source} must be one of {choices}, got {value!r}.",
        hint=(
            f"Unset {COMPRESSION_ENV} (or set it to 'none') for uncompressed streams."
            if source == COMPRESSION_ENV
            else "Pass compression=None to use the default from " + COMPRESSION_ENV + "."
        ),
    )


def compression_from_env(environ: Any = None) -> str | None:
    """The compression named by ``CACHEKIT_ARROW_COMPRESSION`` (None when unset/empty/none)."""
    raw = (os.environ if environ is None else environ).get(COMPRESSION_ENV)
    if raw is None or not raw.strip():
        return None
    return _compression(raw, COMPRESSION_ENV)


class ArrowSerializer:
    """Arrow IPC stream serializer for DataFrames, Series, Tables and RecordBatches.

    ``compression``: ``"lz4"``, ``"zstd"``, ``"none"``, or None (the default) for
    the value of ``CACHEKIT_ARROW_COMPRESSION`` (uncompressed when unset). An
    explicit argument always wins over the variable.

    ``return_format``: ``"pandas"`` (default) gives DataFrames and Series back as
    written; ``"arrow"`` gives them back as a ``pyarrow.Table`` (with the pandas
    metadata, so ``table.to_pandas()`` rebuilds the frame). A Table or RecordBatch
    always comes back as itself.

    Values Arrow cannot store exactly (mixed-type object columns, arbitrary Python
    objects) raise :class:`~cachekit.errors.SerializationError` (E004) naming the
    column. Bytes that are not a stream written by this serializer raise
    :class:`~cachekit.errors.DeserializationError` (E005), which the decorator
    treats as a miss. Instances are immutable and safe to share between threads.
    """

    name = "arrow"
    #: Reading a stream runs no code chosen by its writer (no pickle, no extension
    #: type autoload), so payloads from a shared backend need no signature.
    requires_authentication = False

    __slots__ = ("_compression", "_return_format")

    def __init__(self, compression: str | None = None, return_format: str = "pandas") -> None:
        self._compression = (
            compression_from_env()
            if compression is None
            else _compression(compression, "compression")
        )
        if return_format not in RETURN_FORMATS:
            raise ConfigurationError(
                f"return_format must be 'pandas' or 'arrow', got {return_format!r}."
            )
        self._return_format = return_format

    @property
    def compression(self) -> str | None:
        """``"lz4"``, ``"zstd"`` or None (uncompressed)."""
        return self._compression

    @property
    def return_format(self) -> str:
        """``"pandas"`` or ``"arrow"``."""
        return self._return_format

    def __repr__(self) -> str:
        return (
            f"ArrowSerializer(compression={self._compression!r}, "
            f"return_format={self._return_format!r})"
        )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ArrowSerializer)
            and other._compression == self._compression
            and other._return_format == self._return_format
        )

    def __hash__(self) -> int:
        return hash((ArrowSerializer, self._compression, self._return_format))

    def __reduce__(self) -> tuple[Any, ...]:
        return (ArrowSerializer, (self._compression or "none", self._return_format))

    def serialize(self, obj: Any) -> bytes | memoryview:
        """An Arrow IPC stream of ``obj``; E004 for what Arrow cannot store exactly.

        Uncompressed streams come back as a ``memoryview`` of a buffer written in place
        (one copy less than ``bytes``; cachekit's envelope copies it once, into the
        entry).
        """
        data: bytes | memoryview = _stream_module().dumps(obj, self._compression)
        return data

    def deserialize(self, data: bytes) -> Any:
        """The value written by :meth:`serialize`; E005 for anything else."""
        return _stream_module().loads(data, self._return_format)
