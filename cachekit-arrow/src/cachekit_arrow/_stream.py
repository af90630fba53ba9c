"""Writing and reading the Arrow IPC streams of :class:`~cachekit_arrow.ArrowSerializer`.

A payload is one Arrow IPC *stream* (schema message, record batches, end-of-stream
marker), optionally with lz4 or zstd buffer compression. Its schema metadata carries
cachekit's marker (``cachekit.arrow``: format version and kind of value, see
:mod:`cachekit_arrow._meta`) beside pyarrow's own ``pandas`` metadata for frames.

Reading is strict, because the bytes may come from a shared backend that anyone
could write to: the payload must end with the end-of-stream marker and hold
nothing after it, carry the marker, use no extension type outside a short list of
types whose deserialization runs no code chosen by the writer (so no
``arrow.py_extension_type`` pickle, registered or not), and for frames carry
pandas metadata of the expected shape. Anything else is E005, never another
exception.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from cachekit.errors import ConfigurationError, DeserializationError, SerializationError
from cachekit_arrow import _meta

__all__ = ["EOS", "SAFE_EXTENSIONS", "dumps", "loads", "unsupported"]

#: The end-of-stream marker every stream written here ends with.
EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"
_EXTENSION_NAME = b"ARROW:extension:name"
#: Extension types read back as such: Arrow's canonical types (parsed by Arrow's C++
#: code from JSON or nothing) and the two pandas registers (a JSON-free frequency or
#: interval closure). Everything else is refused on write (E004) and on read (E005).
SAFE_EXTENSIONS = frozenset(
    {
        "arrow.bool8",
        "arrow.fixed_shape_tensor",
        "arrow.json",
        "arrow.opaque",
        "arrow.uuid",
        "arrow.variable_shape_tensor",
        "pandas.interval",
        "pandas.period",
    }
)
_PANDAS_EXTENSIONS = frozenset({"pandas.interval", "pandas.period"})
_SUPPORTED = "pandas DataFrame and Series, pyarrow Table and RecordBatch"
_PICKLE_HINT = (
    "Use @cache(serializer=PickleSerializer()) for arbitrary Python objects, or return "
    "a DataFrame, Series, pyarrow Table or RecordBatch."
)


def unsupported(obj: Any, detail: str = "") -> SerializationError:
    cls = type(obj)
    name = cls.__name__
    if cls.__module__ != "builtins":
        name = f"{name} ({cls.__module__}.{cls.__qualname__})"
    return SerializationError(
        f"Could not serialize object of type {name} with ArrowSerializer, which supports "
        f"{_SUPPORTED}{detail}.",
        hint=_PICKLE_HINT,
    )


def _bad(what: str) -> DeserializationError:
    return DeserializationError(
        f"bytes are not an Arrow stream written by ArrowSerializer: {what}."
    )


# --- extension types ------------------------------------------------------------------


def _children(t: pa.DataType) -> list[pa.Field]:
    if isinstance(t, pa.BaseExtensionType):
        return [pa.field("storage", t.storage_type)]
    if isinstance(t, (pa.StructType, pa.UnionType)):
        return [t.field(i) for i in range(t.num_fields)]
    if isinstance(t, pa.MapType):
        return [t.key_field, t.item_field]
    if isinstance(t, pa.DictionaryType):
        return [pa.field("indices", t.index_type), pa.field("dictionary", t.value_type)]
    value_field = getattr(t, "value_field", None)  # list, large_list, fixed_size_list, views
    if value_field is not None:
        return [value_field]
    value_type = getattr(t, "value_type", None)  # run_end_encoded
    return [] if value_type is None else [pa.field("values", value_type)]


def _extension_names(field: pa.Field, path: str) -> list[tuple[str, str, bool]]:
    """(field path, extension name, registered) for every extension type under ``field``."""
    found: list[tuple[str, str, bool]] = []
    metadata = field.metadata or {}
    if _EXTENSION_NAME in metadata:  # an extension type this process has not registered
        found.append((path, metadata[_EXTENSION_NAME].decode("utf-8", "replace"), False))
    if isinstance(field.type, pa.BaseExtensionType):
        found.append((path, field.type.extension_name, True))
    for child in _children(field.type):
        found.extend(_extension_names(child, f"{path}.{child.name}"))
    return found


def _all_extensions(schema: pa.Schema) -> list[tuple[str, str, bool]]:
    found: list[tuple[str, str, bool]] = []
    for field in schema:
        found.extend(_extension_names(field, field.name))
    return found


# --- writing ----------------------------------------------------------------------------


def _is_pandas(obj: Any) -> bool:
    module = type(obj).__module__
    return module == "pandas" or module.startswith("pandas.")


def _empty_batch(table: pa.Table) -> pa.RecordBatch:
    """A table without rows as one batch, so dictionaries (categories) are written too."""
    arrays = [
        column.chunk(0) if column.num_chunks else pa.array([], column.type)
        for column in table.columns
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=table.schema)


def dumps(obj: Any, compression: str | None) -> bytes | memoryview:
    """The stream of ``obj`` (compressed with ``compression``); E004 when unsupported."""
    if isinstance(obj, pa.Table):
        value: pa.Table | pa.RecordBatch = obj
        marker = _meta.Marker("table").encode()
    elif isinstance(obj, pa.RecordBatch):
        value = obj
        marker = _meta.Marker("batch").encode()
    elif _is_pandas(obj):
        from cachekit_arrow import _pandas

        value, marker = _pandas.to_table(obj)
    else:
        raise unsupported(obj)
    for path, name, registered in _all_extensions(value.schema):
        if not registered or name not in SAFE_EXTENSIONS:
            raise SerializationError(
                f"Could not serialize column {path!r} with ArrowSerializer: its Arrow "
                f"extension type {name!r} is not one that readers load (they load "
                f"{', '.join(sorted(SAFE_EXTENSIONS))}), so it could never be read back.",
                hint=_PICKLE_HINT,
            )
    metadata = dict(value.schema.metadata or {})
    metadata[_meta.MARKER_KEY] = marker
    # The writer's schema carries the marker; the value is written as it is (replacing
    # the metadata of a table without columns would lose its row count).
    schema = value.schema.with_metadata(metadata)
    try:
        options = pa.ipc.IpcWriteOptions(compression=compression)
    except (pa.ArrowException, ValueError) as exc:
        raise ConfigurationError(
            f"Arrow compression {compression!r} is not available in this pyarrow build ({exc})."
        ) from None
    try:
        if compression is None:
            # Uncompressed: measure the stream first (no data is copied), then write it
            # once, into a buffer from Arrow's memory pool (reused memory: no page faults
            # for zero-filling, no growing buffer, no final copy into bytes).
            counter = pa.MockOutputStream()
            _write(counter, schema, value, options)
            out = pa.allocate_buffer(counter.size())
            _write(pa.FixedSizeBufferWriter(out), schema, value, options)
            return memoryview(out)
        sink = pa.BufferOutputStream()
        _write(sink, schema, value, options)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise SerializationError(
            f"Could not write an Arrow IPC stream with ArrowSerializer: {exc}", hint=_PICKLE_HINT
        ) from None
    data: bytes = sink.getvalue().to_pybytes()
    return data


def _write(sink: Any, schema: pa.Schema, value: Any, options: Any) -> None:
    with pa.ipc.new_stream(sink, schema, options=options) as writer:
        if isinstance(value, pa.RecordBatch):
            writer.write_batch(value)
        elif value.num_rows == 0 and value.num_columns:
            writer.write_batch(_empty_batch(value))
        else:
            writer.write_table(value)


# --- reading ----------------------------------------------------------------------------


def loads(data: Any, return_format: str) -> Any:
    """The value of a stream written by :func:`dumps`; E005 for anything else."""
    try:
        return _loads(data, return_format)
    except DeserializationError:
        raise
    except Exception as exc:  # pyarrow and pandas raise many unrelated types
        raise _bad(f"{type(exc).__name__} while reading it") from None


#: Most bytes a stream may inflate to (lz4/zstd buffers declare their own size).
MAX_DECOMPRESSED = 512 * 1024 * 1024


def _check_declared_size(buffer: pa.Buffer, size: int) -> None:
    """Refuse a stream whose buffers claim more than MAX_DECOMPRESSED, before pyarrow
    inflates them (a few kilobytes of zstd may claim gigabytes)."""
    from cachekit_arrow._bodies import declared_size

    messages = pa.ipc.MessageReader.open_stream(buffer)
    try:
        claimed = declared_size(iter(messages.read_next_message, None))
    except ValueError as exc:
        raise _bad(f"malformed batch header ({exc})") from None
    if claimed > max(MAX_DECOMPRESSED, size):
        raise _bad(
            f"its batches claim {claimed} bytes once decompressed, above the "
            f"{MAX_DECOMPRESSED}-byte limit"
        )


#: Most bytes the columns of a stream may take once every row is materialised (rows
#: times a per-type width, summed over every column, child and dictionary). A column
#: with no buffers (null, a struct of nulls, a run-end encoded run) costs nothing to
#: ship but one pointer or value per row once converted, so the buffer bound above
#: does not limit it.
MAX_LOGICAL = 512 * 1024 * 1024
#: Bytes per row of a type that has no fixed width: the object pointer pandas gives
#: each row of a null, string, binary, list, struct, map or union column.
_OBJECT_WIDTH = 8
_LISTS = (
    pa.ListArray,
    pa.LargeListArray,
    pa.FixedSizeListArray,
    pa.ListViewArray,
    pa.LargeListViewArray,
)


def _width(arrow_type: pa.DataType) -> int:
    """Bytes one row of ``arrow_type`` takes once materialised (at least 1)."""
    try:
        bits = int(arrow_type.bit_width)
    except ValueError:  # null, strings, binaries, lists, structs, maps, unions, ...
        return _OBJECT_WIDTH
    return max(bits // 8, 1)  # a boolean is one byte per row in pandas


def _logical_size(array: pa.Array, path: str, dictionaries: dict[str, int]) -> int:
    """Bytes ``array`` and its children take with every row materialised; the
    dictionaries' sizes go to ``dictionaries`` (by field path: batches share them)."""
    if isinstance(array, pa.ExtensionArray):
        return _logical_size(array.storage, path, dictionaries)
    if isinstance(array, pa.DictionaryArray):
        size = _logical_size(array.dictionary, f"{path}.dictionary", dictionaries)
        dictionaries[path] = max(dictionaries.get(path, 0), size)
        return _logical_size(array.indices, path, dictionaries)
    size = len(array) * _width(array.type)
    children: list[pa.Array] = []
    if isinstance(array, pa.RunEndEncodedArray):  # len(array) is the expanded length
        children = [array.run_ends, array.values]
    elif isinstance(array, (pa.StructArray, pa.UnionArray)):
        children = [array.field(i) for i in range(array.type.num_fields)]
    elif isinstance(array, _LISTS):  # maps too; .values is the whole child array
        children = [array.values]
    for i, child in enumerate(children):
        size += _logical_size(child, f"{path}.{i}", dictionaries)
    return size


def _check_logical_size(batches: list[pa.RecordBatch]) -> None:
    """Refuse a stream whose rows would take more than MAX_LOGICAL bytes, before
    anything converts them (848 bytes can hold a null column of 4*10**8 rows)."""
    total = 0
    dictionaries: dict[str, int] = {}
    for batch in batches:
        for i, column in enumerate(batch.columns):
            total += _logical_size(column, str(i), dictionaries)
    total += sum(dictionaries.values())
    if total > MAX_LOGICAL:
        rows = sum(batch.num_rows for batch in batches)
        raise _bad(
            f"its {rows} rows would take {total} bytes once materialised, above "
            f"the {MAX_LOGICAL}-byte limit"
        )


def _open(buffer: pa.Buffer) -> tuple[pa.BufferReader, Any]:
    source = pa.BufferReader(buffer)
    return source, pa.ipc.open_stream(source)


def _without_marker(schema: pa.Schema) -> pa.Schema:
    kept = {k: v for k, v in (schema.metadata or {}).items() if k != _meta.MARKER_KEY}
    return schema.with_metadata(kept) if kept else schema.remove_metadata()


def _kind(arrow_type: pa.DataType) -> str:
    if pa.types.is_dictionary(arrow_type):
        return "dictionary"
    if pa.types.is_timestamp(arrow_type) or pa.types.is_duration(arrow_type):
        return "temporal"
    return "other"


def _check_pandas_types(doc: dict[str, Any], schema: pa.Schema) -> None:
    """The pandas metadata agrees with the Arrow types where pandas reads both."""
    for entry in doc["columns"]:
        arrow_type = schema.field(entry["field_name"]).type
        pandas_type = entry["pandas_type"]
        meta = entry.get("metadata") or {}
        if pandas_type == "categorical":
            ok = pa.types.is_dictionary(arrow_type)
            ok = ok and meta.get("ordered", arrow_type.ordered) is arrow_type.ordered
        elif pandas_type == "datetimetz":
            ok = pa.types.is_timestamp(arrow_type) and arrow_type.tz is not None
            ok = ok and meta.get("timezone", arrow_type.tz) == arrow_type.tz
        elif pandas_type == "decimal":
            ok = pa.types.is_decimal(arrow_type)
        else:
            ok = True
        if not ok:
            raise _bad(f"the pandas metadata calls field {entry['field_name']!r} {pandas_type}")


def _loads(data: Any, return_format: str) -> Any:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _bad(f"expected bytes, got {type(data).__name__}")
    size = len(data)
    if size < 2 * len(EOS) or bytes(data[-len(EOS) :]) != EOS:
        raise _bad("truncated or not an Arrow IPC stream (no end-of-stream marker)")
    # Read-only, whatever was passed: nothing read back may write into the caller's
    # bytes (L1 keeps the bytearray serialize returned and reads it again and again).
    buffer = pa.py_buffer(memoryview(data).toreadonly())
    _check_declared_size(buffer, size)
    source, reader = _open(buffer)
    schema = reader.schema
    marker = _meta.parse_marker(schema.metadata)
    extensions = _all_extensions(schema)
    if any(not reg and name in _PANDAS_EXTENSIONS for _, name, reg in extensions):
        # pandas registers its period and interval types with pyarrow in a module it
        # imports lazily: import it, then read the schema again.
        try:
            import pandas.core.arrays.arrow.extension_types  # noqa: F401
        except ImportError:
            pass
        else:
            source, reader = _open(buffer)
            schema = reader.schema
            extensions = _all_extensions(schema)
    for path, name, registered in extensions:
        if not registered or name not in SAFE_EXTENSIONS:
            raise _bad(f"field {path!r} has the extension type {name!r}, which is not loaded")
    batches = list(reader)
    for batch in batches:
        # pyarrow's IPC reader trusts offsets and lengths: a crafted stream would make
        # later reads run past its buffers (leaking memory, or crashing the process).
        # A full validation checks every offset, length and UTF-8 string first.
        batch.validate(full=True)
    if source.tell() != size:
        raise _bad("bytes after the end-of-stream marker")
    _check_logical_size(batches)
    plain = _without_marker(schema)
    if marker.kind == "batch":
        if len(batches) != 1:
            raise _bad(f"a record batch stream with {len(batches)} batches")
        return batches[0].replace_schema_metadata(plain.metadata)
    if marker.kind == "table":
        return pa.Table.from_batches(batches, schema=plain)
    num_rows = sum(batch.num_rows for batch in batches)
    doc = _meta.check_pandas_metadata(schema.metadata, schema.names, num_rows)
    _check_pandas_types(doc, schema)
    _meta.check_frame_marker(marker, doc, {f.name: _kind(f.type) for f in schema})
    if return_format == "arrow":
        return pa.Table.from_batches(batches, schema=plain)
    try:
        from cachekit_arrow import _pandas
    except ImportError:
        raise _bad("it holds a pandas value and pandas is not installed") from None
    return _pandas.from_table(pa.Table.from_batches(batches, schema=schema), marker, doc)
