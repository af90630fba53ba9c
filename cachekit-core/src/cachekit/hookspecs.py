"""The hooks a cachekit plugin implements, and the records they return.

A plugin is a module of ``@hookimpl`` functions named in the ``cachekit``
entry-point group of its distribution::

    # pyproject.toml of cachekit-mybackend
    [project.entry-points.cachekit]
    mybackend = "cachekit_mybackend.plugin"

Every hook is a *registration* hook: it returns an iterable of small frozen
records whose factories build the real objects on first use. Hooks run once, when
cachekit first needs its registry (never at ``import cachekit`` and never on a
cache hit), so the plugin module must import cheaply: import heavy libraries
inside the factories.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from cachekit.protocols import AsyncBackend, Backend, Encryptor, Serializer

__all__ = [
    "PROJECT_NAME",
    "BackendSpec",
    "EncryptorSpec",
    "SerializerSpec",
    "cachekit_backends",
    "cachekit_encryptors",
    "cachekit_serializers",
    "hookimpl",
    "hookspec",
]

PROJECT_NAME = "cachekit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@dataclass(frozen=True)
class BackendSpec:
    """A backend a plugin offers.

    ``schemes`` are the URL schemes it serves (``"redis"``, ``"rediss"``...).
    ``factory(url, **options)`` returns a :class:`~cachekit.protocols.Backend`;
    ``async_factory(url, **options)``, when given, returns its
    :class:`~cachekit.protocols.AsyncBackend` twin for ``async def`` functions.

    The decorator calls a factory with the URL alone, at the first call of the first
    function using that URL, and keeps one object per URL (and flavour) for the
    life of the process. What the object must do: docs/backend-contract.md.
    """

    name: str
    schemes: tuple[str, ...]
    factory: Callable[..., Backend]
    async_factory: Callable[..., AsyncBackend] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name, "backend")
        if not isinstance(self.schemes, tuple) or not self.schemes:
            raise TypeError(f"BackendSpec {self.name!r}: schemes must be a non-empty tuple")
        for scheme in self.schemes:
            _check_name(scheme, "URL scheme")


@dataclass(frozen=True)
class SerializerSpec:
    """A serializer a plugin offers.

    ``name`` is the id written into stored envelopes and accepted by
    ``@cache(serializer="<name>")``; ``factory(**options)`` builds an instance.
    ``class_names`` are the names that ``from cachekit.serializers import <Name>``
    resolves, through ``load_class()`` (called lazily, so the heavy import happens
    only when the class is asked for).
    """

    name: str
    factory: Callable[..., Serializer]
    class_names: tuple[str, ...] = ()
    load_class: Callable[[], type] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name, "serializer")
        if len(self.name) > 32 or not self.name.isascii():
            raise TypeError(f"serializer name {self.name!r} must be ASCII, at most 32 chars")
        if not isinstance(self.class_names, tuple):
            raise TypeError(f"SerializerSpec {self.name!r}: class_names must be a tuple")
        if self.class_names and self.load_class is None:
            raise TypeError(f"SerializerSpec {self.name!r}: class_names need load_class")


@dataclass(frozen=True)
class EncryptorSpec:
    """An encryptor a plugin offers: ``factory(**options)`` returns an Encryptor.

    The options the decorator passes are ``tenant`` (str or None) and ``environ``
    (the mapping to read keys from).
    """

    name: str
    factory: Callable[..., Encryptor]
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        _check_name(self.name, "encryptor")


def _check_name(name: str, what: str) -> None:
    if (
        not isinstance(name, str)
        or not name
        or not name.replace("-", "").replace("+", "").replace("_", "").replace(".", "").isalnum()
    ):
        raise TypeError(f"{what} name {name!r} must be a non-empty identifier-like string")


@hookspec
def cachekit_backends() -> Iterable[BackendSpec]:  # type: ignore[empty-body]
    """Return the backends this plugin provides.

    Example (a plugin module)::

        from cachekit.hookspecs import BackendSpec, hookimpl

        def _make(url, **options):
            from cachekit.backends.memory import from_url
            return from_url(url.replace("mymem://", "memory://", 1), **options)

        @hookimpl
        def cachekit_backends():
            return [BackendSpec(name="mymem", schemes=("mymem",), factory=_make)]

    After installation, ``@cache(backend="mymem://x")`` uses it.
    """


@hookspec
def cachekit_serializers() -> Iterable[SerializerSpec]:  # type: ignore[empty-body]
    """Return the serializers this plugin provides.

    Example::

        import json
        from cachekit.hookspecs import SerializerSpec, hookimpl

        class JsonSerializer:
            name = "json"
            def serialize(self, obj):
                return json.dumps(obj).encode()
            def deserialize(self, data):
                return json.loads(data)

        @hookimpl
        def cachekit_serializers():
            return [SerializerSpec(name="json", factory=JsonSerializer,
                                   class_names=("JsonSerializer",),
                                   load_class=lambda: JsonSerializer)]

    After installation, ``@cache(serializer="json")`` and
    ``from cachekit.serializers import JsonSerializer`` both work.
    """


@hookspec
def cachekit_encryptors() -> Iterable[EncryptorSpec]:  # type: ignore[empty-body]
    """Return the encryptors this plugin provides (cachekit-crypto registers ``aes-gcm``).

    Example::

        from cachekit.hookspecs import EncryptorSpec, hookimpl

        class NullEncryptor:                 # for illustration only: not secure
            key_id = "null"
            def encrypt(self, plaintext, aad):
                return plaintext
            def decrypt(self, blob, aad, *, key_id):
                return blob

        @hookimpl
        def cachekit_encryptors():
            return [EncryptorSpec(name="null", factory=lambda **options: NullEncryptor())]

    ``@cache.secure`` uses the encryptor named ``aes-gcm``; ``@cache(encryption="null")``
    would pick this one.
    """
