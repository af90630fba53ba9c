"""Public types for annotations: ``CachedFunction`` (what ``@cache`` returns)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

from cachekit.stats import CacheInfo

__all__ = ["CachedFunction"]

P = ParamSpec("P")
R = TypeVar("R")


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
