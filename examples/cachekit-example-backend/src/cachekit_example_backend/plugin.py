"""The module named by our ``cachekit`` entry point.

cachekit imports it the first time it needs its plugin registry, so it stays
cheap: it imports only cachekit.hookspecs, and the backend and serializer
modules are imported inside the factories, when first used.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cachekit.hookspecs import BackendSpec, SerializerSpec, hookimpl


def _make_backend(url: str, **options: Any) -> Any:
    from cachekit_example_backend.backend import DictBackend

    return DictBackend.from_url(url, **options)


def _make_serializer(**options: Any) -> Any:
    from cachekit_example_backend.serializer import JsonSerializer

    return JsonSerializer(**options)


def _serializer_class() -> type:
    from cachekit_example_backend.serializer import JsonSerializer

    return JsonSerializer


@hookimpl
def cachekit_backends() -> Iterable[BackendSpec]:
    return [
        BackendSpec(
            name="example",
            schemes=("example",),
            factory=_make_backend,
            description="dict in this process (example://NAME shares a store by name)",
        )
    ]


@hookimpl
def cachekit_serializers() -> Iterable[SerializerSpec]:
    return [
        SerializerSpec(
            name="json",
            factory=_make_serializer,
            class_names=("JsonSerializer",),
            load_class=_serializer_class,
            description="JSON text: dict, list, str, int, float, bool, None",
        )
    ]
