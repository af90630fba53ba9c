"""What L1 keeps for a mutable result, so that each hit returns a private copy.

The general answer is the serializer's bytes, decoded on every hit: whatever the value,
a hit returns exactly what an L2 hit would. For small plain data (a ``dict`` or ``list``
whose items are scalars or flat containers of scalars, the common shape of a cached row
or record), copying a decoded template is 3-4x faster than decoding: the template is the
decoded value, so a copy of it has the very types and contents a decode gives, and the
copy goes only as deep as the value's mutable parts (``dict.copy`` of a flat dict, one
level more for each nested list or dict).

:func:`l1_form` decides once per stored value, on the miss or L2-hit path: ``(stored,
loads)`` for :class:`cachekit.l1.L1Cache`, where ``loads(stored)`` is each hit's value.
"""

from __future__ import annotations

from functools import lru_cache

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["MAX_ITEMS", "l1_form"]

#: Scalars that a copy can share with its template: nobody can change them.
_SCALARS = frozenset({int, float, str, bytes, bool, type(None)})

#: Larger values stay bytes: their templates would take several times the memory of
#: the encoded form, and decoding a large value runs at C speed anyway.
MAX_ITEMS = 64


def _flat(container: Any) -> int:
    """Items of a list or dict holding only scalars (keys included), else -1."""
    t = type(container)
    if t is list:
        items = container
    elif t is dict:
        for k in container:
            if type(k) not in _SCALARS:
                return -1
        items = container.values()
    else:
        return -1
    for item in items:
        if type(item) not in _SCALARS:
            return -1
    return len(container)


# One copier per shape, shared by every entry of that shape (a closure per entry would
# cost each entry 140 B).
@lru_cache(maxsize=256)
def _copy_one(key: Any) -> Callable[[dict[Any, Any]], dict[Any, Any]]:
    def copy(template: dict[Any, Any]) -> dict[Any, Any]:
        value = template.copy()
        value[key] = value[key].copy()
        return value

    return copy


@lru_cache(maxsize=256)
def _copy_some(keys: tuple[Any, ...]) -> Callable[[dict[Any, Any]], dict[Any, Any]]:
    def copy(template: dict[Any, Any]) -> dict[Any, Any]:
        value = template.copy()
        for key in keys:
            value[key] = value[key].copy()
        return value

    return copy


def _copy_rows(template: list[Any]) -> list[Any]:
    return [row.copy() for row in template]


def _copier(value: Any) -> Callable[[Any], Any] | None:
    """A function that copies ``value`` as deep as its mutable parts, or None."""
    t = type(value)
    if t is dict:
        if len(value) > MAX_ITEMS:
            return None
        nested = []
        total = len(value)
        seen: set[int] = set()
        for k, v in value.items():
            if type(k) not in _SCALARS:
                return None
            if type(v) in _SCALARS:
                continue
            n = _flat(v)
            if n < 0 or id(v) in seen:  # deeper, or one container in two places
                return None
            seen.add(id(v))
            total += n
            nested.append(k)
        if total > MAX_ITEMS:
            return None
        if not nested:
            return dict.copy
        return _copy_one(nested[0]) if len(nested) == 1 else _copy_some(tuple(nested))
    if t is list:
        if len(value) > MAX_ITEMS:
            return None
        if all(type(v) in _SCALARS for v in value):
            return list.copy
        total = len(value)
        seen = set()
        for v in value:
            n = _flat(v)
            if n < 0 or id(v) in seen:  # a scalar among rows, deeper, or aliased
                return None
            seen.add(id(v))
            total += n
        return _copy_rows if total <= MAX_ITEMS else None
    return None


def l1_form(value: Any, payload: bytes, loads: Callable[[bytes], Any]) -> tuple[Any, Any]:
    """``(stored, loads)`` for L1: a template and its copier, or the bytes and ``loads``.

    ``value`` is what ``loads(payload)`` returned (the caller's copy): the template is a
    copy of it, so the caller may change its own.
    """
    copier = _copier(value)
    if copier is None:
        return payload, loads
    return copier(value), copier
