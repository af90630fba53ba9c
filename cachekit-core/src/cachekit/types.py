"""Public types for annotations: ``CachedFunction`` (what ``@cache`` returns).

``AsyncCachedFunction`` is what it returns for an ``async def``: the same, except that
``invalidate_cache()`` called inside a running event loop returns an awaitable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, overload

from cachekit.stats import CacheInfo

__all__ = ["AsyncCachedFunction", "CachedFunction", "Decorator"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class CachedFunction(Protocol, Generic[P, R]):
    """A decorated function: the original signature plus cache controls."""

    __wrapped__: Callable[P, R]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

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


class AsyncCachedFunction(CachedFunction[P, R], Protocol):
    """A decorated ``async def`` (``R`` is the coroutine its calls return)."""

    def invalidate_cache(self, *args: Any, **kwargs: Any) -> Any:
        """Outside a running event loop: the count of entries removed, as an int.

        Inside one: an awaitable of that count (``await f.invalidate_cache(x)``); this
        process's L1 entry is already gone when the call returns, awaited or not.
        """
        ...


class Decorator(Protocol):
    """What ``@cache(...)`` returns: applied to a function, it gives its cached form."""

    @overload
    def __call__(
        self, func: Callable[P, Coroutine[Any, Any, T]], /
    ) -> AsyncCachedFunction[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __call__(self, func: Callable[P, R], /) -> CachedFunction[P, R]: ...
