"""The canonical, type-tagged encoding of cache-key arguments (the digest's input).

Typed: ``1``, ``1.0``, ``True``, ``"1"`` and ``b"1"`` encode differently, and so do
``(1, 2)`` and ``[1, 2]``; equal values of one type encode the same (dict and set order
does not matter, equal aware datetimes share an encoding); every item is
length-prefixed. See :mod:`cachekit.keys` for how keys are built from it.
"""

from __future__ import annotations

from cachekit.errors import CacheKeyError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["canonical_args", "canonical_bytes"]


def _enc_len(tag: bytes, data: bytes, out: list[bytes]) -> None:
    out.append(tag)
    out.append(str(len(data)).encode())
    out.append(b":")
    out.append(data)


def _enc_none(obj: Any, out: list[bytes], path: str) -> None:
    out.append(b"N")


def _enc_bool(obj: bool, out: list[bytes], path: str) -> None:
    out.append(b"T" if obj else b"F")


def _enc_int(obj: int, out: list[bytes], path: str) -> None:
    obj = int(obj)
    if obj.bit_length() <= 2048:
        _enc_len(b"i", str(obj).encode(), out)
    else:  # str() of a huge int can raise (sys.set_int_max_str_digits, 640 at least)
        _enc_len(b"I", format(obj, "x").encode(), out)


def _enc_float(obj: float, out: list[bytes], path: str) -> None:
    obj = float(obj)
    if obj == 0.0:  # 0.0 == -0.0: equal values get equal keys
        obj = 0.0
    _enc_len(b"f", repr(obj).encode(), out)  # repr round-trips every double exactly


def _enc_str(obj: str, out: list[bytes], path: str) -> None:
    _enc_len(b"s", str(obj).encode("utf-8", "surrogatepass"), out)


def _enc_bytes(obj: bytes, out: list[bytes], path: str) -> None:
    _enc_len(b"b", bytes(obj), out)


def _enc_bytearray(obj: bytearray, out: list[bytes], path: str) -> None:
    _enc_len(b"B", bytes(obj), out)


def _enc_seq(tag: bytes) -> Callable[[Any, list[bytes], str], None]:
    def enc(obj: Any, out: list[bytes], path: str) -> None:
        out.append(tag)
        out.append(str(len(obj)).encode())
        out.append(b":")
        for i, item in enumerate(obj):
            _encode(item, out, f"{path}[{i}]")
        out.append(b")")

    return enc


def _sorted_encoded(items: Any, path: str) -> list[bytes]:
    parts = []
    for item in items:
        sub: list[bytes] = []
        _encode(item, sub, path)
        parts.append(b"".join(sub))
    parts.sort()
    return parts


def _enc_set(tag: bytes) -> Callable[[Any, list[bytes], str], None]:
    def enc(obj: Any, out: list[bytes], path: str) -> None:
        out.append(tag)
        out.append(str(len(obj)).encode())
        out.append(b":")
        out.extend(_sorted_encoded(obj, f"{path}{{}}"))
        out.append(b")")

    return enc


def _enc_dict(obj: dict[Any, Any], out: list[bytes], path: str) -> None:
    pairs = []
    for k, v in obj.items():
        ek: list[bytes] = []
        _encode(k, ek, f"{path} key")
        kb = b"".join(ek)
        ev: list[bytes] = []
        _encode(v, ev, f"{path}[{k!r}]")
        pairs.append((kb, b"".join(ev)))
    pairs.sort()
    out.append(b"{")
    out.append(str(len(pairs)).encode())
    out.append(b":")
    for kb, vb in pairs:
        out.append(kb)
        out.append(vb)
    out.append(b"}")


_ENCODERS: dict[type, Callable[[Any, list[bytes], str], None]] = {
    type(None): _enc_none,
    bool: _enc_bool,
    int: _enc_int,
    float: _enc_float,
    str: _enc_str,
    bytes: _enc_bytes,
    bytearray: _enc_bytearray,
    tuple: _enc_seq(b"("),
    list: _enc_seq(b"["),
    dict: _enc_dict,
    set: _enc_set(b"<"),
    frozenset: _enc_set(b"<f"),
}
_rich_loaded = False


def _load_rich_encoders() -> None:
    """Encoders for stdlib value types, registered on first need (keeps import cheap)."""
    global _rich_loaded
    import datetime as _dt
    import uuid
    from decimal import Decimal

    epoch = _dt.datetime(1970, 1, 1)

    def _enc_datetime(obj: _dt.datetime, out: list[bytes], path: str) -> None:
        offset = obj.utcoffset()
        if offset is not None:  # aware: equal instants are equal datetimes
            # Time since the epoch as a timedelta: astimezone(utc) overflows near
            # datetime.min/max, timedelta arithmetic does not.
            since = obj.replace(tzinfo=None) - epoch - offset
            _enc_len(b"Dz", f"{since.days},{since.seconds},{since.microseconds}".encode(), out)
        else:
            _enc_len(b"Dn", obj.isoformat().encode(), out)

    def _enc_date(obj: _dt.date, out: list[bytes], path: str) -> None:
        _enc_len(b"d", obj.isoformat().encode(), out)

    def _enc_time(obj: _dt.time, out: list[bytes], path: str) -> None:
        offset = obj.utcoffset()
        if offset is None:
            _enc_len(b"t", obj.isoformat().encode(), out)
            return
        # Aware times compare by their seconds minus the offset's days and seconds
        # (CPython's time.__eq__), so equal times must encode the same.
        seconds = obj.hour * 3600 + obj.minute * 60 + obj.second
        seconds -= offset.days * 86400 + offset.seconds
        _enc_len(b"tz", f"{seconds},{obj.microsecond}".encode(), out)

    def _enc_timedelta(obj: _dt.timedelta, out: list[bytes], path: str) -> None:
        _enc_len(b"td", f"{obj.days},{obj.seconds},{obj.microseconds}".encode(), out)

    def _enc_decimal(obj: Decimal, out: list[bytes], path: str) -> None:
        # Not obj.normalize(): it rounds to the context precision (two unequal
        # 29-digit values would share a key), can raise Overflow, and keeps -0.
        if not obj.is_finite():
            text = str(obj)
        elif not obj:
            text = "0"  # Decimal("-0.00") == Decimal("0")
        else:
            sign, digits, exponent = obj.as_tuple()
            coefficient = "".join(map(str, digits)).rstrip("0")
            exponent = int(exponent) + len(digits) - len(coefficient)
            text = f"{'-' if sign else ''}{coefficient}E{exponent}"
        _enc_len(b"m", text.encode(), out)

    def _enc_uuid(obj: uuid.UUID, out: list[bytes], path: str) -> None:
        _enc_len(b"u", obj.bytes, out)

    def _enc_complex(obj: complex, out: list[bytes], path: str) -> None:
        _enc_len(b"c", f"{obj.real or 0.0!r},{obj.imag or 0.0!r}".encode(), out)

    _ENCODERS.update(
        {
            _dt.datetime: _enc_datetime,
            _dt.date: _enc_date,
            _dt.time: _enc_time,
            _dt.timedelta: _enc_timedelta,
            Decimal: _enc_decimal,
            uuid.UUID: _enc_uuid,
            complex: _enc_complex,
        }
    )
    _rich_loaded = True


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _encode(obj: Any, out: list[bytes], path: str) -> None:
    cls = type(obj)
    enc = _ENCODERS.get(cls)
    if enc is not None:
        enc(obj, out, path)
        return
    if not _rich_loaded:
        _load_rich_encoders()
        _encode(obj, out, path)
        return
    hook = getattr(cls, "__cache_key__", None)
    if hook is not None:
        _enc_len(b"k", _qualified(cls).encode(), out)
        _encode(hook(obj), out, f"{path}.__cache_key__()")
        return
    import enum
    from pathlib import PurePath

    if isinstance(obj, enum.Enum):
        _enc_len(b"e", _qualified(cls).encode(), out)
        _encode(obj.value, out, f"{path}.value")
        return
    if isinstance(obj, PurePath):
        _enc_len(b"p", f"{type(obj).__name__}:{obj}".encode("utf-8", "surrogatepass"), out)
        return
    from collections import OrderedDict

    if isinstance(obj, OrderedDict):  # equal only in the same order: keep the order
        _enc_len(b"S", _qualified(cls).encode(), out)
        _ENCODERS[tuple](tuple(obj.items()), out, path)
        return
    # Subclasses of the basic types (str enums excepted above, NamedTuples, ...):
    # encode as the base type, tagged with the subclass name so that they never
    # collide with a plain value of the base type.
    for base in (bool, int, float, str, bytes, tuple, list, dict, frozenset, set):
        if isinstance(obj, base):
            _enc_len(b"S", _qualified(cls).encode(), out)
            _ENCODERS[base](obj, out, path)
            return
    raise CacheKeyError(
        f"cannot build a cache key from {path} of type {_qualified(cls)}: only None, bool, "
        "int, float, complex, str, bytes, tuple, list, dict, set, datetime, date, time, "
        "timedelta, Decimal, UUID, Enum and Path values are encoded.",
        hint=(
            "Define __cache_key__(self) on the class returning a stable value, pass key=... "
            "to @cache, or convert the argument to a basic type."
        ),
    )


def canonical_bytes(obj: Any, path: str = "argument") -> bytes:
    """The canonical, type-tagged encoding of ``obj`` (the input of the digest)."""
    out: list[bytes] = []
    _encode(obj, out, path)
    return b"".join(out)


def canonical_args(values: tuple[Any, ...]) -> bytes:
    """``canonical_bytes(values, "key argument")`` for a tuple, with int/str/bool/None
    items encoded inline (the same bytes, without a function call per item)."""
    out = [b"(%d:" % len(values)]
    append = out.append
    for v in values:
        t = type(v)
        if t is int and v.bit_length() <= 2048:
            s = b"%d" % v
            append(b"i%d:%s" % (len(s), s))
        elif t is str:
            e = v.encode("utf-8", "surrogatepass")
            append(b"s%d:%s" % (len(e), e))
        elif v is None:
            append(b"N")
        elif t is bool:
            append(b"T" if v else b"F")
        else:
            _encode(v, out, "key argument")
    append(b")")
    return b"".join(out)
