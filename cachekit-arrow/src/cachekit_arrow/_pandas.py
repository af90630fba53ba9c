"""pandas DataFrames and Series to Arrow tables and back, with the dtypes they had.

``pyarrow.Table.from_pandas`` / ``Table.to_pandas`` restore most of a frame from the
``pandas`` schema metadata (index, column order, numeric, boolean, nullable,
categorical, datetime and timedelta dtypes, attrs). What they do not restore is
recorded in cachekit's marker (see :mod:`cachekit_arrow._meta`) and put back here:
object columns and levels (pandas 3 reads strings back as ``str``), the storage of
``StringDtype`` values, the dtype of categories, index frequencies, ``RangeIndex``
column labels, ``allows_duplicate_labels`` and the name of an unnamed Series.

What Arrow cannot store exactly is refused with E004 naming the column, before
anything is written: object columns of mixed or unsupported types, column labels of
mixed types, tuples, booleans or categories, attrs that are not JSON, and
DataFrame/Series subclasses.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.api.types import infer_dtype
from pandas.tseries.frequencies import to_offset

from cachekit.errors import DeserializationError, SerializationError
from cachekit_arrow import _meta
from cachekit_arrow._stream import unsupported

__all__ = ["from_table", "to_table"]

#: What an object column may hold (pandas.api.types.infer_dtype, NaN/None skipped):
#: each comes back as the same Python objects.
OBJECT_KINDS = frozenset(
    {"string", "bytes", "empty", "boolean", "integer", "date", "time", "decimal"}
)
#: What object column labels may be.
LABEL_OBJECT_KINDS = frozenset({"string", "bytes", "empty"})
_SCALAR_NAMES = (str, int, float, bool, type(None))
_HINT = (
    "Convert the column to a single type (for example df[col].astype(str)), or cache the "
    "value as it is with @cache(serializer=PickleSerializer())."
)
_CATEGORIES = "categories:"
_FREQ = "freq:"
_TZ = "tz:"

Fix = tuple[str, int, str]


#: Frames with fewer cells are converted on the calling thread (no thread pool).
_THREADED_CELLS = 1_000_000


def _refuse(where: str, why: str) -> SerializationError:
    return SerializationError(
        f"Could not serialize {where} with ArrowSerializer: {why}.", hint=_HINT
    )


def _bad(what: str) -> DeserializationError:
    return DeserializationError(
        f"bytes are not an Arrow stream written by ArrowSerializer: {what}."
    )


# --- specs: what pyarrow does not restore by itself --------------------------------------


def _dtype_spec(dtype: Any) -> str | None:
    if isinstance(dtype, np.dtype) and dtype == np.dtype(object):
        return "object"
    if isinstance(dtype, pd.StringDtype):
        na = "NA" if getattr(dtype, "na_value", pd.NA) is pd.NA else "nan"
        return f"string:{dtype.storage}:{na}"
    return None


def _specs(values: pd.Index | pd.Series) -> list[str]:
    """The specs that restore ``values`` (a column or an index level) after to_pandas()."""
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        spec = _dtype_spec(dtype.categories.dtype)
        return [] if spec is None else [_CATEGORIES + spec]
    spec = _dtype_spec(dtype)
    if spec is not None:
        return [spec]
    specs = []
    if isinstance(dtype, pd.DatetimeTZDtype) and (kind := _tz_kind(dtype.tz)) is not None:
        specs.append(_TZ + kind)
    freq = getattr(values, "freq", None) if isinstance(values, pd.Index) else None
    # A frequency with a plain name is kept; an exotic one (a custom business day with
    # holidays) comes back as None rather than making the stream unreadable.
    if freq is not None and _meta.FREQ.fullmatch(freq.freqstr) and to_offset(freq.freqstr) == freq:
        specs.append(_FREQ + freq.freqstr)
    return specs


def _tz_kind(tz: Any) -> str | None:
    """The family of a time zone object; None for others (dateutil: as pyarrow gives it)."""
    if isinstance(tz, datetime.timezone):
        return "timezone"
    module = type(tz).__module__
    if module == "pytz" or module.startswith("pytz."):
        return "pytz"
    if module == "zoneinfo" or module.startswith("zoneinfo."):
        return "zoneinfo"
    return None


def _tz(name: str, kind: str) -> Any:
    """The time zone ``name`` (as Arrow writes it: "UTC", "+05:30", "Europe/Paris") as an
    object of family ``kind``; None when that family cannot hold it or is not installed."""
    offset = re.fullmatch(r"([+-])(\d\d):(\d\d)", name)
    minutes = None
    if offset:
        minutes = (int(offset[2]) * 60 + int(offset[3])) * (-1 if offset[1] == "-" else 1)
    try:
        if kind == "timezone":
            if name == "UTC":
                return datetime.timezone.utc
            if minutes is None:
                return None
            return datetime.timezone(datetime.timedelta(minutes=minutes))
        if kind == "pytz":
            import pytz  # type: ignore[import-untyped]

            return pytz.FixedOffset(minutes) if minutes is not None else pytz.timezone(name)
        if kind == "zoneinfo" and minutes is None:
            import zoneinfo

            return zoneinfo.ZoneInfo(name)
    except (ImportError, LookupError, ValueError):
        pass
    return None


def _dtype(spec: str) -> Any:
    if spec == "object":
        return np.dtype(object)
    _, storage, na = spec.split(":")
    if na == "nan":
        return pd.StringDtype(storage, na_value=np.nan)
    return pd.StringDtype(storage)


# --- writing -------------------------------------------------------------------------------


def _describe(values: Any, limit: int = 4) -> str:
    """'values of type X' or 'values of mixed types (X, Y, ...)' for an object column."""
    names: dict[str, None] = {}
    for value in values:
        if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
            continue  # missing
        names[type(value).__name__] = None
        if len(names) > limit:
            break
    if len(names) == 1:
        return f"values of type {next(iter(names))}"
    listed = ", ".join(list(names)[:limit]) + (", ..." if len(names) > limit else "")
    return f"values of mixed types ({listed})"


def _check_objects(values: Any, where: str) -> None:
    if infer_dtype(values, skipna=True) not in OBJECT_KINDS:
        raise _refuse(
            where,
            f"it is an object column holding {_describe(values)}, which Arrow cannot "
            "store without changing them",
        )


def _check_names(names: Any, where: str) -> None:
    for name in names:
        if not isinstance(name, _SCALAR_NAMES):
            raise _refuse(where, f"the level name {name!r} is not a str, int, float or None")


def _check_attrs(attrs: dict[Any, Any]) -> None:
    """``DataFrame.attrs`` travel as JSON; refuse what JSON would change or drop."""
    if not attrs:
        return
    try:
        same = json.loads(json.dumps(attrs)) == attrs
    except (TypeError, ValueError):
        same = False
    if not same:
        raise _refuse("DataFrame.attrs", "they do not survive JSON unchanged")


def _levels(index: pd.Index) -> list[pd.Index]:
    return list(index.levels) if isinstance(index, pd.MultiIndex) else [index]


def _label_fixes(columns: pd.Index) -> list[Fix]:
    _check_names(columns.names, "the column labels")
    if isinstance(columns, pd.RangeIndex):
        return []
    fixes: list[Fix] = []
    for j, level in enumerate(_levels(columns)):
        dtype = level.dtype
        spec = _dtype_spec(dtype)
        if spec == "object":
            kind = infer_dtype(level, skipna=False)
            if kind not in LABEL_OBJECT_KINDS:
                what = "of mixed types" if kind.startswith("mixed") else f"inferred as {kind}"
                raise _refuse(
                    "the column labels",
                    f"labels {what} come back as strings (use str labels or int labels)",
                )
        elif spec is None and not (dtype.kind in "iufM" or isinstance(dtype, pd.DatetimeTZDtype)):
            raise _refuse(
                "the column labels",
                f"labels of dtype {dtype} are not restored by Arrow (use str or int labels)",
            )
        fixes += [("label", j, s) for s in _specs(level)]
    return fixes


def _column_fixes(frame: pd.DataFrame, where: str) -> list[Fix]:
    fixes: list[Fix] = []
    for pos in range(frame.shape[1]):
        column = frame.iloc[:, pos]
        specs = _specs(column)
        if specs == ["object"]:
            _check_objects(column, where or f"column {frame.columns[pos]!r}")
        fixes += [("column", pos, s) for s in specs]
    return fixes


def _index_fixes(index: pd.Index) -> list[Fix]:
    _check_names(index.names, "the index")
    if isinstance(index, pd.RangeIndex):
        return []
    fixes: list[Fix] = []
    for j, level in enumerate(_levels(index)):
        specs = _specs(level)
        if specs == ["object"]:
            _check_objects(index.get_level_values(j), f"index level {index.names[j]!r}")
        fixes += [("index", j, s) for s in specs]
    return fixes


def _failed(frame: pd.DataFrame, exc: Exception) -> SerializationError:
    """Name the column (or index level) Arrow could not convert."""
    candidates: list[tuple[str, Any]] = [
        (f"column {label!r}", frame.iloc[:, i]) for i, label in enumerate(frame.columns)
    ]
    index = frame.index
    if not isinstance(index, pd.RangeIndex):
        candidates += [
            (f"index level {name!r}", index.get_level_values(j))
            for j, name in enumerate(index.names)
        ]
    for where, values in candidates:
        try:
            pa.array(values, from_pandas=True)
        except Exception as error:
            return _refuse(where, f"Arrow cannot store it ({type(error).__name__}: {error})")
    return _refuse("the DataFrame", f"Arrow cannot store it ({type(exc).__name__}: {exc})")


def to_table(obj: Any) -> tuple[pa.Table, bytes]:
    """The table and marker of a DataFrame or Series; E004 for what cannot round-trip."""
    if type(obj) is pd.Series:
        if not isinstance(obj.name, _SCALAR_NAMES):
            raise _refuse("the Series", f"its name {obj.name!r} is not a str, int, float or None")
        kind, frame, where = "series", obj.to_frame(), "the Series values"
    elif type(obj) is pd.DataFrame:
        kind, frame, where = "frame", obj, ""
    else:
        raise unsupported(obj, " (subclasses are not restored)")
    _check_attrs(frame.attrs)
    fixes = _label_fixes(frame.columns) + _column_fixes(frame, where)
    fixes += _index_fixes(frame.index)
    try:
        # pyarrow converts columns on a thread pool; for a small frame starting it
        # costs more than it saves (about 0.5 ms of a 1 ms write at 10^4 rows).
        threads = 1 if frame.size < _THREADED_CELLS else None
        table = pa.Table.from_pandas(frame, preserve_index=None, nthreads=threads)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        raise _failed(frame, exc) from None
    if frame.attrs:
        table = _with_attributes(table, frame.attrs)
    columns = frame.columns
    marker = _meta.Marker(
        kind,
        fixes,
        range_columns=(
            (columns.start, columns.stop, columns.step)
            if kind == "frame" and isinstance(columns, pd.RangeIndex)
            else None
        ),
        unique_labels=kind == "frame" and not frame.flags.allows_duplicate_labels,
        unnamed=kind == "series" and obj.name is None,
    )
    return table, marker.encode()


def _with_attributes(table: pa.Table, attrs: dict[str, Any]) -> pa.Table:
    """``table`` whose pandas metadata holds ``attrs`` (pyarrow >= 22 writes them itself)."""
    metadata = dict(table.schema.metadata)
    doc = json.loads(metadata[_meta.PANDAS_KEY])
    if "attributes" in doc:
        return table
    doc["attributes"] = attrs
    metadata[_meta.PANDAS_KEY] = json.dumps(doc).encode()
    return table.replace_schema_metadata(metadata)


# --- reading -------------------------------------------------------------------------------


def _objects(column: pa.ChunkedArray) -> Any:
    """The values of an Arrow column as an object array of Python objects (None = null)."""
    t = column.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t):
        return column.to_numpy(zero_copy_only=False)
    out = np.empty(len(column), dtype=object)
    out[:] = column.to_pylist()
    return out


def _restore(values: Any, spec: str, column: pa.ChunkedArray | None) -> Any:
    """``values`` (a Series or a flat Index) as ``spec`` says they were written."""
    is_index = isinstance(values, pd.Index)
    if spec.startswith(_TZ):
        dtype = values.dtype
        if not isinstance(dtype, pd.DatetimeTZDtype):
            raise _bad("a time zone fix for values that are not tz-aware datetimes")
        kind = spec[len(_TZ) :]
        if _tz_kind(dtype.tz) == kind:
            return values
        tz = _tz(pa.lib.tzinfo_to_string(dtype.tz), kind)
        if tz is None:  # e.g. pytz written, not installed here: the zone as pyarrow gives it
            return values
        return values.tz_convert(tz) if is_index else values.dt.tz_convert(tz)
    if spec.startswith(_FREQ):
        if not isinstance(values, (pd.DatetimeIndex, pd.TimedeltaIndex)):
            raise _bad("a frequency for values that are not a datetime or timedelta index")
        return type(values)(values, freq=spec[len(_FREQ) :], name=values.name)
    if spec.startswith(_CATEGORIES):
        dtype = values.dtype
        if not isinstance(dtype, pd.CategoricalDtype):
            raise _bad("a categories fix for values that are not categorical")
        categories = _restore(dtype.categories, spec[len(_CATEGORIES) :], None)
        if categories.dtype == dtype.categories.dtype:
            return values
        codes = values.array.codes
        fixed = pd.Categorical.from_codes(codes, categories=categories, ordered=dtype.ordered)
        if is_index:
            return pd.CategoricalIndex(fixed, name=values.name)
        return pd.Series(fixed, index=values.index, name=values.name, copy=False)
    target = _dtype(spec)
    if values.dtype == target:
        return values
    if spec != "object" or column is None:
        return values.astype(target)
    objects = _objects(column)
    if is_index:
        return pd.Index(objects, dtype=object, name=values.name)
    return pd.Series(objects, index=values.index, name=values.name, dtype=object, copy=False)


def _relevel(index: pd.Index, pos: int, spec: str, column: pa.ChunkedArray | None) -> pd.Index:
    """``index`` with its level ``pos`` restored by ``spec``."""
    if pos >= index.nlevels:
        raise _bad("a fix names a level the frame does not have")
    if isinstance(index, pd.MultiIndex):
        level = _restore(index.levels[pos], spec, None)
        return index.set_levels(level, level=pos, verify_integrity=False)
    restored: pd.Index = _restore(index, spec, column)
    return restored


def from_table(table: pa.Table, marker: _meta.Marker, doc: dict[str, Any]) -> Any:
    """The DataFrame or Series a table written by :func:`to_table` holds.

    ``marker`` and ``doc`` (the pandas metadata) were checked against the table by
    :func:`cachekit_arrow._meta.check_frame_marker`.
    """
    frame = table.to_pandas(use_threads=table.num_rows * table.num_columns >= _THREADED_CELLS)
    fields = [entry["field_name"] for entry in doc["columns"]]
    index_fields = doc["index_columns"]
    width = len(fields) - sum(isinstance(f, str) for f in index_fields)
    if frame.shape[1] != width or frame.index.nlevels != max(len(index_fields), 1):
        raise _bad("the pandas metadata does not match the columns")
    for axis, pos, spec in marker.fixes:
        if axis == "column":
            frame.isetitem(pos, _restore(frame.iloc[:, pos], spec, table.column(fields[pos])))
        elif axis == "index":
            flat = not isinstance(frame.index, pd.MultiIndex)
            column = table.column(index_fields[pos]) if flat else None
            frame.index = _relevel(frame.index, pos, spec, column)
        else:
            frame.columns = _relevel(frame.columns, pos, spec, None)
    for pos, dtype in enumerate(frame.dtypes):
        if isinstance(dtype, pd.CategoricalDtype):
            # to_pandas leaves categorical codes read-only; the function's own frame
            # was writable, so the cached one must be too.
            frame.isetitem(pos, frame.iloc[:, pos].copy())
    if doc.get("attributes") and not frame.attrs:  # pyarrow < 22 does not restore them
        frame.attrs = dict(doc["attributes"])
    if marker.range_columns is not None:
        frame.columns = pd.RangeIndex(*marker.range_columns, name=frame.columns.name)
    if marker.unique_labels:
        frame = frame.set_flags(allows_duplicate_labels=False)
    if marker.kind == "frame":
        return frame
    series = frame.iloc[:, 0]
    if marker.unnamed:
        series.name = None
    return series
