"""Public types for annotations: ``CachedFunction`` (what ``@cache`` returns).

``AsyncCachedFunction`` is what it returns for an ``async def``: the same, except that
``invalidate_cache()`` called inside a running event loop returns an awaitable.

Methods: a ``CachedFunction`` is a descriptor like a plain function. Read through an
instance (``repo.get``) it is a ``BoundCachedFunction`` without its first parameter;
read through the class (``Repo.get``) it keeps every parameter. ``@cache`` written
above ``@classmethod`` or ``@staticmethod`` gives a ``CachedDescriptor``, which reads
as a ``BoundCachedFunction`` without ``cls`` (classmethod) or with every parameter
(staticmethod), through the class and through an instance alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

from cachekit.stats import CacheInfo

__all__ = [
    "AsyncBoundCachedFunction",
    "AsyncCachedClassMethod",
    "AsyncCachedFunction",
    "BoundCachedFunction",
    "CachedClassMethod",
    "CachedFunction",
    "Decorator",
]

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
S = TypeVar("S")
S_co = TypeVar("S_co", covariant=True)
T = TypeVar("T")


class BoundCachedFunction(Protocol, Generic[P, R_co]):
    """A cached function as read from an instance or a class: callable, with the cache
    controls (which, as on the function itself, take the arguments without self/cls)."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def invalidate_cache(self, *args: Any, **kwargs: Any) -> int:
        """Remove one entry (L1 and L2); with no arguments, every entry of the function."""
        ...

    def ainvalidate_cache(self, *args: Any, **kwargs: Any) -> Awaitable[int]: ...

    def cache_clear(self) -> int:
        """Remove every entry of this function from L1 and L2."""
        ...

    def cache_info(self) -> CacheInfo: ...

    def cache_key(self, *args: Any, **kwargs: Any) -> str:
        """The exact backend key a call with these arguments uses."""
        ...

    def check_health(self) -> dict[str, Any]: ...


class AsyncBoundCachedFunction(BoundCachedFunction[P, R_co], Protocol):
    """A ``BoundCachedFunction`` of an ``async def`` (see AsyncCachedFunction)."""

    def invalidate_cache(self, *args: Any, **kwargs: Any) -> Any: ...


class CachedFunction(BoundCachedFunction[P, R], Protocol):
    """A decorated function: the original signature plus cache controls."""

    __wrapped__: Callable[P, R]

    @overload
    def __get__(self, instance: None, owner: type[Any], /) -> CachedFunction[P, R]: ...

    @overload
    def __get__(
        self: CachedFunction[Concatenate[S, Q], R], instance: S, owner: type[Any] | None = None, /
    ) -> BoundCachedFunction[Q, R]: ...

    def __get__(self, instance: Any, owner: Any = None, /) -> Any:
        """Through the class: itself. Through an instance: bound, like a method."""
        ...


class AsyncCachedFunction(CachedFunction[P, R], Protocol):
    """A decorated ``async def`` (``R`` is the coroutine its calls return)."""

    def invalidate_cache(self, *args: Any, **kwargs: Any) -> Any:
        """Outside a running event loop: the count of entries removed, as an int.

        Inside one: an awaitable of that count (``await f.invalidate_cache(x)``); this
        process's L1 entry is already gone when the call returns, awaited or not.
        """
        ...

    @overload
    def __get__(self, instance: None, owner: type[Any], /) -> AsyncCachedFunction[P, R]: ...

    @overload
    def __get__(
        self: AsyncCachedFunction[Concatenate[S, Q], R],
        instance: S,
        owner: type[Any] | None = None,
        /,
    ) -> AsyncBoundCachedFunction[Q, R]: ...

    def __get__(self, instance: Any, owner: Any = None, /) -> Any: ...


class CachedClassMethod(CachedFunction[Concatenate[type[S_co], P], R], Protocol):
    """A cached function whose first parameter is a class: a classmethod (in either
    decorator order). Read through its class or an instance, ``cls`` is bound."""

    def __get__(  # type: ignore[override]
        self, instance: object, owner: type[Any] | None = None, /
    ) -> BoundCachedFunction[P, R]: ...


class AsyncCachedClassMethod(
    CachedClassMethod[S_co, P, R], AsyncCachedFunction[Concatenate[type[S_co], P], R], Protocol
):
    """A ``CachedClassMethod`` of an ``async def``."""

    def __get__(  # type: ignore[override]
        self, instance: object, owner: type[Any] | None = None, /
    ) -> AsyncBoundCachedFunction[P, R]: ...


class Decorator(Protocol):
    """What ``@cache(...)`` returns: applied to a function, it gives its cached form."""

    @overload
    def __call__(
        self, func: Callable[Concatenate[type[S], P], Coroutine[Any, Any, T]], /
    ) -> AsyncCachedClassMethod[S, P, Coroutine[Any, Any, T]]: ...

    @overload
    def __call__(
        self, func: Callable[Concatenate[type[S], P], R], /
    ) -> CachedClassMethod[S, P, R]: ...

    @overload
    def __call__(
        self, func: Callable[P, Coroutine[Any, Any, T]], /
    ) -> AsyncCachedFunction[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __call__(self, func: Callable[P, R], /) -> CachedFunction[P, R]: ...
