"""Assertion helpers shared by every suite of :mod:`cachekit.testing`.

No pytest at import time: a failure is a plain :class:`AssertionError` whose message
names the broken rule, a rule that does not apply raises :class:`unittest.SkipTest`.
"""

from __future__ import annotations

import threading
import unittest
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from cachekit.errors import CachekitError


def _fail(message: str) -> NoReturn:
    raise AssertionError(message)


def _check(condition: object, message: str) -> None:
    if not condition:
        _fail(message)


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 20]}...<{len(text)} chars>"


@contextmanager
def _raises(error: type[CachekitError], action: str) -> Iterator[None]:
    """Expect ``error`` (checked by class and by its stable code) from the block."""
    try:
        yield
    except error as exc:
        _check(
            getattr(exc, "code", None) == error.code,
            f"{action}: raised {type(exc).__name__} with code {getattr(exc, 'code', None)!r}, "
            f"expected {error.code}",
        )
        return
    except Exception as exc:
        _fail(
            f"{action}: raised {type(exc).__name__}: {exc}; expected "
            f"cachekit.errors.{error.__name__} ({error.code})"
        )
    _fail(f"{action}: returned normally; expected cachekit.errors.{error.__name__} ({error.code})")


def _skip(reason: str) -> NoReturn:
    raise unittest.SkipTest(reason)


def _run_threads(count: int, work: Callable[[int], None]) -> None:
    """Run ``work(i)`` in ``count`` threads started together; re-raise the first failure."""
    barrier = threading.Barrier(count)
    failures: list[BaseException] = []

    def target(i: int) -> None:
        try:
            barrier.wait()
            work(i)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]


def _same(expected: Any, actual: Any) -> bool:
    """Equal *and* of the same types, recursively (``True`` is not ``1``, a tuple not a list)."""
    if type(expected) is not type(actual):
        return False
    if isinstance(expected, dict):
        return expected.keys() == actual.keys() and all(
            _same(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, (list, tuple)):
        return len(expected) == len(actual) and all(map(_same, expected, actual))
    return bool(expected == actual)


def _lacking(obj: Any, names: tuple[str, ...] | list[str]) -> list[str]:
    return [name for name in names if not callable(getattr(obj, name, None))]


def _check_protocol(obj: Any, names: tuple[str, ...], protocol: str, maker: str) -> None:
    """Name what is missing instead of "not an instance of the protocol"."""
    _check(obj is not None, f"{maker} returned None; it must return the object under test")
    missing = _lacking(obj, names)
    _check(
        not missing,
        f"{_short(obj)} does not implement cachekit.protocols.{protocol}: it has no "
        f"{', '.join(m + '()' for m in missing)}",
    )
