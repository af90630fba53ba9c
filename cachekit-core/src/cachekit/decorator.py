"""``cache``: the decorator, its intent presets, and what a decorated function gains."""

from __future__ import annotations

from functools import update_wrapper

from cachekit.cached import (
    UNSET,
    CachedState,
    Options,
    check_backend,
    check_serializer,
    make_wrapper,
)
from cachekit.config import parse_ttl
from cachekit.errors import ConfigurationError
from cachekit.keys import valid_name, validate_namespace
from cachekit.tenancy import MISSING_TENANT_CHOICES

# `typing` costs ~10 ms of import time; the types below exist for type checkers only
# (cachekit.CachedFunction is importable at runtime through cachekit.__getattr__).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterable, Mapping
    from typing import Any, Concatenate, ParamSpec, TypeVar, overload

    from cachekit.types import (
        AsyncCachedClassMethod,
        AsyncCachedFunction,
        CachedClassMethod,
        CachedFunction,
        Decorator,
    )

    P = ParamSpec("P")
    R = TypeVar("R")
    S = TypeVar("S")
    T = TypeVar("T")

__all__ = ["INTENTS", "CacheDecorator", "cache"]

_CO_GENERATOR = 0x20
_CO_COROUTINE = 0x80
_CO_ASYNC_GENERATOR = 0x200


#: The intent presets and their defaults. Any keyword given explicitly wins.
INTENTS: dict[str, dict[str, Any]] = {
    # Only what you ask for: environment backend, no stampede protection.
    "minimal": {"single_flight": False, "distributed_lock": False},
    # Long-running services: environment backend (a warning when none is set),
    # circuit breaker and single flight on.
    "production": {"require_backend": True, "single_flight": True, "circuit_breaker": True},
    # Development: short TTL so changes show up quickly.
    "dev": {"ttl": 60.0},
    # Tests: in-process only, never reads the environment's backend, no expiry.
    "test": {"backend": None, "ttl": None},
    # In-process only, even when a backend is configured in the environment.
    "local": {"backend": None},
    # Client-side encryption (needs cachekit-crypto and CACHEKIT_MASTER_KEY).
    "secure": {"encryption": True},
}

_PUBLIC_KEYWORDS = tuple(
    name for name in Options._defaults if name not in ("intent", "require_backend")
)


def _suggest(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, _PUBLIC_KEYWORDS, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _check_callable(name: str, value: Any) -> None:
    if value is not None and not callable(value):
        raise ConfigurationError(f"{name}= must be a callable or None, got {type(value).__name__}.")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name}= must be True or False, got {value!r}.")


def _tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = (value,) if isinstance(value, str) else tuple(value)
    for tag in items:
        if not isinstance(tag, str):
            raise ConfigurationError(f"tags must be strings, got {tag!r}.")
        if not valid_name(tag):
            raise ConfigurationError(
                f"tag {tag!r} is not valid: use 1-128 letters, digits, '_', '.' or '-'."
            )
    return tuple(dict.fromkeys(items))


def build_options(intent: str, given: Mapping[str, Any]) -> Options:
    """Validate decorator keywords on top of an intent preset."""
    unknown = [k for k in given if k not in _PUBLIC_KEYWORDS]
    if unknown:
        raise ConfigurationError(
            f"@cache got an unknown keyword {unknown[0]!r}.{_suggest(unknown[0])} "
            f"Valid keywords: {', '.join(_PUBLIC_KEYWORDS)}."
        )
    values: dict[str, Any] = {**INTENTS.get(intent, {}), **given}
    if "ttl" in values and values["ttl"] is not UNSET:
        values["ttl"] = parse_ttl(values["ttl"])
    validate_namespace(values.get("namespace"))
    values["tags"] = _tags(values.get("tags"))
    for name in ("key", "condition", "unless", "tenant_extractor"):
        _check_callable(name, values.get(name))
    choice = values.get("missing_tenant", "raise")
    if choice not in MISSING_TENANT_CHOICES:
        raise ConfigurationError(
            f"missing_tenant= must be one of {', '.join(map(repr, MISSING_TENANT_CHOICES))}, "
            f"got {choice!r}."
        )
    for name in ("l1", "single_flight", "compress", "fail_closed", "distributed_lock"):
        if name in values:
            _check_bool(name, values[name])
    include_self = values.get("include_self")
    if include_self is not None:
        _check_bool("include_self", include_self)
    for name in ("l1_max_entries", "max_value_size"):
        v = values.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ConfigurationError(f"{name}= must be a positive integer, got {v!r}.")
    lease = values.get("lock_lease")
    if lease is not None and (
        isinstance(lease, bool) or not isinstance(lease, (int, float)) or not 0 < lease < 86400
    ):
        raise ConfigurationError(f"lock_lease= must be seconds > 0, got {lease!r}.")
    mb = values.get("l1_max_size_mb")
    if mb is not None and (isinstance(mb, bool) or not isinstance(mb, (int, float)) or mb <= 0):
        raise ConfigurationError(f"l1_max_size_mb= must be a positive number, got {mb!r}.")
    check_serializer(values.get("serializer"))
    check_backend(values.get("backend", UNSET))
    cb = values.get("circuit_breaker")
    if cb is not None and not isinstance(cb, bool):
        from cachekit.breaker import BreakerConfig

        if not isinstance(cb, BreakerConfig):
            raise ConfigurationError(
                "circuit_breaker= must be True, False or a cachekit.breaker.BreakerConfig, "
                f"got {cb!r}."
            )
    enc = values.get("encryption", False)
    if values.get("compress") and enc is not False and enc is not None:
        raise ConfigurationError(
            "compress=True cannot be combined with encryption: compressing before "
            "encrypting lets whoever sees the stored sizes learn the content (the CRIME "
            "attack). Remove compress=True from this secure function."
        )
    if enc is True or isinstance(enc, str):
        # Fail at decoration when the encryptor's package is missing (E041).
        from cachekit.plugins import encryptor_spec

        encryptor_spec("aes-gcm" if enc is True else enc)
    elif enc is not False and enc is not None:
        missing = [m for m in ("encrypt", "decrypt") if not callable(getattr(enc, m, None))]
        if missing or not isinstance(getattr(enc, "key_id", None), str):
            raise ConfigurationError(
                f"encryption={enc!r} is not an encryptor: it needs key_id, encrypt() and "
                "decrypt() (see cachekit.protocols.Encryptor)."
            )
    return Options(intent=intent, **values)


def _decorate(func: Any, options: Options) -> Any:
    if isinstance(func, (classmethod, staticmethod)):
        return type(func)(_decorate(func.__func__, options))
    if not callable(func):
        raise ConfigurationError(f"@cache decorates functions, got {type(func).__name__}.")
    is_async, is_generator = _function_kind(func)
    if is_generator:
        raise ConfigurationError(
            f"{getattr(func, '__qualname__', func)!r} is a generator function: its result is "
            "consumed once and cannot be cached. Return a list instead."
        )
    state = CachedState(func, options, is_async=is_async)
    wrapper: Any = make_wrapper(state)
    update_wrapper(wrapper, func)

    def invalidate_cache(*args: Any, **kwargs: Any) -> Any:
        if is_async and _loop_is_running():
            # Awaitable, as cachekit's API documents: `await f.invalidate_cache(x)`.
            return state.invalidate_in_loop(args, kwargs)
        return state.invalidate(args, kwargs)

    async def ainvalidate_cache(*args: Any, **kwargs: Any) -> int:
        return await state.ainvalidate(args, kwargs)

    def cache_key(*args: Any, **kwargs: Any) -> str:
        return state.cache_key(args, kwargs)

    wrapper.invalidate_cache = invalidate_cache
    wrapper.ainvalidate_cache = ainvalidate_cache

    def cache_clear() -> int:
        # Like functools.lru_cache: clearing also resets the statistics.
        return state.clear(reset_stats=True)

    wrapper.cache_clear = cache_clear
    wrapper.cache_info = state.info
    wrapper.cache_key = cache_key
    wrapper.check_health = state.health
    wrapper.__cachekit__ = state
    wrapper.__cachekit_namespace__ = options.namespace
    return wrapper


def _loop_is_running() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _function_kind(func: Any) -> tuple[bool, bool]:
    """(is a coroutine function, is a generator function), without importing inspect
    for plain functions."""
    code = getattr(func, "__code__", None)
    if code is not None and type(func).__name__ == "function":
        flags = code.co_flags
        return bool(flags & _CO_COROUTINE), bool(flags & (_CO_GENERATOR | _CO_ASYNC_GENERATOR))
    import inspect

    return inspect.iscoroutinefunction(func), (
        inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func)
    )


class CacheDecorator:
    """``cache``: ``@cache``, ``@cache(...)`` and the intent presets ``@cache.<intent>``."""

    def __init__(self, intent: str = "default") -> None:
        self._intent = intent

    def __repr__(self) -> str:
        return "cache" if self._intent == "default" else f"cache.{self._intent}"

    if TYPE_CHECKING:

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

        @overload
        def __call__(
            self,
            func: None = None,
            /,
            *,
            ttl: float | Any | None = ...,
            namespace: str | None = ...,
            serializer: Any = ...,
            backend: Any = ...,
            key: Callable[..., Any] | None = ...,
            l1: bool = ...,
            l1_max_entries: int | None = ...,
            l1_max_size_mb: float | None = ...,
            circuit_breaker: Any = ...,
            tags: str | Iterable[str] | None = ...,
            condition: Callable[..., bool] | None = ...,
            unless: Callable[[Any], bool] | None = ...,
            encryption: Any = ...,
            include_self: bool | None = ...,
            single_flight: bool = ...,
            max_value_size: int | None = ...,
            compress: bool = ...,
            fail_closed: bool = ...,
            distributed_lock: bool = ...,
            lock_lease: float = ...,
            tenant_extractor: Callable[..., str | None] | None = ...,
            missing_tenant: str = ...,
        ) -> Decorator: ...

    def __call__(self, func: Any = None, /, **kwargs: Any) -> Any:
        if func is not None:
            if kwargs:
                raise ConfigurationError(
                    "pass options as keywords: @cache(ttl=60), not @cache(func, ttl=60)."
                )
            if not callable(func) and not isinstance(func, (classmethod, staticmethod)):
                raise ConfigurationError(
                    f"@cache got a positional argument {func!r}; options are keywords, "
                    "e.g. @cache(ttl=60)."
                )
            return _decorate(func, build_options(self._intent, {}))
        options = build_options(self._intent, kwargs)

        def decorator(f: Any) -> Any:
            return _decorate(f, options)

        return decorator

    @property
    def minimal(self) -> CacheDecorator:
        """Environment backend, no stampede protection: the fewest moving parts."""
        return CacheDecorator("minimal")

    @property
    def production(self) -> CacheDecorator:
        """Environment backend (warns if none), circuit breaker and single flight on."""
        return CacheDecorator("production")

    @property
    def dev(self) -> CacheDecorator:
        """A 60 second TTL so that code changes show up quickly."""
        return CacheDecorator("dev")

    @property
    def test(self) -> CacheDecorator:
        """In-process only, no expiry, ignores the environment's backend."""
        return CacheDecorator("test")

    @property
    def local(self) -> CacheDecorator:
        """In-process only, even when a backend is configured."""
        return CacheDecorator("local")

    @property
    def secure(self) -> CacheDecorator:
        """Client-side AES-256-GCM (cachekit-crypto, CACHEKIT_MASTER_KEY)."""
        return CacheDecorator("secure")


cache = CacheDecorator()
