"""The schema metadata of a stream: cachekit's marker and the pandas metadata.

Both are JSON documents read from bytes that may come from anywhere, so they are
checked here, shape and bounds, before anything relies on them. Pure Python: this
module imports neither pyarrow nor pandas.

The marker (schema metadata key ``cachekit.arrow``) is written by
:func:`cachekit_arrow._stream.dumps`::

    {"v": 1, "kind": "frame" | "series" | "table" | "batch",
     # frames and series only, each optional:
     "fix": [[axis, position, spec], ...],    # what Table.to_pandas() does not restore
     "range_columns": [start, stop, step],    # the column labels were a RangeIndex
     "unique_labels": true,                   # DataFrame.flags.allows_duplicate_labels=False
     "unnamed": true}                         # a Series whose name was None

``axis`` is ``"column"`` (a data column, by position), ``"index"`` (a level of the
row index) or ``"label"`` (a level of the column labels). ``spec`` matches
:data:`FIXABLE`: ``"object"`` or ``"string:<storage>:<NA|nan>"`` (the dtype, a
``StringDtype`` by its storage and missing-value marker), either prefixed with
``"categories:"`` for the categories of a categorical, ``"freq:<name>"`` for the
frequency of a datetime or timedelta index level, or ``"tz:<kind>"`` for the family of
the time zone object of tz-aware datetimes (``timezone``, ``pytz`` or ``zoneinfo``:
pyarrow gives every zone back as pytz under pandas 2, and never as pytz under pandas 3).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, TypeGuard

from cachekit.errors import DeserializationError

__all__ = [
    "FIXABLE",
    "FORMAT_VERSION",
    "FREQ",
    "KINDS",
    "MARKER_KEY",
    "PANDAS_KEY",
    "TZ_KINDS",
    "Marker",
    "check_frame_marker",
    "check_pandas_metadata",
    "parse_marker",
]

MARKER_KEY = b"cachekit.arrow"
PANDAS_KEY = b"pandas"
FORMAT_VERSION = 1
KINDS = ("frame", "series", "table", "batch")
#: A frequency name as ``DatetimeIndex.freqstr`` gives it ("D", "15min", "W-SUN").
FREQ = re.compile(r"[A-Za-z0-9\-]{1,32}")
_DTYPE = r"(object|string:(python|pyarrow|pyarrow_numpy):(NA|nan))"
#: The family of a time zone object: datetime.timezone, pytz or zoneinfo.ZoneInfo.
TZ_KINDS = ("timezone", "pytz", "zoneinfo")
FIXABLE = re.compile(rf"(categories:)?{_DTYPE}|freq:{FREQ.pattern}|tz:({'|'.join(TZ_KINDS)})")
AXES = ("column", "index", "label")
_MARKER_KEYS = frozenset({"v", "kind", "fix", "range_columns", "unique_labels", "unnamed"})

#: Upper bounds on what a stream may declare.
MAX_MARKER_BYTES = 4 << 20
MAX_PANDAS_METADATA_BYTES = 64 << 20
MAX_LEVELS = 64
_TYPE_NAME = re.compile(r"[A-Za-z0-9_\[\]<>(),:.=/+\- ]{1,200}")
_SCALARS = (str, int, float, bool, type(None))


def _bad(what: str) -> DeserializationError:
    return DeserializationError(
        f"bytes are not an Arrow stream written by ArrowSerializer: {what}."
    )


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _load_json(raw: bytes, limit: int, what: str) -> Any:
    if len(raw) > limit:
        raise _bad(f"{what} is larger than {limit} bytes")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise _bad(f"{what} is not valid JSON") from None


class Marker:
    """The parsed, checked marker of a stream."""

    __slots__ = ("fixes", "kind", "range_columns", "unique_labels", "unnamed")

    def __init__(
        self,
        kind: str,
        fixes: Sequence[tuple[str, int, str]] = (),
        range_columns: tuple[int, int, int] | None = None,
        unique_labels: bool = False,
        unnamed: bool = False,
    ) -> None:
        self.kind = kind
        self.fixes = list(fixes)
        self.range_columns = range_columns
        self.unique_labels = unique_labels
        self.unnamed = unnamed

    def encode(self) -> bytes:
        """The marker as written into the schema metadata (compact JSON)."""
        doc: dict[str, Any] = {"v": FORMAT_VERSION, "kind": self.kind}
        if self.fixes:
            doc["fix"] = [list(f) for f in self.fixes]
        if self.range_columns is not None:
            doc["range_columns"] = list(self.range_columns)
        if self.unique_labels:
            doc["unique_labels"] = True
        if self.unnamed:
            doc["unnamed"] = True
        return json.dumps(doc, separators=(",", ":")).encode()


def parse_marker(metadata: dict[bytes, bytes] | None) -> Marker:
    """The marker in ``metadata``; E005 when absent or malformed."""
    raw = (metadata or {}).get(MARKER_KEY)
    if raw is None:
        raise _bad("the schema carries no cachekit marker")
    doc = _load_json(raw, MAX_MARKER_BYTES, "the cachekit marker")
    if not isinstance(doc, dict) or not _is_int(doc.get("v")):
        raise _bad("the cachekit marker is malformed")
    if doc["v"] != FORMAT_VERSION:
        raise _bad(f"unknown format version {doc['v']} (this reader knows {FORMAT_VERSION})")
    kind = doc.get("kind")
    if kind not in KINDS or not set(doc) <= _MARKER_KEYS:
        raise _bad("the cachekit marker is malformed")
    fixes: list[tuple[str, int, str]] = []
    raw_fixes = doc.get("fix", [])
    if not isinstance(raw_fixes, list):
        raise _bad("the cachekit marker is malformed")
    for item in raw_fixes:
        if not (
            isinstance(item, list)
            and len(item) == 3
            and item[0] in AXES
            and _is_int(item[1])
            and item[1] >= 0
            and isinstance(item[2], str)
            and FIXABLE.fullmatch(item[2])
        ):
            raise _bad("the cachekit marker lists an invalid dtype fix")
        fixes.append((item[0], item[1], item[2]))
    range_columns = doc.get("range_columns")
    if range_columns is not None:
        if not (
            isinstance(range_columns, list)
            and len(range_columns) == 3
            and all(map(_is_int, range_columns))
            and range_columns[2] != 0
        ):
            raise _bad("the cachekit marker has invalid range_columns")
        range_columns = tuple(range_columns)
    flags = [doc.get(name, False) for name in ("unique_labels", "unnamed")]
    if not all(isinstance(flag, bool) for flag in flags):
        raise _bad("the cachekit marker is malformed")
    if kind in ("table", "batch") and len(doc) > 2:
        raise _bad("the cachekit marker has pandas options on an Arrow value")
    return Marker(kind, fixes, range_columns, *flags)


def _check_column_entry(entry: object, field_names: set[str], optional_field: bool) -> None:
    if not isinstance(entry, dict):
        raise _bad("a pandas metadata column entry is not an object")
    name = entry.get("name")
    if not isinstance(name, _SCALARS):
        raise _bad("a pandas metadata column name is not a scalar")
    field_name = entry.get("field_name")
    if field_name is None and optional_field:
        pass
    elif not isinstance(field_name, str) or (not optional_field and field_name not in field_names):
        raise _bad("a pandas metadata column names a field the stream does not have")
    for key in ("pandas_type", "numpy_type"):
        value = entry.get(key)
        if not isinstance(value, str) or not _TYPE_NAME.fullmatch(value):
            raise _bad(f"a pandas metadata column has an invalid {key}")
    meta = entry.get("metadata")
    if meta is not None and not (
        isinstance(meta, dict)
        and len(meta) <= 16
        and all(isinstance(v, _SCALARS) for v in meta.values())
    ):
        raise _bad("a pandas metadata column has invalid metadata")


def check_pandas_metadata(
    metadata: dict[bytes, bytes] | None, field_names: list[str], num_rows: int
) -> dict[str, Any]:
    """The pandas metadata of a frame stream, checked against its schema; E005 if bad.

    Checks what ``Table.to_pandas()`` relies on: the index columns name existing
    fields (or are ranges as long as the table), every column entry names an
    existing field with type names made of plain characters and scalar metadata,
    and the column-label levels are few and well formed.
    """
    raw = (metadata or {}).get(PANDAS_KEY)
    if raw is None:
        raise _bad("a pandas value without pandas metadata")
    doc = _load_json(raw, MAX_PANDAS_METADATA_BYTES, "the pandas metadata")
    if not isinstance(doc, dict):
        raise _bad("the pandas metadata is not an object")
    names = set(field_names)
    columns = doc.get("columns")
    if not isinstance(columns, list) or len(columns) != len(field_names):
        raise _bad("the pandas metadata does not describe every field")
    for entry in columns:
        _check_column_entry(entry, names, optional_field=False)
    if [e["field_name"] for e in columns] != field_names:
        raise _bad("the pandas metadata lists the fields in another order")
    index_columns = doc.get("index_columns")
    if not isinstance(index_columns, list) or len(index_columns) > MAX_LEVELS:
        raise _bad("the pandas metadata has invalid index_columns")
    for item in index_columns:
        if isinstance(item, str):
            if item not in names:
                raise _bad("the pandas metadata names an index field the stream does not have")
        elif isinstance(item, dict):
            bounds = [item.get(k) for k in ("start", "stop", "step")]
            ints = [b for b in bounds if _is_int(b)]
            if (
                item.get("kind") != "range"
                or len(ints) != 3
                or ints[2] == 0
                or len(range(*ints)) != num_rows
                or not isinstance(item.get("name"), _SCALARS)
            ):
                raise _bad("the pandas metadata has an invalid range index")
        else:
            raise _bad("the pandas metadata has invalid index_columns")
    column_indexes = doc.get("column_indexes", [])
    if not isinstance(column_indexes, list) or len(column_indexes) > MAX_LEVELS:
        raise _bad("the pandas metadata has invalid column_indexes")
    for entry in column_indexes:
        _check_column_entry(entry, names, optional_field=True)
    attributes = doc.get("attributes", {})
    if not isinstance(attributes, dict):
        raise _bad("the pandas metadata has invalid attributes")
    return doc


def check_frame_marker(marker: Marker, doc: dict[str, Any], kinds: dict[str, str]) -> None:
    """The marker's fixes fit the frame ``doc`` describes; E005 otherwise.

    ``kinds`` maps each field name to ``"dictionary"`` (a categorical column),
    ``"temporal"`` (timestamp or duration) or ``"other"``.
    """
    fields = [entry["field_name"] for entry in doc["columns"]]
    index_columns = doc["index_columns"]
    width = len(fields) - sum(isinstance(f, str) for f in index_columns)
    label_levels = doc.get("column_indexes") or [{"pandas_type": "empty"}]
    for axis, pos, spec in marker.fixes:
        field: str | None = None
        if axis == "column":
            field = fields[pos] if pos < width else None
            ok = field is not None and not spec.startswith("freq:")
        elif axis == "index":
            if pos < len(index_columns) and isinstance(index_columns[pos], str):
                field = index_columns[pos]
            ok = field is not None
        else:
            ok = pos < len(label_levels) and not spec.startswith("categories:")
            if ok and spec.startswith("freq:"):
                ok = label_levels[pos]["pandas_type"].startswith(("datetime", "timedelta"))
        if ok and field is not None:
            if spec.startswith("categories:"):
                ok = kinds[field] == "dictionary"
            elif spec.startswith("freq:"):
                ok = kinds[field] == "temporal"
        if not ok:
            raise _bad(f"the fix {[axis, pos, spec]} does not fit the frame")
    if marker.range_columns is not None and len(range(*marker.range_columns)) != width:
        raise _bad("range_columns does not match the columns")
    if marker.kind == "series" and width != 1:
        raise _bad("a Series stream that does not hold exactly one column")
