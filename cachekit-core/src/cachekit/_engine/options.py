"""The decorator's options and the plan resolved from them, and the checks of both.

``Options`` is what ``@cache(...)`` was given, validated at decoration time; ``Plan``
is everything resolved at the first call (backend, serializer, encryptor, breaker),
read-only afterwards. Neither imports the rest of the engine.
"""

from __future__ import annotations

from cachekit.constants import CAP_NONBLOCKING
from cachekit.errors import ConfigurationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from typing import Any, ClassVar

__all__ = [
    "UNSET",
    "Options",
    "Plan",
    "check_backend",
    "check_serializer",
]


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


#: "Not given": distinct from None, which means "no backend" or "no expiry".
UNSET: Any = _Unset()


class _Record:
    """A small immutable record (dataclasses cost ~10 ms of import time)."""

    __slots__: tuple[str, ...] = ()
    _defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - set(self.__slots__)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected fields {sorted(unknown)}")
        for name in self.__slots__:
            value = values[name] if name in values else self._defaults[name]
            if isinstance(value, (dict, list)) and name not in values:
                value = type(value)(value)
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({inner})"


class Options(_Record):
    """The decorator's keywords, validated at decoration time.

    ``ttl``: seconds, None (no expiry) or UNSET (environment default).
    ``serializer``: an instance, a registered name, or None (MessagePack).
    ``backend``: None (L1 only), a URL, a backend object, or UNSET (environment).
    ``circuit_breaker``: a BreakerConfig, a bool, or None (environment defaults).
    ``encryption``: False, True (aes-gcm), an encryptor name or an Encryptor object.
    ``tenant_extractor``: called with each call's arguments, returns its tenant
    (cachekit.tenancy); ``missing_tenant``: "raise" (E044) or "bypass" without one.
    """

    _defaults: ClassVar[dict[str, Any]] = {
        "ttl": UNSET,
        "namespace": None,
        "serializer": None,
        "backend": UNSET,
        "key": None,
        "l1": True,
        "l1_max_entries": None,
        "l1_max_size_mb": None,
        "circuit_breaker": None,
        "tags": (),
        "condition": None,
        "unless": None,
        "encryption": False,
        "include_self": None,
        "single_flight": True,
        "max_value_size": None,
        "compress": False,
        "fail_closed": False,
        "distributed_lock": True,
        "lock_lease": 10.0,
        "tenant_extractor": None,
        "missing_tenant": "raise",
        "intent": "default",
        "require_backend": False,
    }
    __slots__ = tuple(_defaults)
    if TYPE_CHECKING:
        ttl: Any
        namespace: str | None
        serializer: Any
        backend: Any
        key: Callable[..., Any] | None
        l1: bool
        l1_max_entries: int | None
        l1_max_size_mb: float | None
        circuit_breaker: Any
        tags: tuple[str, ...]
        condition: Callable[..., bool] | None
        unless: Callable[[Any], bool] | None
        encryption: Any
        include_self: bool | None
        single_flight: bool
        max_value_size: int | None
        compress: bool
        fail_closed: bool
        intent: str
        require_backend: bool
        distributed_lock: bool
        lock_lease: float
        tenant_extractor: Callable[..., Any] | None
        missing_tenant: str


class Plan(_Record):
    """Everything resolved at the first call; read-only afterwards."""

    __slots__ = (
        "abackend",
        "abackend_mode",
        "acall",
        "backend",
        "breaker",
        "enabled",
        "encryptor",
        "endpoint",
        "loads",
        "max_value_size",
        "read_plain",
        "require_auth",
        "ser_name",
        "serializer",
        "signer",
        "ttl",
    )
    if TYPE_CHECKING:
        enabled: bool
        ttl: float | None
        serializer: Any
        ser_name: str
        loads: Callable[[bytes], Any]
        backend: Any  # sync backend or None
        abackend: Any  # async backend (or a sync one, see abackend_mode) or None
        abackend_mode: str  # "async" | "inline" | "thread" | "none"
        # How async code calls abackend: awaited, inline or in a thread (plan.ASYNC_CALLS)
        acall: Callable[..., Awaitable[Any]] | None
        breaker: Any
        encryptor: Any
        signer: Any
        require_auth: bool
        max_value_size: int
        endpoint: str | None
        # envelope.plain_reader of ser_name when entries are neither encrypted nor
        # signed (L2Access._read tries it first), else None
        read_plain: Callable[[Any], tuple[bytes, float] | None] | None


class _Place(_Record):
    """Where a backend failure happened, before there is a Plan."""

    __slots__ = ("breaker", "endpoint")
    if TYPE_CHECKING:
        breaker: Any
        endpoint: str | None


def _is_async_backend(obj: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(getattr(type(obj), "get", None))


def check_backend(obj: Any) -> None:
    """Reject a backend= value that is neither None, a URL nor a backend object."""
    if obj is UNSET or obj is None:
        return
    if isinstance(obj, str):
        if "://" not in obj:
            from cachekit.config import redact_url

            raise ConfigurationError(
                f"backend={redact_url(obj)!r} is not a URL; expected e.g. "
                "'redis://localhost:6379/0' or 'memory://'. Use backend=None for L1 only."
            )
        return
    _check_backend_object(obj)


def _check_backend_object(obj: Any) -> None:
    missing = [m for m in ("get", "set", "delete", "clear") if not callable(getattr(obj, m, None))]
    if missing:
        raise ConfigurationError(
            f"backend={obj!r} is not a cachekit backend: it lacks {', '.join(missing)}(). "
            "Pass None (L1 only), a URL such as 'redis://localhost:6379/0', or an object "
            "implementing cachekit.protocols.Backend."
        )


def _endpoint(obj: Any) -> str:
    ep = getattr(obj, "endpoint", None)
    return str(ep) if ep else f"{type(obj).__qualname__}@{id(obj):x}"


def _async_mode_for(backend: Any) -> str:
    return "inline" if CAP_NONBLOCKING in getattr(backend, "capabilities", ()) else "thread"


def check_serializer(choice: Any) -> None:
    """Reject what cannot be a serializer (a class, an object without the methods)."""
    if choice is None or isinstance(choice, str):
        return
    if isinstance(choice, type):
        raise ConfigurationError(
            f"serializer={choice.__name__} is a class; pass an instance: "
            f"serializer={choice.__name__}()."
        )
    missing = [m for m in ("serialize", "deserialize") if not callable(getattr(choice, m, None))]
    name = getattr(choice, "name", None)
    if missing or not isinstance(name, str) or not name:
        raise ConfigurationError(
            f"serializer={choice!r} is not a serializer: it needs a 'name' string and "
            "serialize()/deserialize() methods (see cachekit.protocols.Serializer)."
        )
    # The name is written into every stored envelope (cachekit.protocols.Serializer).
    if len(name) > 32 or not name.isascii() or not name.isprintable():
        raise ConfigurationError(
            f"serializer name {name!r} of {type(choice).__name__} must be 1-32 printable "
            "ASCII characters: it is written into every stored entry."
        )


# Other names of the default serializer, as cachekit's documented API spells them.
_SERIALIZER_ALIASES = {"default": "msgpack", "std": "msgpack"}


def _resolve_serializer(choice: Any) -> Any:
    if choice is None:
        from cachekit.serializers import DEFAULT_SERIALIZER

        return DEFAULT_SERIALIZER
    if isinstance(choice, str):
        from cachekit.plugins import build, serializer_spec

        spec = serializer_spec(_SERIALIZER_ALIASES.get(choice, choice))
        choice = build(spec.factory, f"serializer {choice}")
    check_serializer(choice)
    return choice


def _is_method(func: Callable[..., Any]) -> bool:
    """A function defined in a class body whose first parameter is self or cls."""
    qualname = getattr(func, "__qualname__", "")
    parts = qualname.split(".")
    if len(parts) < 2 or parts[-2] == "<locals>":
        return False
    code = getattr(func, "__code__", None)
    if code is not None and type(func).__name__ == "function":
        return code.co_argcount > 0 and code.co_varnames[0] in ("self", "cls")
    import inspect

    try:
        params = list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0] in ("self", "cls")


def _defining_class(func: Callable[..., Any]) -> tuple[Any, str]:
    """(the class whose body defines ``func`` or None, the name of its first parameter)."""
    import sys

    first = ""
    code = getattr(func, "__code__", None)
    if code is not None and code.co_argcount:
        first = code.co_varnames[0]
    parts = getattr(func, "__qualname__", "").split(".")[:-1]
    found: Any = sys.modules.get(getattr(func, "__module__", None) or "")
    for part in parts:
        found = getattr(found, part, None)
    return (found if parts and isinstance(found, type) else None), first
